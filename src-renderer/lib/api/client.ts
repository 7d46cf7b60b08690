/**
 * The renderer's view of Loupe's API: one interface, built from the contract's types, with two
 * implementations (HTTP for web mode, IPC for Electron). Errors arrive as data and are rebuilt as ApiError.
 */
import { PushQueue } from '../../../src-main/push-queue.ts';
import type {
  CallInput,
  CallName,
  CallOutput,
  Envelope,
  StreamInput,
  StreamMessage,
  StreamEvent,
  StreamName,
} from '../../../src-main/api/contract.ts';

export interface ApiClient {
  call<M extends CallName>(method: M, input: CallInput<M>): Promise<CallOutput<M>>;
  /** Events until the stream ends; aborting `signal` stops it on the other side too. */
  stream<M extends StreamName>(
    method: M,
    input: StreamInput<M>,
    signal?: AbortSignal,
  ): AsyncIterable<StreamEvent<M>>;
}

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  static from(error: unknown): ApiError {
    if (error instanceof ApiError) return error;
    if (error instanceof DOMException && error.name === 'AbortError')
      return new ApiError('CANCELLED', 'Cancelled.');
    if (isSerializedError(error)) return new ApiError(error.code, error.message, error.details ?? {});
    return new ApiError('INTERNAL', error instanceof Error ? error.message : String(error));
  }
}

function isSerializedError(
  v: unknown,
): v is { code: string; message: string; details?: Record<string, unknown> } {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { code?: unknown }).code === 'string' &&
    typeof (v as { message?: unknown }).message === 'string'
  );
}

/** Unwrap a call's envelope; anything that is not one is a transport failure. */
export function unwrap<T>(envelope: unknown): T {
  const e = envelope as Envelope<T> | null;
  if (e && e.ok === true) return e.value;
  if (e && e.ok === false && isSerializedError(e.error)) throw ApiError.from(e.error);
  throw new ApiError('INTERNAL', 'Loupe answered with something that is not an API response.');
}

/**
 * Turn pushed stream messages into an async iterator. `start` begins delivery and returns a stopper,
 * called when the consumer leaves early or the signal fires.
 */
export function messagesToIterable<E>(
  start: (push: (message: StreamMessage) => void) => () => void,
  signal?: AbortSignal,
): AsyncIterable<E> {
  return {
    [Symbol.asyncIterator]() {
      const queue = new PushQueue<StreamMessage>();
      const push = (m: StreamMessage) => queue.push(m);
      const stop = start(push);
      const onAbort = () => push({ kind: 'error', error: { code: 'CANCELLED', message: 'Cancelled.' } });
      signal?.addEventListener('abort', onAbort, { once: true });
      const finish = () => {
        queue.close();
        signal?.removeEventListener('abort', onAbort);
        stop();
      };
      if (signal?.aborted) onAbort();
      return {
        async next(): Promise<IteratorResult<E>> {
          if (queue.isClosed) return { value: undefined, done: true }; // finished: nothing more is delivered
          const next = await queue.shift();
          if (next.done) return { value: undefined, done: true };
          const m = next.value;
          if (m.kind === 'event') return { value: m.event as E, done: false };
          finish();
          if (m.kind === 'error') throw ApiError.from(m.error);
          return { value: undefined, done: true };
        },
        async return(): Promise<IteratorResult<E>> {
          if (!queue.isClosed) finish();
          return { value: undefined, done: true };
        },
      };
    },
  };
}
