/**
 * The typed messages between the app (engine.ts) and the engine worker process (engine-worker.ts). Requests
 * carry an id; the worker answers each with `result` or `error`, and an ask with `event`s before that. `stop`
 * is read between prefill chunks and between tokens (the worker yields to its event loop there).
 */
import type { SerializedError } from '../errors.ts';
import type { ProviderReport } from './ort.ts';
import type { ChatMessage } from './prompt.ts';
import type { AnswerEvent, EngineOptions, KvCacheReport, VisualInput } from './types.ts';

/** Generation options that cross the thread boundary (callbacks become flags and messages). */
export interface WireGenerateOptions {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  ignoreEos?: boolean;
  promptLogits: boolean;
  prefillProgress: boolean;
}

export type ToWorker =
  | { type: 'load'; id: number; dir: string; options: EngineOptions }
  | { type: 'encode'; id: number; pixels: Float32Array[] }
  | { type: 'open'; conversation: number; visual: VisualInput; history: ChatMessage[] }
  | {
      type: 'ask';
      id: number;
      conversation: number;
      question: string;
      options: WireGenerateOptions;
    }
  /** The logits after one question's first-turn prompt about each visual input, in batched runs (no conversation). */
  | { type: 'promptLogits'; id: number; visuals: VisualInput[]; question: string }
  /** Stop request `id` (an encode, a prompt batch or an ask) at its next check. */
  | { type: 'stop'; id: number }
  /** The app took events up to `taken`: the worker runs at most ASK_WINDOW tokens ahead of its reader. */
  | { type: 'taken'; id: number; taken: number }
  | { type: 'close'; conversation: number }
  /** What the worker holds now (tests check that closed conversations gave their memory back). */
  | { type: 'stats'; id: number }
  | { type: 'dispose'; id: number };

/** The two ends' transport: a Node child process (IPC, structured clone) or Electron's utility process. */
export interface WorkerChannel {
  send(message: ToWorker): void;
  onMessage(listener: (message: FromWorker) => void): void;
  /** `error` when it could not start or crashed, the exit code otherwise. */
  onExit(listener: (why: string) => void): void;
  kill(): void;
  readonly pid: number | undefined;
}

export type FromWorker =
  | { type: 'result'; id: number; value: WorkerResult }
  | { type: 'error'; id: number; error: SerializedError }
  | { type: 'event'; id: number; event: AnswerEvent }
  | { type: 'promptLogits'; id: number; logits: Float32Array }
  | { type: 'progress'; id: number; done: number; total: number }
  /** The conversation's turns after an ask (answered, stopped or failed), so a lost cache can be rebuilt. */
  | { type: 'history'; conversation: number; messages: ChatMessage[]; cachedTokens: number };

export type WorkerResult =
  | { kind: 'loaded'; provider: ProviderReport; kvCache: KvCacheReport }
  | { kind: 'encoded'; frames: { data: Float32Array; dims: [number, number] }[] }
  | { kind: 'answered' }
  | { kind: 'logits'; logits: Float32Array[] }
  | { kind: 'stats'; stats: WorkerStats }
  | { kind: 'disposed' };

/** What the worker holds: open conversations, live KV caches (native or JavaScript), its resident memory. */
export interface WorkerStats {
  openConversations: number;
  liveKvCaches: number;
  rssBytes: number;
}

/** Tokens the worker may decode before the app has read them (a paused reader pauses the decode). */
export const ASK_WINDOW = 4;
