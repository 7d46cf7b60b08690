/**
 * The batch engine: clips × prompts (and, in segment mode, the first prompt per segment) through one
 * loaded model, as a stream of typed events.
 *
 * Two stages, overlapped:
 *   prepare  probe + sample frames + vision-encode the whole clip (the extractor, which also fills the
 *            feature cache); runs up to `lookahead` (2) clips ahead of the answer stage.
 *   answer   one fresh conversation per prompt over the prepared frames; segments are extracted one
 *            ahead of the segment being answered.
 * At most 1 + lookahead clips' features are in memory. Each record is handed to `onRecord` (the journal)
 * and awaited before the clip is reported done, so "done" always means "on disk". One failing clip is
 * recorded with its error and the batch goes on; cancelling stops every stage, waits for their child
 * processes to exit, and reports the unfinished clips as cancelled (not failed, and not recorded).
 */
import { LoupeError, throwIfAborted } from '../errors.ts';
import { PushQueue } from '../push-queue.ts';
import type { ModelEngine } from '../model/engine.ts';
import type { ClipFeatureExtractor, ClipFeatures, SamplingMode } from '../qa/clip-features.ts';
import type { BatchInput } from './discover.ts';
import { ModelGate, PauseSwitch, type BackgroundLease } from './gate.ts';
import { ProgressTracker, type BatchEvent, type ClipStatus } from './progress.ts';
import {
  RECORD_VERSION,
  failedSegments,
  recordKey,
  toRecordError,
  type RecordError,
  type ResultRecord,
  type SegmentAnswer,
} from './record.ts';
import { segmentRanges } from './segments.ts';

export const DEFAULT_PROMPT = 'Summarize the video.';

/** What the batch needs of the model and of the frame stage (the real Engine and extractor satisfy them). */
export type BatchModel = Pick<ModelEngine, 'manifest' | 'provider' | 'maxFrames' | 'startConversation'>;
export type BatchExtractor = Pick<ClipFeatureExtractor, 'extract'>;

export interface BatchSpec {
  /** Asked of every clip, in order (default: "Summarize the video."). */
  prompts?: readonly string[];
  /** Segment mode: also answer the first prompt for each window of this many seconds. */
  segmentSec?: number;
  /** Frames per clip (and per segment); default: the pack's. */
  frames?: number;
  /** How frames are sampled (default fast: the keyframe nearest each segment's middle, inside it). */
  mode?: SamplingMode;
  maxNewTokens?: number;
}

export interface RunBatchOptions extends BatchSpec {
  signal?: AbortSignal;
  pause?: PauseSwitch;
  /** Shared with the app's interactive questions, which then go first. */
  gate?: ModelGate;
  /** Clips prepared ahead of the one being answered (default 2; 0 = one clip at a time). */
  lookahead?: number;
  /** Records from an interrupted run (the journal): their (clip, prompt) pairs are not done again. */
  previous?: readonly ResultRecord[];
  /** Persist a record; awaited before the clip is reported done. A throw here stops the batch. */
  onRecord?: (record: ResultRecord) => Promise<void>;
}

interface ClipJob {
  index: number;
  item: BatchInput;
  /** Prompts still to answer, with their index in the batch's prompt list. */
  pending: { prompt: string; promptIndex: number }[];
}

type Prepared = { ok: true; clip: ClipFeatures; ms: number } | { ok: false; error: unknown; ms: number };

/** Validate a spec against the model before any work starts. */
export function checkSpec(
  model: BatchModel,
  spec: BatchSpec,
): Required<Pick<BatchSpec, 'prompts'>> & BatchSpec {
  const prompts = (spec.prompts?.length ? spec.prompts : [DEFAULT_PROMPT]).map((p) => p.trim());
  if (prompts.some((p) => !p)) throw new LoupeError('USAGE', 'A prompt is empty.');
  if (new Set(prompts).size !== prompts.length)
    throw new LoupeError('USAGE', 'The same prompt is given twice.');
  const frames = spec.frames ?? model.manifest.defaults.frames;
  const fits = model.maxFrames(spec.maxNewTokens);
  if (frames > fits)
    throw new LoupeError(
      'USAGE',
      `${frames} frames do not fit the model's context: use --frames ${fits} or fewer.`,
      {
        frames,
        maxFrames: fits,
      },
    );
  if (spec.segmentSec !== undefined && !(spec.segmentSec > 0))
    throw new LoupeError('USAGE', `The segment length must be positive (got ${spec.segmentSec}).`);
  return { ...spec, prompts };
}

