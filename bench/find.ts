/**
 * Moment search on a 10-minute 640×360 H.264 video (25 fps, testsrc2: every frame differs) at 0.5 s steps with
 * the built-in model: cold and coarse to fine, the median of three runs (the default: empty feature cache, a 2 s grid, refined where it
 * matters), with the main process's peak RSS; a second, different query (cached features where the first scan
 * computed them); the first query again; then the full grid cold (1200 instants decoded, encoded and scored in
 * batches), with the worker's RSS after the first 100 instants and at the end. References in the same run: the
 * dense decode pass alone (every frame prepared), the full grid.
 * `bench/run.ts` calls benchFind(); `npx tsx bench/find.ts` prints it alone.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { intervalIoU } from '../src-main/find/intervals.ts';
import { findMoments, forgetFindMemos, type FindResult } from '../src-main/find/scan.ts';
import { decodeDense } from '../src-main/media/index.ts';
import { Services } from '../src-main/services.ts';
import { ffmpeg } from '../test/fixtures/clips.ts';
import { ROOT, tempDir } from '../test/helpers.ts';
import { median } from './stats.ts';

const THREADS = 2;
const FILE = path.join(ROOT, 'bench', '.cache', 'testsrc2-360p25-10min.mp4');

async function tenMinutes(): Promise<string> {
  if (!existsSync(FILE)) {
    await mkdir(path.dirname(FILE), { recursive: true });
    const tmp = `${FILE}.tmp.mp4`;
    await ffmpeg([
      ...['-f', 'lavfi', '-i', 'testsrc2=s=640x360:r=25:d=600'],
      ...['-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '23', '-pix_fmt', 'yuv420p', tmp],
    ]);
    await rename(tmp, FILE);
  }
  return FILE;
}

async function find(
  services: Services,
  file: string,
  query: string,
  options: { full?: boolean; onProgress?: (done: number) => Promise<void> | void } = {},
): Promise<FindResult> {
  const engine = await services.engine();
  for await (const e of findMoments(engine, services.denseMedia, services.cache, {
    path: file,
    query,
    full: options.full,
  })) {
    if (e.type === 'progress') await options.onProgress?.(e.done);
    if (e.type === 'done') return e.result;
  }
  throw new Error('no result');
}

/** Peak RSS of this (the main) process while `work` runs, sampled every 50 ms. */
async function peakRss<T>(work: () => Promise<T>): Promise<{ value: T; peakMb: number }> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
  try {
    const value = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { value, peakMb: peak / 2 ** 20 };
  } finally {
    clearInterval(timer);
  }
}

export async function benchFind(): Promise<Record<string, number>> {
  const file = await tenMinutes();
  const services = new Services({ dataDir: await tempDir('loupe-bench-find-'), threads: THREADS });
  try {
    const engine = await services.engine();
    const v = engine.manifest.vision;
    const out: Record<string, number> = {};
    let t = performance.now();
    let frames = 0;
    for await (const f of decodeDense(file, {
      size: v.imageSize,
      mean: v.mean,
      std: v.std,
      pad: v.padColor,
      from: 0,
      to: 600,
      step: 0.5,
    })) {
      void f.pixels; // prepared, as a full scan prepares every frame
      frames += f.ticks.length;
    }
    out.find_decode_ms_10min = performance.now() - t;
    // Cold, coarse to fine (the default): empty feature cache, fresh process memos; the median of three runs.
    const colds: number[] = [];
    let cold: FindResult | null = null;
    let peak = 0;
    for (let run = 0; run < 3; run++) {
      await services.cache!.clear();
      forgetFindMemos();
      t = performance.now();
      const { value, peakMb } = await peakRss(() => find(services, file, 'red circle'));
      colds.push(performance.now() - t);
      cold = value;
      peak = Math.max(peak, peakMb);
    }
    out.find_ms_10min = median(colds);
    out.find_main_rss_mb = peak;
    out.find_scored_instants_10min = cold!.scoredFrames;
    out.find_vision_ms_10min = cold!.timings.encodeMs;
    t = performance.now();
    const second = await find(services, file, 'blue square');
    out.find_ms_10min_cached = performance.now() - t;
    out.find_score_ms_per_instant = second.timings.scoreMs / Math.max(1, second.scoredFrames);
    t = performance.now();
    await find(services, file, 'red circle');
    out.find_ms_10min_repeat = performance.now() - t;
    // The full grid, cold (every instant decoded, encoded and scored in batches); the worker's memory after the
    // first 100 instants and at the end (nothing per instant may stay behind).
    await services.cache!.clear();
    forgetFindMemos();
    let first100: number | null = null;
    t = performance.now();
    const { value: full, peakMb: fullPeak } = await peakRss(() =>
      find(services, file, 'red circle', {
        full: true,
        onProgress: async (done) => {
          if (first100 === null && done >= 100) first100 = (await engine.workerStats())!.rssBytes / 2 ** 20;
        },
      }),
    );
    out.find_ms_10min_full = performance.now() - t;
    out.find_main_rss_mb_full = fullPeak;
    const stats = (await engine.workerStats())!;
    out.find_worker_rss_mb_first100 = first100 ?? NaN;
    out.find_worker_rss_mb_end = stats.rssBytes / 2 ** 20;
    out.find_worker_live_caches_end = stats.liveKvCaches;
    if (
      frames !== 1200 ||
      full.encodedFrames !== 1200 ||
      full.scoredFrames !== 1200 ||
      cold!.encodedFrames !== cold!.scoredFrames ||
      second.decodedFrames > cold!.decodedFrames
    )
      throw new Error(`unexpected frame counts: ${frames}, ${full.encodedFrames}, ${cold!.encodedFrames}`);
    // how far the default scan's intervals are from the full grid's (the same, on this video)
    out.find_coarse_full_iou = intervalIoU(cold!.intervals, full.intervals);
    return out;
  } finally {
    await services.dispose();
  }
}

if (process.argv[1]?.endsWith('bench/find.ts')) console.log(JSON.stringify(await benchFind(), null, 2));
