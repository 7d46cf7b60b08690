import { describe, expect, it } from 'vitest';
import { fillBetween, intervalIoU, refinementRuns, smooth, toIntervals } from './intervals.ts';

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

describe('coarse to fine', () => {
  // every 4th instant scored: 0, 4, 8, 12 (and 13, 14 form the tail)
  const coarse = (values: Record<number, number>, n: number) =>
    Array.from({ length: n }, (_, k) => values[k] ?? null);

  it('refines between neighbours across the threshold, and the tail; joins runs close together', () => {
    expect(refinementRuns(coarse({ 0: 0.1, 4: 0.9, 8: 0.95, 12: 0.9 }, 15), 4, 0.5, 0)).toEqual([
      [1, 3],
      [13, 14],
    ]);
    // crossings at 0→4 and 8→12: runs [1,3] and [9,11] are 6 apart (> stride): two passes
    expect(refinementRuns(coarse({ 0: 0.1, 4: 0.9, 8: 0.9, 12: 0.1 }, 13), 4, 0.5, 0)).toEqual([
      [1, 3],
      [9, 11],
    ]);
    // crossings at 0→4 and 4→8: [1,3] and [5,7] are 2 apart: one pass (4 is scored again, from the memo)
    expect(refinementRuns(coarse({ 0: 0.1, 4: 0.9, 8: 0.1 }, 9), 4, 0.5, 0)).toEqual([[1, 7]]);
  });

  it('refines near the threshold with a margin, and around a coarse instant without a score', () => {
    const s = coarse({ 0: 0.45, 4: 0.3, 8: 0.1 }, 9);
    expect(refinementRuns(s, 4, 0.5, 0)).toEqual([]);
    expect(refinementRuns(s, 4, 0.5, 0.1)).toEqual([[1, 3]]);
    expect(refinementRuns(coarse({ 0: 0.1, 8: 0.1 }, 9), 4, 0.5, 0)).toEqual([[0, 8]]);
  });

  it('fills the instants no pass scored with the line between their coarse neighbours', () => {
    expect(fillBetween(coarse({ 0: 0.1, 4: 0.5, 5: 0.6, 6: 0.7 }, 7), 4)).toEqual([
      0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7,
    ]);
  });
});
