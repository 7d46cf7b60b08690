/**
 * Dense scanning: the frames shown at every `step` seconds of a range, decoded in ONE ffmpeg pass (select → display
 * size → rgb) and prepared as the sampler prepares them (pad to square, the pack's resize, normalize:
 * preprocess.ts), streamed as they decode. Seeking per instant (grab.ts) costs
 * a GOP per instant; for hundreds of instants one pass through the stream is far cheaper.
 */
import { availableParallelism } from 'node:os';
import { LoupeError, cancelled } from '../errors.ts';
import { resolveBinaries } from './binaries.ts';
import { formatTime } from './frame-times.ts';
import { rgbFilter } from './grab.ts';
import { corrupt, corruptionLines, fileInput, probe, statMedia, type MediaInfo } from './probe.ts';
import { runProcess } from './process.ts';
import { preparePixels } from './prepare-pool.ts';
import { prepareFrame } from './preprocess.ts';
import { checkFormat, PIL_BICUBIC, type FrameFormat } from './sample.ts';

export interface DenseOptions extends FrameFormat {
  /** Range on the player's clock, seconds (already validated by the caller's clampRange). */
  from: number;
  to: number;
  /** Seconds between instants. */
  step: number;
}

export interface DenseFrame {
  /** The frame's presentation time on the player's clock. */
  timeSec: number;
  /** Indices (into `denseTicks(from, to, step)`) of the instants this frame is shown at. */
  ticks: number[];
  /** CHW, 3 × size × size, normalized (prepared on this thread when first read). */
  readonly pixels: Float32Array<ArrayBuffer>;
  /** The same pixels, prepared on the preparation thread (prepare-pool.ts), so this thread keeps reading ffmpeg. */
  prepare(): Promise<Float32Array<ArrayBuffer>>;
}

/** Decoded frames (RGB at display size) that may wait for the reader before ffmpeg is paused. */
const MAX_QUEUED_BYTES = 24 * 1024 * 1024;

/** Most instants one scan may hold (a 10-hour video at 0.5 s). */
export const MAX_TICKS = 72_000;

/** The instants of a dense scan: from, from + step, … before `to` (at least one). Pure. */
export function denseTicks(from: number, to: number, step: number): number[] {
  if (!(step > 0) || !Number.isFinite(step))
    throw new LoupeError('USAGE', `The step must be a positive number of seconds (got ${step}).`);
  if (!(Number.isFinite(from) && Number.isFinite(to) && to >= from))
    throw new LoupeError('USAGE', `Invalid time range ${from}–${to}.`);
  const count = Math.max(1, Math.ceil((to - from) / step - 1e-9));
  if (count > MAX_TICKS)
    throw new LoupeError(
      'USAGE',
      `${count} instants is too many for one scan (at most ${MAX_TICKS}): use a longer --step or a shorter range.`,
    );
  return Array.from({ length: count }, (_, k) => Number((from + k * step).toFixed(6)));
}

/** Nudge so that an instant exactly between two frames belongs to one of them, in ffmpeg and here alike. */
const EPS = 1e-6;

/**
 * Decode the frames shown at `denseTicks(from, to, step)` in one pass. Each instant gets the frame whose
 * presentation time is nearest; every instant is covered by exactly one yielded frame (gaps in variable frame
 * rates go to the nearer neighbour). Stopping the iteration (or the signal) stops ffmpeg.
 */
