/**
 * The multimodal engine: a loaded pack (one ONNX Runtime session per graph) that encodes frames and
 * runs conversations. It sees frames (tensors) and token ids only; video files live in media/.
 */
import { LoupeError, cancelled } from '../errors.ts';
import {
  createSessions,
  defaultThreads,
  floatTensor,
  int64Tensor,
  type ProviderReport,
  type ProviderRequest,
  type Session,
} from './ort.ts';
import { loadPack, type Manifest, type Pack } from './pack.ts';
import { PromptBuilder, TextStreamer, type ChatMessage, type PromptSegment } from './prompt.ts';
import { sampleToken, seededRandom, type SamplingOptions } from './sampler.ts';
import { flattenFrames, poolAndConcatFrames, stackFrames, tensor, type Tokens2D } from './tensor.ts';

export interface EngineOptions {
  provider?: ProviderRequest;
  threads?: number;
  /** KV cache size from which the decoder writes into preallocated buffers (default 4 MB; tests use 0). */
  bindCacheFromBytes?: number;
}

export interface GenerateOptions extends Partial<SamplingOptions> {
  maxNewTokens?: number;
  signal?: AbortSignal;
  /** Diagnostics and parity tests: the logits after the prompt, before the first token is chosen. */
  onPromptLogits?: (logits: Float32Array) => void;
  /** Benchmarks: decode exactly maxNewTokens, past end-of-turn tokens. */
  ignoreEos?: boolean;
}

export type AnswerEvent =
  /**
   * One per generated id except the end-of-turn token, in order. `text` is what the id adds to the answer and
   * may be '' (a byte of an unfinished UTF-8 character, a special token): consumers that only show text skip those.
   */
  | { type: 'token'; text: string; tokenId: number }
  | { type: 'done'; text: string; tokens: number; stopped: 'eos' | 'length'; timings: AnswerTimings };

export interface AnswerTimings {
  prefillTokens: number;
  prefillMs: number;
  firstTokenMs: number;
  decodeMs: number;
  decodeTokensPerSec: number;
}

/** The visual prefix of a conversation: one still (all tokens) or frames (pooled by 2, concatenated). */
export interface VisualInput {
  kind: 'image' | 'frames';
  /** Projected tokens per frame, as the vision encoder gives them: each (tokensPerImage, hidden). */
  frames: Tokens2D[];
}

/** Default KV cache size from which the decoder writes into preallocated buffers (see Conversation.bindsCache). */
const BIND_CACHE_MIN_BYTES = 4 * 1024 * 1024;

/** Vocabulary × hidden values up to which the embedding table is kept in JavaScript (16 MB of floats). */
const EMBEDDING_TABLE_MAX_VALUES = 4 * 1024 * 1024;

export class Engine {
  private constructor(
    readonly pack: Pack,
    readonly prompt: PromptBuilder,
    private readonly sessions: Record<'vision' | 'embed' | 'decoder', Session>,
    readonly provider: ProviderReport,
    readonly bindCacheFromBytes: number,
  ) {}

  static async load(dir: string, options: EngineOptions = {}): Promise<Engine> {
    const pack = await loadPack(dir);
    const threads = options.threads ?? defaultThreads();
    const [prompt, { sessions, provider }] = await Promise.all([
      PromptBuilder.load(pack),
      createSessions(
        { vision: pack.file('vision'), embed: pack.file('embed'), decoder: pack.file('decoder') },
        options.provider ?? 'auto',
        threads,
        // the embedding is a lookup (one thread); only the decoder runs back to back, token after token
        { embed: { threads: 1, spinning: false }, decoder: { threads, spinning: true } },
      ),
    ]);
    checkGraphs(pack.manifest, sessions);
    return new Engine(pack, prompt, sessions, provider, options.bindCacheFromBytes ?? BIND_CACHE_MIN_BYTES);
  }

  get manifest(): Manifest {
    return this.pack.manifest;
  }

  /** Frames that fit the context beside a question and an answer of `maxNewTokens`. */
  maxFrames(maxNewTokens = this.manifest.defaults.maxNewTokens, textBudget = 96): number {
    const { contextLength } = this.manifest.decoder;
    return Math.floor((contextLength - maxNewTokens - textBudget) / this.manifest.vision.tokensPerFrame);
  }

