/**
 * Frame times on every class of file a user has: low and variable frame rates, keyframes on sample
 * boundaries, MPEG-TS (and AVCHD .m2ts) whose clocks start late, and spliced recordings whose timestamps
 * jump. Each file's picture is a color clock (test/fixtures/timing-clips.ts), so every sampled frame proves
 * that the time reported for it is the time of the picture. Whole video, a clip range, and batch segment
 * mode, in exact and fast sampling.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runBatch, type ClipStatus, type ResultRecord } from '../src-main/jobs/index.ts';
import { liveProcessCount, probe, sampleFrames, type SampledFrame } from '../src-main/media/index.ts';
import type { Services } from '../src-main/services.ts';
import { makeCorrupt } from './fixtures/clips.ts';
import {
  colorIndexAt,
  makeClock,
  makeSplicedTs,
  nearestColorIndex,
  type ClockSpec,
} from './fixtures/timing-clips.ts';
import { FIXTURES, testServices } from './helpers.ts';

const DIR = path.join(FIXTURES, 'time');
const fmt = { size: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

interface Case {
  label: string;
  make: () => Promise<string>;
  /** Frames come at a constant rate (the frame shown is the nearest one). */
  fps?: number;
}

const clock = (spec: ClockSpec) => () => makeClock(DIR, spec);
const CASES: Case[] = [
  {
    label: '2 fps with a keyframe every 2 s, on the sampling boundaries',
    make: clock({ name: 'fps2-gop4.mp4', fps: 2, seconds: 20, gop: 4, container: 'mp4' }),
    fps: 2,
  },
  {
    label: '2 fps, 60 s, x264 default keyframes',
    make: clock({ name: 'fps2-60s.mp4', fps: 2, seconds: 60, container: 'mp4' }),
    fps: 2,
  },
  {
    label: 'a 0.5 fps slideshow',
    make: clock({ name: 'slideshow-0.5fps.mp4', fps: 0.5, seconds: 20, container: 'mp4' }),
    fps: 0.5,
  },
  {
    label: 'a variable-rate screen recording (bursts of frames, long still gaps)',
    make: clock({
      name: 'screen-vfr.mp4',
      fps: 10,
      seconds: 14,
      container: 'mp4',
      select: 'lt(t\\,1.5)+between(t\\,6\\,6.5)+between(t\\,12.5\\,14)',
    }),
  },
  {
    label: 'MPEG-TS whose clock starts at 2.8 s',
    make: clock({ name: 'late.ts', fps: 25, seconds: 12, gop: 25, container: 'mpegts', tsOffset: 1.4 }),
    fps: 25,
  },
  {
    label: 'MPEG-TS starting late with a single keyframe',
    make: clock({
      name: 'late-one-gop.ts',
      fps: 25,
      seconds: 12,
      gop: 400,
      container: 'mpegts',
      tsOffset: 1.4,
    }),
    fps: 25,
  },
  {
    label: 'an AVCHD-style .m2ts',
    make: clock({ name: 'camera.m2ts', fps: 25, seconds: 12, gop: 12, container: 'm2ts', tsOffset: 1.4 }),
    fps: 25,
  },
  {
    label: 'a spliced MPEG-TS whose timestamps jump by 100 s',
    make: () => makeSplicedTs(DIR, 'spliced.ts', 6),
    fps: 25,
  },
];

const files = new Map<string, string>();
let services: Services;
beforeAll(async () => {
  for (const c of CASES) files.set(c.label, await c.make());
  services = await testServices();
}, 240_000);

/** The clock color a frame shows (its middle pixel). */
function colorOf(frame: SampledFrame): number {
  const p = ((fmt.size >> 1) * fmt.size + (fmt.size >> 1)) * 3;
  return nearestColorIndex([frame.rgb[p]!, frame.rgb[p + 1]!, frame.rgb[p + 2]!]);
}

/** Every frame shows the picture of its reported time, lies on the video, and is the one a player shows. */
function checkFrames(c: Case, frames: SampledFrame[], durationSec: number, mode: 'exact' | 'fast') {
  expect(frames.length).toBeGreaterThan(0);
  for (const f of frames) {
    expect(colorOf(f), `${c.label}: color at ${f.timeSec} (asked ${f.requestedSec})`).toBe(
      colorIndexAt(f.timeSec),
    );
    expect(f.timeSec).toBeGreaterThanOrEqual(0);
    expect(f.timeSec).toBeLessThan(durationSec);
    if (mode === 'exact' && c.fps)
      expect(Math.abs(f.timeSec - f.requestedSec)).toBeLessThanOrEqual(0.5 / c.fps + 1e-3);
    if (mode === 'exact' && !c.fps) expect(f.timeSec).toBeLessThanOrEqual(f.requestedSec + 0.05 + 1e-3);
  }
}

