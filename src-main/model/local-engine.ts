/**
 * The multimodal engine in the thread that runs ONNX Runtime (the engine worker, see engine.ts): a loaded pack
 * (one session per graph) that encodes frames and runs conversations. onnxruntime-node's `run()` blocks its
 * thread, so nothing here may run on the app's main thread. It sees frames and token ids only.
 */
import { LoupeError, throwIfAborted } from '../errors.ts';
import {
  createSessions,
  defaultThreads,
  floatTensor,
  int64Tensor,
  type ProviderReport,
  type Session,
  type ValueInfo,
} from './ort.ts';
import { JsKvCache, decoderNames, jsPromptBatch, type DecoderShape, type KvCache } from './kv-cache.ts';
import { NativeDecoder } from './kv-native.ts';
import { OrtNative } from './ort-native.ts';
import type { ModelConversation, ModelEngine } from './model-engine.ts';
import { loadPack, PACK_FILES, type Manifest, type Pack } from './pack.ts';
import { PromptBuilder, TextStreamer, type ChatMessage, type PromptSegment } from './prompt.ts';
import { sampleToken, seededRandom, type SamplingOptions } from './sampler.ts';
import type { AnswerEvent, EngineOptions, GenerateOptions, KvCacheReport, VisualInput } from './types.ts';
import { flattenFrames, poolAndConcatFrames, stackFrames, tensor, type Tokens2D } from './tensor.ts';

/** What the loop checks between prefill chunks and tokens: a call's signal, and the engine's `between` hook. */
interface RunControl {
  /** The call's signal (Stop): checked between runs, and an interruptible KV cache ends a run part-way with it. */
  signal?: AbortSignal;
  /** Called between decoder runs: the worker yields to its event loop there, so messages get through. */
  between?(): Promise<void>;
}

/** What the process that hosts a LocalEngine lets it do between decoder runs. */
export interface LocalEngineHooks {
  /** Awaited between decoder runs (the worker yields to its event loop, so a Stop message can arrive). */
  between?(): Promise<void>;
}

/** Default KV cache size from which the decoder writes into preallocated buffers (see LocalConversation.bindsCache). */
const BIND_CACHE_MIN_BYTES = 4 * 1024 * 1024;

/** Prefill chunks: the first one's size, the bounds, and the time one decoder run should take (Stop lands between runs). */
const PREFILL_FIRST_CHUNK = 64;
const PREFILL_MIN_CHUNK = 8;
const PREFILL_MAX_CHUNK = 1024;
/**
 * An int8 KV cache's chunks stay small: onnxruntime's quantized GroupQueryAttention slows down with the chunk's
 * length (SmolLM2, 2,080 tokens: 199 tok/s at 128-token chunks, 206-234 at 256, 206 at 512, 135 at 1,024, 116 in
 * one run), while an fp32 cache's prefill grows with it (290-370 tok/s from 512 tokens).
 */
const PREFILL_MAX_CHUNK_INT8 = 256;
/**
 * The smallest chunk of a cache whose runs Stop can end part-way. Aiming a chunk at a second would make a big
 * model's chunks tiny, and each run reads every weight once: a 7B model's first 64 tokens take ~10 s on 2
 * cores, so the time target gave 8-token chunks, and prefill ran at 6.6 tok/s against decode's 2.6 (measured,
 * bench:real --size 7b). From ~128 tokens a run is bound by arithmetic, not by reading the weights.
 */
const PREFILL_INTERRUPTIBLE_MIN_CHUNK = 128;
const PREFILL_CHUNK_MS = 100;
/**
 * The same for a cache whose runs Stop can end part-way (the native one): a chunk's size then only sets how
 * often progress is reported, and bigger chunks prefill faster (each run reads every weight once: on SmolLM2,
 * ~25-token chunks of 100 ms ran at 200 tok/s, 512-token chunks at 290).
 */
const PREFILL_INTERRUPTIBLE_CHUNK_MS = 1000;