  /** (N, 3, S, S) normalized pixels -> N frames of (tokensPerImage, hidden). */
  async encodeImages(pixels: readonly Float32Array[], signal?: AbortSignal): Promise<Tokens2D[]> {
    const { imageSize, tokensPerImage } = this.manifest.vision;
    const hidden = this.manifest.decoder.hiddenSize;
    const perImage = 3 * imageSize * imageSize;
    const out: Tokens2D[] = [];
    const batch = 8; // bounded memory for big towers, still one run for a typical clip
    for (let start = 0; start < pixels.length; start += batch) {
      if (signal?.aborted) throw cancelled();
      const group = pixels.slice(start, start + batch);
      const input = new Float32Array(group.length * perImage);
      group.forEach((p, i) => {
        if (p.length !== perImage)
          throw new LoupeError(
            'MODEL_RUNTIME',
            `frame ${start + i} has ${p.length} values, expected ${perImage}`,
          );
        input.set(p, i * perImage);
      });
      const result = await this.sessions.vision.run({
        pixel_values: floatTensor(input, [group.length, 3, imageSize, imageSize]),
      });
      const features = result.image_features!.data as Float32Array; // (n, tokensPerImage, hidden)
      const size = tokensPerImage * hidden;
      for (let i = 0; i < group.length; i++)
        out.push(tensor(features.slice(i * size, (i + 1) * size), [tokensPerImage, hidden] as const));
    }
    return out;
  }

  startConversation(visual: VisualInput): Conversation {
    return new Conversation(this, this.sessions, visual);
  }

  private embeddingTable: Float32Array | null | undefined;

  /**
   * Token embeddings. For small vocabularies the whole table is read from embed_tokens.onnx once and looked
   * up in JavaScript, which saves one ONNX Runtime call per generated token; big models keep using the graph
   * (their table would be a second copy of hundreds of MB).
   */
  async embed(ids: readonly number[]): Promise<Float32Array> {
    const { vocabSize, hiddenSize } = this.manifest.decoder;
    if (this.embeddingTable === undefined) {
      this.embeddingTable =
        vocabSize * hiddenSize <= EMBEDDING_TABLE_MAX_VALUES
          ? await this.runEmbed(Array.from({ length: vocabSize }, (_, i) => i))
          : null;
    }
    const table = this.embeddingTable;
    if (!table) return this.runEmbed(ids);
    const out = new Float32Array(ids.length * hiddenSize);
    ids.forEach((id, i) => out.set(table.subarray(id * hiddenSize, (id + 1) * hiddenSize), i * hiddenSize));
    return out;
  }

  private async runEmbed(ids: readonly number[]): Promise<Float32Array> {
    const out = await this.sessions.embed.run({
      input_ids: int64Tensor(
        BigInt64Array.from(ids, (i) => BigInt(i)),
        [1, ids.length],
      ),
    });
    return out.inputs_embeds!.data as Float32Array;
  }

  async dispose(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s) => s.release()));
  }
}

function checkGraphs(manifest: Manifest, sessions: Record<'vision' | 'embed' | 'decoder', Session>): void {
  const expect = (session: Session, inputs: string[], outputs: string[]) => {
    for (const name of inputs)
      if (!session.inputNames.includes(name))
        throw new LoupeError(
          'MODEL_INVALID',
          `${session.name} graph lacks input "${name}" (has ${session.inputNames.join(', ')}).`,
        );
    for (const name of outputs)
      if (!session.outputNames.includes(name))
        throw new LoupeError(
          'MODEL_INVALID',
          `${session.name} graph lacks output "${name}" (has ${session.outputNames.join(', ')}).`,
        );
  };
  const layers = Array.from({ length: manifest.decoder.numLayers }, (_, i) => i);
  expect(sessions.vision, ['pixel_values'], ['image_features']);
  expect(sessions.embed, ['input_ids'], ['inputs_embeds']);
  expect(
    sessions.decoder,
    [
      'inputs_embeds',
      'attention_mask',
      ...layers.flatMap((i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]),
    ],
    ['logits', ...layers.flatMap((i) => [`present.${i}.key`, `present.${i}.value`])],
  );
}

/**
 * One conversation about one visual input. It keeps the decoder's KV cache between turns, so a
 * follow-up question prefills only its own new tokens.
 */
export class Conversation {
  readonly messages: ChatMessage[] = [];
  private past: Record<string, ReturnType<typeof floatTensor>> = {};
  private length = 0; // tokens in the KV cache
  /** Sampled tokens not yet run through the decoder (the turn's last token, an end-of-turn), fed with the next turn. */
  private pending: number[] = [];
  private busy = false;

