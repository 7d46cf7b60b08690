/** Segment mode: which [from, to] windows of a clip get their own answer. Pure. */
import { LoupeError } from '../errors.ts';

export interface Segment {
  from: number;
  to: number;
}

/**
 * Consecutive windows of `segmentSec` covering [0, durationSec] exactly. The last window ends at the clip's
 * end; a remainder shorter than a quarter of a window joins the window before it (no 0.1 s "segments").
 */
export function segmentRanges(durationSec: number, segmentSec: number): Segment[] {
  if (!(segmentSec > 0) || !Number.isFinite(segmentSec))
    throw new LoupeError(
      'USAGE',
      `The segment length must be a positive number of seconds (got ${segmentSec}).`,
    );
  if (!(durationSec > 0) || !Number.isFinite(durationSec)) return [];
  const out: Segment[] = [];
  for (let k = 0; k * segmentSec < durationSec; k++) {
    const from = k * segmentSec;
    const to = Math.min(from + segmentSec, durationSec);
    const last = out[out.length - 1];
    if (last && to - from < segmentSec / 4) last.to = durationSec;
    else out.push({ from: round(from), to: round(to) });
  }
  out[out.length - 1]!.to = durationSec;
  return out;
}

/** Millisecond precision keeps 0.1 + 0.2 from becoming 0.30000000000000004 in stored ranges. */
function round(sec: number): number {
  return Math.round(sec * 1000) / 1000;
}
