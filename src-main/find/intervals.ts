/** From scores at instants to intervals (pure). */

export interface InstantScore {
  t: number;
  score: number;
}

export interface Interval {
  from: number;
  to: number;
  /** Mean score of the instants inside. */
  score: number;
}

export interface IntervalOptions {
  /** Seconds between instants (an instant stands for [t, t + step)). */
  step: number;
  /** End of the scanned range: the last interval stops there. */
  end: number;
  /** Score from which an instant counts as showing the query. */
  threshold?: number;
}

export const DEFAULT_THRESHOLD = 0.5;

/** Median of three neighbours: one stray instant neither starts nor breaks an interval. */
export function smooth(scores: readonly number[]): number[] {
  if (scores.length < 3) return [...scores];
  return scores.map((s, i) => {
    const a = scores[Math.max(0, i - 1)]!;
    const c = scores[Math.min(scores.length - 1, i + 1)]!;
    return Math.max(Math.min(a, s), Math.min(Math.max(a, s), c));
  });
}

/** Runs of instants whose smoothed score reaches the threshold, merged into intervals. */
export function toIntervals(scores: readonly InstantScore[], options: IntervalOptions): Interval[] {
  const threshold = options.threshold ?? DEFAULT_THRESHOLD;
  const smoothed = smooth(scores.map((s) => s.score));
  const out: Interval[] = [];
  let start = -1;
  const close = (endIndex: number) => {
    const inside = scores.slice(start, endIndex);
    const mean = inside.reduce((n, s) => n + s.score, 0) / inside.length;
    const to = Math.min(options.end, scores[endIndex - 1]!.t + options.step);
    out.push({ from: scores[start]!.t, to: Number(to.toFixed(3)), score: Number(mean.toFixed(4)) });
    start = -1;
  };
  smoothed.forEach((s, i) => {
    if (s >= threshold && start < 0) start = i;
    else if (s < threshold && start >= 0) close(i);
  });
  if (start >= 0) close(scores.length);
  return out;
}

/** Intersection over union of two sets of intervals (each set's own intervals do not overlap). */
export function intervalIoU(a: readonly Interval[], b: readonly Interval[]): number {
  const length = (set: readonly Interval[]) => set.reduce((n, i) => n + Math.max(0, i.to - i.from), 0);
  let inter = 0;
  for (const x of a) for (const y of b) inter += Math.max(0, Math.min(x.to, y.to) - Math.max(x.from, y.from));
  const union = length(a) + length(b) - inter;
  return union > 0 ? inter / union : 1;
}

/**
 * Coarse to fine: after scoring every `stride`-th instant (0, stride, 2·stride, …), the runs [a, b] of instants
 * to score at the full step: between two coarse neighbours whose scores lie on either side of the threshold,
 * or within `margin` of it, and after the last coarse instant (the range's tail). A coarse instant without a
 * score has its whole neighbourhood scored. Runs at most `stride` instants apart are joined (one decode pass).
 */
export function refinementRuns(
  scores: readonly (number | null)[],
  stride: number,
  threshold: number,
  margin: number,
): [number, number][] {
  const n = scores.length;
  const runs: [number, number][] = [];
  const add = (a: number, b: number) => {
    if (b < a) return;
    const last = runs[runs.length - 1];
    if (last && a - last[1] <= stride) last[1] = Math.max(last[1], b);
    else runs.push([a, b]);
  };
  const uncertain = (s: number) => Math.abs(s - threshold) < margin;
  let a = 0;
  for (let b = stride; b < n; a = b, b += stride) {
    const sa = scores[a] ?? null;
    const sb = scores[b] ?? null;
    if (sa === null || sb === null) add(a, b);
    else if (sa >= threshold !== sb >= threshold || uncertain(sa) || uncertain(sb)) add(a + 1, b - 1);
  }
  if (a < n - 1) add(a + 1, n - 1);
  return runs;
}

/**
 * Every instant's score after a coarse-to-fine scan: an unscored instant lies between two coarse ones that
 * `refinementRuns` left alone, and takes the straight line between their scores. Pure.
 */
export function fillBetween(scores: readonly (number | null)[], stride: number): number[] {
  const n = scores.length;
  return scores.map((s, k) => {
    if (s !== null) return s;
    const a = k - (k % stride);
    const b = Math.min(a + stride, n - 1);
    const sa = scores[a] ?? 0;
    const sb = scores[b] ?? sa;
    return sa + ((sb - sa) * (k - a)) / (b - a);
  });
}
