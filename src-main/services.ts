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
import type { DenseMediaPort } from './find/scan.ts';
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
  denseMediaPort?: DenseMediaPort;
}

export const ffmpegMedia: MediaPort = {
  // Sampling decodes right after probing and reports a damaged file itself: no separate first-frame decode.
  probe: (path, signal) => media.probe(path, signal, { decodeCheck: false }),
  hashSampledBytes: media.hashSampledBytes,
  clampRange: media.clampRange,
  frameTimes: media.frameTimes,
  sampleFramesAt: media.sampleFramesAt,
};

/** What moment search needs from media/: the same probe and identity, plus one-pass dense decoding. */
export const ffmpegDenseMedia: DenseMediaPort = {
  probe: media.probe,
  hashSampledBytes: media.hashSampledBytes,
  clampRange: media.clampRange,
  denseTicks: media.denseTicks,
  decodeDense: media.decodeDense,
};

/** The loaded model and its frame stage, held by one piece of work (an answer, a clip opening, a batch). */
export interface ModelLease {
  readonly engine: Engine;
  readonly extractor: ClipFeatureExtractor;
  /** Give it back (idempotent): a model that was switched away from is disposed when its last lease goes. */
  release(): void;
}

/** One loaded pack: its engine and extractor (always the pair), and how many leases hold it. */
class LoadedModel {
  leases = 0;
  retired = false;
  private drained: (() => void) | null = null;
  /** Set once loaded. */
  engine: Engine | null = null;

  constructor(readonly ready: Promise<{ engine: Engine; extractor: ClipFeatureExtractor }>) {
    ready.then(
      ({ engine }) => (this.engine = engine),
      () => undefined,
    );
  }

  release(): void {
    if (--this.leases === 0) this.drained?.();
  }

  /** Take no new leases; wait for the held ones; dispose the sessions and the worker. */
  async retire(): Promise<void> {
    this.retired = true;
    if (this.leases > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    const loaded = await this.ready.catch(() => null);
    await loaded?.engine.dispose();
  }
}

export class Services {
  readonly dataDir: string;
  private currentPackDir: string;
  readonly cache: FeatureCache | null;
  readonly media: MediaPort;
  readonly denseMedia: DenseMediaPort;
  /** One model, two lanes: questions asked in the app go before batch work (see docs/batch.md). */
  readonly gate = new ModelGate(1000);
  private model: LoadedModel | null = null;

  constructor(private readonly options: ServicesOptions = {}) {
    this.dataDir = options.dataDir ?? userDataDir();
    this.currentPackDir = options.packDir ?? builtinPackDir();
    this.cache =
      options.featureCache === false
        ? null
        : new FeatureCache(path.join(this.dataDir, 'cache', 'features'), options.featureCacheBytes);
    this.media = options.mediaPort ?? ffmpegMedia;
    this.denseMedia = options.denseMediaPort ?? ffmpegDenseMedia;
  }

  /** The model pack folder in use (see setPackDir). */
  get packDir(): string {
    return this.currentPackDir;
  }

  /**
   * Use another model pack from now on: new leases get `dir`'s model; the old one is disposed once the answers
   * and batches holding it have given their leases back (or at once, if none do). Resolves when it is gone.
   */
  async setPackDir(dir: string): Promise<void> {
    const previous = this.model;
    this.model = null;
    this.currentPackDir = dir;
    await previous?.retire();
  }

  /** The current model, loading it on first use. A failed load is forgotten, so it can be retried. */
  private current(): LoadedModel {
    if (!this.model) {
      const model = new LoadedModel(
        import('./model/engine.ts')
          .then(({ Engine }) =>
            Engine.load(this.packDir, { provider: this.options.provider, threads: this.options.threads }),
          )
          .then((engine) => ({
            engine,
            extractor: new ClipFeatureExtractor(engine, this.media, this.cache),
          })),
      );
      model.ready.catch(() => {
        if (this.model === model) this.model = null;
      });
      this.model = model;
    }
    return this.model;
  }

  /**
   * Hold the model for one piece of work: a switch to another pack waits until the lease is released before
   * it disposes this one, so no answer or batch runs on a disposed engine.
   */
  async lease(): Promise<ModelLease> {
    const model = this.current();
    model.leases++;
    let loaded: Awaited<LoadedModel['ready']>;
    try {
      loaded = await model.ready;
    } catch (error) {
      model.release();
      throw error;
    }
    let released = false;
    return {
      ...loaded,
      release: () => {
        if (released) return;
        released = true;
        model.release();
      },
    };
  }

  /** Whether `engine` is the current model (not one switched away from). */
  isCurrent(engine: Engine): boolean {
    return this.model?.engine === engine;
  }

  /** The current model, for what it is (manifest, provider); work that runs it takes a `lease()`. */
  async engine(): Promise<Engine> {
    return (await this.current().ready).engine;
  }

  /** The current model's frame stage (bound to the current engine); work takes a `lease()`. */
  async extractor(): Promise<ClipFeatureExtractor> {
    return (await this.current().ready).extractor;
  }

  /** At exit: dispose the model now (running work fails with a typed error rather than keep Loupe alive). */
  async dispose(): Promise<void> {
    const model = this.model;
    this.model = null;
    const loaded = await model?.ready.catch(() => null);
    await loaded?.engine.dispose();
  }
}