/**
 * Run a batch; iterate the events to drive it. Cancelling (the signal, or breaking out of the loop) ends the
 * stream normally after every unfinished clip has been reported cancelled; only a failure to persist a
 * record (onRecord) is thrown.
 */
export async function* runBatch(
  deps: { model: BatchModel; extractor: BatchExtractor },
  items: readonly BatchInput[],
  options: RunBatchOptions = {},
): AsyncGenerator<BatchEvent> {
  const spec = checkSpec(deps.model, options);
  const { model, extractor } = deps;
  const gate = options.gate ?? new ModelGate();
  const pause = options.pause ?? new PauseSwitch();
  const lookahead = Math.max(0, Math.floor(options.lookahead ?? 2));
  const modelName = `${model.manifest.name}@${model.manifest.version}`;
  const provider = model.provider.used;
  const maxNewTokens = spec.maxNewTokens ?? model.manifest.defaults.maxNewTokens;

  // Stop on the caller's signal, or when the consumer stops iterating.
  const controller = new AbortController();
  const signal = controller.signal;
  const onOuterAbort = () => controller.abort();
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (options.signal?.aborted) controller.abort();

  // Events flow through a queue: the stages push, this generator yields.
  const queue = new PushQueue<BatchEvent>();
  const push = (event: BatchEvent | null) => {
    if (event) queue.push(event);
  };

  const tracker = new ProgressTracker(items);
  const setStatus = (index: number, status: ClipStatus) => {
    const event = tracker.update(index, status);
    if (!event) return;
    push(event);
    if (status.state !== 'running') push(tracker.overall());
  };
  const offPause = pause.onChange(() => {
    tracker.paused = pause.paused;
    push(tracker.overall());
  });

  /** Wait for the model's background lane; while an interactive question holds it, say the batch is yielding. */
  let yieldingWaits = 0;
  const stepAside = async <T>(wait: () => Promise<T>): Promise<T> => {
    const yielding = gate.interactiveBusy;
    if (yielding && yieldingWaits++ === 0) {
      tracker.yielding = true;
      push(tracker.overall());
    }
    try {
      return await wait();
    } finally {
      if (yielding && --yieldingWaits === 0) {
        tracker.yielding = false;
        push(tracker.overall());
      }
    }
  };

  // 1. Resume: what the journal already holds.
  const previousByKey = new Map((options.previous ?? []).map((r) => [recordKey(r), r]));
  const jobs: ClipJob[] = [];
  items.forEach((item, index) => {
    const pending = spec.prompts
      .map((prompt, promptIndex) => ({ prompt, promptIndex }))
      .filter(({ prompt }) => !previousByKey.has(recordKey({ relPath: item.relPath, prompt })));
    if (pending.length) jobs.push({ index, item, pending });
    else {
      const records = spec.prompts.map((prompt) =>
        previousByKey.get(recordKey({ relPath: item.relPath, prompt }))!,
      );
      setStatus(index, finalStatus(records, true));
    }
  });
  push(tracker.overall());

  // 2. The prepare stage: whole-clip frames, ahead of the answer stage.
  const prepare = async (job: ClipJob): Promise<Prepared> => {
    const started = performance.now();
    let lease: BackgroundLease | null = null;
    try {
      lease = await stepAside(() => gate.background(signal, pause));
      setStatus(job.index, { state: 'running', stage: 'preparing', fraction: 0 });
      const clip = await extractor.extract({
        path: job.item.path,
        frames: spec.frames,
        mode: spec.mode ?? 'fast',
        signal,
      });
      return { ok: true, clip, ms: performance.now() - started };
    } catch (error) {
      return { ok: false, error, ms: performance.now() - started };
    } finally {
      lease?.release();
    }
  };

  /** Generate one answer, stepping aside for interactive questions and pauses between tokens. */
  const generate = async (
    lease: BackgroundLease,
    clip: Pick<ClipFeatures, 'visual'>,
    prompt: string,
    onToken: (tokens: number) => void,
  ): Promise<{ text: string; tokens: number }> => {
    const frames = clip.visual.frames.length;
    if (clip.visual.kind === 'frames' && frames > model.maxFrames(maxNewTokens))
      throw new LoupeError('CONTEXT_OVERFLOW', `${frames} frames do not fit the model's context.`, {
        frames,
      });
    const conversation = model.startConversation(clip.visual);
    try {
      let tokens = 0;
      for await (const event of conversation.ask(prompt, { maxNewTokens, signal })) {
        if (event.type === 'done') return { text: event.text.trim(), tokens: event.tokens };
        onToken(++tokens);
        if (gate.interactiveBusy || pause.paused) await stepAside(() => lease.checkpoint(signal));
      }
      throw new LoupeError('MODEL_RUNTIME', 'The model stopped without finishing its answer.');
    } finally {
      conversation.close();
    }
  };

  // 3. The answer stage for one clip.
  const answerClip = async (job: ClipJob, prepared: Prepared): Promise<void> => {
    const { item, index } = job;
    const base = {
      v: RECORD_VERSION,
      path: item.path,
      relPath: item.relPath,
      model: modelName,
      provider,
    } as const;
    // A clip whose whole-clip frames could not be read (a damaged stretch) still has its segments tried.
    const unreadable = prepared.ok ? null : LoupeError.from(prepared.error);
    const knownDuration = unreadable?.details.durationSec;
    const segmentsStillPossible =
      typeof knownDuration === 'number' && spec.segmentSec !== undefined && job.pending[0]?.promptIndex === 0;
    if (!prepared.ok && !segmentsStillPossible) {
      if (LoupeError.from(prepared.error).code === 'CANCELLED') throw prepared.error;
      const error = toRecordError(prepared.error);
      for (const { prompt, promptIndex } of job.pending) {
        await emitRecord({
          ...base,
          prompt,
          promptIndex,
          durationSec: null,
          answer: null,
          frames: [],
          timings: { prepareMs: prepared.ms, answerMs: 0, tokens: 0 },
          error,
          finishedAt: new Date().toISOString(),
        });
      }
      setStatus(index, { state: 'failed', error });
      return;
    }

    if (unreadable?.code === 'CANCELLED') throw unreadable;
    const clip = prepared.ok ? prepared.clip : null;
    const durationSec = clip ? clip.info.durationSec : (knownDuration as number);
    const segments =
      spec.segmentSec && (clip ? clip.info.kind === 'video' : true) && job.pending[0]?.promptIndex === 0
        ? segmentRanges(durationSec, spec.segmentSec)
        : [];
    const steps = job.pending.length + segments.length;
    let stepsDone = 0;
    const PREPARE_SHARE = 0.2;
    const progress = (tokens = 0) =>
      setStatus(index, {
        state: 'running',
        stage: 'answering',
        fraction:
          PREPARE_SHARE + ((1 - PREPARE_SHARE) * (stepsDone + Math.min(0.95, tokens / maxNewTokens))) / steps,
      });
    progress();

    const records: ResultRecord[] = [];
    const lease = await stepAside(() => gate.background(signal, pause));
    try {
      for (const { prompt, promptIndex } of job.pending) {
        await stepAside(() => lease.checkpoint(signal));
        const started = performance.now();
        let answer: string | null = null;
        let tokens = 0;
        let error: RecordError | null = null;
        try {
          if (!clip) throw prepared.ok ? new LoupeError('INTERNAL', 'no frames') : prepared.error;
          ({ text: answer, tokens } = await generate(lease, clip, prompt, (n) => progress(n)));
        } catch (e) {
          if (LoupeError.from(e).code === 'CANCELLED') throw e;
          error = toRecordError(e);
        }
        stepsDone++;
        progress();
        let segmentAnswers: SegmentAnswer[] | undefined;
        if (promptIndex === 0 && spec.segmentSec !== undefined) {
          segmentAnswers = await answerSegments(lease, job, segments, prompt, () => {
            stepsDone++;
            progress();
          });
        }
        const record: ResultRecord = {
          ...base,
          prompt,
          promptIndex,
          durationSec,
          answer,
          frames: clip ? clip.frames.map((f) => roundMs(f.timeSec)) : [],
          ...(segmentAnswers ? { segments: segmentAnswers } : {}),
          timings: { prepareMs: prepared.ms, answerMs: performance.now() - started, tokens },
          error,
          finishedAt: new Date().toISOString(),
        };
        await emitRecord(record);
        records.push(record);
      }
    } finally {
      lease.release();
    }
    setStatus(index, finalStatus(records, false));
  };

  /** The first prompt per segment; each segment's frames are extracted while the previous one is answered. */
  const answerSegments = async (
    lease: BackgroundLease,
    job: ClipJob,
    ranges: { from: number; to: number }[],
    prompt: string,
    onStep: () => void,
  ): Promise<SegmentAnswer[]> => {
    const extract = (k: number) =>
      extractor
        .extract({
          path: job.item.path,
          from: ranges[k]!.from,
          to: ranges[k]!.to,
          frames: spec.frames,
          mode: spec.mode ?? 'fast',
          signal,
        })
        .then(
          (clip) => ({ ok: true as const, clip }),
          (error: unknown) => ({ ok: false as const, error }),
        );
    const out: SegmentAnswer[] = [];
    let next = ranges.length ? extract(0) : null;
    try {
      for (let k = 0; k < ranges.length; k++) {
        const current = await next!;
        next = k + 1 < ranges.length ? extract(k + 1) : null;
        const { from, to } = ranges[k]!;
        if (!current.ok) {
          if (LoupeError.from(current.error).code === 'CANCELLED') throw current.error;
          out.push({ from, to, answer: null, frames: [], error: toRecordError(current.error) });
        } else {
          await stepAside(() => lease.checkpoint(signal));
          try {
            const { text } = await generate(lease, current.clip, prompt, () => undefined);
            out.push({
              from,
              to,
              answer: text,
              frames: current.clip.frames.map((f) => roundMs(f.timeSec)),
              error: null,
            });
          } catch (e) {
            if (LoupeError.from(e).code === 'CANCELLED') throw e;
            out.push({ from, to, answer: null, frames: [], error: toRecordError(e) });
          }
        }
        onStep();
      }
    } finally {
      await next; // never leave a segment's ffmpeg running behind us
    }
    return out;
  };

  const emitRecord = async (record: ResultRecord) => {
    throwIfAborted(signal); // a cancelled batch records nothing more
    await options.onRecord?.(record);
    push({ type: 'record', record });
  };

  // 4. Drive: a window of prepares runs ahead of the answer stage.
  const inFlight = new Map<number, Promise<Prepared>>();
  let fatal: unknown = null;
  const drive = async () => {
    try {
      for (let k = 0; k < jobs.length; k++) {
        for (let j = k; j <= Math.min(k + lookahead, jobs.length - 1); j++)
          if (!inFlight.has(j)) inFlight.set(j, prepare(jobs[j]!));
        const prepared = await inFlight.get(k)!;
        inFlight.delete(k);
        throwIfAborted(signal);
        await answerClip(jobs[k]!, prepared);
      }
    } catch (error) {
      controller.abort(); // stop the prepares still running
      if (LoupeError.from(error).code !== 'CANCELLED') fatal = error;
    } finally {
      await Promise.allSettled(inFlight.values()); // every child process has exited
      if (signal.aborted) for (const job of jobs) setStatus(job.index, { state: 'cancelled' });
      push(tracker.overall());
      queue.close();
    }
  };

  const driving = drive();
  try {
    yield* queue;
    if (fatal) throw fatal; // e.g. the journal's disk is full; a cancelled batch just ends (its clips say so)
  } finally {
    controller.abort(); // a consumer that stopped early cancels the batch
    await driving;
    offPause();
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/**
 * A clip fails when one of its answers failed; segments that could not be read are recorded with their
 * errors while the clip's other answers land, so the clip is done, partly failed (failedSegments).
 */
function finalStatus(records: readonly ResultRecord[], resumed: boolean): ClipStatus {
  const answers = records.reduce((n, r) => n + 1 + (r.segments?.length ?? 0), 0);
  const failed = records.reduce((n, r) => n + (r.error ? 1 : 0) + failedSegments(r), 0);
  const firstError =
    records.find((r) => r.error)?.error ??
    records.flatMap((r) => r.segments ?? []).find((s) => s.error)?.error;
  if (failed === answers || (failed && !records.some((r) => r.segments)))
    return { state: 'failed', error: firstError! };
  return { state: 'done', resumed, ...(failed ? { partial: { failed, answers } } : {}) };
}

function roundMs(sec: number): number {
  return Math.round(sec * 1000) / 1000;
}
