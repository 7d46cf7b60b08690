/**
 * Batch throughput: clips per minute of the pipelined batch (the next clips decoded while the model answers
 * the current one) against a naive loop (decode, then answer, one clip at a time). Same loaded model; each
 * run starts cold: its own copy of the clips (so no probe is remembered) and an empty feature cache.
 * `bench/run.ts` calls benchBatch(); `npx tsx bench/batch.ts` prints it alone.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { FeatureCache } from '../src-main/cache/feature-cache.ts';
import { runBatch, type BatchInput } from '../src-main/jobs/index.ts';
import type { Engine } from '../src-main/model/engine.ts';
import { askAboutClip } from '../src-main/qa/ask.ts';
import { ClipFeatureExtractor } from '../src-main/qa/clip-features.ts';
import { ffmpegMedia, Services } from '../src-main/services.ts';
import { COLORS, makeShapesClip, type Shape } from '../test/fixtures/clips.ts';
import { ROOT, tempDir } from '../test/helpers.ts';

const CLIPS = 20;
const THREADS = 2;
const PROMPT = 'Summarize the video.';
const SOURCE = path.join(ROOT, 'bench', '.cache', 'batch-clips');

/** 20 clips of 4 s, 640×360 H.264 at 25 fps, each with its own shapes. */
async function makeClips(): Promise<string[]> {
  const colors = Object.values(COLORS);
  const kinds: Shape['kind'][] = ['circle', 'square', 'triangle'];
  const out: string[] = [];
  for (let i = 0; i < CLIPS; i++)
    out.push(
      await makeShapesClip(SOURCE, {
        name: `batch-${String(i).padStart(2, '0')}.mp4`,
        width: 640,
        height: 360,
        duration: 4,
        fps: 25,
        codec: 'h264',
        background: '#2a3a4a',
        shapes: [
          {
            kind: kinds[i % 3]!,
            color: colors[i % colors.length]!,
            radius: 0.14,
            x0: 0.25,
            y0: 0.5,
            x1: 0.45,
            y1: 0.35,
          },
          {
            kind: kinds[(i + 1) % 3]!,
            color: colors[(i + 3) % colors.length]!,
            radius: 0.12,
            x0: 0.75,
            y0: 0.5,
          },
        ],
      }),
    );
  return out;
}

/** A cold start: fresh copies of the clips and an extractor over an empty feature cache. */
async function coldSetup(engine: Engine, clips: readonly string[], label: string) {
  const dir = await tempDir(`loupe-bench-batch-${label}-`);
  await mkdir(path.join(dir, 'clips'));
  const items: BatchInput[] = [];
  for (const clip of clips) {
    const copy = path.join(dir, 'clips', path.basename(clip));
    await copyFile(clip, copy);
    items.push({ path: copy, relPath: path.basename(clip) });
  }
  const extractor = new ClipFeatureExtractor(
    engine,
    ffmpegMedia,
    new FeatureCache(path.join(dir, 'features')),
  );
  return { items, extractor };
}

const perMinute = (clips: number, ms: number) => (clips * 60_000) / ms;

export async function benchBatch(): Promise<{ batch_clips_per_min: number; naive_clips_per_min: number }> {
  const clips = await makeClips();
  const services = new Services({
    dataDir: await tempDir('loupe-bench-batch-'),
    featureCache: false,
    threads: THREADS,
  });
  try {
    const engine = await services.engine();

    // Naive: decode and encode a clip, answer it, then the next.
    const naive = await coldSetup(engine, clips, 'naive');
    let t = performance.now();
    for (const item of naive.items)
      for await (const e of askAboutClip(engine, naive.extractor, { path: item.path, question: PROMPT }))
        if (e.type === 'done' && !e.text) throw new Error(`no answer for ${item.relPath}`);
    const naiveMs = performance.now() - t;

    // Pipelined: the batch engine, up to 2 clips prepared ahead.
    const piped = await coldSetup(engine, clips, 'batch');
    t = performance.now();
    let answered = 0;
    for await (const e of runBatch({ model: engine, extractor: piped.extractor }, piped.items, {
      prompts: [PROMPT],
    }))
      if (e.type === 'record') {
        if (e.record.error) throw new Error(`${e.record.relPath}: ${e.record.error.message}`);
        answered++;
      }
    const batchMs = performance.now() - t;
    if (answered !== clips.length) throw new Error(`the batch answered ${answered} of ${clips.length} clips`);

    return {
      batch_clips_per_min: perMinute(clips.length, batchMs),
      naive_clips_per_min: perMinute(clips.length, naiveMs),
    };
  } finally {
    await services.dispose();
  }
}

if (process.argv[1] && import.meta.url === `file://${path.resolve(process.argv[1])}`) {
  const r = await benchBatch();
  process.stdout.write(
    `batch (pipelined): ${r.batch_clips_per_min.toFixed(1)} clips/min\nnaive loop:        ${r.naive_clips_per_min.toFixed(1)} clips/min\n` +
      `speed-up:          ${(r.batch_clips_per_min / r.naive_clips_per_min).toFixed(2)}×\n`,
  );
}
