/**
 * Frames for the model: uniformly spread over a range, decoded at full resolution (rotation, SAR and colour
 * applied by ffmpeg), then padded to a square and resized as the reference does (`preprocess.ts`), CHW floats.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { LoupeError } from '../errors.ts';
import { clampRange, frameTimes } from './frame-times.ts';
import { grabFrames } from './grab.ts';
import { segmentsAround, type SampleMode } from './grab-plan.ts';
import { decodeJpeg } from './jpeg.ts';
import { prepareFrame, type ResizeSpec, type Rgb, type RgbImage } from './preprocess.ts';
import { probe, statMedia, type MediaInfo } from './probe.ts';

export type { Rgb } from './preprocess.ts';

/** The reference processors' resize (CLIP, SigLIP): Pillow's bicubic, antialiased when shrinking. */
export const PIL_BICUBIC: ResizeSpec = { kernel: 'bicubic', a: -0.5, antialias: true };

export interface FrameFormat {
  /** Side of the model's square input, e.g. 96. */
  size: number;
  /** Per-channel normalization in 0..1 units: pixels = (x/255 - mean) / std. */
  mean: Rgb;
  std: Rgb;
  /** Letterbox color in 0..255; defaults to round(mean × 255), i.e. zero after normalization. */
  pad?: Rgb;
  /** The resize after padding to a square; defaults to PIL_BICUBIC. */
  resize?: ResizeSpec;
  /** Rescale factor before normalization; defaults to 1/255. */
  rescale?: number;
  signal?: AbortSignal;
  /** A probe result for this file, to skip probing again. */
  info?: MediaInfo;
  timeoutMs?: number;
  /** exact (default): the frame shown at each instant; fast: the keyframe nearest it inside its segment. */
  mode?: SampleMode;
}

export interface SampleOptions extends FrameFormat {
  /** Range on the player's clock in seconds; defaults to the whole video. */
  from?: number;
  to?: number;
  /** How many frames (fewer when the range holds fewer source frames). */
  count: number;
}

export interface SampledFrame {
  /** The frame's real presentation time as a player shows it (pts minus the container's start_time). */
  timeSec: number;
  /** The instant that was asked for. */
  requestedSec: number;
  /** CHW, 3 × size × size, (x/255 - mean) / std. */
  pixels: Float32Array<ArrayBuffer>;
  /** HWC, size × size × 3, padded to a square and resized: for debugging and thumbnails. */
  rgb: Uint8Array<ArrayBuffer>;
}

/** Sample `count` frames spread evenly over [from, to] of `path` (one, at time 0, for a still image). */
export async function sampleFrames(path: string, options: SampleOptions): Promise<SampledFrame[]> {
  const info = options.info ?? (await probe(path, options.signal));
  const { from, to } = clampRange(info, options.from, options.to);
  const times = info.kind === 'image' ? [0] : frameTimes(from, to, options.count, info.fps);
  return sampleFramesAt(path, times, { ...options, info }, segmentsAround(times, { from, to }));
}

/**
 * The frames shown at `times` (player's clock, in seconds): for each, the frame whose presentation time is
 * nearest (for constant frame rates). A still image yields its one picture for every requested time.
 */
export async function sampleFramesAt(
  path: string,
  times: readonly number[],
  format: FrameFormat,
  segments?: { from: number; to: number }[],
): Promise<SampledFrame[]> {
  const { size, mean, std, signal } = format;
  checkFormat(format);
  const info = format.info ?? (await probe(path, signal));
  if (info.kind === 'video') {
    for (const t of times) clampRange(info, t, info.durationSec); // RANGE_OUTSIDE for instants off the video
  }
  const pad = format.pad ?? mean.map((m) => Math.round(m * 255));
  const spec = { size, mean, std, pad, resize: format.resize ?? PIL_BICUBIC, rescale: format.rescale };
  // Each frame is prepared as soon as ffmpeg has written it, while ffmpeg decodes the next.
  const prepared = new WeakMap<Uint8Array, ReturnType<typeof prepareFrame>>();
  const { displayWidth: width, displayHeight: height } = info;
  const decoded = await decodeFrames(path, times, { ...format, info }, segments, (data) =>
    prepared.set(data, prepareFrame({ width, height, data }, spec)),
  );
  const frames = decoded.map(({ timeSec, image }) => ({
    timeSec,
    ...(prepared.get(image.data) ?? prepareFrame(image, spec)),
  }));
  return times.map((requestedSec, i) => ({ ...frames[info.kind === 'image' ? 0 : i]!, requestedSec }));
}

/**
 * The frames shown at `times` as full-resolution RGB at the display size (after rotation and the sample
 * aspect ratio), before any padding or resizing. A still image yields its one picture.
 */
export function decodeFramesAt(
  path: string,
  times: readonly number[],
  options: { info?: MediaInfo; signal?: AbortSignal; timeoutMs?: number; mode?: SampleMode },
  segments?: { from: number; to: number }[],
): Promise<{ timeSec: number; image: RgbImage }[]> {
  return decodeFrames(path, times, options, segments);
}

/** decodeFramesAt, handing each raw frame (display size, rgb24) to `onFrame` as soon as ffmpeg has written it. */
async function decodeFrames(
  path: string,
  times: readonly number[],
  options: { info?: MediaInfo; signal?: AbortSignal; timeoutMs?: number; mode?: SampleMode },
  segments?: { from: number; to: number }[],
  onFrame?: (frame: Uint8Array) => void,
): Promise<{ timeSec: number; image: RgbImage }[]> {
  const { signal } = options;
  const info = options.info ?? (await probe(path, signal));
  const { displayWidth: width, displayHeight: height } = info;
  if (info.kind === 'image' && info.codec === 'mjpeg' && width === info.width && height === info.height) {
    // JPEG stills decode as Pillow decodes them (the reference opens stills with Pillow).
    await statMedia(path);
    const image = await decodeJpeg(path);
    if (image && image.width === width && image.height === height) return [{ timeSec: 0, image }];
  }
  const { frames: raw, timesSec } = await grabFrames({
    info,
    times: [...times],
    mode: options.mode,
    ...(segments ? { segments } : {}),
    frameBytes: width * height * 3,
    ...(onFrame ? { onFrame } : {}),
    width,
    height,
    tail: 'setsar=1',
    output: ['-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'],
    signal,
    timeoutMs: options.timeoutMs,
  });
  return timesSec.map((timeSec, i) => ({ timeSec, image: { width, height, data: raw[i]! } }));
}

/** Checks the model's input format (size, mean, std) and throws USAGE when it is not one. */
export function checkFormat({ size, mean, std }: Pick<FrameFormat, 'size' | 'mean' | 'std'>): void {
  if (!Number.isInteger(size) || size < 1)
    throw new LoupeError('USAGE', `The frame size must be a positive integer (got ${size}).`);
  if (mean.length !== 3 || std.length !== 3 || std.some((s) => !(s > 0))) {
    throw new LoupeError('USAGE', 'mean and std need three values each, and std must be positive.');
  }
}

const CHUNK = 64 * 1024;

/**
 * A fast content key for the frame-feature cache: sha256 of the size and three 64 KiB chunks (start, middle,
 * end). Reads at most 192 KiB whatever the file's size.
 */
export async function hashSampledBytes(path: string): Promise<string> {
  const { size } = await statMedia(path);
  const hash = createHash('sha256').update(`loupe-media-v1:${size}:`);
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(CHUNK);
    for (const offset of new Set([
      0,
      Math.max(0, Math.floor(size / 2) - CHUNK / 2),
      Math.max(0, size - CHUNK),
    ])) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, offset);
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}
