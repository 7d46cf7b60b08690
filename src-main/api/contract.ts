/**
 * Loupe's one API: every method the renderer may call, the events of the streamed ones, and the shape of
 * errors. Main implements it once (service.ts); ipc.ts and http.ts carry it; preload and renderer import
 * its types only. The zod schemas here are checked in main for every payload that crosses a process
 * boundary: inputs as they arrive, outputs before they leave. A payload that does not match is answered
 * with a BAD_REQUEST error (for inputs) or INTERNAL (for outputs), never dropped.
 */
import { z } from 'zod';
import { LoupeError, type SerializedError } from '../errors.ts';

// ─── Shared shapes ──────────────────────────────────────────────────────────────────────────────────

import {
  ConversationRecordSchema,
  ErrorSchema,
  FrameRefSchema,
  id,
  seconds,
  SettingsSchema,
  TimingsSchema,
  VideoSchema,
} from '../library/records.ts';
import { FindIntervalSchema, FindSearchSchema, InstantScoreSchema } from '../find/records.ts';

export {
  ConversationRecordSchema,
  DEFAULT_SETTINGS,
  ErrorSchema,
  FrameRefSchema,
  SettingsSchema,
  TimingsSchema,
  TurnSchema,
  VideoSchema,
} from '../library/records.ts';
export type { ConversationRecord, FrameRef, Settings, Timings, Turn, Video } from '../library/records.ts';

export const ModelInfoSchema = z.object({
  name: z.string(),
  version: z.string(),
  description: z.string(),
  /** What the model can see, in the pack's words; null for general-purpose models. */
  domain: z.string().nullable(),
  builtin: z.boolean(),
  packDir: z.string(),
  packBytes: z.number(),
  precision: z.string(),
  provider: z.object({
    requested: z.string(),
    used: z.string(),
    fallbacks: z.array(z.object({ provider: z.string(), error: z.string() })),
  }),
  framesDefault: z.number().int(),
  maxFrames: z.number().int(),
  contextLength: z.number().int(),
  memory: z.object({ rssBytes: z.number(), heapUsedBytes: z.number() }),
});
export type ModelInfo = z.infer<typeof ModelInfoSchema>;

/** Whether a pack's graphs are expected to fit in memory (ONNX bytes × 1.5 against free and total memory). */
export const MemoryFitSchema = z.object({
  needBytes: z.number().min(0),
  freeBytes: z.number().min(0),
  totalBytes: z.number().min(0),
  fits: z.boolean(),
  /** Why it does not fit, or a warning when it is tight; null when there is room. */
  message: z.string().nullable(),
});
export type MemoryFit = z.infer<typeof MemoryFitSchema>;

/** A model pack Loupe knows: the built-in one (always listed) and those imported into the data folder. */
export const PackInfoSchema = z.object({
  dir: z.string(),
  name: z.string(),
  version: z.string(),
  description: z.string(),
  domain: z.string().nullable(),
  precision: z.string(),
  /** All files of the pack; `onnxBytes` is the part loaded into memory. */
  bytes: z.number().min(0),
  onnxBytes: z.number().min(0),
  contextLength: z.number().int().nullable(),
  builtin: z.boolean(),
  /** The pack in use now. */
  active: z.boolean(),
  /** Imported with --link: the folder is a link to where the pack lives. */
  linked: z.boolean(),
  memory: MemoryFitSchema.nullable(),
  /** Why the pack cannot be used (missing files, bad manifest); null when it reads fine. */
  error: ErrorSchema.nullable(),
});
export type PackInfo = z.infer<typeof PackInfoSchema>;

// ─── Batches ────────────────────────────────────────────────────────────────────────────────────────

