/** A strip of small JPEG frames along a whole video, for the timeline UI. */
import { LoupeError } from '../errors.ts';
import { frameTimes } from './frame-times.ts';
import { grabFrames } from './grab.ts';
import { probe, type MediaInfo } from './probe.ts';

export interface ThumbnailOptions {
  count: number;
  /** Width in pixels; the height follows the display aspect. */
  width: number;
  signal?: AbortSignal;
  info?: MediaInfo;
}

export interface Thumbnail {
  timeSec: number;
  jpeg: Buffer;
}

/** `count` JPEG thumbnails spread over the whole video (one for a still image), from one ffmpeg run. */
export async function thumbnails(path: string, options: ThumbnailOptions): Promise<Thumbnail[]> {
  const info = options.info ?? (await probe(path, options.signal));
  const times = info.kind === 'image' ? [0] : frameTimes(0, info.durationSec, options.count, info.fps);
  return thumbnailsAt(path, times, { ...options, info });
}

/** JPEG thumbnails of the frames shown at `times` (seconds on the player's clock), from one ffmpeg run per 16. */
export async function thumbnailsAt(
  path: string,
  times: readonly number[],
  options: Omit<ThumbnailOptions, 'count'>,
): Promise<Thumbnail[]> {
  const { width, signal } = options;
  if (!Number.isInteger(width) || width < 2)
    throw new LoupeError('USAGE', `Invalid thumbnail width ${width}.`);
  if (times.length === 0) return [];
  const info = options.info ?? (await probe(path, signal));
  const height = Math.max(2, Math.round((width * info.displayHeight) / info.displayWidth / 2) * 2);
  const { frames, timesSec } = await grabFrames({
    info,
    times: [...times],
    split: splitJpegs,
    width,
    height,
    tail: 'scale=out_color_matrix=bt601:out_range=full,format=yuvj420p',
    output: ['-c:v', 'mjpeg', '-q:v', '4', '-threads', '1', '-f', 'image2pipe', 'pipe:1'],
    signal,
  });
  return timesSec.map((timeSec, i) => ({ timeSec, jpeg: frames[i]! }));
}

/**
 * Split concatenated JPEGs by walking their marker segments: SOI (FFD8) … EOI (FFD9). Inside entropy-coded
 * data a literal 0xFF is followed by 0x00 and restart markers (FFD0–FFD7) belong to the data.
 */
export function splitJpegs(data: Buffer): Buffer[] {
  const images: Buffer[] = [];
  let i = 0;
  while (i + 1 < data.length && data[i] === 0xff && data[i + 1] === 0xd8) {
    const start = i;
    i += 2;
    let end = -1;
    while (end < 0 && i + 1 < data.length) {
      if (data[i] !== 0xff) return images; // not a marker: the stream is damaged, keep what is whole
      const marker = data[i + 1]!;
      if (marker === 0xd9) end = i + 2;
      else if (marker === 0xff)
        i += 1; // fill byte
      else if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01)
        i += 2; // no length field
      else {
        if (i + 3 >= data.length) return images;
        i += 2 + data.readUInt16BE(i + 2);
        if (marker === 0xda) {
          // Skip entropy-coded data up to the next real marker.
          while (i + 1 < data.length) {
            const next = data[i + 1]!;
            if (data[i] === 0xff && next !== 0x00 && !(next >= 0xd0 && next <= 0xd7)) break;
            i += 1;
          }
        }
      }
    }
    if (end < 0) break;
    images.push(data.subarray(start, end));
    i = end;
  }
  return images;
}