/**
 * A prompt batch's bounds: tokens per decoder run (the activations and, in graphs that compute every
 * position's logits, rows × vocabulary floats grow with it) and rows per run.
 */
const BATCH_MAX_TOKENS = 4096;
/** Image tokens the vision graph encodes in one run (frames × tokensPerImage, at least one frame). */
const VISION_BATCH_TOKENS = 2048;
const BATCH_MAX_LOGITS = 16 * 1024 * 1024;
const BATCH_MAX_ROWS = 64;
/** Decoder graphs up to this size get a second, non-spinning session for prompt batches (batchDecoder). */
const SECOND_BATCH_SESSION_MAX_BYTES = 64 * 1024 * 1024;

/** Vocabulary × hidden values up to which the embedding table is kept in JavaScript (16 MB of floats). */
const EMBEDDING_TABLE_MAX_VALUES = 4 * 1024 * 1024;

export class LocalEngine implements ModelEngine {
  private constructor(
    readonly pack: Pack,
    readonly prompt: PromptBuilder,
    private readonly sessions: Record<'vision' | 'embed', Session>,
    /** The decoder: native (its KV cache never leaves native memory) or onnxruntime-node's (the fallback). */
    private readonly decoder: { kind: 'native'; native: NativeDecoder } | { kind: 'js'; session: Session },
    readonly provider: ProviderReport,
    /** Which KV cache conversations get, and why not the native one when it is not. */
    readonly kvCache: KvCacheReport,
    readonly bindCacheFromBytes: number,
    readonly prefillChunk: number | undefined,
    readonly threads: number,
    private readonly hooks: LocalEngineHooks,
  ) {}

  /** @internal The loop's view of a call's signal (and of the host's `between` hook). */
  control(signal: AbortSignal | undefined): RunControl {
    return { signal, between: this.hooks.between };
  }

  static async load(
    dir: string,
    options: EngineOptions = {},
    pack?: Pack,
    hooks: LocalEngineHooks = {},
  ): Promise<LocalEngine> {
    pack ??= await loadPack(dir);
    const threads = options.threads ?? defaultThreads();
    const [prompt, { sessions, provider }] = await Promise.all([
      PromptBuilder.load(pack),
      createSessions(
        { vision: pack.file('vision'), embed: pack.file('embed') },
        options.provider ?? 'auto',
        threads,
        // the embedding is a lookup (one thread)
        { embed: { threads: 1, spinning: false } },
      ),
    ]);
    const opened: { release(): Promise<void> | void }[] = Object.values(sessions);
    try {
      const { decoder, report } = await openDecoder(pack, provider, threads, options);
      opened.push(decoder.kind === 'native' ? decoder.native : decoder.session);
      checkGraphs(pack.manifest, sessions, decoder.kind === 'native' ? decoder.native : decoder.session);
      return new LocalEngine(
        pack,
        prompt,
        sessions,
        decoder,
        provider,
        report,
        options.bindCacheFromBytes ?? BIND_CACHE_MIN_BYTES,
        options.prefillChunk,
        threads,
        hooks,
      );
    } catch (error) {
      // a failed load releases what it opened
      await Promise.all(opened.map((s) => s.release()));
      throw error;
    }
  }

