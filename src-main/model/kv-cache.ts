/**
 * A conversation's decoder state: the KV cache of every token run so far, and the step that runs new tokens
 * through the decoder and appends theirs. Two kinds: `NativeKvCache` (kv-native.ts: the cache never leaves
 * native memory) and `JsKvCache` (here: the cache crosses into JavaScript after every run, through
 * onnxruntime-node; the fallback where the native path cannot load).
 */
import { LoupeError } from '../errors.ts';
import { cacheTensor, floatTensor, int64Tensor, type Session } from './ort.ts';

/** The decoder's dimensions, from the manifest. */
export interface DecoderShape {
  hiddenSize: number;
  numLayers: number;
  numKeyValueHeads: number;
  headDim: number;
  vocabSize: number;
  usesPositionIds: boolean;
  /** What the cache's tensors hold (the manifest's decoder.kvCache.dtype; float32 when absent). */
  kvDtype?: KvDtype;
}

export type KvDtype = 'float32' | 'int8';
type CacheArray = Float32Array | Int8Array;

/** The element type of a decoder's cache: the manifest's, float32 where a shape does not say. */
export const cacheDtype = (shape: DecoderShape): KvDtype => shape.kvDtype ?? 'float32';

/** An empty array of the cache's element type, `length` long. */
export function cacheArray(dtype: KvDtype, length: number): CacheArray {
  return dtype === 'int8' ? new Int8Array(length) : new Float32Array(length);
}

/** Bytes per element of a cache of this type. */
export const cacheElementBytes = (dtype: KvDtype): number => (dtype === 'int8' ? 1 : 4);

export interface KvCache {
  /** Tokens in the cache. */
  readonly length: number;
  /**
   * Run `count` new embeddings (count × hidden floats); returns the last position's logits (vocab floats).
   * An `interruptible` cache ends a run early when `signal` aborts (the step fails as cancelled; roll back).
   */
  step(embeds: Float32Array, count: number, signal?: AbortSignal): Promise<Float32Array>;
  /** Whether `signal` can end a run part-way (else Stop lands between runs only). */
  readonly interruptible: boolean;
  /**
   * The conversation will hold up to `total` tokens (the prompt and the longest answer): a cache that
   * allocates ahead sizes its buffers to that at once, instead of doubling past it. A hint: growing beyond it
   * still works.
   */
  expect(total: number): void;
  /** Marks the current length as one a failed or stopped prefill can go back to. */
  checkpoint(): void;
  /** Back to the last checkpoint (a failed or stopped prefill leaves the conversation as it was). */
  rollback(): void;
  /** Frees what the cache holds; the cache is unusable afterwards. */
  release(): void;
}

let live = 0;

/** KV caches alive in this process: created and not yet released (the worker reports it; tests check it returns to 0). */
export function liveKvCaches(): number {
  return live;
}

/** Counts a new cache as live; the function it returns uncounts it, once, however often it is called. */
export function trackCache(): () => void {
  live++;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    live--;
  };
}

/** The decoder's input and output names for `layers` layers. */
export function decoderNames(shape: DecoderShape): { past: string[]; present: string[] } {
  const past: string[] = [];
  const present: string[] = [];
  for (let i = 0; i < shape.numLayers; i++)
    for (const kv of ['key', 'value']) {
      past.push(`past_key_values.${i}.${kv}`);
      present.push(`present.${i}.${kv}`);
    }
  return { past, present };
}

type Tensor = ReturnType<typeof floatTensor>;

/**
 * Prompts of one length run side by side from an empty cache: `batch` rows of `length` tokens each
 * (batch × length × hidden floats, row after row). Nothing is cached: only the logits after each row's last
 * token come back.
 */
export interface PromptBatch {
  embeds: Float32Array;
  batch: number;
  length: number;
}

/** The decoder's inputs for a prompt batch (position ids 0..length-1 in every row), shapes checked first. */
export function promptBatchInputs(
  shape: DecoderShape,
  { embeds, batch, length }: PromptBatch,
): { mask: BigInt64Array; positions: BigInt64Array } {
  if (!(batch >= 1 && length >= 1) || embeds.length !== batch * length * shape.hiddenSize)
    throw new LoupeError(
      'INTERNAL',
      `a prompt batch of ${batch} × ${length} tokens needs ${batch * length * shape.hiddenSize} values, not ${embeds.length}`,
    );
  const positions = new BigInt64Array(batch * length);
  for (let b = 0; b < batch; b++) for (let i = 0; i < length; i++) positions[b * length + i] = BigInt(i);
  return { mask: new BigInt64Array(batch * length).fill(1n), positions };
}

