/**
 * Moment search in one video: score the instants every `step` seconds of a range with the loaded MLLM
 * (P("yes") to a presence question, on the image path), then merge the instants that show the query into
 * intervals. Coarse to fine by default: a grid every `coarseStep` seconds first, in one decode pass; then, at
 * the full step, only where two neighbouring coarse scores lie on either side of the threshold or near it (and
 * the range's tail); the instants in between take the line between their coarse neighbours. `full` scores every
 * instant. Scores come from batched decoder runs (`promptLogits`: no conversation per instant). Vision features
 * go through the shared frame-feature cache, so another query on the same video and step decodes and encodes
 * only what it has not seen.
 */
import { createHash } from 'node:crypto';
import { frameKey, type FeatureCache, type FileIdentity, type FrameKey } from '../cache/feature-cache.ts';
import { throwIfAborted } from '../errors.ts';
import type { DenseFrame, DenseOptions } from '../media/dense.ts';
import type { MediaInfo } from '../media/probe.ts';
import type { ModelEngine } from '../model/engine.ts';
import { frameFormat } from '../model/pack.ts';
import type { ProviderReport } from '../model/ort.ts';
import type { Tokens2D } from '../model/tensor.ts';
import { fileIdentity, preprocessingKey } from '../qa/clip-features.ts';
import {
  DEFAULT_THRESHOLD,
  fillBetween,
  refinementRuns,
  toIntervals,
  type InstantScore,
  type Interval,
} from './intervals.ts';
import { answerIds, presenceQuestion, yesProbability } from './question.ts';

/** The part of the engine moment search uses: prompt logits in batches, no conversation. */
export type FindModel = Pick<
  ModelEngine,
  'manifest' | 'pack' | 'prompt' | 'provider' | 'encodeImages' | 'promptLogits'
>;

/** The media operations a scan needs; media/ implements them with ffmpeg. */
export interface DenseMediaPort {
  probe(path: string, signal?: AbortSignal): Promise<MediaInfo>;
  hashSampledBytes(path: string): Promise<string>;
  clampRange(info: MediaInfo, from?: number, to?: number): { from: number; to: number };
  denseTicks(from: number, to: number, step: number): number[];
  decodeDense(path: string, options: DenseOptions): AsyncIterable<DenseFrame>;
}

export interface FindRequest {
  path: string;
  query: string;
  from?: number;
  to?: number;
  /** Seconds between scored instants (default 0.5). */
  step?: number;
  threshold?: number;
  /** Score every instant (default: a coarse grid first, then the full step only where it matters). */
  full?: boolean;
  /** Seconds between the coarse grid's instants (default 2; a step at least as long scans the full grid). */
  coarseStep?: number;
  /**
   * Coarse neighbours within this distance of the threshold have the instants between them scored too, even
   * on the same side of it (default 0: only where the threshold is crossed; see docs/find.md).
   */
  refineMargin?: number;
  /**
   * What the model sees of each instant: `pooled`, the video path's pooled frame tokens (default: half as many
   * tokens, a shorter prompt to score, and the same accuracy on test/eval/find-eval.ts), or `image`, every
   * token of the still.
   */
  tokens?: FindTokens;
  signal?: AbortSignal;
}

export interface FindResult {
  query: string;
  question: string;
  range: { from: number; to: number };
  step: number;
  threshold: number;
  /** How the instants were scored: every one, or a coarse grid refined where the threshold is crossed or near. */
  scan: { kind: 'full' } | { kind: 'coarse-to-fine'; coarseStep: number };
  /** What the model saw of each instant (FindRequest.tokens). */
  tokens: FindTokens;
  intervals: Interval[];
  /** One per instant: the model's score, or for instants a coarse scan skipped, the line between its neighbours. */
  scores: InstantScore[];
  /** Instants in the range. */
  frames: number;
  /** Of those, instants the model scored (all of them in a full scan). */
  scoredFrames: number;
  /** Instants whose score (this process remembers them) or features came from a cache; frames decoded and encoded for the rest. */
  cachedFrames: number;
  decodedFrames: number;
  encodedFrames: number;
  provider: ProviderReport;
  timings: { probeMs: number; decodeMs: number; encodeMs: number; scoreMs: number; totalMs: number };
}

export type FindEvent =
  | { type: 'start'; question: string; range: { from: number; to: number }; step: number; total: number }
  /** Scores of instants finished since the last event (in time order within the event). */
  | { type: 'progress'; done: number; total: number; scores: InstantScore[] }
  | { type: 'done'; result: FindResult };