  constructor(
    private readonly engine: Engine,
    private readonly sessions: Record<'vision' | 'embed' | 'decoder', Session>,
    private readonly visual: VisualInput,
  ) {
    const { numLayers, numKeyValueHeads, headDim } = engine.manifest.decoder;
    for (let i = 0; i < numLayers; i++)
      for (const kv of ['key', 'value'])
        this.past[`past_key_values.${i}.${kv}`] = floatTensor(new Float32Array(0), [
          1,
          numKeyValueHeads,
          0,
          headDim,
        ]);
  }

  /**
   * Whether the presents are written into preallocated buffers: binding outputs costs a fixed overhead per
   * tensor and saves a copy proportional to the cache, so it pays only once the cache is large (measured: a
   * small built-in model decodes 10–30% slower with it, SmolLM2 at 512 cached tokens faster).
   */
  private bindsCache(total: number): boolean {
    const { numLayers, numKeyValueHeads, headDim } = this.engine.manifest.decoder;
    return 2 * numLayers * numKeyValueHeads * total * headDim * 4 >= this.engine.bindCacheFromBytes;
  }

  /** Two buffers per cache tensor: one holds the past, the decoder writes the present into the other. */
  private readonly kvBuffers = new Map<string, [Float32Array, Float32Array]>();

  /**
   * Preallocated present tensors for `total` cached tokens, as views into the buffer that does not hold the
   * past: onnxruntime-node then writes the new cache in place instead of allocating a fresh native tensor and
   * copying it into JavaScript on every token (measured: 18 → 14 ms per token at 512 cached tokens on
   * SmolLM2-135M). Buffers grow by doubling.
   */
  private presentViews(total: number): Record<string, ReturnType<typeof floatTensor>> {
    const { numLayers, numKeyValueHeads, headDim } = this.engine.manifest.decoder;
    const size = numKeyValueHeads * total * headDim;
    const views: Record<string, ReturnType<typeof floatTensor>> = {};
    for (let i = 0; i < numLayers; i++)
      for (const kv of ['key', 'value']) {
        const past = this.past[`past_key_values.${i}.${kv}`]!.data as Float32Array;
        let pair = this.kvBuffers.get(`${i}.${kv}`);
        if (!pair) this.kvBuffers.set(`${i}.${kv}`, (pair = [new Float32Array(0), new Float32Array(0)]));
        const free = pair[0].buffer === past.buffer ? 1 : 0;
        if (pair[free].length < size) pair[free] = new Float32Array(Math.max(size, 2 * pair[free].length));
        views[`present.${i}.${kv}`] = floatTensor(pair[free].subarray(0, size), [
          1,
          numKeyValueHeads,
          total,
          headDim,
        ]);
      }
    return views;
  }

  get cachedTokens(): number {
    return this.length;
  }

  /** Ask a question; yields answer tokens as they decode, then a `done` event. */
  async *ask(question: string, options: GenerateOptions = {}): AsyncGenerator<AnswerEvent> {
    if (this.busy)
      throw new LoupeError('USAGE', 'This conversation is still answering; wait or stop it first.');
    this.busy = true;
    try {
      yield* this.answer(question, options);
    } finally {
      this.busy = false;
    }
  }

