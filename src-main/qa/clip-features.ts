/**
 * From a video (or still) and a clip range to the engine's visual input: probe, choose frame times,
 * then per frame either a feature-cache hit or decode + encode. A cache hit returns exactly what a
 * miss computes, so answers do not depend on the cache.
 */
import { stat } from 'node:fs/promises';
import type { FeatureCache, FileIdentity, FrameKey } from '../cache/feature-cache.ts';
import { LoupeError, throwIfAborted } from '../errors.ts';
import type { MediaInfo } from '../media/probe.ts';
import type { ModelEngine, VisualInput } from '../model/engine.ts';
import { frameFormat, type Pack, type Preprocess } from '../model/pack.ts';
import type { Tokens2D } from '../model/tensor.ts';

/** The media operations this stage needs; media/ implements them with ffmpeg. */
export interface MediaPort {
  probe(path: string, signal?: AbortSignal): Promise<MediaInfo>;
  hashSampledBytes(path: string): Promise<string>;
  clampRange(info: MediaInfo, from?: number, to?: number): { from: number; to: number };
  frameTimes(from: number, to: number, count: number, fps?: number): number[];
  sampleFramesAt(
    path: string,
    times: readonly number[],
    opts: {
      size: number;
      mean: readonly number[];
      std: readonly number[];
      pad: readonly number[];
      resize: Preprocess['resize'];
      rescale: number;
      signal?: AbortSignal;
      mode?: 'exact' | 'fast';
      /** The probe result for this file, so that sampling does not probe it again. */
      info?: MediaInfo;
    },
    /** Each instant's segment of the range (fast mode picks a keyframe inside it). */
    segments?: { from: number; to: number }[],
  ): Promise<{ timeSec: number; requestedSec: number; pixels: Float32Array }[]>;
}

/**
 * How frames are chosen. exact: the frame a player shows at each segment's middle. fast: the keyframe
 * nearest the middle inside each segment (one decoded frame per sample; exact where a segment holds no
 * keyframe). auto: fast for clips of LONG_CLIP_SEC or more, exact for shorter ones.
 */
export type SamplingMode = 'auto' | 'exact' | 'fast';

/** Clips at least this long are sampled in fast mode under 'auto'. */
export const LONG_CLIP_SEC = 60;

/** The mode used for a range of `lengthSec` seconds. */
export function samplingModeFor(mode: SamplingMode, lengthSec: number): 'exact' | 'fast' {
  return mode === 'auto' ? (lengthSec >= LONG_CLIP_SEC ? 'fast' : 'exact') : mode;
}

export interface ClipRequest {
  path: string;
  from?: number;
  to?: number;
  frames?: number;
  /** Default auto (fast for long clips); batches pass fast unless exact was asked for. */
  mode?: SamplingMode;
  signal?: AbortSignal;
}

export interface UsedFrame {
  /** Presentation time of the decoded frame, as a player shows it. */
  timeSec: number;
  requestedSec: number;
  cached: boolean;
}

export interface ClipFeatures {
  info: MediaInfo;
  range: { from: number; to: number };
  visual: VisualInput;
  frames: UsedFrame[];
  timings: { probeMs: number; decodeMs: number; encodeMs: number };
}

/** Everything in the pack that changes a frame's pixels, as the feature cache keys it. */
export function preprocessingKey(
  v: ModelEngine['manifest']['vision'],
  decoder = 'square-then-resize-v2',
): string {
  return JSON.stringify([v.imageSize, v.mean, v.std, v.padColor, v.preprocess, decoder]);
}

/** What the feature cache keys a file by; a missing file gets an identity that matches nothing (probe reports it). */
export async function fileIdentity(
  path: string,
  hashSampledBytes: (path: string) => Promise<string>,
): Promise<FileIdentity> {
  const info = await stat(path).catch(() => null);
  if (!info) return { path, sizeBytes: -1, mtimeMs: -1, sampleHash: '' };
  return { path, sizeBytes: info.size, mtimeMs: info.mtimeMs, sampleHash: await hashSampledBytes(path) };
}

/**
 * What the extractor needs of the model: its manifest and vision identity (to choose and key frames) and the
 * vision encoder. An engine is one; so is a pack whose engine is still loading (see `whileLoading`).
 */
export type VisionModel = Pick<ModelEngine, 'manifest' | 'encodeImages'> & { pack: Pick<Pack, 'visionId'> };

/**
 * The pack's vision model before its engine has loaded: decoding can start at once, and encoding waits for
 * the engine (a one-shot ask overlaps ffmpeg with the model's start).
 */
