/**
 * The composition root: one place that builds Loupe's services (media, engine, feature cache) and
 * hands them to the CLI, the HTTP transport and the Electron IPC transport alike.
 */
import path from 'node:path';
import { FeatureCache } from './cache/feature-cache.ts';
import { ModelGate } from './jobs/gate.ts';
import * as media from './media/index.ts';
import type { Engine } from './model/engine.ts';
import type { ProviderRequest } from './model/ort.ts';
import { builtinPackDir, userDataDir } from './paths.ts';
import { ClipFeatureExtractor, type MediaPort } from './qa/clip-features.ts';

export interface ServicesOptions {
  dataDir?: string;
  packDir?: string;
  provider?: ProviderRequest;
  threads?: number;
  /** false: no frame-feature cache (every question decodes and encodes). */
  featureCache?: boolean;
  featureCacheBytes?: number;
  mediaPort?: MediaPort;
}

export const ffmpegMedia: MediaPort = {
  // Sampling decodes right after probing and reports a damaged file itself: no separate first-frame decode.
  probe: (path, signal) => media.probe(path, signal, { decodeCheck: false }),
  hashSampledBytes: media.hashSampledBytes,
  clampRange: media.clampRange,
  frameTimes: media.frameTimes,
  sampleFramesAt: media.sampleFramesAt,
};

export class Services {
  readonly dataDir: string;
  private currentPackDir: string;
  readonly cache: FeatureCache | null;
  readonly media: MediaPort;
  /** One model, two lanes: questions asked in the app go before batch work (see docs/batch.md). */
  readonly gate = new ModelGate(1000);
  private enginePromise: Promise<Engine> | null = null;
  private extractorInstance: ClipFeatureExtractor | null = null;

  constructor(private readonly options: ServicesOptions = {}) {
    this.dataDir = options.dataDir ?? userDataDir();
    this.currentPackDir = options.packDir ?? builtinPackDir();
    this.cache =
      options.featureCache === false
        ? null
        : new FeatureCache(path.join(this.dataDir, 'cache', 'features'), options.featureCacheBytes);
    this.media = options.mediaPort ?? ffmpegMedia;
  }

  /** The model pack folder in use (see setPackDir). */
  get packDir(): string {
    return this.currentPackDir;
  }

  /**
   * Use another model pack from now on: the loaded model is disposed (once a load in progress has ended) and the
   * next `engine()` loads `dir`. The caller makes sure nothing still uses the old model (conversations, a batch).
   */
  async setPackDir(dir: string): Promise<void> {
    const previous = this.enginePromise;
    this.enginePromise = null;
    this.extractorInstance = null;
    this.currentPackDir = dir;
    const engine = await previous?.catch(() => null);
    await engine?.dispose();
  }

  /** The model, loaded once on first use and shared by every caller. */
  engine(): Promise<Engine> {
    if (!this.enginePromise) {
      this.enginePromise = import('./model/engine.ts').then(({ Engine }) =>
        Engine.load(this.packDir, { provider: this.options.provider, threads: this.options.threads }),
      );
      this.enginePromise.catch(() => (this.enginePromise = null)); // a failed load can be retried
    }
    return this.enginePromise;
  }

  async extractor(): Promise<ClipFeatureExtractor> {
    if (!this.extractorInstance)
      this.extractorInstance = new ClipFeatureExtractor(await this.engine(), this.media, this.cache);
    return this.extractorInstance;
  }

  async dispose(): Promise<void> {
    const engine = await this.enginePromise?.catch(() => null);
    await engine?.dispose();
  }
}