export async function* decodeDense(path: string, options: DenseOptions): AsyncGenerator<DenseFrame> {
  checkFormat(options);
  const { size, mean, std, from, to, step, signal } = options;
  const ticks = denseTicks(from, to, step);
  const info: MediaInfo = options.info ?? (await probe(path, signal));
  if (info.kind !== 'video')
    throw new LoupeError('USAGE', `${path} is a still image: there is no timeline to scan.`, { path });
  await statMedia(path);
  const { ffmpeg } = await resolveBinaries();
  const { displayWidth: width, displayHeight: height } = info;
  const spec = {
    size,
    mean,
    std,
    pad: options.pad ?? mean.map((m) => Math.round(m * 255)),
    resize: options.resize ?? PIL_BICUBIC,
    rescale: options.rescale,
  };
  const half = info.fps > 0 ? 0.5 / info.fps : 0.02;
  // On the absolute clock (-copyts): instant k is at base + k·step; a frame at t shows instants in [t-half, t+half).
  const base = info.startTimeSec + from;
  const first = (t: number) => Math.ceil((t - base - half + EPS) / step);
  const end = (t: number) => Math.ceil((t - base + half + EPS) / step);
  const select = `select='lt(ceil((t-${base}-${half}+${EPS})/${step}),ceil((t-${base}+${half}+${EPS})/${step}))'`;
  const graph =
    `[0:${info.streamIndex}]${select},scale=${width}:${height}:flags=bicubic,setsar=1,showinfo@dense=checksum=0,` +
    `${await rgbFilter(info)}[out]`;
  const seekTo = Math.max(0, info.startTimeSec + from - 2 * half);
  const args = [
    ...['-nostdin', '-hide_banner', '-nostats', '-loglevel', 'info', '-copyts'],
    // Decoder threads: one core fewer than the machine has, at most 4. A scan's reader, its preparation thread and
    // the model use the rest; on 2 cores one decoding thread finished a 10-minute scan ~2 s sooner than two.
    ...['-threads', String(Math.max(1, Math.min(4, availableParallelism() - 1)))],
    ...['-ss', seekTo.toFixed(6), '-t', (to - from + 4 * half).toFixed(6), '-i', fileInput(path)],
    ...[
      '-filter_complex',
      graph,
      '-filter_complex_threads',
      '1',
      '-map',
      '[out]',
      '-fps_mode',
      'passthrough',
    ],
    ...['-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'],
  ];

  const frameBytes = width * height * 3;
  const pts: number[] = [];
  /** Whole frames decoded and not yet taken (taken ones are dropped: the queue holds what waits, no more). */
  const bytes: Buffer[] = [];
  let taken = 0; // frames taken from the front of `bytes` so far (bytes[0] is frame number `taken`)
  let partial: Buffer[] = [];
  let partialBytes = 0;
  const complaints: string[] = [];
  let wake: (() => void) | null = null;
  const notify = () => {
    wake?.();
    wake = null;
  };
  // Backpressure: past MAX_QUEUED_BYTES of frames waiting, ffmpeg's pipe is paused until half of them are taken.
  const maxQueued = Math.max(2, Math.floor(MAX_QUEUED_BYTES / frameBytes));
  let flow: { pause(): void; resume(): void } | null = null;
  let paused = false;
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const state: { outcome: { error: unknown } | null } = { outcome: null };
  const running = runProcess(ffmpeg.path, args, {
    signal: stop.signal,
    onFlow: (f) => (flow = f),
    onStdout: (chunk) => {
      partial.push(chunk);
      partialBytes += chunk.length;
      if (partialBytes >= frameBytes) {
        let joined = partial.length === 1 ? partial[0]! : Buffer.concat(partial, partialBytes);
        while (joined.length >= frameBytes) {
          bytes.push(joined.subarray(0, frameBytes));
          joined = joined.subarray(frameBytes);
        }
        partial = joined.length ? [joined] : [];
        partialBytes = joined.length;
        if (bytes.length >= maxQueued && !paused) {
          paused = true;
          flow?.pause();
        }
      }
      notify();
    },
    onStderrLine: (line) => {
      const match = /^\[showinfo@dense @ [^\]]*\] n:\s*\d+\s+pts:\s*-?\d+\s+pts_time:(\S+)/.exec(line);
      if (match) pts.push(Number(match[1]));
      else if (complaints.length < 20 && !line.startsWith('[showinfo@'))
        complaints.push(...corruptionLines(line, path));
      notify();
    },
  }).then(
    () => void (state.outcome = { error: null }),
    (error: unknown) => void (state.outcome = { error }),
  );
  /** The next whole frame, taken off the queue (resuming ffmpeg once the queue has drained to half). */
  const take = (): Buffer => {
    const frame = bytes.shift()!;
    taken++;
    if (paused && bytes.length <= maxQueued / 2) {
      paused = false;
      flow?.resume();
    }
    return frame;
  };

  try {
    let next = 0; // first instant not yet given to a frame
    let held: { timeSec: number; ticks: number[]; rgb: Buffer } | null = null;
    const finish = (frame: NonNullable<typeof held>): DenseFrame => {
      let pixels: Float32Array<ArrayBuffer> | null = null;
      let prepared: Promise<Float32Array<ArrayBuffer>> | null = null;
      const image = () => ({
        width,
        height,
        data: new Uint8Array(frame.rgb.buffer, frame.rgb.byteOffset, frame.rgb.length),
      });
      return {
        timeSec: frame.timeSec,
        ticks: frame.ticks,
        // prepared on first read: a caller that skips a frame (its features are cached) pays no resize
        get pixels() {
          pixels ??= prepareFrame(image(), spec).pixels;
          return pixels;
        },
        prepare() {
          prepared ??= pixels ? Promise.resolve(pixels) : preparePixels(image(), spec);
          return prepared;
        },
      };
    };
    for (;;) {
      if (bytes.length && taken < pts.length) {
        const t = pts[taken]!;
        const rgb = take();
        const a = Math.max(first(t), 0);
        const b = Math.min(end(t), ticks.length);
        if (b <= next) continue; // a frame for instants already given (or none of them)
        const frame = { timeSec: t - info.startTimeSec, ticks: [] as number[], rgb };
        for (let k = next; k < Math.max(a, next); k++) {
          // an instant between frames (variable frame rate): the nearer one shows it
          const nearHeld = held && Math.abs(ticks[k]! - held.timeSec) <= Math.abs(ticks[k]! - frame.timeSec);
          (nearHeld ? held!.ticks : frame.ticks).push(k);
        }
        for (let k = Math.max(a, next); k < b; k++) frame.ticks.push(k);
        next = b;
        if (held?.ticks.length) yield finish(held);
        held = frame;
        continue;
      }
      const { outcome } = state;
      if (outcome) {
        if (bytes.length && taken >= pts.length && !outcome.error)
          throw new LoupeError('FFMPEG_FAILED', `ffmpeg's frame log does not match its output for ${path}.`);
        if (!(bytes.length && taken < pts.length)) break;
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        void running.then(resolve);
      });
    }
    const error = state.outcome?.error;
    if (error) {
      if (signal?.aborted) throw cancelled();
      if (error instanceof LoupeError && error.code === 'FFMPEG_FAILED' && complaints.length)
        throw corrupt(path, complaints.join('\n'), error);
      throw error;
    }
    if (!held) {
      if (complaints.length) throw corrupt(path, complaints.join('\n'));
      throw new LoupeError(
        'FFMPEG_FAILED',
        `ffmpeg decoded no frame between ${formatTime(from)} and ${formatTime(to)} in ${path}.`,
        { path },
      );
    }
    for (let k = next; k < ticks.length; k++) held.ticks.push(k); // instants after the last frame
    yield finish(held);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stop.abort();
    await running;
  }
}
