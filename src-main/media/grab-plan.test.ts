import { describe, expect, it } from 'vitest';
import { buildFrameIndex, parsePackets } from './frame-index.ts';
import {
  exactFromKeyframes,
  exactPlan,
  frameShownBefore,
  keyframeBefore,
  lookbackSec,
  nearestInside,
  segmentsAround,
  showUntil,
} from './grab-plan.ts';

const facts = { fps: 2, videoStartSec: 0, startTimeSec: 0 };

describe('sampling plans', () => {
  it('ends each window half a frame past its instant, never past half-way to a neighbour', () => {
    expect(showUntil([9.25, 9.75], facts)).toEqual([9.5, 10]);
    const [a, b] = showUntil([1, 1.2], { ...facts, fps: 1 });
    expect(a).toBeCloseTo(1.1, 9);
    expect(b).toBeCloseTo(1.3, 9);
  });

  it('seeks before the instant (never onto a keyframe at the window end) and shares passes between near instants', () => {
    const plan = exactPlan([1.25, 3.75, 30.25], [0, 1, 2], facts, 1.5);
    expect(plan).toHaveLength(2);
    expect(plan[0]!.seekSec).toBeUndefined(); // 1.25 - 1.5 < 0: from the start
    expect(plan[0]!.picks.map((p) => [p.sample, p.start, p.end])).toEqual([
      [0, undefined, 1.5],
      [1, 1.5, 4],
    ]);
    expect(plan[1]!.seekSec).toBeCloseTo(28.75);
    expect(plan[1]!.seekSec!).toBeLessThan(plan[1]!.picks[0]!.end!);
  });

  it('looks for each frame a few frames back only on a first try, and says which windows continue the last', () => {
    expect(lookbackSec(10)).toBeCloseTo(0.25);
    expect(lookbackSec(0)).toBe(Infinity);
    // 9.25 and 9.75 at 2 fps: windows end at 9.5 and 10; looking back 0.25 s narrows both.
    const near = exactPlan([9.25, 9.75], [0, 1], facts, 1.5, 0.25)[0]!;
    expect(near.picks.map((p) => [p.start, p.end, p.continues])).toEqual([
      [9.25, 9.5, false],
      [9.75, 10, false],
    ]);
    // Looking back 1 s: the second window starts where the first ended, so no new frame means the last.
    const wide = exactPlan([9.25, 9.75], [0, 1], facts, 1.5, 1)[0]!;
    expect(wide.picks.map((p) => [p.start, p.continues])).toEqual([
      [8.5, false],
      [9.5, true],
    ]);
  });

  it('decodes instants without a keyframe of their own once from the keyframe before them', () => {
    const times = [11.25, 18.75, 33.75, 41.25];
    const keys = [0, 0, 25, 25].map((keySec, sample) => ({ sample, keySec }));
    const plan = exactFromKeyframes(times, keys, { ...facts, fps: 10 }, 0.25);
    expect(plan.map((input) => [input.seekSec, input.picks.map((p) => p.sample)])).toEqual([
      [undefined, [0, 1]], // from the start of the file
      [25.0005, [2, 3]], // onto the keyframe at 25 s
    ]);
    expect(plan[1]!.picks[0]).toMatchObject({ kind: 'last', start: 33.55, end: 33.8 });
  });

  it('cuts a range into the segments of uniform sampling and picks keyframes inside them only', () => {
    expect(segmentsAround([1, 3, 5], { from: 0, to: 6 })).toEqual([
      { from: 0, to: 2 },
      { from: 2, to: 4 },
      { from: 4, to: 6 },
    ]);
    expect(nearestInside([0, 2.5, 3.9], 3, { from: 2, to: 4 })).toBe(2.5);
    expect(nearestInside([0, 4], 3, { from: 2, to: 4 })).toBeUndefined();
  });
});

describe('packet index (MPEG-TS)', () => {
  const csv = [
    '2.800000,2.720000,0.040000,564,K_,',
    '',
    '2.880000,2.760000,0.040000,5452,__,',
    '2.840000,2.800000,0.040000,7520,__,',
    '101.400000,101.320000,0.040000,9000,K_,',
    '101.440000,101.360000,0.040000,9500,__,',
  ].join('\n');

  it('puts frames on one continuous clock from the container start, across a timestamp jump', () => {
    const index = buildFrameIndex(parsePackets(csv), 2.8, 25);
    expect(index.jumps).toBe(1);
    expect(index.frames.map((f) => f.sec)).toEqual([0, 0.04, 0.08, 0.12, 0.16]);
    expect(index.keyframes.map((f) => f.pos)).toEqual([564, 9000]);
    expect(index.durationSec).toBeCloseTo(0.2, 6);
    const frame = frameShownBefore(index, 0.13)!;
    expect(frame.raw).toBe(101.4);
    expect(keyframeBefore(index, frame)!.pos).toBe(9000);
  });
});
