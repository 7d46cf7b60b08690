/**
 * Prompts: the pack's Jinja chat template rendered with @huggingface/jinja, tokenized with
 * @huggingface/tokenizers from tokenizer.json, and split at the image placeholder the way the
 * reference's `tokenizer_image_token` does (each piece tokenized on its own; BOS kept once).
 */
import { readFile } from 'node:fs/promises';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import type { Manifest, Pack } from './pack.ts';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

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

  render(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    const all: ChatMessage[] =
      this.prompt.systemPrompt && messages[0]?.role !== 'system'
        ? [{ role: 'system', content: this.prompt.systemPrompt }, ...messages]
        : [...messages];
    return this.template.render({
      messages: all,
      bos_token: this.prompt.bosToken ?? '',
      eos_token: this.prompt.eosToken,
      add_generation_prompt: addGenerationPrompt,
    });
  }

  /** The user's first message: the image placeholder, a newline, then the question (LLaVA's layout). */
  firstUserMessage(question: string): ChatMessage {
    return { role: 'user', content: `${this.prompt.imageToken}\n${question}` };
  }

  /**
   * Tokenize a rendered prompt that contains the image placeholder, as `tokenizer_image_token` does:
   * every piece is encoded with special tokens; if the first starts with BOS, BOS is kept once and
   * the first token of every piece is dropped.
   */
  encodeWithImage(rendered: string): PromptSegment[] {
    const chunks = rendered.split(this.prompt.imageToken).map((c) => this.encode(c, true));
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
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }
}

/**
 * Turns a growing list of token ids into text deltas. Decoding the whole answer each time keeps
 * multi-byte characters intact; a trailing U+FFFD means a character is still incomplete.
 */
export class TextStreamer {
  private ids: number[] = [];
  private emitted = '';

  constructor(private readonly decode: (ids: readonly number[]) => string) {}

  push(id: number): string {
    this.ids.push(id);
    const text = this.decode(this.ids).trimStart(); // answers start after "ASSISTANT:" with a space
    if (text.endsWith('\uFFFD')) return '';
    const delta = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : '';
    this.emitted = text;
    return delta;
  }

  get text(): string {
    return this.decode(this.ids);
  }
}
