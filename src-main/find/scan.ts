/**
 * Moment search in one video: score every `step` seconds of a range with the loaded MLLM (P("yes") to a
 * presence question, on the image path), then merge the instants that show the query into intervals.
 * Frames come from one dense decode pass; their vision features go through the shared frame-feature cache,
 * so a second query on the same video, range and step decodes nothing and encodes nothing.
 */
import { createHash } from 'node:crypto';
import { frameKey, type FeatureCache, type FileIdentity, type FrameKey } from '../cache/feature-cache.ts';
import { throwIfAborted } from '../errors.ts';
import type { DenseFrame, DenseOptions } from '../media/dense.ts';
import type { MediaInfo } from '../media/probe.ts';
import type { Conversation, VisualInput } from '../model/engine.ts';
import { frameFormat, type Manifest } from '../model/pack.ts';
import type { ProviderReport } from '../model/ort.ts';
import type { PromptBuilder } from '../model/prompt.ts';
import type { Tokens2D } from '../model/tensor.ts';
import { fileIdentity, preprocessingKey } from '../qa/clip-features.ts';
import { DEFAULT_THRESHOLD, toIntervals, type InstantScore, type Interval } from './intervals.ts';
import { answerIds, presenceQuestion, yesProbability } from './question.ts';

/** The part of the engine moment search uses (Engine satisfies it). */
export interface FindModel {
  readonly manifest: Manifest;
  readonly pack: { readonly visionId: string };
  readonly prompt: PromptBuilder;
  readonly provider: ProviderReport;
  encodeImages(pixels: readonly Float32Array[], signal?: AbortSignal): Promise<Tokens2D[]>;
  startConversation(visual: VisualInput): Conversation;
}

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
  signal?: AbortSignal;
}

export interface FindResult {
  query: string;
  question: string;
  range: { from: number; to: number };
  step: number;
  threshold: number;
  intervals: Interval[];
  scores: InstantScore[];
  /** Instants scored. */
  frames: number;
  /** Of those, instants whose features came from the cache; frames decoded and encoded for the rest. */
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

export const DEFAULT_STEP = 0.5;
/** Frames encoded per vision run (the engine batches by 8 too). */
const BATCH = 8;

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

/** Cached features of a whole scan: per instant, the frame time and features (null: a miss). */
async function cachedTicks(
  cache: FeatureCache | null,
  keys: FrameKey[],
): Promise<({ timeSec: number; features: Tokens2D } | null)[]> {
  if (!cache) return keys.map(() => null);
  return Promise.all(keys.map((key) => cache.get(key)));
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
  const v = model.manifest.vision;
  const keys = times.map((requestedSec): FrameKey => ({
    file: identity,
    requestedSec,
    visionId: model.pack.visionId,
    preprocessing: preprocessingKey(v, 'dense-v2'),
  }));
  const memoKeys = cache ? keys.map((key) => `${frameKey(key)}|${question}|${modelId(model)}`) : [];
  const remembered = cache && memoKeys.every((k) => scoreMemo.has(k));
  const hits = remembered ? [] : await cachedTicks(cache, keys);
  const probeMs = performance.now() - started;
  yield { type: 'start', question, range, step, total: times.length };

  const scores: (number | null)[] = times.map(() => null);
  if (remembered) {
    memoKeys.forEach((k, i) => (scores[i] = scoreMemo.get(k)!));
    yield {
      type: 'progress',
      done: times.length,
      total: times.length,
      scores: times.map((t, i) => ({ t, score: round(scores[i]!) })),
    };
  }
  const timings = { probeMs, decodeMs: 0, encodeMs: 0, scoreMs: 0, totalMs: 0 };
  let decodedFrames = 0;
  let encodedFrames = 0;
  let done = 0;

  const score = async (features: Tokens2D): Promise<number> => {
    const t = performance.now();
    let logits: Float32Array | undefined;
    const conversation = model.startConversation({ kind: 'image', frames: [features] });
    try {
      for await (const event of conversation.ask(question, {
        maxNewTokens: 1,
        signal,
        onPromptLogits: (l) => (logits = l),
      }))
        void event;
    } finally {
      conversation.close(); // one instant, one cache: freed now, not when garbage collection happens to run
    }
    timings.scoreMs += performance.now() - t;
    return yesProbability(logits!, ids);
  };
  /** Score one frame shown at `ticks`, then report those instants. */
  const scoreFrame = async (features: Tokens2D, ticks: number[]): Promise<InstantScore[]> => {
    const s = await score(features);
    for (const k of ticks) {
      scores[k] = s;
      if (cache) remember(memoKeys[k]!, s);
    }
    done += ticks.length;
    return ticks.map((k) => ({ t: times[k]!, score: round(s) }));
  };

  if (remembered) {
    // nothing to do: every instant's score is known
  } else if (hits.every(Boolean)) {
    // Every instant cached: one score per distinct frame (instants that share a frame share its features).
    const byFrame = new Map<number, number[]>();
    hits.forEach((hit, k) => {
      const list = byFrame.get(hit!.timeSec) ?? [];
      list.push(k);
      byFrame.set(hit!.timeSec, list);
    });
    let batch: InstantScore[] = [];
    for (const ticks of byFrame.values()) {
      throwIfAborted(signal);
      batch.push(...(await scoreFrame(hits[ticks[0]!]!.features, ticks)));
      if (batch.length >= 4 * BATCH) {
        yield { type: 'progress', done, total: times.length, scores: batch };
        batch = [];
      }
    }
    if (batch.length) yield { type: 'progress', done, total: times.length, scores: batch };
  } else {
    const frames = media.decodeDense(req.path, {
      ...frameFormat(v),
      from: range.from,
      to: range.to,
      step,
      info,
      signal,
    });
    let group: DenseFrame[] = [];
    const flush = async (): Promise<InstantScore[]> => {
      const misses = group.filter((f) => f.ticks.some((k) => !hits[k]));
      const t = performance.now();
      const encoded = misses.length
        ? await model.encodeImages(
            misses.map((f) => f.pixels),
            signal,
          )
        : [];
      timings.encodeMs += performance.now() - t;
      encodedFrames += misses.length;
      const out: InstantScore[] = [];
      for (const frame of group) {
        const m = misses.indexOf(frame);
        const features = m >= 0 ? encoded[m]! : hits[frame.ticks[0]!]!.features;
        if (m >= 0 && cache)
          for (const k of frame.ticks)
            // A cache that cannot be written costs speed, never the result.
            await cache.put(keys[k]!, { timeSec: frame.timeSec, features }).catch(() => undefined);
        out.push(...(await scoreFrame(features, frame.ticks)));
      }
      group = [];
      return out;
    };
    let waitStarted = performance.now();
    for await (const frame of frames) {
      timings.decodeMs += performance.now() - waitStarted; // time spent waiting for the decoder
      decodedFrames++;
      group.push(frame);
      if (group.length >= BATCH) {
        const batch = await flush();
        yield { type: 'progress', done, total: times.length, scores: batch };
      }
      waitStarted = performance.now();
    }
    if (group.length) {
      const batch = await flush();
      yield { type: 'progress', done, total: times.length, scores: batch };
    }
  }

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
      intervals: toIntervals(all, { step, end: range.to, threshold }),
      scores: all,
      frames: times.length,
      cachedFrames: remembered ? times.length : hits.filter(Boolean).length,
      decodedFrames,
      encodedFrames,
      provider: model.provider,
      timings,
    },
  };
}

const round = (x: number) => Number(x.toFixed(4));
