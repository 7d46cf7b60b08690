/**
 * Which ffmpeg inputs decode which frames (pure). Times are on the player's clock; "raw" times are the
 * stream's own pts in seconds as ffmpeg reports them with -copyts.
 *
 * exact  The frame a player shows at each instant (the nearest frame at a constant rate): instants close to
 *        one another share one input that decodes once through them; far apart ones get their own seek.
 * fast   For each instant, the keyframe nearest it that lies inside its share of the range (the segment of
 *        uniform sampling), decoded alone (`-skip_frame nokey`: one decoded frame per sample). Instants
 *        whose segment holds no keyframe fall back to exact.
 */
import type { FrameIndex, IndexedFrame } from './frame-index.ts';

export type SampleMode = 'exact' | 'fast';

/** What planning needs to know of the video. */
export interface TimeFacts {
  /** The finest frame rate of the stream (for variable rates, the rate its timestamps fit). */
  fps: number;
  /** When the first frame shows on the player's clock. */
  videoStartSec: number;
  /** raw = player + startTimeSec (files without an index). */
  startTimeSec: number;
}

export interface Pick {
  /** Index of the instant in the request. */
  sample: number;
  /**
   * last: the last frame before `end` (at or after `start` when given; none there means the previous pick of
   * the same input is still showing). first: the first frame at or after `start`.
   */
  kind: 'last' | 'first';
  start?: number;
  end?: number;
  /**
   * No frame in the window means the previous pick's frame is still showing (the window starts where the
   * previous pick's ended). Default: any pick after the first of its input that has a start.
   */
  continues?: boolean;
}

export interface InputPlan {
  /** -ss, player's clock (counted from the container's start); none: from the start. */
  seekSec?: number;
  /** -skip_initial_bytes: start demuxing at a keyframe's packet (indexed files). */
  byteOffset?: number;
  /** Decode keyframes only. */
  keyOnly: boolean;
  picks: Pick[];
}

export interface Segment {
  from: number;
  to: number;
}

/** Instants closer than this share one decoding pass (typical keyframe intervals are 1–10 s). */
export const GROUP_GAP_SEC = 5;
/** Keeps the seek strictly before the frame to show, and within a keyframe interval of it. */
const EPS = 0.0005;

/** Half the distance to the nearest other instant (Infinity for one instant): a frame beyond it belongs to a neighbour. */
function halfGaps(times: readonly number[]): number[] {
  const sorted = [...new Set(times)].sort((a, b) => a - b);
  return times.map((t) => {
    const k = sorted.indexOf(t);
    const gaps = [sorted[k + 1]! - t, t - sorted[k - 1]!].filter((g) => g > 0);
    return gaps.length ? Math.min(...gaps) / 2 : Infinity;
  });
}

/**
 * The end (exclusive) of the window whose last frame is the one to show at each instant: half a frame past
 * it (so the nearest frame wins at constant rates), never past half-way to a neighbouring instant.
 */
export function showUntil(times: readonly number[], facts: TimeFacts): number[] {
  const halfFrame = facts.fps > 0 ? 0.5 / facts.fps : 0.02;
  const half = halfGaps(times);
  return times.map((t, i) => Math.max(t, facts.videoStartSec) + Math.min(halfFrame, half[i]!));
}

/** The seek margin of a first try: a few frames, so that B-frame reordering cannot put the keyframe late. */
export function firstMargin(fps: number): number {
  return Math.min(2, Math.max(0.25, fps > 0 ? 3 / fps : 0.25));
}

/**
 * How far before a window's end its last frame is looked for on a first try: 2.5 frames (timestamps jitter).
 * ffmpeg's `reverse` holds every frame of a window until its end, so an open window from the seek point would
 * hold up to a whole keyframe interval of full-size frames (1.5 GB at 1080p, GOP 250). A window that finds no
 * frame this close (a still stretch of a variable-rate video) is tried again without the bound.
 */
export function lookbackSec(fps: number): number {
  return fps > 0 ? 2.5 / fps : Infinity;
}

/** Exact picks for `samples` (indices into `times`) on a file ffmpeg seeks by timestamp. */
export function exactPlan(
  times: readonly number[],
  samples: readonly number[],
  facts: TimeFacts,
  marginSec: number,
  lookback = Infinity,
): InputPlan[] {
  const until = showUntil(times, facts);
  const order = [...samples].sort((a, b) => until[a]! - until[b]! || a - b);
  const groups: number[][] = [];
  let previousUntil = -Infinity;
  for (const i of order) {
    if (!groups.length || until[i]! - previousUntil > GROUP_GAP_SEC) groups.push([]);
    groups.at(-1)!.push(i);
    previousUntil = until[i]!;
  }
  return groups.map((group) => {
    const seek = Math.max(times[group[0]!]!, facts.videoStartSec) - marginSec;
    return exactInput(group, until, facts, seek > EPS ? seek : undefined, lookback);
  });
}

