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

/** Nice tick spacing (seconds) for labels at least `minPx` apart. */
export function tickStep(view: View, width: number, minPx = 80): number {
  const span = view.end - view.start;
  if (span <= 0 || width <= 0) return 1;
  const steps = [0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
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
