import { describe, expect, it } from 'vitest';
import { intervalIoU, smooth, toIntervals } from './intervals.ts';

const at = (scores: number[], step = 0.5) => scores.map((score, k) => ({ t: k * step, score }));

describe('intervals from instant scores', () => {
  it('merges runs above the threshold; an interval ends one step after its last instant, within the range', () => {
    const scores = at([0.1, 0.9, 0.8, 0.9, 0.2, 0.1, 0.7, 0.9, 0.95]);
    expect(toIntervals(scores, { step: 0.5, end: 4.3 })).toEqual([
      { from: 0.5, to: 2, score: 0.8667 },
      { from: 3, to: 4.3, score: 0.85 },
    ]);
  });
  it('ignores one stray instant and bridges a one-instant dropout (median of three)', () => {
    expect(smooth([0, 1, 0, 0])).toEqual([0, 0, 0, 0]);
    expect(toIntervals(at([0.9, 0.9, 0.1, 0.9, 0.9], 1), { step: 1, end: 5 })).toEqual([
      { from: 0, to: 5, score: 0.74 },
    ]);
    expect(toIntervals(at([0.1, 0.9, 0.1, 0.1], 1), { step: 1, end: 4 })).toEqual([]);
  });
  it('uses the given threshold', () => {
    expect(toIntervals(at([0.6, 0.6, 0.6], 1), { step: 1, end: 3, threshold: 0.7 })).toEqual([]);
    expect(toIntervals(at([0.6, 0.6, 0.6], 1), { step: 1, end: 3 })).toHaveLength(1);
  });
  it('IoU of interval sets', () => {
    expect(intervalIoU([{ from: 0, to: 2, score: 1 }], [{ from: 1, to: 3, score: 1 }])).toBeCloseTo(1 / 3);
    expect(intervalIoU([], [{ from: 1, to: 3, score: 1 }])).toBe(0);
    expect(intervalIoU([], [])).toBe(1);
  });
});