export type FindTokens = 'image' | 'pooled';
export const DEFAULT_STEP = 0.5;
export const DEFAULT_COARSE_STEP = 2;
/** Coarse scores this close to the threshold get their neighbourhood scored at the full step too (see refineMargin). */
export const DEFAULT_REFINE_MARGIN = 0;
/** Frames encoded (the engine runs its vision graph by 8) and then scored in one decoder run. */
const DECODE_BATCH = 16;
/** Cached features read and scored at a time (memory stays at one batch's features). */
const CACHED_BATCH = 32;

/**
 * Scores already computed in this process, per (instant, question, model): the same search again (a past search
 * re-run, another threshold) reads neither features nor runs the model. Only with a feature cache (--no-cache
 * means every instant is computed); bounded, oldest first out.
 */
const SCORE_MEMO_MAX = 200_000;
const scoreMemo = new Map<string, number>();
const modelIds = new WeakMap<object, string>();
function modelId(model: FindModel): string {
  let id = modelIds.get(model.manifest);
  if (!id) {
    id = createHash('sha256')
      .update(JSON.stringify([model.pack.visionId, model.manifest.files]))
      .digest('hex');
    modelIds.set(model.manifest, id);
  }
  return id;
}
/** Forget remembered scores and probes (Clear caches, Clear history): the next search computes them again. */
export function forgetFindMemos(): void {
  scoreMemo.clear();
  probes.clear();
}

function remember(key: string, score: number): void {
  if (scoreMemo.size >= SCORE_MEMO_MAX) scoreMemo.delete(scoreMemo.keys().next().value!);
  scoreMemo.set(key, score);
}

/** Probe results per file identity (bounded): a second query on the same file spawns no process at all. */
const probes = new Map<string, MediaInfo>();
async function probeOnce(
  media: DenseMediaPort,
  path: string,
  identity: FileIdentity,
  signal?: AbortSignal,
): Promise<MediaInfo> {
  const key = JSON.stringify(identity);
  const known = identity.sizeBytes >= 0 ? probes.get(key) : undefined;
  if (known) return known;
  const info = await media.probe(path, signal);
  if (probes.size >= 256) probes.delete(probes.keys().next().value!);
  probes.set(key, info);
  return info;
}

/** One grid a decode pass reads: instants `from + j·step`, the j-th being the scan's instant `index(j)`. */
interface PassGrid {
  from: number;
  to: number;
  step: number;
  index: (j: number) => number;
}