  /** A fresh, empty KV cache for one conversation. */
  newCache(): KvCache {
    if (this.decoder.kind === 'native') return this.decoder.native.newCache();
    return new JsKvCache(this.decoder.session, decoderShape(this.manifest), this.bindCacheFromBytes);
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
    const control = this.control(signal);
    const { imageSize, tokensPerImage } = this.manifest.vision;
    const hidden = this.manifest.decoder.hiddenSize;
    const perImage = 3 * imageSize * imageSize;
    const out: Tokens2D[] = [];
    // one run for a typical clip on a small tower; big towers run a few frames at a time, since a run's
    // activations grow with frames × tokens (SigLIP so400m's 729 tokens: 2 frames a run)
    const batch = Math.min(8, Math.max(1, Math.floor(VISION_BATCH_TOKENS / tokensPerImage)));
    for (let start = 0; start < pixels.length; start += batch) {
      throwIfAborted(control.signal);
      if (start > 0) await control.between?.();
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
      const output = result.image_features!;
      const want = [group.length, tokensPerImage, hidden];
      if (output.dims.length !== 3 || output.dims.some((d, i) => d !== want[i]))
        throw new LoupeError(
          'MODEL_INVALID',
          `The vision encoder gave [${output.dims.join(', ')}], not [${want.join(', ')}] as the manifest's vision.tokensPerImage and decoder.hiddenSize say.`,
          { dims: output.dims },
        );
      const features = output.data as Float32Array; // (n, tokensPerImage, hidden)
      const size = tokensPerImage * hidden;
      for (let i = 0; i < group.length; i++)
        out.push(tensor(features.slice(i * size, (i + 1) * size), [tokensPerImage, hidden] as const));
    }
    return out;
  }

  /**
   * The logits after the first-turn prompt of `question` about each visual input (what a fresh conversation's
   * `onPromptLogits` gives), without opening a conversation: prompts of one length run side by side in batched
   * decoder runs from an empty cache, and nothing is kept. The text is embedded once for all of them.
   * Moment search scores its instants this way.
   */
  async promptLogits(
    visuals: readonly VisualInput[],
    question: string,
    signal?: AbortSignal,
  ): Promise<Float32Array[]> {
    const control = this.control(signal);
    const { manifest, prompt } = this;
    const { hiddenSize, vocabSize, contextLength } = manifest.decoder;
    const segments = prompt.encodePrompt([prompt.firstUserMessage(question)]);
    const texts = await Promise.all(
      segments.map((seg) => (seg.kind === 'text' && seg.ids.length ? this.embed(seg.ids) : null)),
    );
    const textTokens = texts.reduce((n, t) => n + (t ? t.length / hiddenSize : 0), 0);
    const images = segments.filter((seg) => seg.kind === 'image').length;
    const out: Float32Array[] = new Array<Float32Array>(visuals.length);
    // rows of one length run together: the same question about the same number of frames
    const byLength = new Map<number, number[]>();
    const tokens = visuals.map((v) => visualTokens(v));
    tokens.forEach((t, i) => {
      const length = textTokens + images * t.dims[0];
      if (length + 1 > contextLength)
        throw new LoupeError(
          'CONTEXT_OVERFLOW',
          `The prompt needs ${length} tokens, more than the model's context of ${contextLength}.`,
          { prompt: length, context: contextLength },
        );
      byLength.set(length, [...(byLength.get(length) ?? []), i]);
    });
    for (const [length, rows] of byLength) {
      const perRun = Math.max(
        1,
        Math.min(
          BATCH_MAX_ROWS,
          this.decoderBatch,
          Math.floor(BATCH_MAX_TOKENS / length),
          Math.floor(BATCH_MAX_LOGITS / (length * vocabSize)),
        ),
      );
      for (let start = 0; start < rows.length; start += perRun) {
        throwIfAborted(control.signal);
        if (start > 0) await control.between?.();
        const group = rows.slice(start, start + perRun);
        const embeds = new Float32Array(group.length * length * hiddenSize);
        group.forEach((row, b) => {
          let at = b * length * hiddenSize;
          segments.forEach((seg, s) => {
            const piece = seg.kind === 'image' ? tokens[row]!.data : texts[s];
            if (!piece) return;
            embeds.set(piece, at);
            at += piece.length;
          });
        });
        const input = { embeds, batch: group.length, length };
        const batchDecoder = await this.batchDecoder();
        const logits =
          batchDecoder !== null
            ? batchDecoder.promptBatch(input)
            : await jsPromptBatch(
                (this.decoder as { session: Session }).session,
                decoderShape(manifest),
                input,
              );
        group.forEach((row, b) => (out[row] = logits.slice(b * vocabSize, (b + 1) * vocabSize)));
      }
    }
    return out;
  }

