/**
 * Moment search on real ffmpeg-encoded clips with known intervals, with the built-in pack: the CLI's JSON,
 * one-pass dense decoding (same frames and pixels as per-instant sampling), cache reuse (a second query runs no
 * ffmpeg and no vision encoder), Stop, and folder search with resumable JSONL/CSV output.
 */
import { appendFile, mkdir, readFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LoupeError } from '../src-main/errors.ts';
import { findInFolder, readFindJournal } from '../src-main/find/folder.ts';
import {
  findMoments,
  forgetFindMemos,
  type DenseMediaPort,
  type FindEvent,
  type FindModel,
} from '../src-main/find/scan.ts';
import { parse as parseCsv } from 'csv-parse/sync';
import {
  decodeDense,
  liveProcessCount,
  type DenseFrame,
  probe,
  sampleFramesAt,
} from '../src-main/media/index.ts';
import { ffmpegDenseMedia } from '../src-main/services.ts';
import { COLORS, makeShapesClip, type Shape } from './fixtures/clips.ts';
import { FIXTURES, runCli as cli, tempDir, testServices } from './helpers.ts';

const DIR = path.join(FIXTURES, 'find');
const stays: Shape[] = [
  { kind: 'square', color: COLORS.yellow, radius: 0.14, x0: 0.22, y0: 0.5 },
  { kind: 'triangle', color: COLORS.blue, radius: 0.14, x0: 0.5, y0: 0.5 },
];
/** 10 s at 10 fps: a red circle on screen during [2, 5) only, a yellow square and a blue triangle throughout. */
const clipWithCircle = () =>
  makeShapesClip(DIR, {
    name: 'find-circle-2-5',
    width: 320,
    height: 180,
    duration: 10,
    fps: 10,
    codec: 'h264',
    background: COLORS.black,
    shapes: [
      ...stays,
      { kind: 'circle', color: COLORS.red, radius: 0.14, x0: 0.78, y0: 0.5, visible: [[2, 5]] },
    ],
  });
const clipWithout = () =>
  makeShapesClip(DIR, {
    name: 'find-no-circle',
    width: 320,
    height: 180,
    duration: 4,
    fps: 10,
    codec: 'h264',
    background: COLORS.black,
    shapes: stays,
  });

async function collect(events: AsyncIterable<FindEvent>): Promise<FindEvent[]> {
  const out: FindEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}
const resultOf = (events: FindEvent[]) => {
  const done = events.at(-1);
  if (done?.type !== 'done') throw new Error('no result');
  return done.result;
};

let clip: string;
beforeAll(async () => {
  clip = await clipWithCircle();
});

describe('dense decoding', () => {
  it('decodes every instant once, in one pass, with the frames and pixels per-instant sampling gives', async () => {
    const info = await probe(clip);
    const format = { size: 96, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3], pad: [10, 20, 30], info };
    const frames: DenseFrame[] = [];
    for await (const f of decodeDense(clip, { ...format, from: 1, to: 6, step: 0.5 })) frames.push(f);
    expect(frames.flatMap((f) => f.ticks)).toEqual(Array.from({ length: 10 }, (_, k) => k));
    const picked = [0, 3, 9].map((k) => frames[k]!);
    const sampled = await sampleFramesAt(
      clip,
      picked.map((f) => f.timeSec),
      format,
    );
    picked.forEach((f, i) => {
      expect(f.timeSec).toBeCloseTo(1 + f.ticks[0]! * 0.5, 5);
      expect(sampled[i]!.timeSec).toBeCloseTo(f.timeSec, 5);
      expect(Buffer.from(f.pixels.buffer).equals(Buffer.from(sampled[i]!.pixels.buffer))).toBe(true);
    });
  });

  it('gives one frame to several instants when the step is shorter than a frame', async () => {
    const frames: DenseFrame[] = [];
    for await (const f of decodeDense(clip, {
      size: 32,
      mean: [0, 0, 0],
      std: [1, 1, 1],
      from: 0,
      to: 1,
      step: 0.04,
    }))
      frames.push(f);
    expect(frames.flatMap((f) => f.ticks)).toEqual(Array.from({ length: 25 }, (_, k) => k));
    // 10 fps: the frames at 0, 0.1 … 0.9, and the one at 1.0, nearest to the instant 0.96
    expect(frames.map((f) => f.timeSec)).toEqual(Array.from({ length: 11 }, (_, k) => k / 10));
  });
});