/** One clip of a batch: queued → running{fraction} → done | failed | cancelled (never backwards). */
export const BatchClipStatusSchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('queued') }),
  z.object({
    state: z.literal('running'),
    stage: z.enum(['preparing', 'answering']),
    fraction: z.number().min(0).max(1),
  }),
  /** partial: segment mode, `failed` of the clip's answers (whole clip + segments) could not be read; the rest landed. */
  z.object({
    state: z.literal('done'),
    resumed: z.boolean(),
    partial: z.object({ failed: z.number().int().min(1), answers: z.number().int().min(1) }).optional(),
  }),
  z.object({ state: z.literal('failed'), error: ErrorSchema }),
  z.object({ state: z.literal('cancelled') }),
]);
export type BatchClipStatus = z.infer<typeof BatchClipStatusSchema>;

export const BatchClipSchema = z.object({
  relPath: z.string(),
  path: z.string(),
  /** The clip's id in the library (finished clips are added to it). */
  videoId: id,
  status: BatchClipStatusSchema,
});
export type BatchClip = z.infer<typeof BatchClipSchema>;

export {
  BatchOverallSchema,
  BatchStateSchema,
  BatchSummarySchema,
  type BatchOverall,
  type BatchState,
  type BatchSummary,
} from '../jobs/batch-store.ts';
import { BatchOverallSchema, BatchStateSchema, BatchSummarySchema } from '../jobs/batch-store.ts';

export const BatchDetailSchema = BatchSummarySchema.extend({ clips: z.array(BatchClipSchema) });
export type BatchDetail = z.infer<typeof BatchDetailSchema>;

/** One answer of a batch: a clip and a prompt (segment answers on the first prompt's). */
export const BatchResultSchema = z.object({
  batchId: id,
  videoId: id,
  path: z.string(),
  relPath: z.string(),
  prompt: z.string(),
  promptIndex: z.number().int().min(0),
  durationSec: seconds.nullable(),
  answer: z.string().nullable(),
  frames: z.array(seconds),
  segments: z.array(
    z.object({ from: seconds, to: seconds, answer: z.string().nullable(), error: ErrorSchema.nullable() }),
  ),
  error: ErrorSchema.nullable(),
  finishedAt: z.string(),
});
export type BatchResult = z.infer<typeof BatchResultSchema>;

// ─── Moment search (issue 14) ───────────────────────────────────────────────────────────────────────

export {
  FindIntervalSchema,
  FindSearchSchema,
  InstantScoreSchema,
  type FindInterval,
  type FindSearch,
  type InstantScore,
} from '../find/records.ts';

export const FindEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('start'),
    question: z.string(),
    range: z.object({ from: seconds, to: seconds }),
    step: z.number().positive(),
    total: z.number().int().min(0),
  }),
  /** Scores of the instants finished since the last event. */
  z.object({
    type: z.literal('progress'),
    done: z.number().int().min(0),
    total: z.number().int().min(0),
    scores: z.array(InstantScoreSchema),
  }),
  /** Saved in the video's history. */
  z.object({ type: z.literal('done'), search: FindSearchSchema }),
  /** Stop was pressed: nothing is saved. */
  z.object({ type: z.literal('cancelled'), done: z.number().int().min(0) }),
]);
export type FindEvent = z.infer<typeof FindEventSchema>;

/** One clip of a folder search. */
export const FolderFindClipSchema = z.object({
  relPath: z.string(),
  path: z.string(),
  found: z.boolean(),
  intervals: z.array(FindIntervalSchema),
  maxScore: z.number().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  /** Found in the results of an earlier, interrupted run of the same search (not searched again). */
  resumed: z.boolean(),
});
export type FolderFindClip = z.infer<typeof FolderFindClipSchema>;

export const FolderFindEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('start'), total: z.number().int().min(0), resultsFile: z.string() }),
  z.object({
    type: z.literal('clip'),
    clip: FolderFindClipSchema,
    done: z.number().int().min(0),
    total: z.number().int().min(0),
  }),
  z.object({ type: z.literal('end'), found: z.number().int().min(0), total: z.number().int().min(0) }),
  /** Stopped: the clips done so far are kept; the same search again resumes after them. */
  z.object({ type: z.literal('cancelled'), done: z.number().int().min(0) }),
]);
export type FolderFindEvent = z.infer<typeof FolderFindEventSchema>;