/**
 * Each row's last logits from a (batch, rows, vocab) logits tensor, rows = the prompt length or 1 (a graph
 * that computes the last position only); the dims are checked against the manifest before anything is read.
 */
export function lastRows(
  dims: readonly number[],
  batch: number,
  length: number,
  vocabSize: number,
  read: (offset: number, count: number) => Float32Array,
): Float32Array {
  const rows = dims[1] ?? 0;
  if (dims.length !== 3 || dims[0] !== batch || dims[2] !== vocabSize || (rows !== length && rows !== 1))
    throw new LoupeError(
      'MODEL_INVALID',
      `The decoder's logits are [${dims.join(', ')}], not [${batch}, ${length} or 1, ${vocabSize}] as the manifest's decoder.vocabSize says.`,
      { field: 'decoder.vocabSize', dims },
    );
  const out = new Float32Array(batch * vocabSize);
  for (let b = 0; b < batch; b++) out.set(read((b * rows + rows - 1) * vocabSize, vocabSize), b * vocabSize);
  return out;
}

/** A prompt batch through onnxruntime-node's session: batch × vocab floats. Only the logits are fetched. */
export async function jsPromptBatch(
  decoder: Session,
  shape: DecoderShape,
  input: PromptBatch,
): Promise<Float32Array> {
  const { batch, length } = input;
  const { mask, positions } = promptBatchInputs(shape, input);
  const { numKeyValueHeads, headDim, hiddenSize, vocabSize } = shape;
  const feeds: Record<string, Tensor> = {
    inputs_embeds: floatTensor(input.embeds, [batch, length, hiddenSize]),
    attention_mask: int64Tensor(mask, [batch, length]),
  };
  if (shape.usesPositionIds) feeds.position_ids = int64Tensor(positions, [batch, length]);
  for (const name of decoderNames(shape).past)
    feeds[name] = cacheTensor(cacheArray(cacheDtype(shape), 0), [batch, numKeyValueHeads, 0, headDim]);
  const out = await decoder.run(feeds, {}, ['logits']);
  const logits = out.logits!;
  const data = logits.data as Float32Array;
  return lastRows(logits.dims, batch, length, vocabSize, (offset, count) =>
    data.subarray(offset, offset + count),
  );
}

/**
 * The cache kept in JavaScript: every run hands the whole cache to onnxruntime-node and takes the presents
 * back. Measured on SmolLM2-135M: ≈ 31 µs per cached token per step against 8.5 µs in Python onnxruntime,
 * which is why the native cache exists.
 */
export class JsKvCache implements KvCache {
  /** onnxruntime-node's run cannot be ended part-way (its RunOptions are fixed when it starts). */
  readonly interruptible = false;
  private past: Record<string, Tensor>;
  private saved: { past: Record<string, Tensor>; length: number };
  private count = 0;
  /** expect()'s total: buffers double up to it, not past it. */
  private expected = 0;
  /** Two buffers per cache tensor: one holds the past, the decoder writes the present into the other. */
  private readonly kvBuffers = new Map<string, [CacheArray, CacheArray]>();
  private readonly names: { past: string[]; present: string[] };
  private readonly untrack = trackCache();

  constructor(
    private readonly decoder: Session,
    private readonly shape: DecoderShape,
    /** Cache size from which presents are written into preallocated buffers (see bindsCache). */
    private readonly bindFromBytes: number,
  ) {
    this.names = decoderNames(shape);
    this.past = this.emptyCache();
    this.saved = { past: this.past, length: 0 };
  }

  get length(): number {
    return this.count;
  }

  private emptyCache(): Record<string, Tensor> {
    const { numKeyValueHeads, headDim } = this.shape;
    const past: Record<string, Tensor> = {};
    for (const name of this.names.past)
      past[name] = cacheTensor(cacheArray(cacheDtype(this.shape), 0), [1, numKeyValueHeads, 0, headDim]);
    return past;
  }

