/**
 * The decoder with its KV cache in native memory (ORT's C API through ort-native.ts): per step only the new
 * embeddings go in and the last logits row comes out; the cache never crosses into JavaScript.
 *
 * Two layouts, chosen from the graph:
 * - **shared** (GroupQueryAttention graphs, e.g. onnxruntime-genai's model builder): one buffer per layer and
 *   kind, preallocated for `capacity` tokens, bound as both the past input and the present output, so GQA
 *   appends the new keys and values in place (it shares the buffer when the two pointers are the same) and a
 *   step costs no copy of the cache at all. The attention mask's length tells GQA how much of it is valid.
 *   The buffer grows by doubling (one copy) when a conversation outgrows it.
 * - **chained** (other graphs, e.g. Loupe's own exporter, whose attention concatenates past and new): the
 *   presents ORT allocates become the next step's pasts, handle for handle, without leaving native memory.
 */
import { open } from 'node:fs/promises';
import { LoupeError } from '../errors.ts';
import {
  cacheDtype,
  decoderNames,
  lastRows,
  promptBatchInputs,
  trackCache,
  type DecoderShape,
  type KvCache,
  type PromptBatch,
} from './kv-cache.ts';
import { OrtNative, type NativeSession, type NativeTensor } from './ort-native.ts';

export type KvLayout = 'shared' | 'chained';

/** First capacity of a shared cache, in tokens (it doubles as needed, up to the context length). */
const SHARED_MIN_CAPACITY = 256;

export class NativeDecoder {
  private constructor(
    readonly session: NativeSession,
    readonly layout: KvLayout,
    private readonly shape: DecoderShape,
    private readonly contextLength: number,
  ) {}

  /** Loads the decoder graph through the C API; `layout` defaults to what the graph's attention allows. */
  static async load(
    file: string,
    shape: DecoderShape,
    contextLength: number,
    threads: number,
    layout?: KvLayout,
    /** Idle threads spin between runs (default: the token loop runs back to back, and spinning measured faster). */
    spinning = true,
  ): Promise<NativeDecoder> {
    const ort = OrtNative.get();
    const chosen = layout ?? ((await usesGroupQueryAttention(file)) ? 'shared' : 'chained');
    const session = ort.createSession(file, { threads, spinning });
    return new NativeDecoder(session, chosen, shape, contextLength);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }
  get inputInfo(): NativeSession['inputInfo'] {
    return this.session.inputInfo;
  }
  get outputInfo(): NativeSession['outputInfo'] {
    return this.session.outputInfo;
  }

  newCache(): NativeKvCache {
    return new NativeKvCache(this.session, this.shape, this.layout, this.contextLength);
  }

  /**
   * Prompts of one length side by side from an empty cache (moment search scores many instants in one run):
   * batch × vocab floats, each row's last logits. Only the logits are fetched, so ORT allocates no presents;
   * every tensor made here is released before it returns, whatever happens.
   */
  promptBatch(input: PromptBatch): Float32Array {
    const { batch, length } = input;
    const { hiddenSize, numKeyValueHeads, headDim, vocabSize, usesPositionIds } = this.shape;
    const { mask, positions } = promptBatchInputs(this.shape, input);
    const ort = this.session.ort;
    const names = decoderNames(this.shape).past;
    const made: NativeTensor[] = [];
    try {
      made.push(ort.tensor('float32', [batch, length, hiddenSize], input.embeds));
      made.push(ort.tensor('int64', [batch, length], mask));
      if (usesPositionIds) made.push(ort.tensor('int64', [batch, length], positions));
      for (let i = 0; i < names.length; i++)
        made.push(ort.tensor(cacheDtype(this.shape), [batch, numKeyValueHeads, 0, headDim]));
      const inputNames = [
        'inputs_embeds',
        'attention_mask',
        ...(usesPositionIds ? ['position_ids'] : []),
        ...names,
      ];
      const [handle] = ort.run(
        this.session.handle,
        inputNames,
        made.map((t) => t.handle),
        ['logits'],
        [null],
      );
      try {
        const logits = ort.output(handle);
        return lastRows(logits.dims, batch, length, vocabSize, (offset, count) =>
          ort.readFloats(logits, offset, count),
        );
      } finally {
        ort.release(handle);
      }
    } finally {
      made.forEach((t) => ort.release(t.handle));
    }
  }

  release(): void {
    this.session.release();
  }
}

export class NativeKvCache implements KvCache {
  private readonly ort: OrtNative;
  private readonly names: { past: string[]; present: string[] };
  private readonly inputNames: string[];
  private readonly outputNames: string[];
  /** The cache tensors, in `names.past` order. */
  private kv: NativeTensor[] = [];
  private count = 0;
  private room = 0;
  /** Chained layout: the tensors and length a rollback returns to (kept alive until the next checkpoint). */
  private saved: { kv: NativeTensor[]; length: number } = { kv: [], length: 0 };
  private released = false;
  /** Counts this cache as live until release (liveKvCaches). */
  private readonly untrack = trackCache();