const findQuery = z.string().trim().min(1).max(200);
const findStep = z.number().min(0.04).max(3600).default(0.5);
const folderFindInput = z.strictObject({
  folder: z.string().trim().min(1).max(4096),
  recursive: z.boolean().default(true),
  query: findQuery,
  step: findStep,
});

// ─── Streamed events ────────────────────────────────────────────────────────────────────────────────

/**
 * Where the time before an answer's first word went, as main measured it: from the request that opened the
 * conversation (the first question) or from the question (a follow-up) to the first token. The parts add up to
 * `totalMs`; what the client adds (the trip to main and back) is not in it.
 */
export const FirstWordSchema = z.object({
  totalMs: z.number().min(0),
  /** Probing the file and decoding the frames (0 when their features were cached, and for a follow-up). */
  samplingMs: z.number().min(0),
  /** The vision encoder on the frames not cached. */
  visionMs: z.number().min(0),
  /** The prompt through the decoder: the frames and question (earlier turns too, for a reopened conversation). */
  prefillMs: z.number().min(0),
  /** From the end of prefill to the first token. */
  firstTokenMs: z.number().min(0),
  /** The rest: waiting for the model to load or for a batch to yield it, and bookkeeping. */
  waitMs: z.number().min(0),
});
export type FirstWord = z.infer<typeof FirstWordSchema>;

export const AskEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('token'), text: z.string() }),
  z.object({
    type: z.literal('done'),
    text: z.string(),
    tokens: z.number().int(),
    stopped: z.enum(['eos', 'length']),
    timings: TimingsSchema,
    /** Not stored with the turn: the history keeps `timings` only. */
    firstWord: FirstWordSchema.optional(),
  }),
  /** Stop was pressed: the partial answer is kept (and saved) as it was. */
  z.object({ type: z.literal('cancelled'), text: z.string() }),
]);
export type AskEvent = z.infer<typeof AskEventSchema>;

export const PlaybackEventSchema = z.discriminatedUnion('type', [
  /** A low-resolution H.264 copy is being made because the browser cannot play the original's codec. */
  z.object({ type: z.literal('converting'), fraction: z.number().min(0).max(1), reason: z.string() }),
  z.object({ type: z.literal('ready'), url: z.string(), proxy: z.boolean() }),
]);
export type PlaybackEvent = z.infer<typeof PlaybackEventSchema>;

export const BatchEventSchema = z.discriminatedUnion('type', [
  /** First event of every `batchEvents` stream: the batch as it is now. */
  z.object({ type: z.literal('snapshot'), batch: BatchDetailSchema }),
  z.object({ type: z.literal('clip'), clip: BatchClipSchema }),
  z.object({ type: z.literal('overall'), state: BatchStateSchema, overall: BatchOverallSchema }),
  /** The batch stopped (finished, cancelled, failed); the stream ends after it. */
  z.object({ type: z.literal('end'), state: BatchStateSchema, error: ErrorSchema.nullable() }),
]);
export type BatchEvent = z.infer<typeof BatchEventSchema>;