describe('loupe find', () => {
  it('prints one JSON object: intervals, per-instant scores on the player clock, frames, provider, timings', async () => {
    const data = await tempDir('loupe-find-cli-');
    const { code, stdout, stderr } = await cli(['find', clip, 'red circle', '--json', '--to', '8'], {
      LOUPE_DATA_DIR: data,
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as Record<string, unknown> & {
      scores: { t: number; score: number }[];
      intervals: { from: number; to: number; score: number }[];
    };
    expect(Object.keys(out)).toEqual(
      expect.arrayContaining(['query', 'intervals', 'scores', 'frames', 'provider', 'timings']),
    );
    expect(out.query).toBe('red circle');
    expect(out.frames).toBe(16);
    expect(out.scores.map((s) => s.t)).toEqual(Array.from({ length: 16 }, (_, k) => k * 0.5));
    for (const s of out.scores) expect(s.score >= 0 && s.score <= 1).toBe(true);
    for (const i of out.intervals) {
      expect(i.from).toBeGreaterThanOrEqual(0);
      expect(i.to).toBeLessThanOrEqual(8);
      expect(i.to).toBeGreaterThan(i.from);
    }
  });

  it('refuses bad input with a clear message and exit code', async () => {
    const data = await tempDir('loupe-find-cli-');
    const missing = await cli(['find', path.join(data, 'nope.mp4'), 'red circle'], { LOUPE_DATA_DIR: data });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^loupe: .*nope\.mp4/);
    const badStep = await cli(['find', clip, 'red circle', '--step', '0'], { LOUPE_DATA_DIR: data });
    expect(badStep.code).toBe(2);
  });
});

describe('moment search and the feature cache', () => {
  it('a second query on the same video, range and step runs no ffmpeg and no vision encoder', async () => {
    const services = await testServices();
    try {
      const engine = await services.engine();
      let decodes = 0;
      let encodes = 0;
      let probes = 0;
      const media: DenseMediaPort = {
        ...ffmpegDenseMedia,
        probe: (p, s) => (probes++, ffmpegDenseMedia.probe(p, s)),
        decodeDense: (p, o) => (decodes++, ffmpegDenseMedia.decodeDense(p, o)),
      };
      const model: FindModel = {
        manifest: engine.manifest,
        pack: engine.pack,
        prompt: engine.prompt,
        provider: engine.provider,
        encodeImages: (px, s) => ((encodes += px.length), engine.encodeImages(px, s)),
        promptLogits: (v, q, s) => engine.promptLogits(v, q, s),
      };
      const request = { path: clip, query: 'red circle', from: 1, to: 6, step: 0.5, full: true };
      const first = resultOf(await collect(findMoments(model, media, services.cache, request)));
      expect([decodes, encodes, first.decodedFrames, first.cachedFrames]).toEqual([1, 10, 10, 0]);
      const spawnedBefore = liveProcessCount();
      const again = resultOf(await collect(findMoments(model, media, services.cache, request)));
      expect([decodes, encodes, again.decodedFrames, again.encodedFrames, again.cachedFrames]).toEqual([
        1, 10, 0, 0, 10,
      ]);
      expect(liveProcessCount()).toBe(spawnedBefore);
      expect(probes).toBe(1); // not even ffprobe: the probe is remembered per file identity
      expect(again.scores).toEqual(first.scores);
      expect(again.timings.scoreMs).toBe(0); // the same search again: its scores are remembered
      // Clear caches / Clear history forget the remembered scores and probes: the model and ffprobe run again
      forgetFindMemos();
      const forgotten = resultOf(await collect(findMoments(model, media, services.cache, request)));
      expect(forgotten.timings.scoreMs).toBeGreaterThan(0);
      expect(probes).toBe(2);
      expect(forgotten.scores).toEqual(first.scores);
      const other = resultOf(
        await collect(findMoments(model, media, services.cache, { ...request, query: 'yellow square' })),
      );
      expect([decodes, encodes, other.cachedFrames]).toEqual([1, 10, 10]);
      expect(other.timings.scoreMs).toBeGreaterThan(0); // another question: the model runs, on cached features
      // A cache hit scores exactly as a miss: the same question on cached features, and with no cache at all.
      const uncached = resultOf(
        await collect(findMoments(model, media, null, { ...request, query: 'yellow square' })),
      );
      expect(uncached.scores).toEqual(other.scores);
      expect(decodes).toBe(2);
      // A query for a shape that is on screen the whole time is found for most of the range.
      const covered = other.intervals.reduce((n, i) => n + i.to - i.from, 0);
      expect(covered / (6 - 1)).toBeGreaterThan(0.5);
      // Another step is another set of instants: decoded again.
      await collect(findMoments(model, media, services.cache, { ...request, step: 0.3 }));
      expect(decodes).toBe(3);
      // every instant's conversation was closed: the worker holds no cache after the scans
      expect(await engine.workerStats()).toMatchObject({ openConversations: 0, liveKvCaches: 0 });
    } finally {
      await services.dispose();
    }
  });

  it('coarse to fine: the intervals of the full grid, from fewer model runs, with nothing left open', async () => {
    const services = await testServices({ featureCache: false });
    try {
      const engine = await services.engine();
      const request = { path: clip, query: 'red circle', step: 0.25 };
      const full = resultOf(
        await collect(findMoments(engine, services.denseMedia, null, { ...request, full: true })),
      );
      const events = await collect(findMoments(engine, services.denseMedia, null, request));
      const coarse = resultOf(events);
      expect(full.scan).toEqual({ kind: 'full' });
      expect(coarse.scan).toEqual({ kind: 'coarse-to-fine', coarseStep: 2 });
      expect(full.scoredFrames).toBe(40);
      expect(coarse.scoredFrames).toBeLessThan(full.scoredFrames);
      expect(coarse.scoredFrames).toBe(coarse.encodedFrames); // no cache: every scored instant encoded once
      expect(coarse.intervals).toEqual(full.intervals);
      expect(coarse.intervals).toHaveLength(1);
      expect(coarse.intervals[0]!.from).toBeGreaterThanOrEqual(1.5);
      expect(coarse.intervals[0]!.to).toBeLessThanOrEqual(5.5);
      // every instant is reported once, in order within each event, and the scored ones equal the full grid's
      const reported = events.flatMap((e) => (e.type === 'progress' ? e.scores : []));
      expect(reported.map((s) => s.t).sort((a, b) => a - b)).toEqual(full.scores.map((s) => s.t));
      const fullAt = new Map(full.scores.map((s) => [s.t, s.score]));
      const scoredTimes = new Set(reported.slice(0, coarse.scoredFrames).map((s) => s.t));
      for (const s of coarse.scores)
        if (scoredTimes.has(s.t)) expect(Math.abs(s.score - fullAt.get(s.t)!)).toBeLessThan(2e-3);
      expect(await engine.workerStats()).toMatchObject({ openConversations: 0, liveKvCaches: 0 });
      expect(liveProcessCount()).toBe(0);
    } finally {
      await services.dispose();
    }
  });

  it('stops: Stop ends ffmpeg and the scan with CANCELLED', async () => {
    const services = await testServices({ featureCache: false });
    try {
      const engine = await services.engine();
      const controller = new AbortController();
      const events: FindEvent[] = [];
      const run = (async () => {
        for await (const e of findMoments(engine, services.denseMedia, null, {
          path: clip,
          query: 'red circle',
          step: 0.1,
          signal: controller.signal,
        })) {
          events.push(e);
          if (e.type === 'progress') controller.abort();
        }
      })();
      const error = await run.then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(LoupeError);
      expect((error as LoupeError).code).toBe('CANCELLED');
      expect(events.some((e) => e.type === 'done')).toBe(false);
      expect(liveProcessCount()).toBe(0);
    } finally {
      await services.dispose();
    }
  });
});

describe('moment search across a folder', () => {
  it('says which clips show the query, resumably, as JSONL and CSV', async () => {
    const folder = await tempDir('loupe-find-folder-');
    await mkdir(path.join(folder, 'in'));
    await symlink(clip, path.join(folder, 'in', 'a-circle.mp4'));
    await symlink(await clipWithout(), path.join(folder, 'in', 'b-none.mp4'));
    const services = await testServices();
    try {
      const engine = await services.engine();
      const items = ['a-circle.mp4', 'b-none.mp4'].map((relPath) => ({
        relPath,
        path: path.join(folder, 'in', relPath),
      }));
      const out = path.join(folder, 'found.csv');
      const options = { query: 'red circle', step: 1, out };
      const first = await findInFolder(engine, services.denseMedia, services.cache, items, options);
      expect(first.records.map((r) => r.relPath)).toEqual(['a-circle.mp4', 'b-none.mp4']);
      expect(first.skipped).toBe(0);
      const rows = parseCsv(await readFile(out, 'utf8')) as string[][];
      expect(rows[0]).toEqual(['file', 'query', 'found', 'from', 'to', 'score', 'max_score', 'error']);
      expect(new Set(rows.slice(1).map((r) => r[0]))).toEqual(new Set(['a-circle.mp4', 'b-none.mp4']));
      // A torn last line (a crash mid-write) is ignored; done clips are not searched again.
      await appendFile(`${out}.journal.jsonl`, '{"kind":"find","relPa');
      const again = await findInFolder(engine, services.denseMedia, services.cache, items, options);
      expect(again.skipped).toBe(2);
      expect(again.records).toEqual(first.records);
      expect((await readFindJournal(`${out}.journal.jsonl`)).records).toHaveLength(2);
      expect(parseCsv(await readFile(out, 'utf8'))).toEqual(rows);
    } finally {
      await services.dispose();
    }
  });
});
