/** Pure time arithmetic for sampling: which instants to look at, and parsing/printing times. */
import { LoupeError } from '../errors.ts';

/** Seconds a requested end may overshoot the video before it counts as outside (UIs round durations). */
const END_SLACK_SEC = 0.5;

/**
 * The middle of each of `count` equal segments of [from, to], like the Dense Connector reference samples a
 * whole video. When `fps` is given and the range holds fewer source frames than `count`, one time per source
 * frame is returned instead, so a short clip never yields duplicate frames.
 */
export function frameTimes(from: number, to: number, count: number, fps?: number): number[] {
  if (!Number.isInteger(count) || count < 1) {
    throw new LoupeError(
      'USAGE',
      `The number of frames must be a whole number of at least 1 (got ${count}).`,
    );
  }
  if (!(Number.isFinite(from) && Number.isFinite(to) && to >= from)) {
    throw new LoupeError('USAGE', `Invalid time range ${from}–${to}.`);
  }
  const sourceFrames = fps && fps > 0 ? Math.max(1, Math.round((to - from) * fps)) : Infinity;
  const n = Math.min(count, sourceFrames);
  const step = (to - from) / n;
  return Array.from({ length: n }, (_, i) => from + (i + 0.5) * step);
}

/** Parse "12.5", "12.5s", "1:02", "1:02.250" or "1:02:03.5" into seconds. */
export function parseTime(text: string): number {
  const trimmed = text.trim();
  const usage = () =>
    new LoupeError('USAGE', `"${text}" is not a time: use seconds (12.5) or [hh:]mm:ss[.ms] (1:02.5).`, {
      text,
    });
  const seconds = /^(\d+(?:\.\d*)?|\.\d+)s?$/.exec(trimmed);
  if (seconds) return Number(seconds[1]);
  const clock = /^(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d*)?)$/.exec(trimmed);
  if (!clock) throw usage();
  const [, hours, minutes, secs] = clock;
  const h = Number(hours ?? 0);
  const m = Number(minutes);
  const s = Number(secs);
  if (s >= 60 || (hours !== undefined && m >= 60)) throw usage();
  return h * 3600 + m * 60 + s;
}

/** Seconds as "m:ss[.mmm]" or "h:mm:ss[.mmm]" (milliseconds only when non-zero); parseTime reads it back. */
export function formatTime(sec: number): string {
  const totalMs = Math.round(Math.max(0, sec) * 1000);
  const ms = totalMs % 1000;
  const s = Math.floor(totalMs / 1000) % 60;
  const m = Math.floor(totalMs / 60_000) % 60;
  const h = Math.floor(totalMs / 3_600_000);
  const fraction = ms ? `.${String(ms).padStart(3, '0').replace(/0+$/, '')}` : '';
  const ss = `${String(s).padStart(2, '0')}${fraction}`;
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/**
 * Validate a requested range against a video (times on the player's clock, 0 = first frame).
 * Missing ends default to the whole video; a still image has the single instant [0, 0].
 */
export function clampRange(
  info: { path: string; kind: 'video' | 'image'; durationSec: number },
  from?: number,
  to?: number,
): { from: number; to: number } {
  if (info.kind === 'image') return { from: 0, to: 0 };
  const duration = info.durationSec;
  const start = from ?? 0;
  const end = to ?? duration;
  const outside = (why: string) =>
    new LoupeError('RANGE_OUTSIDE', `${why} The video is ${formatTime(duration)} long.`, {
      path: info.path,
      from: start,
      to: end,
      durationSec: duration,
    });
  if (!Number.isFinite(start) || !Number.isFinite(end) || start < 0) {
    throw outside(`The range ${start}–${end} is not valid.`);
  }
  if (start >= duration) throw outside(`The start ${formatTime(start)} is at or after the end of the video.`);
  if (end > duration + END_SLACK_SEC)
    throw outside(`The end ${formatTime(end)} is after the end of the video.`);
  if (start >= end)
    throw outside(`The start ${formatTime(start)} must come before the end ${formatTime(end)}.`);
  return { from: start, to: Math.min(end, duration) };
}
