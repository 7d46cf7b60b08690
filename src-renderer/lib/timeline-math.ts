/**
 * Pure timeline arithmetic: a view is the visible time window [start, end] of a video of `duration`
 * seconds, drawn across `width` pixels. Zooming narrows the view around an anchor; selections are
 * clamped to the video and to each other.
 */

export interface View {
  start: number;
  end: number;
}

export interface Range {
  from: number;
  to: number;
}

/** The shortest view (seconds) zoom can reach, and the shortest selection. */
export const MIN_VIEW_SEC = 1;
export const MIN_SELECTION_SEC = 0.1;

export const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

export function timeToX(t: number, view: View, width: number): number {
  const span = view.end - view.start;
  return span > 0 ? ((t - view.start) / span) * width : 0;
}

/** The time under pixel `x`, kept inside [0, duration]. */
export function xToTime(x: number, view: View, width: number, duration: number): number {
  if (width <= 0) return view.start;
  return clamp(view.start + (x / width) * (view.end - view.start), 0, duration);
}

/** A selection in order, inside the video, at least MIN_SELECTION_SEC long (or null when the video is shorter). */
export function clampSelection(range: Range, duration: number): Range | null {
  if (!(duration > 0)) return null;
  let from = clamp(Math.min(range.from, range.to), 0, duration);
  let to = clamp(Math.max(range.from, range.to), 0, duration);
  if (duration < MIN_SELECTION_SEC) return { from: 0, to: duration };
  if (to - from < MIN_SELECTION_SEC) {
    to = Math.min(duration, from + MIN_SELECTION_SEC);
    from = to - MIN_SELECTION_SEC;
  }
  return { from, to };
}

/** Move the in point to `t`; an in point after the out point pushes the out point to the end of the video. */
export function setIn(selection: Range | null, t: number, duration: number): Range | null {
  const to = selection && selection.to > t ? selection.to : duration;
  return clampSelection({ from: t, to }, duration);
}

/** Move the out point to `t`; an out point before the in point pulls the in point to the start. */
export function setOut(selection: Range | null, t: number, duration: number): Range | null {
  const from = selection && selection.from < t ? selection.from : 0;
  return clampSelection({ from, to: t }, duration);
}

/**
 * Zoom by `factor` (>1 zooms in) keeping `anchor` at the same place on screen. The span stays within
 * [min(MIN_VIEW_SEC, duration), duration] and the view inside the video.
 */
export function zoomView(view: View, duration: number, factor: number, anchor: number): View {
  const span = view.end - view.start;
  const next = clamp(span / factor, Math.min(MIN_VIEW_SEC, duration), duration);
  const ratio = span > 0 ? (anchor - view.start) / span : 0;
  return panView({ start: anchor - ratio * next, end: anchor - ratio * next + next }, duration);
}

/**
 * Zoom by `factor` around the selection when there is one (the playhead `t` otherwise), keeping the selected clip
 * in view: the anchor keeps its place on screen, then the view shifts just enough to show the whole selection,
 * or is centred on it when the selection is longer than the new span.
 */
export function zoomAround(
  view: View,
  duration: number,
  factor: number,
  selection: Range | null,
  t: number,
): View {
  if (!selection) return zoomView(view, duration, factor, clamp(t, 0, duration));
  const mid = (selection.from + selection.to) / 2;
  const next = zoomView(view, duration, factor, clamp(mid, view.start, view.end));
  const span = next.end - next.start;
  if (selection.to - selection.from >= span)
    return panView({ start: mid - span / 2, end: mid + span / 2 }, duration);
  if (selection.from < next.start)
    return panView({ start: selection.from, end: selection.from + span }, duration);
  if (selection.to > next.end) return panView({ start: selection.to - span, end: selection.to }, duration);
  return next;
}

/** A range's place on a strip `width` px wide, cut to the strip: null when none of it is visible. */
export function visibleSpan(range: Range, view: View, width: number): { x: number; w: number } | null {
  if (range.to < view.start || range.from > view.end || width <= 0) return null;
  const x0 = clamp(timeToX(range.from, view, width), 0, width);
  const x1 = clamp(timeToX(range.to, view, width), 0, width);
  return { x: x0, w: Math.max(0, x1 - x0) };
}

