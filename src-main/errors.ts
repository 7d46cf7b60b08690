/**
 * Errors as data: every failure Loupe reports has a stable code, a human message that says what to do,
 * and details. They cross IPC/HTTP as `{code, message, details}` and are rebuilt on the other side.
 */

export const ERROR_CODES = {
  USAGE: 2,
  FILE_NOT_FOUND: 3,
  NOT_A_VIDEO: 3,
  NO_VIDEO_STREAM: 3,
  CORRUPT_MEDIA: 3,
  ZERO_DURATION: 3,
  RANGE_OUTSIDE: 3,
  UNSUPPORTED_MEDIA: 3,
  FFMPEG_NOT_FOUND: 3,
  FFMPEG_FAILED: 3,
  MODEL_NOT_FOUND: 4,
  MODEL_INVALID: 4,
  MODEL_RUNTIME: 4,
  CONTEXT_OVERFLOW: 4,
  /** The pack's graphs would not fit in this computer's memory. */
  MODEL_TOO_LARGE: 4,
  /** A payload that does not match the API contract (a bug in the caller, or a forged request). */
  BAD_REQUEST: 2,
  /** An id the library or the conversation map does not know (any more). */
  NOT_FOUND: 3,
  /** A file outside what the user let Loupe read (the library, allowed folders). */
  FORBIDDEN: 3,
  CANCELLED: 1,
  DISK_FULL: 1,
  INTERNAL: 1,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface SerializedError {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export class LoupeError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LoupeError';
  }

  /** Process exit code for the CLI: 2 usage, 3 bad input, 4 model error. */
  get exitCode(): number {
    return ERROR_CODES[this.code];
  }

  toJSON(): SerializedError {
    return { code: this.code, message: this.message, details: this.details };
  }

  static fromJSON(data: SerializedError): LoupeError {
    return new LoupeError(
      data.code in ERROR_CODES ? data.code : 'INTERNAL',
      data.message,
      data.details ?? {},
    );
  }

  /** Wrap anything thrown into a LoupeError, keeping LoupeErrors as they are. */
  static from(error: unknown): LoupeError {
    if (error instanceof LoupeError) return error;
    if (error instanceof Error && error.name === 'AbortError')
      return new LoupeError('CANCELLED', 'Cancelled.');
    const err = error as NodeJS.ErrnoException;
    if (err?.code === 'ENOSPC')
      return new LoupeError('DISK_FULL', 'The disk is full: free some space and try again.');
    return new LoupeError(
      'INTERNAL',
      err instanceof Error ? err.message : String(error),
      {},
      { cause: error },
    );
  }
}

export function cancelled(): LoupeError {
  return new LoupeError('CANCELLED', 'Cancelled.');
}

/** Throw CANCELLED if the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelled();
}