  /**
   * Whether the presents are written into preallocated buffers: binding outputs costs a fixed overhead per
   * tensor and saves a copy proportional to the cache, so it pays only once the cache is large (measured: a
   * small built-in model decodes 10–30% slower with it, SmolLM2 at 512 cached tokens faster).
   */
  private bindsCache(total: number): boolean {
    const { numLayers, numKeyValueHeads, headDim } = this.shape;
    const bytes = cacheElementBytes(cacheDtype(this.shape));
    return 2 * numLayers * numKeyValueHeads * total * headDim * bytes >= this.bindFromBytes;
  }

  /**
   * Preallocated present tensors for `total` cached tokens, as views into the buffer that does not hold the
   * past: onnxruntime-node then writes the new cache in place instead of allocating a fresh native tensor and
   * copying it into JavaScript on every token. Buffers grow by doubling. The buffer that holds the checkpoint
   * is never written while a prefill may still roll back to it.
   */
  private presentViews(total: number): Record<string, Tensor> {
    const { numKeyValueHeads, headDim } = this.shape;
    const kvDtype = cacheDtype(this.shape);
    const size = numKeyValueHeads * total * headDim;
    const views: Record<string, Tensor> = {};
    const { past, present } = this.names;
    past.forEach((pastName, i) => {
      const held = this.past[pastName]!.data as CacheArray;
      const kept = this.saved.past[pastName]!.data as CacheArray;
      let pair = this.kvBuffers.get(pastName);
      if (!pair) this.kvBuffers.set(pastName, (pair = [cacheArray(kvDtype, 0), cacheArray(kvDtype, 0)]));
      const free = pair[0].buffer === held.buffer ? 1 : 0;
      // the checkpoint's buffer must survive a rollback: write a fresh buffer instead
      if (pair[free].buffer === kept.buffer && kept.length) pair[free] = cacheArray(kvDtype, 0);
      const ahead = this.expected >= total ? numKeyValueHeads * this.expected * headDim : Infinity;
      if (pair[free].length < size)
        pair[free] = cacheArray(kvDtype, Math.max(size, Math.min(2 * pair[free].length, ahead)));
      views[present[i]!] = cacheTensor(pair[free].subarray(0, size), [1, numKeyValueHeads, total, headDim]);
    });
    return views;
  }

  async step(embeds: Float32Array, count: number): Promise<Float32Array> {
    const { hiddenSize, usesPositionIds, vocabSize } = this.shape;
    const total = this.count + count;
    const feeds: Record<string, Tensor> = {
      inputs_embeds: floatTensor(embeds, [1, count, hiddenSize]),
      attention_mask: int64Tensor(new BigInt64Array(total).fill(1n), [1, total]),
      ...this.past,
    };
    if (usesPositionIds)
      feeds.position_ids = int64Tensor(
        BigInt64Array.from({ length: count }, (_, i) => BigInt(this.count + i)),
        [1, count],
      );
    const out = await this.decoder.run(feeds, this.bindsCache(total) ? this.presentViews(total) : {});
    const { past, present } = this.names;
    const next: Record<string, Tensor> = {};
    past.forEach((name, i) => (next[name] = out[present[i]!]!));
    this.past = next;
    this.count = total;
    // (1, count, vocab), or (1, 1, vocab) from a graph exported to compute the last position only
    const dims = out.logits!.dims;
    if (dims.length !== 3 || dims[2] !== vocabSize)
      throw new LoupeError(
        'MODEL_INVALID',
        `The decoder's logits are [${dims.join(', ')}]; the manifest's decoder.vocabSize says ${vocabSize}.`,
        { field: 'decoder.vocabSize', dims },
      );
    const logits = out.logits!.data as Float32Array;
    return logits.subarray(logits.length - vocabSize);
  }

  expect(total: number): void {
    this.expected = total;
  }

  checkpoint(): void {
    this.saved = { past: this.past, length: this.count };
  }

  rollback(): void {
    this.past = this.saved.past;
    this.count = this.saved.length;
  }

  release(): void {
    this.past = this.emptyCache();
    this.saved = { past: this.past, length: 0 };
    this.kvBuffers.clear();
    this.count = 0;
    this.untrack();
  }
}