export async function* findMoments(
  model: FindModel,
  media: DenseMediaPort,
  cache: FeatureCache | null,
  req: FindRequest,
): AsyncGenerator<FindEvent> {
  const started = performance.now();
  const question = presenceQuestion(req.query);
  const ids = answerIds(model.prompt, question); // refuses a pack that cannot answer yes/no, before any work
  const step = req.step ?? DEFAULT_STEP;
  const threshold = req.threshold ?? DEFAULT_THRESHOLD;
  const { signal } = req;
  const identity: FileIdentity = await fileIdentity(req.path, media.hashSampledBytes);
  const info = await probeOnce(media, req.path, identity, signal);
  const range = media.clampRange(info, req.from, req.to);
  const times = media.denseTicks(range.from, range.to, step);
  const n = times.length;
  const v = model.manifest.vision;
  const keys = times.map((requestedSec): FrameKey => ({
    file: identity,
    requestedSec,
    visionId: model.pack.visionId,
    preprocessing: preprocessingKey(v, 'dense-v2'),
  }));
  const tokens = req.tokens ?? 'pooled';
  const memoKeys = cache ? keys.map((key) => `${frameKey(key)}|${question}|${modelId(model)}|${tokens}`) : [];
  /** Coarse instants are every `stride`-th; 1 scans the full grid. */
  const stride = req.full ? 1 : Math.max(1, Math.round((req.coarseStep ?? DEFAULT_COARSE_STEP) / step));
  yield { type: 'start', question, range, step, total: n };

  /** Model scores per instant (null: not scored, filled in at the end when no refinement asked for it). */
  const scores: (number | null)[] = times.map(() => null);
  const timings = { probeMs: performance.now() - started, decodeMs: 0, encodeMs: 0, scoreMs: 0, totalMs: 0 };
  let decodedFrames = 0;
  let encodedFrames = 0;
  let cachedFrames = 0;
  let done = 0;

  /** Features waiting to be scored, each with the instants it shows; scored in one batched run. */
  let waiting: { features: Tokens2D; ks: number[] }[] = [];
  const flush = async (): Promise<InstantScore[]> => {
    if (!waiting.length) return [];
    const batch = waiting;
    waiting = [];
    const t = performance.now();
    const logits = await model.promptLogits(
      batch.map((w) => ({ kind: tokens === 'image' ? 'image' : 'frames', frames: [w.features] })),
      question,
      signal,
    );
    timings.scoreMs += performance.now() - t;
    const out: InstantScore[] = [];
    batch.forEach((w, i) => {
      const s = yesProbability(logits[i]!, ids);
      for (const k of w.ks) {
        if (scores[k] !== null) continue;
        scores[k] = s;
        if (cache) remember(memoKeys[k]!, s);
        out.push({ t: times[k]!, score: round(s) });
        done++;
      }
    });
    return out;
  };
  const progress = (list: InstantScore[]): FindEvent => ({
    type: 'progress',
    done,
    total: n,
    scores: list.sort((a, b) => a.t - b.t),
  });

  /**
   * Scores the instants `ks` (ascending) that have none yet: remembered scores first, then features from the
   * cache, then one decode pass over `grid` for the rest (frames and features streamed, never held: a batch at
   * a time). Yields progress as scores arrive.
   */
  const decodePass = (grid: PassGrid) =>
    media.decodeDense(req.path, {
      ...frameFormat(v),
      from: grid.from,
      to: grid.to,
      step: grid.step,
      info,
      signal,
    });
  /** Whether scoring `ks` needs a decode pass: an instant with no score, no remembered score, no cached features. */
  const needsDecode = async (ks: number[]): Promise<boolean> => {
    for (const k of ks) {
      if (scores[k] !== null || (cache && scoreMemo.has(memoKeys[k]!))) continue;
      if (!cache || !(await cache.has(keys[k]!))) return true;
    }
    return false;
  };

  async function* scoreInstants(
    ks: number[],
    grid: PassGrid,
    /** The pass's decoder, when it was started ahead (it is closed here if it turns out not to be needed). */
    ahead: StartedPass | null = null,
  ): AsyncGenerator<FindEvent> {
    try {
      yield* scoreWith(ks, grid, ahead);
    } finally {
      await ahead?.close();
    }
  }

  async function* scoreWith(
    ks: number[],
    grid: PassGrid,
    ahead: StartedPass | null,
  ): AsyncGenerator<FindEvent> {
    let todo = ks.filter((k) => scores[k] === null);
    const known: InstantScore[] = [];
    if (cache)
      for (const k of todo) {
        const s = scoreMemo.get(memoKeys[k]!);
        if (s === undefined) continue;
        scores[k] = s;
        known.push({ t: times[k]!, score: round(s) });
        done++;
        cachedFrames++;
      }
    if (known.length) yield progress(known);
    todo = todo.filter((k) => scores[k] === null);
    if (!todo.length) return;
    const cached = cache ? await Promise.all(todo.map((k) => cache.has(keys[k]!))) : todo.map(() => false);
    const fromCache = todo.filter((_, i) => cached[i]);
    for (let i = 0; i < fromCache.length; i += CACHED_BATCH) {
      throwIfAborted(signal);
      const group = fromCache.slice(i, i + CACHED_BATCH);
      const hits = await Promise.all(group.map((k) => cache!.get(keys[k]!)));
      group.forEach((k, j) => {
        const hit = hits[j];
        if (!hit) return; // evicted or damaged since: decoded below
        cachedFrames++;
        waiting.push({ features: hit.features, ks: [k] });
      });
      const batch = await flush();
      if (batch.length) yield progress(batch);
    }
    const missing = new Set(todo.filter((k) => scores[k] === null));
    if (!missing.size) return;
    const frames = ahead ? ahead.frames : decodePass(grid);
    type Prepared = { timeSec: number; ks: number[]; pixels: Promise<Float32Array> };
    const encode = async (group: Prepared[]): Promise<InstantScore[]> => {
      const pixels = await Promise.all(group.map((f) => f.pixels));
      const t = performance.now();
      const encoded = await model.encodeImages(pixels, signal);
      timings.encodeMs += performance.now() - t;
      encodedFrames += group.length;
      for (let i = 0; i < group.length; i++) {
        const { timeSec, ks } = group[i]!;
        const features = encoded[i]!;
        if (cache)
          for (const k of ks)
            // A cache that cannot be written costs speed, never the result.
            await cache.put(keys[k]!, { timeSec, features }).catch(() => undefined);
        waiting.push({ features, ks });
      }
      return flush();
    };
    // Three stages side by side: this thread reads ffmpeg's frames, the preparation thread resizes them, and the
    // model's worker encodes and scores the group before.
    let group: Prepared[] = [];
    let inflight: Promise<InstantScore[]> | null = null;
    try {
      let waitStarted = performance.now();
      for await (const frame of frames) {
        timings.decodeMs += performance.now() - waitStarted; // time spent waiting for the decoder
        decodedFrames++;
        const ks = frame.ticks.map(grid.index).filter((k) => k >= 0 && k < n);
        if (ks.some((k) => missing.has(k)))
          // prepared on the preparation thread while this one reads on (a failure is thrown where it is awaited)
          group.push({ timeSec: frame.timeSec, ks, pixels: quiet(frame.prepare()) });
        if (group.length >= DECODE_BATCH) {
          if (inflight) yield progress(await inflight);
          inflight = quiet(encode(group)); // handled where it is awaited, never reported unhandled meanwhile
          group = [];
        }
        waitStarted = performance.now();
      }
      if (inflight) yield progress(await inflight);
      inflight = null;
      if (group.length) yield progress(await encode(group));
    } finally {
      await inflight?.catch(() => undefined); // stopped or failed: the group in flight ends before we return
    }
  }

  // 1. The coarse grid (every instant when stride is 1), in one decode pass.
  const coarse = times.map((_, k) => k).filter((k) => k % stride === 0);
  yield* scoreInstants(coarse, {
    from: range.from,
    to: range.to,
    step: stride * step,
    index: (j) => j * stride,
  });
  // 2. Refinement: the instants between two coarse ones whose scores lie on either side of the threshold or
  //    near it, and those after the last coarse one, scored at the full step; runs close together share a pass.
  if (stride > 1) {
    const passes = refinementRuns(scores, stride, threshold, req.refineMargin ?? DEFAULT_REFINE_MARGIN).map(
      ([a, b]) => ({
        ks: Array.from({ length: b - a + 1 }, (_, i) => a + i),
        grid: {
          from: times[a]!,
          // half a step past the run's last instant: the pass has exactly b - a + 1 instants
          to: Math.min(range.to, times[b]! + step / 2),
          step,
          index: (j: number) => a + j,
        },
      }),
    );
    // The next run's decoder starts while this run is scored: ffmpeg's seek and GOP decode overlap the model.
    let ahead: StartedPass | null = null;
    try {
      for (let r = 0; r < passes.length; r++) {
        const current = ahead;
        ahead = null;
        const next = passes[r + 1];
        if (next && (await needsDecode(next.ks))) ahead = startEarly(decodePass(next.grid));
        yield* scoreInstants(passes[r]!.ks, passes[r]!.grid, current);
      }
    } finally {
      await (ahead as StartedPass | null)?.close();
    }
  }
  // 3. Instants no pass scored lie between two coarse instants on the same side of the threshold, away from
  //    it: they take the straight line between those two scores.
  const scoredFrames = done;
  const complete = fillBetween(scores, stride);
  const filled: InstantScore[] = [];
  complete.forEach((s, k) => {
    if (scores[k] !== null) return;
    scores[k] = s;
    filled.push({ t: times[k]!, score: round(s) });
    done++;
  });
  if (filled.length) yield progress(filled);

  const all: InstantScore[] = times.map((t, k) => ({ t, score: round(scores[k]!) }));
  timings.totalMs = performance.now() - started;
  yield {
    type: 'done',
    result: {
      query: req.query,
      question,
      range,
      step,
      threshold,
      scan: stride > 1 ? { kind: 'coarse-to-fine', coarseStep: stride * step } : { kind: 'full' },
      tokens,
      intervals: toIntervals(all, { step, end: range.to, threshold }),
      scores: all,
      frames: n,
      scoredFrames,
      cachedFrames,
      decodedFrames,
      encodedFrames,
      provider: model.provider,
      timings,
    },
  };
}

const round = (x: number) => Number(x.toFixed(4));

/** A decode pass started before its frames are wanted: ffmpeg runs ahead (as far as its backpressure lets it). */
interface StartedPass {
  frames: AsyncIterable<DenseFrame>;
  /** Ends the pass if its frames were never read (reading them to the end, or leaving early, ends it too). */
  close(): Promise<void>;
}

function startEarly(frames: AsyncIterable<DenseFrame>): StartedPass {
  const pass = frames[Symbol.asyncIterator]();
  const first = quiet(pass.next()); // starts ffmpeg now
  let read = false;
  return {
    frames: {
      async *[Symbol.asyncIterator]() {
        read = true;
        try {
          for (let r = await first; !r.done; r = await pass.next()) yield r.value;
        } finally {
          await pass.return?.(undefined);
        }
      },
    },
    async close() {
      if (read) return;
      read = true;
      await first.catch(() => undefined);
      await pass.return?.(undefined);
    },
  };
}

/** The promise itself, marked as handled: its rejection is thrown where it is awaited, never reported unhandled. */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}