export function whileLoading(pack: Pack, engine: Promise<ModelEngine>): VisionModel {
  engine.catch(() => undefined); // the caller awaits it too: a failed load is reported there
  return {
    manifest: pack.manifest,
    pack,
    encodeImages: async (...args) => (await engine).encodeImages(...args),
  };
}

/** Probe results kept in memory (a batch of thousands of clips must not grow this without bound). */
const PROBE_MEMO_SIZE = 256;

export class ClipFeatureExtractor {
  private readonly probes = new Map<string, MediaInfo>();

  constructor(
    private readonly engine: VisionModel,
    private readonly media: MediaPort,
    private readonly cache: FeatureCache | null,
  ) {}

  private preprocessingKey(): string {
    return preprocessingKey(this.engine.manifest.vision);
  }

  /** Cache entries are per requested instant and mode: fast and exact may use different frames for one instant. */
  private modeKey(mode: 'exact' | 'fast'): string {
    return mode === 'fast' ? `${this.preprocessingKey()}|fast-v1` : this.preprocessingKey();
  }

  identify(path: string): Promise<FileIdentity> {
    return fileIdentity(path, this.media.hashSampledBytes);
  }

  async extract(req: ClipRequest): Promise<ClipFeatures> {
    const t0 = performance.now();
    const identity = await this.identify(req.path);
    const probeKey = JSON.stringify(identity);
    let info = this.probes.get(probeKey);
    if (!info) {
      info = await this.media.probe(req.path, req.signal);
      if (this.probes.size >= PROBE_MEMO_SIZE) this.probes.delete(this.probes.keys().next().value!);
      this.probes.set(probeKey, info);
    }
    const range = info.kind === 'image' ? { from: 0, to: 0 } : this.media.clampRange(info, req.from, req.to);
    const count = req.frames ?? this.engine.manifest.defaults.frames;
    const times = info.kind === 'image' ? [0] : this.media.frameTimes(range.from, range.to, count, info.fps);
    const probeMs = performance.now() - t0;
    const mode = info.kind === 'image' ? 'exact' : samplingModeFor(req.mode ?? 'auto', range.to - range.from);
    const step = times.length ? (range.to - range.from) / times.length : 0;

    const keyFor = (requestedSec: number): FrameKey => ({
      file: identity,
      requestedSec,
      visionId: this.engine.pack.visionId,
      preprocessing: this.modeKey(mode),
    });
    const features: (Tokens2D | null)[] = times.map(() => null);
    const used: UsedFrame[] = times.map((t) => ({ timeSec: t, requestedSec: t, cached: false }));
    if (this.cache) {
      const hits = await Promise.all(times.map((t) => this.cache!.get(keyFor(t))));
      hits.forEach((hit, i) => {
        if (hit) {
          features[i] = hit.features;
          used[i] = { timeSec: hit.timeSec, requestedSec: times[i]!, cached: true };
        }
      });
    }
    const missing = times.map((t, i) => ({ t, i })).filter(({ i }) => !features[i]);
    let decodeMs = 0;
    let encodeMs = 0;
    if (missing.length) {
      throwIfAborted(req.signal);
      const t1 = performance.now();
      const sampled = await this.media
        .sampleFramesAt(
          req.path,
          missing.map((m) => m.t),
          { ...frameFormat(this.engine.manifest.vision), signal: req.signal, mode, info },
          // Uniform sampling: instant i is the middle of segment i of the range.
          missing.map(({ i }) => ({ from: range.from + i * step, to: range.from + (i + 1) * step })),
        )
        .catch((error: unknown) => {
          // The file probed fine: say how long it is, so a batch can still try its segments.
          if (error instanceof LoupeError && error.code !== 'CANCELLED')
            error.details.durationSec ??= info!.durationSec;
          throw error;
        });
      const t2 = performance.now();
      const encoded = await this.engine.encodeImages(
        sampled.map((s) => s.pixels),
        req.signal,
      );
      const t3 = performance.now();
      decodeMs = t2 - t1;
      encodeMs = t3 - t2;
      for (let k = 0; k < missing.length; k++) {
        const { t, i } = missing[k]!;
        features[i] = encoded[k]!;
        used[i] = { timeSec: sampled[k]!.timeSec, requestedSec: t, cached: false };
        // A cache that cannot be written (full disk, read-only folder) costs speed, never the answer.
        if (this.cache)
          await this.cache
            .put(keyFor(t), { timeSec: sampled[k]!.timeSec, features: encoded[k]! })
            .catch(() => undefined);
      }
    }
    return {
      info,
      range,
      visual: { kind: info.kind === 'image' ? 'image' : 'frames', frames: features as Tokens2D[] },
      frames: used,
      timings: { probeMs, decodeMs, encodeMs },
    };
  }
}
