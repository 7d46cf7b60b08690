/**
 * Moment search on a 10-minute 640×360 H.264 video (25 fps, testsrc2: every frame differs) at 0.5 s steps with
 * the built-in model: cold (empty feature cache: one dense decode pass, 1200 vision runs, 1200 scores), then a
 * second, different query on the same video, range and step (features from the cache: no ffmpeg, no vision
 * encoder, 1200 scores), then the first query again. References in the same run: the dense decode pass alone.
 * `bench/run.ts` calls benchFind(); `npx tsx bench/find.ts` prints it alone.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { findMoments, type FindResult } from '../src-main/find/scan.ts';
import { decodeDense } from '../src-main/media/index.ts';
import { Services } from '../src-main/services.ts';
import { ffmpeg } from '../test/fixtures/clips.ts';
import { ROOT, tempDir } from '../test/helpers.ts';

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

async function find(services: Services, file: string, query: string): Promise<FindResult> {
  const engine = await services.engine();
  for await (const e of findMoments(engine, services.denseMedia, services.cache, { path: file, query }))
    if (e.type === 'done') return e.result;
  throw new Error('no result');
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
    }))
      frames += f.ticks.length;
    out.find_decode_ms_10min = performance.now() - t;
    t = performance.now();
    const cold = await find(services, file, 'red circle');
    out.find_ms_10min = performance.now() - t;
    t = performance.now();
    const second = await find(services, file, 'blue square');
    out.find_ms_10min_cached = performance.now() - t;
    t = performance.now();
    await find(services, file, 'red circle');
    out.find_ms_10min_repeat = performance.now() - t;
    if (frames !== 1200 || cold.encodedFrames !== 1200 || second.encodedFrames || second.decodedFrames)
      throw new Error(`unexpected frame counts: ${frames}, ${cold.encodedFrames}, ${second.encodedFrames}`);
    out.find_vision_ms_10min = cold.timings.encodeMs;
    out.find_score_ms_per_instant = second.timings.scoreMs / 1200;
    return out;
  } finally {
    await services.dispose();
  }
}

if (process.argv[1]?.endsWith('bench/find.ts')) console.log(JSON.stringify(await benchFind(), null, 2));