/**
 * One input that seeks to `seekSec` (none: from the start) and decodes through the instants `ordered` (by
 * window end), each pick the last frame before its window's end, looked for at most `lookback` back.
 */
function exactInput(
  ordered: readonly number[],
  until: readonly number[],
  facts: TimeFacts,
  seekSec: number | undefined,
  lookback: number,
): InputPlan {
  const input: InputPlan = { keyOnly: false, picks: [], ...(seekSec !== undefined ? { seekSec } : {}) };
  let previousUntil: number | undefined;
  for (const i of ordered) {
    const end = until[i]!;
    const near = end - lookback;
    const start = previousUntil === undefined ? near : Math.max(previousUntil, near);
    const pick: Pick = { sample: i, kind: 'last', end: end + facts.startTimeSec, continues: false };
    if (Number.isFinite(start)) pick.start = start + facts.startTimeSec;
    // A window that begins where the previous one ended and finds no frame: that frame is still showing.
    if (previousUntil !== undefined && start === previousUntil) pick.continues = true;
    input.picks.push(pick);
    previousUntil = end;
  }
  return input;
}

/**
 * Exact picks for instants whose nearest keyframe before them is known (fast mode's fallback for segments
 * that hold no keyframe): one input per keyframe, seeking onto it and decoding once through all its instants.
 */
export function exactFromKeyframes(
  times: readonly number[],
  samples: readonly { sample: number; keySec: number }[],
  facts: TimeFacts,
  lookback: number,
): InputPlan[] {
  const until = showUntil(times, facts);
  const byKey = new Map<number, number[]>();
  for (const { sample, keySec } of samples) byKey.set(keySec, [...(byKey.get(keySec) ?? []), sample]);
  return [...byKey].map(([keySec, group]) => {
    const ordered = group.sort((a, b) => until[a]! - until[b]! || a - b);
    return exactInput(ordered, until, facts, keySec > EPS ? keySec + EPS : undefined, lookback);
  });
}

/** Each instant's share of the range: from half-way to the previous instant to half-way to the next. */
export function segmentsAround(times: readonly number[], range?: Segment): Segment[] {
  const sorted = [...new Set(times)].sort((a, b) => a - b);
  return times.map((t) => {
    const k = sorted.indexOf(t);
    const prev = sorted[k - 1];
    const next = sorted[k + 1];
    const from =
      prev !== undefined ? (prev + t) / 2 : (range?.from ?? (next !== undefined ? t - (next - t) / 2 : t));
    const to =
      next !== undefined ? (t + next) / 2 : (range?.to ?? (prev !== undefined ? t + (t - prev) / 2 : t));
    return { from: Math.max(0, from), to };
  });
}

/** The candidate nearest `t` inside [from, to), or undefined. */
export function nearestInside(
  candidates: readonly number[],
  t: number,
  segment: Segment,
): number | undefined {
  let best: number | undefined;
  for (const c of candidates)
    if (
      c >= segment.from - EPS &&
      c < segment.to &&
      (best === undefined || Math.abs(c - t) < Math.abs(best - t))
    )
      best = c;
  return best;
}

/** A keyframe decoded alone, by seeking (timestamp-indexed files). */
export function keyframeInput(sample: number, keySec: number, facts: TimeFacts): InputPlan {
  return {
    seekSec: keySec + EPS,
    keyOnly: true,
    picks: [{ sample, kind: 'first', start: keySec + facts.startTimeSec - EPS }],
  };
}

/** The frame to show at `until` (exclusive) in an index: the last one before it, else the first. */
export function frameShownBefore(index: FrameIndex, until: number): IndexedFrame | undefined {
  const { frames } = index;
  let lo = 0;
  let hi = frames.length; // first frame with sec >= until
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (frames[mid]!.sec < until) lo = mid + 1;
    else hi = mid;
  }
  return frames[Math.max(0, lo - 1)];
}

/** The keyframe a decoder must start from to reach `frame`: the last one stored before it. */
export function keyframeBefore(index: FrameIndex, frame: IndexedFrame): IndexedFrame | undefined {
  let best: IndexedFrame | undefined;
  for (const k of index.keyframes) if (k.pos <= frame.pos && (!best || k.pos > best.pos)) best = k;
  return best;
}

/** A frame of an indexed file, decoded from its keyframe's byte offset and picked by its own pts. */
export function indexedInput(
  sample: number,
  frame: IndexedFrame,
  from: IndexedFrame,
  keyOnly: boolean,
): InputPlan {
  return {
    ...(from.pos > 0 ? { byteOffset: from.pos } : {}),
    keyOnly,
    picks: [{ sample, kind: 'first', start: frame.raw - EPS }],
  };
}