  constructor(
    private readonly session: NativeSession,
    private readonly shape: DecoderShape,
    readonly layout: KvLayout,
    private readonly contextLength: number,
  ) {
    this.ort = session.ort;
    this.names = decoderNames(shape);
    const extra = shape.usesPositionIds ? ['position_ids'] : [];
    this.inputNames = ['inputs_embeds', 'attention_mask', ...extra, ...this.names.past];
    this.outputNames = ['logits', ...this.names.present];
    if (layout === 'chained') this.kv = this.emptyChained();
    this.saved = { kv: this.kv, length: 0 };
  }

  get length(): number {
    return this.count;
  }

  /** Tokens the shared buffers have room for (0 in the chained layout, whose presents ORT allocates). */
  get capacity(): number {
    return this.room;
  }

  private emptyChained(): NativeTensor[] {
    const { numKeyValueHeads, headDim } = this.shape;
    return this.names.past.map(() =>
      this.ort.tensor(cacheDtype(this.shape), [1, numKeyValueHeads, 0, headDim]),
    );
  }

  /**
   * Shared layout: room for the turn ahead, allocated once. A 7B model's int8 cache at 3,000 tokens is 0.8 GB;
   * doubling to the context (4,096) would hold 1.1 GB, and 1.6 GB while the old buffers are copied.
   */
  expect(total: number): void {
    if (this.layout === 'shared' && !this.released)
      this.reserve(Math.min(total, Math.max(this.contextLength, this.count)), true);
  }

  /**
   * Shared layout: make room for `total` tokens, doubling when needed (exactly `total` when `exact`). What is
   * cached moves into the new buffers head by head, natively (`OrtNative.copy`: ORT's buffers, never a
   * JavaScript array), once per growth.
   */
  private reserve(total: number, exact = false): void {
    if (total <= this.room) return;
    const { numKeyValueHeads: heads, headDim } = this.shape;
    let capacity = Math.max(SHARED_MIN_CAPACITY, this.room);
    while (capacity < total) capacity *= 2;
    capacity = Math.min(Math.max(capacity, total), Math.max(this.contextLength, total));
    if (exact) capacity = total;
    const grown: NativeTensor[] = [];
    try {
      for (let i = 0; i < this.names.past.length; i++)
        grown.push(this.ort.tensor(cacheDtype(this.shape), [1, heads, capacity, headDim]));
      if (this.count > 0)
        this.kv.forEach((old, i) => {
          for (let h = 0; h < heads; h++)
            this.ort.copy(
              old,
              h * this.room * headDim,
              grown[i]!,
              h * capacity * headDim,
              this.count * headDim,
            );
        });
    } catch (error) {
      // out of memory part-way: what was allocated goes, the cache stays as it was
      grown.forEach((t) => this.ort.release(t.handle));
      throw error;
    }
    this.kv.forEach((t) => this.ort.release(t.handle));
    this.kv = grown;
    this.saved = { kv: grown, length: this.saved.length };
    this.room = capacity;
  }

  /** Prefill chunks run off this thread and can be ended part-way (OrtNative.runAsync); decode steps run inline. */
  readonly interruptible = true;

  async step(embeds: Float32Array, count: number, signal?: AbortSignal): Promise<Float32Array> {
    if (this.released) throw new LoupeError('MODEL_RUNTIME', 'This conversation was closed.');
    const { hiddenSize, vocabSize } = this.shape;
    const total = this.count + count;
    if (this.layout === 'shared') this.reserve(total);
    const ort = this.ort;
    const fresh: NativeTensor[] = [
      ort.tensor('float32', [1, count, hiddenSize], embeds),
      ort.tensor('int64', [1, total], new BigInt64Array(total).fill(1n)),
    ];
    if (this.shape.usesPositionIds)
      fresh.push(
        ort.tensor(
          'int64',
          [1, count],
          BigInt64Array.from({ length: count }, (_, i) => BigInt(this.count + i)),
        ),
      );
    let outputs: unknown[];
    try {
      const inputs = [...fresh.map((t) => t.handle), ...this.kv.map((t) => t.handle)];
      // shared: the present is the past's own buffer; chained: ORT allocates the presents
      const preset = [null, ...this.kv.map((t) => (this.layout === 'shared' ? t.handle : null))];
      const { handle } = this.session;
      outputs =
        count > 1
          ? await ort.runAsync(handle, this.inputNames, inputs, this.outputNames, preset, signal)
          : ort.run(handle, this.inputNames, inputs, this.outputNames, preset);
    } finally {
      fresh.forEach((t) => ort.release(t.handle));
    }
    const logitsHandle = outputs[0];
    try {
      if (this.layout === 'chained') {
        const { numKeyValueHeads, headDim } = this.shape;
        // handed to the next run only, never read here (checkGraphs checked the presents' type)
        const next = outputs.slice(1).map((handle) => ({
          handle,
          dtype: cacheDtype(this.shape),
          dims: [1, numKeyValueHeads, total, headDim],
        }));
        // the checkpoint's tensors stay alive for a rollback; others are done with
        if (this.kv !== this.saved.kv) this.kv.forEach((t) => ort.release(t.handle));
        this.kv = next;
      }
      this.count = total;
      // (1, count, vocab), or (1, 1, vocab) from a graph that computes the last position only
      const logits = ort.output(logitsHandle);
      const dims = logits.dims;
      const rows = dims[1] ?? 0;
      if (dims.length !== 3 || dims[0] !== 1 || dims[2] !== vocabSize || (rows !== count && rows !== 1))
        throw new LoupeError(
          'MODEL_INVALID',
          `The decoder's logits are [${dims.join(', ')}], not [1, ${count} or 1, ${vocabSize}] as the manifest's decoder.vocabSize says.`,
          { field: 'decoder.vocabSize', dims },
        );
      return ort.readFloats(logits, (rows - 1) * vocabSize, vocabSize);
    } finally {
      ort.release(logitsHandle);
    }
  }

