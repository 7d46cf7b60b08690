/**
 * Prompts: the pack's Jinja chat template rendered with @huggingface/jinja, tokenized with
 * @huggingface/tokenizers from tokenizer.json, and split at the image placeholder the way the
 * reference's `tokenizer_image_token` does (each piece tokenized on its own; BOS kept once). The place of the
 * image is marked by a private sentinel, never found by searching the text: a question that contains the
 * pack's image token (`<image>`) is text.
 */
import { readFile } from 'node:fs/promises';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import type { Manifest, Pack } from './pack.ts';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
  /** The visual tokens go before this message's text (the first user message: LLaVA's layout). */
  image?: boolean;
}

/** Marks the image's place in a rendered prompt; removed from any message text, so only `image` can place it. */
const IMAGE_MARK = '\uE000loupe:image\uE001';

/** Token ids with the place of the visual tokens marked. */
export type PromptSegment = { kind: 'text'; ids: number[] } | { kind: 'image' };

export class PromptBuilder {
  private readonly template: Template;

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly prompt: Manifest['prompt'],
  ) {
    this.template = new Template(prompt.chatTemplate);
  }

  static async load(pack: Pack): Promise<PromptBuilder> {
    const [tokenizerJson, tokenizerConfig] = await Promise.all([
      readFile(pack.file('tokenizer'), 'utf8').then(JSON.parse),
      readFile(pack.file('tokenizerConfig'), 'utf8').then(JSON.parse),
    ]);
    return new PromptBuilder(new Tokenizer(tokenizerJson, tokenizerConfig), pack.manifest.prompt);
  }

  get imageToken(): string {
    return this.prompt.imageToken;
  }

  /** The prompt as text, the image shown as the pack's image token (for display and comparisons). */
  render(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    return this.renderMarked(messages, addGenerationPrompt).replaceAll(IMAGE_MARK, this.prompt.imageToken);
  }

  private renderMarked(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    const text = (m: ChatMessage): ChatMessage => {
      const content = m.content.replaceAll(IMAGE_MARK, '');
      return { role: m.role, content: m.image ? `${IMAGE_MARK}\n${content}` : content };
    };
    const all: ChatMessage[] =
      this.prompt.systemPrompt && messages[0]?.role !== 'system'
        ? [{ role: 'system', content: this.prompt.systemPrompt }, ...messages.map(text)]
        : messages.map(text);
    return this.template.render({
      messages: all,
      bos_token: this.prompt.bosToken ?? '',
      eos_token: this.prompt.eosToken,
      add_generation_prompt: addGenerationPrompt,
    });
  }

  /** The user's first message: the image, a newline, then the question (LLaVA's layout). */
  firstUserMessage(question: string): ChatMessage {
    return { role: 'user', content: question, image: true };
  }

  /**
   * Render and tokenize a whole prompt, as `tokenizer_image_token` does: the text is split at the image
   * (only where a message's `image` puts it), every piece is encoded with special tokens; if the first starts
   * with BOS, BOS is kept once and the first token of every piece is dropped.
   */
  encodePrompt(messages: readonly ChatMessage[], addGenerationPrompt = true): PromptSegment[] {
    const rendered = this.renderMarked(messages, addGenerationPrompt);
    const chunks = rendered.split(IMAGE_MARK).map((c) => this.encode(c, true));
    const bos = this.prompt.bosToken ? this.tokenizer.token_to_id(this.prompt.bosToken) : undefined;
    const offset = bos !== undefined && chunks[0]?.[0] === bos ? 1 : 0;
    const segments: PromptSegment[] = offset ? [{ kind: 'text', ids: [bos!] }] : [];
    chunks.forEach((ids, i) => {
      if (i > 0) segments.push({ kind: 'image' });
      segments.push({ kind: 'text', ids: ids.slice(offset) });
    });
    return segments;
  }

  encode(text: string, addSpecialTokens = false): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }
}

/**
 * Turns a growing list of token ids into text deltas without re-decoding the whole answer per token: only the
 * ids since the last emitted text are decoded, together with the few before them (so a tokenizer that drops a
 * word's leading space at the start of a decode still gives the right delta). A trailing U+FFFD means a
 * character is still incomplete; its bytes wait for the next token.
 */
export class TextStreamer {
  private ids: number[] = [];
  private prefixAt = 0; // decode windows start here
  private readAt = 0; // ids before this are already emitted
  private emitted = '';

  constructor(private readonly decode: (ids: readonly number[]) => string) {}

  push(id: number): string {
    this.ids.push(id);
    const prefix = this.decode(this.ids.slice(this.prefixAt, this.readAt));
    const window = this.decode(this.ids.slice(this.prefixAt));
    if (window.length <= prefix.length || window.endsWith('\uFFFD')) return '';
    let delta = window.slice(prefix.length);
    if (!window.startsWith(prefix)) {
      // a tokenizer whose text for the earlier ids changed with the new one: compare whole answers (rare)
      const text = this.text.trimStart();
      delta = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : '';
    }
    this.prefixAt = this.readAt;
    this.readAt = this.ids.length;
    if (!this.emitted) delta = delta.trimStart(); // answers start after "ASSISTANT:" with a space
    this.emitted += delta;
    return delta;
  }

  get text(): string {
    return this.decode(this.ids);
  }
}