  private batchSession: Promise<NativeDecoder> | null = null;

  /**
   * The native decoder prompt batches run on (null: onnxruntime-node's session). For a small decoder, a second
   * session whose idle threads do not spin: batches come one every few hundred ms between vision runs and
   * ffmpeg's decoding, and the token loop's spinning threads burnt a core's worth of time between them (3.5 s of
   * CPU in a 10-minute scan, measured). A big decoder is not loaded twice.
   */
  private async batchDecoder(): Promise<NativeDecoder | null> {
    if (this.decoder.kind !== 'native') return null;
    const graph = PACK_FILES.decoder; // with its external data, if any
    const bytes = Object.entries(this.manifest.files)
      .filter(([name]) => name.startsWith(graph))
      .reduce((n, [, entry]) => n + entry.bytes, 0);
    if (bytes > SECOND_BATCH_SESSION_MAX_BYTES) return this.decoder.native;
    this.batchSession ??= NativeDecoder.load(
      this.pack.file('decoder'),
      decoderShape(this.manifest),
      this.manifest.decoder.contextLength,
      this.threads,
      this.decoder.native.layout,
      false,
    );
    return this.batchSession;
  }

  /** Rows the decoder graph takes per run: its inputs' batch dim when the graph fixes it, else no limit. */
  private get decoderBatch(): number {
    const named = this.decoder.kind === 'native' ? this.decoder.native : this.decoder.session;
    const fixed = named.inputInfo.get('inputs_embeds')?.dims[0] ?? -1;
    return fixed > 0 ? fixed : Infinity;
  }

  startConversation(visual: VisualInput, history: readonly ChatMessage[] = []): LocalConversation {
    return new LocalConversation(this, visual, history);
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
    (await this.batchSession?.catch(() => null))?.release();
    if (this.decoder.kind === 'native') this.decoder.native.release();
    else await this.decoder.session.release();
  }
}

/** Graph names and declared types, checked for any session kind (onnxruntime-node's or the native one). */
interface Named {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputInfo: ReadonlyMap<string, ValueInfo>;
  readonly outputInfo: ReadonlyMap<string, ValueInfo>;
}

/**
 * The manifest against the graphs, before anything runs: names, element types, and every dim the graph fixes
 * that the manifest also states (vocabulary, hidden size, KV heads, head size, image size, tokens per image).
 * A pack whose manifest disagrees with its graphs is MODEL_INVALID, naming the field; it never reaches native
 * code that would read memory at the manifest's sizes.
 */
