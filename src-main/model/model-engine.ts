/**
 * The one engine interface (the web-llm pattern in ../../shared/STYLE.md: one engine, many front ends).
 * `Engine` (engine.ts, the app's proxy to its worker process) and `LocalEngine` (local-engine.ts, the loop in
 * that worker) both implement it; moment search, the batch runner, clip features and the conversations API
 * depend on it, or on a `Pick` of it, never on either class.
 *
 * Whoever starts a conversation closes it (`close()`, or `await using`): its KV cache is native memory.
 */
import type { Manifest, Pack } from './pack.ts';
import type { ChatMessage, PromptBuilder } from './prompt.ts';
import type { Tokens2D } from './tensor.ts';
import type { AnswerEvent, GenerateOptions, KvCacheReport, ProviderReport, VisualInput } from './types.ts';

export interface ModelConversation extends AsyncDisposable {
  /** The turns so far (a rebuilt conversation starts with its earlier turns). */
  readonly messages: readonly ChatMessage[];
  /** Tokens in the KV cache after the last answer (0 before the first). */
  readonly cachedTokens: number;
  /**
   * Ask a question: answer tokens as they decode, then a `done` event. `options.signal` stops it; a consumer
   * that leaves early without it leaves the conversation usable. One ask at a time (else USAGE).
   */
  ask(question: string, options?: GenerateOptions): AsyncGenerator<AnswerEvent>;
  /** Frees the KV cache; idempotent. During an answer it takes effect when that answer ends. */
  close(): void;
}

export interface ModelEngine {
  readonly pack: Pack;
  readonly manifest: Manifest;
  readonly prompt: PromptBuilder;
  readonly provider: ProviderReport;
  /** Where conversations keep their KV cache (native or JavaScript), and why when not native. */
  readonly kvCache: KvCacheReport;
  /** Frames that fit the context beside a question and an answer of `maxNewTokens`. */
  maxFrames(maxNewTokens?: number, textBudget?: number): number;
  /** (N, 3, S, S) normalized pixels -> N frames of (tokensPerImage, hidden). */
  encodeImages(pixels: readonly Float32Array[], signal?: AbortSignal): Promise<Tokens2D[]>;
  /**
   * The logits after `question`'s first-turn prompt about each visual input, in batched decoder runs, opening
   * no conversation and keeping no cache (moment search).
   */
  promptLogits(
    visuals: readonly VisualInput[],
    question: string,
    signal?: AbortSignal,
  ): Promise<Float32Array[]>;
  /** A conversation about `visual`; `history` (earlier turns) is prefilled with its first question. */
  startConversation(visual: VisualInput, history?: readonly ChatMessage[]): ModelConversation;
  /** Releases the sessions; idempotent. */
  dispose(): Promise<void>;
}