/** Longest data URL a chat part may carry (32 MiB of media, base64). */
export const MAX_DATA_URL_CHARS = Math.ceil((32 * 1024 * 1024 * 4) / 3) + 256;
/** Where a chat's image or video comes from: a file (in the library or an allowed folder) or a data URL. */
const MediaSourceSchema = z.union([
  z.strictObject({ path: z.string().min(1).max(4096) }),
  z.strictObject({ dataUrl: z.string().min(5).max(MAX_DATA_URL_CHARS) }),
]);
export const ChatPartSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text'), text: z.string().max(20_000) }),
  z.strictObject({ type: z.literal('image'), source: MediaSourceSchema }),
  z.strictObject({
    type: z.literal('video'),
    source: MediaSourceSchema,
    /** The clip: seconds on the player's clock (default: the whole video). */
    from: seconds.optional(),
    to: seconds.optional(),
    frames: z.number().int().min(1).max(64).optional(),
    /** exact: the frame shown at each instant; fast: nearby keyframes; auto (default): fast for long clips. */
    sampling: z.enum(['auto', 'exact', 'fast']).optional(),
  }),
]);
export type ChatPart = z.infer<typeof ChatPartSchema>;
export const ChatMessageSchema = z.strictObject({
  role: z.enum(['system', 'user', 'assistant']),
  parts: z.array(ChatPartSchema).max(64),
});
export const ChatEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('token'), text: z.string() }),
  z.object({
    type: z.literal('done'),
    text: z.string(),
    /** stop: the model ended its answer, or a stop sequence was met; length: max tokens reached. */
    finishReason: z.enum(['stop', 'length']),
    model: z.string(),
    usage: z.object({
      /** The whole conversation's tokens, visual tokens included. */
      promptTokens: z.number().int(),
      /** Of those, how many an earlier request had already run (the model's cache was reused). */
      cachedTokens: z.number().int(),
      completionTokens: z.number().int(),
    }),
  }),
]);
export type ChatEvent = z.infer<typeof ChatEventSchema>;

// ─── Methods ────────────────────────────────────────────────────────────────────────────────────────

const empty = z.strictObject({});
const ok = z.object({ ok: z.literal(true) });