/** One thumbnail tile of the strip: it covers [from, to) of the video and shows the frame at `from`. */
export interface Tile {
  from: number;
  to: number;
  /** Whole pixels, each tile ending where the next begins (no seams). */
  x: number;
  w: number;
}

/** The most tiles a strip draws (a very wide strip of very flat tiles). */
export const MAX_TILES = 400;

/**
 * Tiles of the frames along a strip `height` px tall, each as wide as a frame of `aspect` (width / height) at that
 * height: whole frames, no letterbox, at every zoom level. They sit on a grid that starts at time 0, so they move
 * with the video when the view scrolls. Only the tiles that touch the view are returned; the last may run past
 * the strip's edge (the strip clips it).
 */
export function frameTiles(
  view: View,
  width: number,
  height: number,
  aspect: number,
  duration: number,
): Tile[] {
  const span = view.end - view.start;
  if (!(span > 0 && width > 0 && height > 0 && aspect > 0 && duration > 0)) return [];
  const tileSec = Math.max(((height * aspect) / width) * span, span / MAX_TILES);
  const first = Math.max(0, Math.floor(view.start / tileSec));
  const end = Math.min(view.end, duration);
  const tiles: Tile[] = [];
  for (let k = first; k * tileSec < end; k++) {
    const from = k * tileSec;
    const x = Math.round(timeToX(from, view, width));
    const w = Math.round(timeToX(from + tileSec, view, width)) - x;
    tiles.push({ from, to: Math.min(duration, from + tileSec), x, w });
  }
  return tiles;
}

/** `a` and `b` in time order, one item per time (`b`'s where both have one). */
export function mergeByTime<T extends { timeSec: number }>(a: readonly T[], b: readonly T[]): T[] {
  const byTime = new Map(a.map((f) => [f.timeSec, f]));
  for (const f of b) byTime.set(f.timeSec, f);
  return [...byTime.values()].sort((x, y) => x.timeSec - y.timeSec);
}

/** The index of the item of `sorted` (ascending `timeSec`) nearest `t`; -1 when empty. */
export function nearestIndex(sorted: readonly { timeSec: number }[], t: number): number {
  if (sorted.length === 0) return -1;
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]!.timeSec < t) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && t - sorted[lo - 1]!.timeSec <= sorted[lo]!.timeSec - t) return lo - 1;
  return lo;
}

/** Shift a view back inside [0, duration] without changing its span. */
export function panView(view: View, duration: number): View {
  const span = Math.min(view.end - view.start, duration);
  const start = clamp(view.start, 0, Math.max(0, duration - span));
  return { start, end: start + span };
}

/** Scroll the view (not zoom) just enough that `t` is visible, with a margin of 5 % of the span. */
export function followTime(view: View, t: number, duration: number): View {
  const span = view.end - view.start;
  const margin = span * 0.05;
  if (t < view.start + margin) return panView({ start: t - margin, end: t - margin + span }, duration);
  if (t > view.end - margin) return panView({ start: t - span + margin, end: t + margin }, duration);
  return view;
}

/** Zoom level as a multiple of the whole video (1 = everything visible). */
export function zoomLevel(view: View, duration: number): number {
  const span = view.end - view.start;
  return span > 0 ? duration / span : 1;
}

/** Clock text: "1:02.5", "1:02:03" (with tenths below an hour). */
export function formatClock(t: number, tenths = true): string {
  const total = Math.max(0, t);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const sec =
    tenths && h === 0
      ? (Math.floor(s * 10) / 10).toFixed(1).padStart(4, '0')
      : String(Math.floor(s)).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** Nice tick spacing (seconds) for labels at least `minPx` apart; below a second, steps that tenths show exactly. */
export function tickStep(view: View, width: number, minPx = 80): number {
  const span = view.end - view.start;
  if (span <= 0 || width <= 0) return 1;
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  return steps.find((s) => (s / span) * width >= minPx) ?? 3600;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}
