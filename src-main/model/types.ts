/** The engine's public types, shared by the app-side proxy (engine.ts) and the worker side (local-engine.ts). */
import type { ProviderReport, ProviderRequest } from './ort.ts';
import type { SamplingOptions } from './sampler.ts';
import type { Tokens2D } from './tensor.ts';

export interface EngineOptions {
  provider?: ProviderRequest;
  threads?: number;
  /** KV cache size from which the decoder writes into preallocated buffers (default 4 MB; tests use 0). */
  bindCacheFromBytes?: number;
  /** Prefill tokens per decoder run (default: sized so that one run takes about 100 ms; tests pin it). */
  prefillChunk?: number;
  /**
   * Where conversations keep the decoder's KV cache. `auto` (default): in native memory where that can run
   * (CPU provider, koffi loadable), else in JavaScript through onnxruntime-node; `native` makes the fallback an
   * error; `js` is the old path (parity tests, comparisons).
   */
  kvCache?: 'auto' | 'native' | 'js';
}

/** The KV cache a loaded engine gives its conversations, and why it is not the native one when it is not. */
export interface KvCacheReport {
  used: 'native-shared' | 'native-chained' | 'js';
  why?: string;
}

export interface GenerateOptions extends Partial<SamplingOptions> {
  maxNewTokens?: number;
  signal?: AbortSignal;
  /** Diagnostics and parity tests: the logits after the prompt, before the first token is chosen. */
  onPromptLogits?: (logits: Float32Array) => void;
  /** A long prefill's progress: prompt tokens through the decoder so far, of `total`. */
  onPrefillProgress?: (done: number, total: number) => void;
  /** Benchmarks: decode exactly maxNewTokens, past end-of-turn tokens. */
  ignoreEos?: boolean;
}

/**
 * A generated token. `text` is what it adds to the answer, and may be empty (a token that only starts a
 * multi-byte character, or leading whitespace): every generated id is still announced.
 */
export type AnswerEvent =
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

export type { ProviderReport, ProviderRequest };
