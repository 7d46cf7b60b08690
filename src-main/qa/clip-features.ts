/**
 * From a video (or still) and a clip range to the engine's visual input: probe, choose frame times,
 * then per frame either a feature-cache hit or decode + encode. A cache hit returns exactly what a
 * miss computes, so answers do not depend on the cache.
 */
import { stat } from 'node:fs/promises';
import type { FeatureCache, FileIdentity, FrameKey } from '../cache/feature-cache.ts';
import { throwIfAborted } from '../errors.ts';
import type { MediaInfo } from '../media/probe.ts';
import type { Engine, VisualInput } from '../model/engine.ts';
import { frameFormat, type Preprocess } from '../model/pack.ts';
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
    },
  ): Promise<{ timeSec: number; requestedSec: number; pixels: Float32Array }[]>;
}

export interface ClipRequest {
  path: string;
  from?: number;
  to?: number;
  frames?: number;
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

/** Probe results kept in memory (a batch of thousands of clips must not grow this without bound). */
const PROBE_MEMO_SIZE = 256;

export class ClipFeatureExtractor {
  private readonly probes = new Map<string, MediaInfo>();

  constructor(
    private readonly engine: Engine,
    private readonly media: MediaPort,
    private readonly cache: FeatureCache | null,
  ) {}

  private preprocessingKey(): string {
    const v = this.engine.manifest.vision;
    return JSON.stringify([v.imageSize, v.mean, v.std, v.padColor, v.preprocess, 'square-then-resize-v2']);
  }

  async identify(path: string): Promise<FileIdentity> {
    const info = await stat(path).catch(() => null);
    if (!info) return { path, sizeBytes: -1, mtimeMs: -1, sampleHash: '' }; // probe reports the missing file
    return {
      path,
      sizeBytes: info.size,
      mtimeMs: info.mtimeMs,
      sampleHash: await this.media.hashSampledBytes(path),
    };
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

    const keyFor = (requestedSec: number): FrameKey => ({
      file: identity,
      requestedSec,
      visionId: this.engine.pack.visionId,
      preprocessing: this.preprocessingKey(),
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
      const sampled = await this.media.sampleFramesAt(
        req.path,
        missing.map((m) => m.t),
        { ...frameFormat(this.engine.manifest.vision), signal: req.signal },
      );
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