  private async *answer(question: string, options: GenerateOptions): AsyncGenerator<AnswerEvent> {
    const { manifest, prompt } = this.engine;
    const maxNewTokens = options.maxNewTokens ?? manifest.defaults.maxNewTokens;
    const sampling: SamplingOptions = { temperature: options.temperature ?? 0, topP: options.topP ?? 0.9 };
    const random = seededRandom(options.seed ?? 0);
    const signal = options.signal;
    const started = performance.now();

    // 1. The new tokens: the whole first prompt with the visual prefix, or only a follow-up's delta.
    const first = this.messages.length === 0;
    const userMessage = first
      ? prompt.firstUserMessage(question)
      : { role: 'user' as const, content: question };
    const before = first ? '' : prompt.render(this.messages, false);
    const rendered = prompt.render([...this.messages, userMessage], true);
    let segments: PromptSegment[];
    if (first) segments = prompt.encodeWithImage(rendered);
    else {
      if (!rendered.startsWith(before))
        throw new LoupeError(
          'MODEL_INVALID',
          "The pack's chat template does not extend earlier turns; follow-ups cannot reuse the cache.",
        );
      segments = [{ kind: 'text', ids: [...this.pending, ...prompt.encode(rendered.slice(before.length))] }];
    }

    // 2. Embed text pieces and splice the visual tokens in.
    const visualTokens = first
      ? this.visual.kind === 'image'
        ? flattenFrames(stackFrames(this.visual.frames))
        : poolAndConcatFrames(stackFrames(this.visual.frames))
      : null;
    const hidden = manifest.decoder.hiddenSize;
    const pieces: Float32Array[] = [];
    for (const seg of segments) {
      if (seg.kind === 'image') pieces.push(visualTokens!.data);
      else if (seg.ids.length) pieces.push(await this.embed(seg.ids));
    }
    const newTokens = pieces.reduce((n, p) => n + p.length / hidden, 0);
    if (this.length + newTokens + maxNewTokens > manifest.decoder.contextLength) {
      throw new LoupeError(
        'CONTEXT_OVERFLOW',
        `The prompt needs ${this.length + newTokens} tokens plus up to ${maxNewTokens} for the answer, more than the model's context of ${manifest.decoder.contextLength}. Use fewer frames (at most ${this.engine.maxFrames(maxNewTokens)}) or start a new conversation.`,
        { cached: this.length, prompt: newTokens, context: manifest.decoder.contextLength },
      );
    }
    const inputs = new Float32Array(newTokens * hidden);
    let at = 0;
    for (const p of pieces) {
      inputs.set(p, at);
      at += p.length;
    }
    this.messages.push(userMessage);
    this.pending = [];

    // 3. Prefill, then decode one token at a time, feeding the KV cache back.
    const streamer = new TextStreamer((ids) => prompt.decode(ids));
    const eosIds = new Set(manifest.prompt.eosTokenIds);
    const vocab = manifest.decoder.vocabSize;
    let logits = await this.step(inputs, newTokens);
    options.onPromptLogits?.(logits.data.slice(logits.offset, logits.offset + vocab));
    const prefillMs = performance.now() - started;
    let firstTokenMs = 0;
    let produced = 0;
    let stopped: 'eos' | 'length' = 'length';
    const decodeStart = performance.now();
    try {
      while (produced < maxNewTokens) {
        if (signal?.aborted) throw cancelled();
        const next = sampleToken(logits.data, logits.offset, vocab, sampling, random);
        produced++;
        if (produced === 1) firstTokenMs = performance.now() - started;
        if (eosIds.has(next) && !options.ignoreEos) {
          stopped = 'eos';
          this.pending = [next];
          break;
        }
        yield { type: 'token', text: streamer.push(next), tokenId: next };
        if (produced === maxNewTokens) this.pending = [next, manifest.prompt.eosTokenIds[0]!];
        else logits = await this.step(await this.embed([next]), 1);
      }
    } finally {
      // A stopped answer still ends its turn, so a follow-up sees a well-formed conversation.
      if (this.pending.length === 0) this.pending = [manifest.prompt.eosTokenIds[0]!];
      const answer = streamer.text.trim();
      this.messages.push({ role: 'assistant', content: answer });
    }
    const decodeMs = performance.now() - decodeStart;
    yield {
      type: 'done',
      text: streamer.text.trim(),
      tokens: produced,
      stopped,
      timings: {
        prefillTokens: newTokens,
        prefillMs,
        firstTokenMs,
        decodeMs,
        decodeTokensPerSec: produced > 1 ? ((produced - 1) * 1000) / decodeMs : 0,
      },
    };
  }

  private embed(ids: readonly number[]): Promise<Float32Array> {
    return this.engine.embed(ids);
  }

  /** Run the decoder on `count` new embeddings; returns the last position's logits. */
  private async step(embeds: Float32Array, count: number): Promise<{ data: Float32Array; offset: number }> {
    const { hiddenSize, numLayers, usesPositionIds } = this.engine.manifest.decoder;
    const total = this.length + count;
    const feeds: Record<string, ReturnType<typeof floatTensor>> = {
      inputs_embeds: floatTensor(embeds, [1, count, hiddenSize]),
      attention_mask: int64Tensor(new BigInt64Array(total).fill(1n), [1, total]),
      ...this.past,
    };
    if (usesPositionIds)
      feeds.position_ids = int64Tensor(
        BigInt64Array.from({ length: count }, (_, i) => BigInt(this.length + i)),
        [1, count],
      );
    const out = await this.sessions.decoder.run(
      feeds,
      this.bindsCache(total) ? this.presentViews(total) : {},
    );
    for (let i = 0; i < numLayers; i++) {
      this.past[`past_key_values.${i}.key`] = out[`present.${i}.key`]!;
      this.past[`past_key_values.${i}.value`] = out[`present.${i}.value`]!;
    }
    this.length = total;
    const logits = out.logits!.data as Float32Array; // (1, count, vocab)
    const vocab = this.engine.manifest.decoder.vocabSize;
    return { data: logits, offset: (count - 1) * vocab };
  }
}