export function checkGraphs(
  manifest: Manifest,
  sessions: Record<'vision' | 'embed', Named>,
  decoder: Named,
): void {
  const { hiddenSize, vocabSize, numKeyValueHeads, headDim } = manifest.decoder;
  const { imageSize, tokensPerImage } = manifest.vision;
  /** Expected (dtype, dims) per name; a dim of null is not checked, nor is one the graph leaves free (-1). */
  type Want = Record<string, [dtype: string, dims: (number | null)[], fields: (string | null)[]]>;
  const expect = (graph: string, session: Named, inputs: Want, outputs: Want) => {
    for (const [kind, want, names, info] of [
      ['input', inputs, session.inputNames, session.inputInfo],
      ['output', outputs, session.outputNames, session.outputInfo],
    ] as const)
      for (const [name, [dtype, dims, fields]] of Object.entries(want)) {
        if (!names.includes(name))
          throw new LoupeError(
            'MODEL_INVALID',
            `${graph} graph lacks ${kind} "${name}" (has ${names.join(', ')}).`,
          );
        const got = info.get(name);
        if (!got) continue;
        if (got.dtype !== dtype)
          throw new LoupeError(
            'MODEL_INVALID',
            `${graph} graph's ${kind} "${name}" is ${got.dtype}, not ${dtype}.`,
            { graph, name, dtype: got.dtype },
          );
        if (got.dims.length && got.dims.length !== dims.length)
          throw new LoupeError(
            'MODEL_INVALID',
            `${graph} graph's ${kind} "${name}" has ${got.dims.length} dims, not ${dims.length}.`,
            { graph, name, dims: got.dims },
          );
        got.dims.forEach((d, i) => {
          const wanted = dims[i];
          if (wanted == null || d < 0 || d === wanted) return;
          const field = fields[i] ?? 'the graph';
          throw new LoupeError(
            'MODEL_INVALID',
            `The manifest's ${field} is ${wanted}, but the ${graph} graph's ${kind} "${name}" has ${d} there ([${got.dims.join(', ')}]).`,
            { field, manifest: wanted, graph: d, name },
          );
        });
      }
  };
  const h = 'decoder.hiddenSize';
  expect(
    'vision',
    sessions.vision,
    {
      pixel_values: [
        'float32',
        [null, 3, imageSize, imageSize],
        [null, null, 'vision.imageSize', 'vision.imageSize'],
      ],
    },
    { image_features: ['float32', [null, tokensPerImage, hiddenSize], [null, 'vision.tokensPerImage', h]] },
  );
  expect(
    'embed',
    sessions.embed,
    { input_ids: ['int64', [null, null], [null, null]] },
    { inputs_embeds: ['float32', [null, null, hiddenSize], [null, null, h]] },
  );
  const { past, present } = decoderNames(decoderShape(manifest));
  const cache = (): Want[string] => [
    manifest.decoder.kvCache.dtype,
    [null, numKeyValueHeads, null, headDim],
    [null, 'decoder.numKeyValueHeads', null, 'decoder.headDim'],
  ];
  expect(
    'decoder',
    decoder,
    {
      inputs_embeds: ['float32', [null, null, hiddenSize], [null, null, h]],
      attention_mask: ['int64', [null, null], [null, null]],
      ...Object.fromEntries(past.map((n) => [n, cache()])),
    },
    {
      logits: ['float32', [null, null, vocabSize], [null, null, 'decoder.vocabSize']],
      ...Object.fromEntries(present.map((n) => [n, cache()])),
    },
  );
}

/** The visual prefix's tokens: a still's all, frames pooled by 2 and concatenated. */
function visualTokens(visual: VisualInput): Tokens2D {
  const stacked = stackFrames(visual.frames);
  return visual.kind === 'image' ? flattenFrames(stacked) : poolAndConcatFrames(stacked);
}

function decoderShape(manifest: Manifest): DecoderShape {
  const { hiddenSize, numLayers, numKeyValueHeads, headDim, vocabSize, usesPositionIds, kvCache } =
    manifest.decoder;
  return {
    hiddenSize,
    numLayers,
    numKeyValueHeads,
    headDim,
    vocabSize,
    usesPositionIds,
    kvDtype: kvCache.dtype,
  };
}

/**
 * The decoder session. The native one (KV cache in native memory) where it can run: the CPU provider, and
 * koffi and onnxruntime-node's library loadable. Elsewhere onnxruntime-node's session, whose cache crosses
 * into JavaScript every token; `kvCache: 'native'` makes that an error instead of a fallback.
 */
