/**
 * The records the library stores (videos, conversations and their turns, settings) as zod schemas: defined
 * here, below the API, so the library needs nothing from api/; api/contract.ts re-exports them as part of the
 * one contract (they cross the process boundary as they are).
 */
import { z } from 'zod';

/** A time or duration in seconds. */
export const seconds = z.number().finite().min(0);
/** An id (video, conversation, batch). */
export const id = z.string().min(1).max(200);

export const ErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const VideoSchema = z.object({
  id,
  path: z.string(),
  name: z.string(),
  sizeBytes: z.number().int().min(0),
  durationSec: seconds,
  width: z.number().int().min(0),
  height: z.number().int().min(0),
  kind: z.enum(['video', 'image']),
  codec: z.string(),
  addedAt: z.string(),
  /** Set when the file cannot be read (missing, corrupt, not a video): the library shows it beside the name. */
  error: ErrorSchema.nullable(),
});
export type Video = z.infer<typeof VideoSchema>;

export const FrameRefSchema = z.object({
  timeSec: seconds,
  /** A small JPEG as a data: URL. */
  thumb: z.string(),
});
export type FrameRef = z.infer<typeof FrameRefSchema>;

export const TimingsSchema = z.object({
  prefillTokens: z.number(),
  prefillMs: z.number(),
  firstTokenMs: z.number(),
  decodeMs: z.number(),
  decodeTokensPerSec: z.number(),
});
export type Timings = z.infer<typeof TimingsSchema>;

export const TurnSchema = z.object({
  question: z.string(),
  answer: z.string(),
  /** eos: the model finished; length: hit the answer-length limit; cancelled: Stop; error: see `error`. */
  stopped: z.enum(['eos', 'length', 'cancelled', 'error']),
  askedAt: z.string(),
  timings: TimingsSchema.nullable(),
  error: ErrorSchema.nullable(),
});
export type Turn = z.infer<typeof TurnSchema>;

export const ConversationRecordSchema = z.object({
  id,
  videoId: id,
  range: z.object({ from: seconds, to: seconds }),
  /** The frame times the model saw (thumbnails are re-made on demand; they are not stored). */
  frameTimes: z.array(seconds),
  createdAt: z.string(),
  model: z.string(),
  turns: z.array(TurnSchema),
});
export type ConversationRecord = z.infer<typeof ConversationRecordSchema>;

export const SettingsSchema = z.object({
  /** Frames sampled per clip; null = the model pack's default. */
  frames: z.number().int().min(1).max(64).nullable(),
  /** Longest answer, in tokens. */
  maxNewTokens: z.number().int().min(8).max(2048),
  /** 0 = greedy (the same answer every time). */
  temperature: z.number().min(0).max(2),
  theme: z.enum(['system', 'light', 'dark']),
  /** auto: fast keyframe sampling for long clips and batches, exact for short clips; exact: always the frame shown. */
  sampling: z.enum(['auto', 'exact']).default('auto'),
  /** The model pack in use (a folder); null = the built-in pack. Changed only through `selectModel`. */
  modelPack: z.string().nullable(),
});
export type Settings = z.infer<typeof SettingsSchema>;

export const DEFAULT_SETTINGS: Settings = {
  frames: null,
  maxNewTokens: 256,
  temperature: 0,
  theme: 'system',
  sampling: 'auto',
  modelPack: null,
};