/** Request/response methods. */
export const calls = {
  listVideos: { input: empty, output: z.object({ videos: z.array(VideoSchema) }) },
  /** What the user must be told about this run (e.g. a damaged library file was moved aside). */
  notices: { input: empty, output: z.object({ notices: z.array(z.string()) }) },
  /** Add files, or every video in folders (`recursive`: sub-folders too). Unreadable files are added with their error. */
  addPaths: {
    input: z.strictObject({
      paths: z.array(z.string().min(1).max(4096)).min(1).max(1000),
      recursive: z.boolean().default(false),
    }),
    output: z.object({
      added: z.array(VideoSchema),
      skipped: z.array(z.object({ path: z.string(), reason: z.string() })),
    }),
  },
  removeVideo: { input: z.strictObject({ videoId: id }), output: ok },
  /**
   * Path completion for the Add field: the folders and video files (by extension) in the folder a typed path
   * prefix names, whose names start with its last part (`~` is the home folder). Hidden entries only when the
   * part starts with a dot; at most `limit`, folders first. A folder that cannot be read answers none.
   */
  completePath: {
    input: z.strictObject({
      prefix: z.string().min(1).max(4096),
      limit: z.number().int().min(1).max(200).default(50),
    }),
    output: z.object({
      /** The folder listed (absolute). */
      folder: z.string(),
      entries: z.array(
        /** `path` is absolute; a folder's ends with the separator, ready to type on. */
        z.object({ path: z.string(), name: z.string(), kind: z.enum(['folder', 'video']) }),
      ),
      /** More entries matched than `limit`. */
      truncated: z.boolean(),
    }),
  },
  /** Make a short clip of shapes with ffmpeg (nothing is downloaded) and add it. */
  makeSample: { input: empty, output: z.object({ video: VideoSchema }) },
  thumbnails: {
    input: z.strictObject({
      videoId: id,
      count: z.number().int().min(1).max(120),
      width: z.number().int().min(16).max(640),
    }),
    output: z.object({ thumbnails: z.array(FrameRefSchema) }),
  },
  /** Sample the clip's frames and start a conversation about them (follow-ups reuse the model's cache). */
  openConversation: {
    input: z.strictObject({ videoId: id, from: seconds, to: seconds }),
    output: z.object({
      conversationId: id,
      range: z.object({ from: seconds, to: seconds }),
      frames: z.array(FrameRefSchema),
    }),
  },
  stop: { input: z.strictObject({ conversationId: id }), output: ok },
  history: {
    input: z.strictObject({ videoId: id }),
    output: z.object({ conversations: z.array(ConversationRecordSchema) }),
  },
  /** Thumbnails of the given instants, for answers in the history. */
  frameThumbs: {
    input: z.strictObject({ videoId: id, times: z.array(seconds).max(64) }),
    output: z.object({ frames: z.array(FrameRefSchema) }),
  },
  modelInfo: { input: empty, output: ModelInfoSchema },
  getSettings: { input: empty, output: SettingsSchema },
  setSettings: { input: SettingsSchema.omit({ modelPack: true }).partial().strict(), output: SettingsSchema },
  privacyInfo: {
    input: empty,
    output: z.object({
      dataDir: z.string(),
      /** The app's log (send it with a bug report). */
      logFile: z.string(),
      cacheBytes: z.number(),
      conversations: z.number().int(),
    }),
  },
  clearHistory: { input: empty, output: ok },
  clearCaches: { input: empty, output: ok },

  // Model packs
  /** The built-in pack (always) and those imported into the data folder, with the providers this machine has. */
  listModels: {
    input: empty,
    output: z.object({ packs: z.array(PackInfoSchema), providers: z.array(z.string()) }),
  },
  /** Validate a pack folder (every hash), then copy it (or link it) into the data folder's `models/`. */
  importModel: {
    input: z.strictObject({ path: z.string().min(1).max(4096), link: z.boolean().default(false) }),
    output: z.object({ pack: PackInfoSchema }),
  },
  /** Check every file of a pack against the sha256 in its manifest. */
  verifyModel: {
    input: z.strictObject({ dir: z.string().min(1).max(4096) }),
    output: z.object({ files: z.number().int(), bytes: z.number() }),
  },
  /** Load another pack (after a memory check) and keep using it after restarts. */
  selectModel: { input: z.strictObject({ dir: z.string().min(1).max(4096) }), output: ModelInfoSchema },

  // Batches
  /** Answer prompts about every clip of a folder, in the background; questions asked meanwhile go first. */
  startBatch: {
    input: z.strictObject({
      folder: z.string().trim().min(1).max(4096),
      recursive: z.boolean().default(true),
      prompts: z.array(z.string().trim().min(1).max(2000)).max(10).default([]),
      /** Also answer the first prompt per segment of this many seconds. */
      segmentSec: z.number().positive().max(86_400).nullable().default(null),
    }),
    output: z.object({ batchId: id }),
  },
  listBatches: { input: empty, output: z.object({ batches: z.array(BatchSummarySchema) }) },
  batchResults: {
    input: z.strictObject({ batchId: id }),
    output: z.object({ batch: BatchDetailSchema, results: z.array(BatchResultSchema) }),
  },
  pauseBatch: { input: z.strictObject({ batchId: id }), output: ok },
  /** Resume a paused batch, or continue an interrupted or cancelled one from its results file. */
  resumeBatch: { input: z.strictObject({ batchId: id }), output: ok },
  cancelBatch: { input: z.strictObject({ batchId: id }), output: ok },
  exportBatch: {
    input: z.strictObject({ batchId: id, format: z.enum(['jsonl', 'md', 'csv']) }),
    output: z.object({ fileName: z.string(), mimeType: z.string(), text: z.string() }),
  },
  /** The latest batch answers about one video (its summary, and segment answers for the timeline). */
  videoSummaries: {
    input: z.strictObject({ videoId: id }),
    output: z.object({ results: z.array(BatchResultSchema) }),
  },

  // Moment search (issue 14)
  /** Past moment searches of a video, newest first. */
  findHistory: {
    input: z.strictObject({ videoId: id }),
    output: z.object({ searches: z.array(FindSearchSchema) }),
  },
  /** A folder search's results file, as JSONL or CSV (one row per interval). */
  exportFolderFind: {
    input: folderFindInput.extend({ format: z.enum(['jsonl', 'csv']) }),
    output: z.object({ fileName: z.string(), mimeType: z.string(), text: z.string() }),
  },
} as const;