async function openDecoder(
  pack: Pack,
  provider: ProviderReport,
  threads: number,
  options: EngineOptions,
): Promise<{
  decoder: { kind: 'native'; native: NativeDecoder } | { kind: 'js'; session: Session };
  report: KvCacheReport;
}> {
  const wanted = options.kvCache ?? 'auto';
  let why = 'kvCache: js was asked for';
  if (wanted !== 'js') {
    const availability = provider.used === 'cpu' ? OrtNative.availability() : null;
    if (!availability)
      why = `the native KV cache runs on the CPU provider only for now (this model runs on ${provider.used})`;
    else if (!availability.ok) why = availability.why;
    else {
      const { contextLength } = pack.manifest.decoder;
      const native = await NativeDecoder.load(
        pack.file('decoder'),
        decoderShape(pack.manifest),
        contextLength,
        threads,
      );
      return { decoder: { kind: 'native', native }, report: { used: `native-${native.layout}` } };
    }
    if (wanted === 'native')
      throw new LoupeError('MODEL_RUNTIME', `The native KV cache cannot run here: ${why}.`);
  }
  const { sessions } = await createSessions(
    { decoder: pack.file('decoder') },
    provider.used,
    threads,
    // only the decoder runs back to back, token after token
    { decoder: { threads, spinning: true } },
  );
  return { decoder: { kind: 'js', session: sessions.decoder }, report: { used: 'js', why } };
}

/**
 * One conversation about one visual input. It keeps the decoder's KV cache between turns, so a
 * follow-up question prefills only its own new tokens. `history` rebuilds a conversation whose cache was lost
 * (a restarted worker): its first question then prefills the earlier turns too.
 */
export class LocalConversation implements ModelConversation {
  readonly messages: ChatMessage[];
  private readonly cache: KvCache;
  /** Sampled tokens not yet run through the decoder (the turn's last token, an end-of-turn), fed with the next turn. */
  private pending: number[] = [];
  private busy = false;

  constructor(
    private readonly engine: LocalEngine,
    private readonly visual: VisualInput,
    history: readonly ChatMessage[] = [],
  ) {
    this.messages = history.map((m) => ({ ...m }));
    this.cache = engine.newCache();
  }

  /** Close was called during an answer: the cache goes when it ends. */
  private closing = false;