describe('frame times on every class of file', () => {
  for (const c of CASES) {
    for (const mode of ['exact', 'fast'] as const) {
      it(`${c.label}: whole video and a range, ${mode}`, async () => {
        const file = files.get(c.label)!;
        const info = await probe(file);
        const whole = await sampleFrames(file, { ...fmt, count: 8, mode });
        checkFrames(c, whole, info.durationSec, mode);
        expect(new Set(whole.map((f) => f.timeSec)).size).toBeGreaterThan(mode === 'exact' ? 4 : 2);

        const [from, to] = [info.durationSec * 0.45, info.durationSec * 0.55 + 0.6];
        const range = await sampleFrames(file, { ...fmt, count: 4, from, to, mode });
        checkFrames(c, range, info.durationSec, mode);
        if (c.fps && mode === 'exact')
          for (const f of range) {
            expect(f.timeSec).toBeGreaterThanOrEqual(from - 0.5 / c.fps - 1e-3);
            expect(f.timeSec).toBeLessThan(to);
          }
        expect(liveProcessCount()).toBe(0);
      }, 60_000);
    }
  }

  it('reports the content duration of a spliced recording, not the span of its timestamps', async () => {
    const info = await probe(files.get(CASES.at(-1)!.label)!);
    expect(info.durationSec).toBeCloseTo(12, 1);
    expect(info.timestampJumps).toBe(1);
    const late = await probe(files.get(CASES[4]!.label)!);
    expect(late.durationSec).toBeCloseTo(12, 1);
    expect(late.startTimeSec).toBeGreaterThan(1.4);
  });

  it('fast mode uses keyframes inside each segment and reports their real times', async () => {
    const file = files.get(CASES[0]!.label)!; // keyframes every 2 s
    const frames = await sampleFrames(file, { ...fmt, count: 5, mode: 'fast' });
    // Segments of 4 s: each holds two keyframes; the one nearest its middle is on an even second.
    frames.forEach((f, i) => {
      expect(f.timeSec % 2).toBe(0);
      expect(f.timeSec).toBeGreaterThanOrEqual(i * 4);
      expect(f.timeSec).toBeLessThan((i + 1) * 4);
    });
  });

  it('fast mode on a long keyframe interval: segments without a keyframe get the exact frame', async () => {
    // Keyframes at 0 and 20 s; segments of 5 s: two hold a keyframe, six are decoded from the one before them.
    const file = await makeClock(DIR, {
      name: 'gop20s.mp4',
      fps: 10,
      seconds: 40,
      gop: 200,
      container: 'mp4',
    });
    const [fast, exact] = await Promise.all([
      sampleFrames(file, { ...fmt, count: 8, mode: 'fast' }),
      sampleFrames(file, { ...fmt, count: 8, mode: 'exact' }),
    ]);
    checkFrames({ label: 'gop20s', make: async () => file, fps: 10 }, fast, 40, 'fast');
    fast.forEach((f, i) => {
      if (i === 0 || i === 4) expect(f.timeSec).toBe(i * 5);
      else {
        expect(f.timeSec).toBe(exact[i]!.timeSec);
        expect(f.rgb).toEqual(exact[i]!.rgb);
      }
    });
    expect(liveProcessCount()).toBe(0);
  });
});

describe('segment mode', () => {
  async function batch(file: string, segmentSec: number, mode: 'exact' | 'fast') {
    const model = await services.engine();
    const extractor = await services.extractor();
    const records: ResultRecord[] = [];
    const statuses: ClipStatus[] = [];
    for await (const e of runBatch({ model, extractor }, [{ path: file, relPath: path.basename(file) }], {
      segmentSec,
      frames: 2,
      maxNewTokens: 8,
      mode,
    })) {
      if (e.type === 'record') records.push(e.record);
      if (e.type === 'clip' && e.status.state !== 'running') statuses.push(e.status);
    }
    return { record: records[0]!, status: statuses.at(-1)! };
  }

  for (const c of CASES)
    it(`answers every segment of ${c.label}`, async () => {
      const file = files.get(c.label)!;
      // 2 s segments (the length that failed a 2 fps clip), at most ~10 of them per clip.
      const segmentSec = Math.max(2, (await probe(file)).durationSec / 10);
      const { record, status } = await batch(file, segmentSec, 'fast');
      expect(status).toEqual({ state: 'done', resumed: false });
      expect(record.error).toBeNull();
      expect(record.segments!.length).toBeGreaterThan(2);
      for (const s of record.segments!) {
        expect(s.error, `${s.from}–${s.to}`).toBeNull();
        expect(s.answer).toBeTruthy();
        for (const t of s.frames) expect(t).toBeLessThan(s.to + 1e-6);
      }
    }, 120_000);

  it('keeps going past a segment it cannot read: partly failed, not failed', async () => {
    const file = await makeCorrupt(DIR, 'truncated-indexed'); // 3 s, the second half cut off
    const { record, status } = await batch(file, 1, 'exact');
    expect(record.error?.code).toBe('CORRUPT_MEDIA');
    const ok = record.segments!.filter((s) => s.error === null);
    const failed = record.segments!.filter((s) => s.error !== null);
    expect(ok.length).toBeGreaterThan(0);
    expect(ok[0]!.answer).toBeTruthy();
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[0]!.error!.code).toBe('CORRUPT_MEDIA');
    expect(status).toEqual({
      state: 'done',
      resumed: false,
      partial: { failed: failed.length + 1, answers: record.segments!.length + 1 },
    });
    expect(liveProcessCount()).toBe(0);
  }, 120_000);
});