/** Methods that answer with a stream of events (SSE over HTTP, event channel over IPC). */
export const streams = {
  /** Ask in an open conversation: tokens as they decode, then done (or cancelled). */
  ask: {
    input: z.strictObject({ conversationId: id, question: z.string().trim().min(1).max(2000) }),
    event: AskEventSchema,
  },
  /** Where to play a video from; converts first (with progress) when the codec cannot be played. */
  playback: {
    input: z.strictObject({ videoId: id, forceProxy: z.boolean().default(false) }),
    event: PlaybackEventSchema,
  },
  /** A batch's progress: a snapshot, then clip and overall changes until it stops (end). */
  batchEvents: { input: z.strictObject({ batchId: id }), event: BatchEventSchema },
  /** Moment search in one video: per-instant scores as they come, then the intervals (saved in its history). */
  find: {
    input: z.strictObject({
      videoId: id,
      query: findQuery,
      from: seconds.optional(),
      to: seconds.optional(),
      step: findStep,
    }),
    event: FindEventSchema,
  },
  /** Moment search across a folder, resumable: which clips show the query, with their intervals. */
  findFolder: { input: folderFindInput, event: FolderFindEventSchema },
  /**
   * A whole conversation about one image or video, as other tools send it (the OpenAI-compatible routes map to
   * this): answered statelessly, reusing the model's cache of an earlier request that it continues.
   */
  chat: {
    input: z.strictObject({
      /** A model name from listModels (default: the model in use). */
      model: z.string().max(200).optional(),
      messages: z.array(ChatMessageSchema).min(1).max(200),
      maxTokens: z.number().int().min(1).max(8192).optional(),
      temperature: z.number().min(0).max(2).optional(),
      topP: z.number().gt(0).max(1).optional(),
      seed: z.number().int().optional(),
      stop: z.array(z.string().min(1).max(200)).max(4).default([]),
    }),
    event: ChatEventSchema,
  },
} as const;

export type CallName = keyof typeof calls;
export type StreamName = keyof typeof streams;
export type MethodName = CallName | StreamName;
/** What a caller passes (defaults may be left out). */
export type CallInput<M extends CallName> = z.input<(typeof calls)[M]['input']>;
export type CallOutput<M extends CallName> = z.infer<(typeof calls)[M]['output']>;
export type StreamInput<M extends StreamName> = z.input<(typeof streams)[M]['input']>;
export type StreamEvent<M extends StreamName> = z.infer<(typeof streams)[M]['event']>;
/** What the implementation receives: validated, defaults applied. */
export type ParsedCallInput<M extends CallName> = z.infer<(typeof calls)[M]['input']>;
export type ParsedStreamInput<M extends StreamName> = z.infer<(typeof streams)[M]['input']>;

/** The API as main implements it. Streams are async iterators that end when the AbortSignal fires. */
export type LoupeApi = {
  [M in CallName]: (input: ParsedCallInput<M>) => Promise<CallOutput<M>>;
} & {
  [M in StreamName]: (input: ParsedStreamInput<M>, signal: AbortSignal) => AsyncIterable<StreamEvent<M>>;
};

/** The object preload exposes on `window.loupe` (callback-based: async iterators cannot cross contextBridge). */
export interface LoupeBridge {
  call(method: CallName, input: unknown): Promise<Envelope<unknown>>;
  /** Starts a stream; returns a function that stops it. `onMessage` gets events, then one end or error. */
  stream(method: StreamName, input: unknown, onMessage: (message: StreamMessage) => void): () => void;
  /** Electron only: the system's file or folder picker; the chosen paths ([] when cancelled). */
  pickPaths?(kind: 'files' | 'folder'): Promise<string[]>;
  /** Electron only: the path of a dropped file ('' for one that has none). */
  pathForFile?(file: Blob): string;
}