  checkpoint(): void {
    if (this.layout === 'chained' && this.saved.kv !== this.kv)
      this.saved.kv.forEach((t) => this.ort.release(t.handle));
    this.saved = { kv: this.kv, length: this.count };
  }

  rollback(): void {
    if (this.layout === 'chained' && this.kv !== this.saved.kv) {
      this.kv.forEach((t) => this.ort.release(t.handle));
      this.kv = this.saved.kv;
    }
    // shared: the tokens past the checkpoint stay in the buffer, unread (the mask says how many are valid)
    this.count = this.saved.length;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    const all = new Set([...this.kv, ...this.saved.kv]);
    all.forEach((t) => this.ort.release(t.handle));
    this.kv = [];
    this.saved = { kv: [], length: 0 };
    this.untrack();
  }
}

/**
 * Whether a decoder graph's attention is GroupQueryAttention. Walks the ONNX protobuf's framing only as far as
 * it must: ModelProto.graph (field 7), then each of the graph's nodes (field 1), whose op types are plain text;
 * every other field, the weights (initializers) above all, is skipped by position without being read, so a
 * graph that keeps gigabytes of weights inline costs what its node list costs.
 */
export async function usesGroupQueryAttention(file: string): Promise<boolean> {
  const needle = Buffer.from('GroupQueryAttention');
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    // a read-ahead window: the nodes lie one after another, so one read serves many of them (64 KiB ahead);
    // a field's tag reads little ahead, since the next one may lie past megabytes of weights
    let window = Buffer.alloc(0);
    let windowAt = 0;
    const bytes = async (position: number, length: number, ahead = 64 << 10): Promise<Buffer> => {
      // a field that claims to run past the end of the file: a truncated or damaged graph
      if (position < 0 || length < 0 || position + length > size)
        throw new LoupeError('MODEL_INVALID', `${file} is not a complete ONNX graph.`);
      if (position < windowAt || position + length > windowAt + window.length) {
        const chunk = Buffer.alloc(Math.min(Math.max(length, ahead), size - position));
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
        window = chunk.subarray(0, bytesRead);
        windowAt = position;
        if (bytesRead < length)
          throw new LoupeError('MODEL_INVALID', `${file} is not a complete ONNX graph.`);
      }
      return window.subarray(position - windowAt, position - windowAt + length);
    };
    const varint = async (position: number): Promise<[value: number, next: number]> => {
      const head = await bytes(position, Math.min(10, size - position), 4 << 10);
      let value = 0;
      for (let i = 0; i < head.length; i++) {
        value += (head[i]! & 0x7f) * 2 ** (7 * i);
        if (!(head[i]! & 0x80)) return [value, position + i + 1];
      }
      throw new LoupeError('MODEL_INVALID', `${file} is not a valid ONNX graph.`);
    };
    /** Calls `visit` on each length-delimited field of the message in [from, to); others are stepped over. */
    const fields = async (
      from: number,
      to: number,
      visit: (field: number, start: number, length: number) => Promise<boolean>,
    ): Promise<boolean> => {
      for (let position = from; position < to;) {
        const [tag, next] = await varint(position);
        const wire = tag & 7;
        if (wire === 0) position = (await varint(next))[1];
        else if (wire === 1) position = next + 8;
        else if (wire === 5) position = next + 4;
        else if (wire === 2) {
          const [length, start] = await varint(next);
          if (await visit(Math.floor(tag / 8), start, length)) return true;
          position = start + length;
        } else throw new LoupeError('MODEL_INVALID', `${file} is not a valid ONNX graph.`);
      }
      return false;
    };
    return await fields(0, size, (field, start, length) =>
      field !== 7
        ? Promise.resolve(false)
        : fields(start, start + length, async (f, nodeAt, nodeLength) =>
            f === 1 ? (await bytes(nodeAt, nodeLength)).includes(needle) : false,
          ),
    );
  } finally {
    await handle.close();
  }
}