  /**
   * Frees the conversation's KV cache (native memory for the native cache); it cannot answer afterwards.
   * Idempotent; during an answer, when that answer ends.
   */
  close(): void {
    if (this.busy) this.closing = true;
    else this.cache.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  get cachedTokens(): number {
    return this.cache.length;
  }

  private get length(): number {
    return this.cache.length;
  }

  /** Ask a question; yields answer tokens as they decode, then a `done` event. */
  async *ask(question: string, options: GenerateOptions = {}): AsyncGenerator<AnswerEvent> {
    if (this.busy)
      throw new LoupeError('USAGE', 'This conversation is still answering; wait or stop it first.');
    this.busy = true;
    try {
      yield* this.answer(question, options, this.engine.control(options.signal));
    } finally {
      this.busy = false;
      if (this.closing) {
        this.closing = false;
        this.cache.release();
      }
    }
  }

  private async *answer(
    question: string,
    options: GenerateOptions,
    control: RunControl,
  ): AsyncGenerator<AnswerEvent> {
    const { manifest, prompt } = this.engine;
    const maxNewTokens = options.maxNewTokens ?? manifest.defaults.maxNewTokens;
    const sampling: SamplingOptions = { temperature: options.temperature ?? 0, topP: options.topP ?? 0.9 };
    const random = seededRandom(options.seed ?? 0);
    const started = performance.now();

    // 1. The new tokens: the whole prompt with the visual prefix while nothing is cached, else only the new turn.
    const first = this.length === 0;
    const userMessage: ChatMessage =
      this.messages.length === 0 ? prompt.firstUserMessage(question) : { role: 'user', content: question };
    let segments: PromptSegment[];
    if (first) segments = prompt.encodePrompt([...this.messages, userMessage]);
    else {
      const before = prompt.render(this.messages, false);
      const rendered = prompt.render([...this.messages, userMessage], true);
      if (!rendered.startsWith(before))
        throw new LoupeError(
          'MODEL_INVALID',
          "The pack's chat template does not extend earlier turns; follow-ups cannot reuse the cache.",
        );
      segments = [{ kind: 'text', ids: [...this.pending, ...prompt.encode(rendered.slice(before.length))] }];
    }

    // 2. Embed text pieces and splice the visual tokens in.
    const visual = first ? visualTokens(this.visual) : null;
    const hidden = manifest.decoder.hiddenSize;
    const pieces: Float32Array[] = [];
    for (const seg of segments) {
      if (seg.kind === 'image') pieces.push(visual!.data);
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

    // 3. Prefill in chunks (Stop lands between them). A failed or stopped prefill leaves the conversation as
    //    it was: no user turn the cache never saw, the cache cut back to its earlier length.
    const pendingBefore = this.pending;
    this.cache.expect(this.length + newTokens + maxNewTokens);
    this.cache.checkpoint();
    let logits: Float32Array;
    try {
      logits = await this.prefill(inputs, newTokens, options, control);
    } catch (error) {
      this.cache.rollback();
      this.pending = pendingBefore;
      throw error;
    }
    this.messages.push(userMessage);
    this.pending = [];
    const vocab = manifest.decoder.vocabSize;
    options.onPromptLogits?.(logits.slice());
    const prefillMs = performance.now() - started;

    // 4. Decode one token at a time, feeding the KV cache back.
    const streamer = new TextStreamer((ids) => prompt.decode(ids));
    const eosIds = new Set(manifest.prompt.eosTokenIds);
    let firstTokenMs = 0;
    let produced = 0;
    let stopped: 'eos' | 'length' = 'length';
    const decodeStart = performance.now();
    try {
      while (produced < maxNewTokens) {
        throwIfAborted(control.signal);
        const next = sampleToken(logits, 0, vocab, sampling, random);
        produced++;
        if (produced === 1) firstTokenMs = performance.now() - started;
        if (eosIds.has(next) && !options.ignoreEos) {
          stopped = 'eos';
          this.pending = [next];
          break;
        }
        yield { type: 'token', text: streamer.push(next), tokenId: next };
        if (produced === maxNewTokens) this.pending = [next, manifest.prompt.eosTokenIds[0]!];
        else {
          await control.between?.();
          logits = await this.cache.step(await this.embed([next]), 1);
        }
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

  /**
   * Run the prompt through the decoder in chunks, checking for Stop between them. The chunk is sized from the
   * measured speed so that one run takes about PREFILL_CHUNK_MS (a 7B model on CPU runs a few tokens in that
   * time, the built-in model hundreds), unless the engine pins it.
   */
  private async prefill(
    inputs: Float32Array,
    count: number,
    options: GenerateOptions,
    control: RunControl,
  ): Promise<Float32Array> {
    const hidden = this.engine.manifest.decoder.hiddenSize;
    const pinned = this.engine.prefillChunk;
    const target = this.cache.interruptible ? PREFILL_INTERRUPTIBLE_CHUNK_MS : PREFILL_CHUNK_MS;
    const largest =
      this.engine.manifest.decoder.kvCache.dtype === 'int8' ? PREFILL_MAX_CHUNK_INT8 : PREFILL_MAX_CHUNK;
    const smallest = this.cache.interruptible ? PREFILL_INTERRUPTIBLE_MIN_CHUNK : PREFILL_MIN_CHUNK;
    let chunk = pinned ?? Math.max(PREFILL_FIRST_CHUNK, smallest);
    let done = 0;
    let logits: Float32Array | undefined;
    while (done < count) {
      throwIfAborted(control.signal);
      if (done > 0) await control.between?.();
      const n = Math.min(chunk, count - done);
      const t0 = performance.now();
      logits = await this.cache.step(inputs.subarray(done * hidden, (done + n) * hidden), n, control.signal);
      const ms = performance.now() - t0;
      done += n;
      options.onPrefillProgress?.(done, count);
      if (pinned === undefined)
        chunk = Math.max(smallest, Math.min(largest, Math.round((target * n) / Math.max(ms, 1))));
    }
    throwIfAborted(control.signal);
    return logits!;
  }

  private embed(ids: readonly number[]): Promise<Float32Array> {
    return this.engine.embed(ids);
  }
}
