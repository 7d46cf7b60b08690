/**
 * One result of a batch: one clip answered for one prompt. This is the line format of the resume journal
 * and of the JSONL export, so it is validated whenever it is read back.
 */
import { z } from 'zod';
import { ERROR_CODES, LoupeError, type SerializedError } from '../errors.ts';

export const RECORD_VERSION = 1;

const seconds = z.number().finite().min(0);

export const RecordErrorSchema = z.object({
  code: z.string().min(1),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const SegmentAnswerSchema = z.object({
  from: seconds,
  to: seconds,
  answer: z.string().nullable(),
  /** Presentation times (s) of the frames the model saw for this segment. */
  frames: z.array(seconds),
  error: RecordErrorSchema.nullable(),
});

export const ResultRecordSchema = z.object({
  v: z.literal(RECORD_VERSION),
  /** The file as this machine read it (absolute). */
  path: z.string().min(1),
  /** The path relative to the batch's input root, with "/" separators: the key for resume, shards and merge. */
  relPath: z.string().min(1),
  prompt: z.string().min(1),
  /** Position of the prompt in the batch's prompt list (keeps merged output in the batch's order). */
  promptIndex: z.number().int().min(0),
  durationSec: seconds.nullable(),
  answer: z.string().nullable(),
  /** Presentation times (s) of the frames the model saw. */
  frames: z.array(seconds),
  /** Segment mode only, on the first prompt's record: the first prompt answered per N-second segment. */
  segments: z.array(SegmentAnswerSchema).optional(),
  model: z.string().nullable(),
  provider: z.string().nullable(),
  timings: z.object({
    /** Probe, decode and vision encoding of the whole clip (usually overlapped with the previous answer). */
    prepareMs: z.number().min(0),
    /** Prefill and decoding of this prompt (and its segments). */
    answerMs: z.number().min(0),
    tokens: z.number().int().min(0),
  }),
  error: RecordErrorSchema.nullable(),
  finishedAt: z.string(),
});

export type ResultRecord = z.infer<typeof ResultRecordSchema>;
export type SegmentAnswer = z.infer<typeof SegmentAnswerSchema>;
export type RecordError = z.infer<typeof RecordErrorSchema>;

/** The identity of a record: a clip (by its path under the input root) and a prompt. */
export function recordKey(record: Pick<ResultRecord, 'relPath' | 'prompt'>): string {
  return `${record.relPath}\u0000${record.prompt}`;
}

/** A clip failed when its answer or any of its segment answers failed. */
export function recordFailed(record: ResultRecord): boolean {
  return record.error !== null || failedSegments(record) > 0;
}

/** Segments of a record that have an error (segment mode records failed segments and goes on). */
export function failedSegments(record: ResultRecord): number {
  return (record.segments ?? []).filter((s) => s.error !== null).length;
}

/** An error as it is stored: code and message, details kept only when small (stderr tails are). */
export function toRecordError(error: unknown): RecordError {
  const err: SerializedError = LoupeError.from(error).toJSON();
  const details = err.details && Object.keys(err.details).length ? err.details : undefined;
  return details && JSON.stringify(details).length <= 4096
    ? { code: err.code, message: err.message, details }
    : { code: err.code, message: err.message };
}

/** Rebuild a LoupeError from a stored error (an unknown code becomes INTERNAL). */
export function fromRecordError(error: RecordError): LoupeError {
  const code = error.code in ERROR_CODES ? (error.code as keyof typeof ERROR_CODES) : 'INTERNAL';
  return new LoupeError(code, error.message, error.details ?? {});
}

/** Validate one parsed JSON value; null when it is not a record. */
export function parseRecord(value: unknown): ResultRecord | null {
  const parsed = ResultRecordSchema.safeParse(value);
  return parsed.success ? parsed.data : null;
}