/** How a call's result crosses a boundary: never a thrown exception, always data. */
export type Envelope<T> = { ok: true; value: T } | { ok: false; error: SerializedError };
export type StreamMessage =
  { kind: 'event'; event: unknown } | { kind: 'end' } | { kind: 'error'; error: SerializedError };

export function isCallName(name: string): name is CallName {
  return Object.hasOwn(calls, name);
}
export function isStreamName(name: string): name is StreamName {
  return Object.hasOwn(streams, name);
}

function badRequest(method: string, error: z.ZodError): LoupeError {
  const issues = error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`);
  return new LoupeError('BAD_REQUEST', `Invalid request to ${method}: ${issues[0]}`, { method, issues });
}

/** Validate an incoming payload; throws BAD_REQUEST naming the first problem. */
export function parseCallInput<M extends CallName>(method: M, input: unknown): ParsedCallInput<M> {
  const result = calls[method].input.safeParse(input ?? {});
  if (!result.success) throw badRequest(method, result.error);
  return result.data as ParsedCallInput<M>;
}

export function parseStreamInput<M extends StreamName>(method: M, input: unknown): ParsedStreamInput<M> {
  const result = streams[method].input.safeParse(input ?? {});
  if (!result.success) throw badRequest(method, result.error);
  return result.data as ParsedStreamInput<M>;
}

/** Check what main is about to send: a mismatch is a bug in main, reported as INTERNAL rather than sent. */
export function checkCallOutput<M extends CallName>(method: M, output: unknown): CallOutput<M> {
  const result = calls[method].output.safeParse(output);
  if (!result.success)
    throw new LoupeError(
      'INTERNAL',
      `${method} produced an invalid answer: ${result.error.issues[0]?.message}`,
      {
        method,
        issues: result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`),
      },
    );
  return result.data as CallOutput<M>;
}

export function checkStreamEvent<M extends StreamName>(method: M, event: unknown): StreamEvent<M> {
  const result = streams[method].event.safeParse(event);
  if (!result.success)
    throw new LoupeError(
      'INTERNAL',
      `${method} produced an invalid event: ${result.error.issues[0]?.message}`,
      { method },
    );
  return result.data as StreamEvent<M>;
}

// ─── Dispatch, shared by both transports ────────────────────────────────────────────────────────────

/** Run one call: validate the input, call the implementation, validate the output; errors become data. */
export async function dispatchCall(
  api: LoupeApi,
  method: string,
  input: unknown,
): Promise<Envelope<unknown>> {
  try {
    if (!isCallName(method)) throw new LoupeError('BAD_REQUEST', `Unknown method "${method}".`, { method });
    const parsed = parseCallInput(method, input);
    const fn = api[method] as (input: unknown) => Promise<unknown>;
    return { ok: true, value: checkCallOutput(method, await fn.call(api, parsed)) };
  } catch (error) {
    return { ok: false, error: LoupeError.from(error).toJSON() };
  }
}

/** Run one stream, handing each validated event to `send`; always ends with one end or error message. */
export async function dispatchStream(
  api: LoupeApi,
  method: string,
  input: unknown,
  signal: AbortSignal,
  send: (message: StreamMessage) => void,
): Promise<void> {
  try {
    if (!isStreamName(method)) throw new LoupeError('BAD_REQUEST', `Unknown stream "${method}".`, { method });
    const parsed = parseStreamInput(method, input);
    const fn = api[method] as (input: unknown, signal: AbortSignal) => AsyncIterable<unknown>;
    for await (const event of fn.call(api, parsed, signal))
      send({ kind: 'event', event: checkStreamEvent(method, event) });
    send({ kind: 'end' });
  } catch (error) {
    send({ kind: 'error', error: LoupeError.from(error).toJSON() });
  }
}
