/**
 * Moment-search accuracy on clips from a renderer other than the training one (ffmpeg's lavfi): per clip, one
 * shape on screen only during one or two known intervals, among one or two shapes that stay the whole time.
 * Reports the share of clips whose found intervals reach IoU ≥ 0.5 with the truth (target ≥ 90%), and how much
 * of each clip a query for a staying shape covers (target: most of it), with the default coarse-to-fine scan.
 * Every query (the transient shape, a staying one, and one that is never on screen) is also run on the full
 * grid: the summary says on how many the two scans give identical intervals, and what share of instants the
 * coarse-to-fine scan scored.
 *
 *   npx tsx test/eval/find-eval.ts [--pack DIR] [--n 20] [--seed 11] [--step 0.5] [--tokens image|pooled] [--out DIR]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { findMoments, type FindResult, type FindTokens } from '../../src-main/find/scan.ts';
import { intervalIoU, type Interval } from '../../src-main/find/intervals.ts';
import { seededRandom } from '../../src-main/model/sampler.ts';
import { Services } from '../../src-main/services.ts';
import { COLORS, makeShapesClip, type Shape } from '../fixtures/clips.ts';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const N = Number(arg('n', '20'));
const STEP = Number(arg('step', '0.5'));
const OUT = arg('out', path.join(os.tmpdir(), 'loupe-find-eval'));
const rand = seededRandom(Number(arg('seed', '11')));
const KINDS = ['circle', 'square', 'triangle'] as const;
const NAMES = Object.keys(COLORS) as (keyof typeof COLORS)[];
const DURATION = 20;
const TOKENS = arg('tokens', 'pooled') as FindTokens;

async function scan(services: Services, file: string, query: string, full: boolean): Promise<FindResult> {
  const engine = await services.engine();
  for await (const e of findMoments(engine, services.denseMedia, services.cache, {
    path: file,
    query,
    step: STEP,
    tokens: TOKENS,
    full,
  }))
    if (e.type === 'done') return e.result;
  throw new Error('no result');
}

const agreement = { queries: 0, identical: 0, scored: 0, instants: 0, iouSum: 0 };
/** The default scan's result, after checking it against the full grid's. */
async function run(services: Services, file: string, query: string): Promise<FindResult> {
  const coarse = await scan(services, file, query, false);
  const full = await scan(services, file, query, true);
  const same =
    JSON.stringify(coarse.intervals.map((i) => [i.from, i.to])) ===
    JSON.stringify(full.intervals.map((i) => [i.from, i.to]));
  agreement.queries++;
  agreement.identical += same ? 1 : 0;
  agreement.scored += coarse.scoredFrames;
  agreement.instants += coarse.frames;
  agreement.iouSum += intervalIoU(coarse.intervals, full.intervals);
  if (!same)
    console.error(
      `  ${query}: coarse ${coarse.intervals.map((x) => `${x.from}–${x.to}`).join(', ') || '—'} vs full ${full.intervals.map((x) => `${x.from}–${x.to}`).join(', ') || '—'}`,
    );
  return coarse;
}

const services = new Services({
  packDir: process.argv.includes('--pack') ? arg('pack', '') : undefined,
  threads: 2,
});
const engine = await services.engine();
await mkdir(OUT, { recursive: true });
const rows: {
  clip: string;
  query: string;
  truth: Interval[];
  found: Interval[];
  iou: number;
  stayCover: number;
  absentCover: number;
}[] = [];
for (let i = 0; i < N; i++) {
  const kinds = [...KINDS].sort(() => rand() - 0.5);
  const colors = [...NAMES].filter((c) => c !== 'black').sort(() => rand() - 0.5);
  // the transient shape: one or two intervals of 3–6 s
  const a = 1 + rand() * 5;
  const truth: [number, number][] = [[a, a + 3 + rand() * 3]];
  if (rand() < 0.5) {
    const b = truth[0]![1] + 2 + rand() * 3;
    truth.push([b, Math.min(DURATION - 0.5, b + 3 + rand() * 3)]);
  }
  const rounded = truth.map(([f, t]) => [Number(f.toFixed(2)), Number(t.toFixed(2))] as [number, number]);
  const stays = 1 + Math.floor(rand() * 2);
  const xs = [0.2, 0.5, 0.8].sort(() => rand() - 0.5);
  const shapes: Shape[] = [];
  for (let k = 0; k <= stays; k++)
    shapes.push({
      kind: kinds[k]!,
      color: COLORS[colors[k]!],
      radius: 0.1 + rand() * 0.08,
      x0: xs[k]!,
      y0: 0.35 + rand() * 0.3,
      ...(k === 0 ? { visible: rounded } : {}),
    });
  const file = await makeShapesClip(OUT, {
    name: `find-eval-${i}.mp4`,
    width: 320,
    height: 180,
    duration: DURATION,
    fps: 10,
    codec: 'h264',
    background: COLORS.black,
    shapes,
  });
  const query = `${colors[0]} ${kinds[0]}`;
  const found = await run(services, file, query);
  const stay = await run(services, file, `${colors[1]} ${kinds[1]}`);
  // a shape never on screen: the transient shape's kind in a colour no shape has (a hard negative)
  const absent = await run(services, file, `${colors[stays + 1]} ${kinds[0]}`);
  const absentCover = absent.intervals.reduce((n, x) => n + x.to - x.from, 0) / DURATION;
  const truthIntervals = rounded.map(([from, to]) => ({ from, to, score: 1 }));
  const iou = intervalIoU(found.intervals, truthIntervals);
  const stayCover = stay.intervals.reduce((n, x) => n + x.to - x.from, 0) / DURATION;
  rows.push({
    clip: path.basename(file),
    query,
    truth: truthIntervals,
    found: found.intervals,
    iou,
    stayCover,
    absentCover,
  });
  console.error(
    `${i + 1}/${N} ${query}: truth ${rounded.map((r) => r.join('–')).join(', ')} found ${found.intervals.map((x) => `${x.from}–${x.to}`).join(', ') || '—'} IoU ${iou.toFixed(2)}; staying shape covers ${(100 * stayCover).toFixed(0)}%`,
  );
}
const passed = rows.filter((r) => r.iou >= 0.5).length;
const summary = {
  model: `${engine.manifest.name}@${engine.manifest.version}`,
  clips: N,
  step: STEP,
  iou_ge_05_share: passed / N,
  mean_iou: rows.reduce((n, r) => n + r.iou, 0) / N,
  staying_shape_mean_cover: rows.reduce((n, r) => n + r.stayCover, 0) / N,
  absent_shape_mean_cover: rows.reduce((n, r) => n + r.absentCover, 0) / N,
  tokens: TOKENS,
  coarse_vs_full: {
    queries: agreement.queries,
    identical_intervals: agreement.identical,
    mean_iou: agreement.iouSum / agreement.queries,
    scored_share: agreement.scored / agreement.instants,
  },
};
await writeFile(path.join(OUT, 'find-eval.json'), JSON.stringify({ summary, rows }, null, 2));
console.log(JSON.stringify(summary, null, 2));
await services.dispose();
