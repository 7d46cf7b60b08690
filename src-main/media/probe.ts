/** What a media file is: ffprobe's view, normalized, plus typed errors for everything Loupe cannot use. */
import { open, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { LoupeError } from '../errors.ts';
import { resolveBinaries } from './binaries.ts';
import { frameIndex, needsFrameIndex } from './frame-index.ts';
import { lastLines, runProcess } from './process.ts';

export interface MediaInfo {
  path: string;
  kind: 'video' | 'image';
  /** First name of ffprobe's format_name: "mov" (mp4/mov), "matroska", "png_pipe"... */
  container: string;
  /** Length of the video stream (0 for an image). */
  durationSec: number;
  /** The container's start_time: subtracted from every pts so that the player's clock starts at 0. */
  startTimeSec: number;
  /** When the first video frame shows on the player's clock (usually 0; later in some MPEG-TS files). */
  videoStartSec: number;
  /** Average frame rate (0 for an image). */
  fps: number;
  /** The rate every timestamp fits (ffprobe's r_frame_rate): above `fps` for variable-rate video. */
  baseFps: number;
  /** Coded size of the frames. */
  width: number;
  height: number;
  /** Size as shown: after the sample aspect ratio and the rotation. */
  displayWidth: number;
  displayHeight: number;
  /** Clockwise degrees a player turns the frames (0, 90, 180 or 270). */
  rotation: number;
  codec: string;
  pixFmt: string;
  bitDepth: number;
  /** ffprobe names: "bt709", "bt470bg", "smpte170m", "bt2020nc"... or "unknown". */
  colorSpace: string;
  colorRange: 'limited' | 'full' | 'unknown';
  /** ffprobe names: "bt709", "smpte2084" (PQ), "arib-std-b67" (HLG)... or "unknown". */
  colorTransfer: string;
  isHdr: boolean;
  hasAudio: boolean;
  /** The container's frame count when it records one. */
  frameCount?: number;
  /**
   * MPEG-TS/PS only: how often the timestamps jump (spliced recordings). Times on the player's clock then
   * follow ffmpeg's (and so the playable copy's) continuous clock, and the duration is the content's.
   */
  timestampJumps?: number;
  /** Index of the video stream used, for ffmpeg's stream specifiers. */
  streamIndex: number;
  sizeBytes: number;
  mtimeMs: number;
}

export interface ProbeOptions {
  /** Also decode the first frame, so that a damaged start is reported as CORRUPT_MEDIA now (default true). */
  decodeCheck?: boolean;
}

interface FfprobeStream {
  index: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  sample_aspect_ratio?: string;
  pix_fmt?: string;
  color_range?: string;
  color_space?: string;
  color_transfer?: string;
  r_frame_rate?: string;
  avg_frame_rate?: string;
  start_time?: string;
  duration?: string;
  nb_frames?: string;
  bits_per_raw_sample?: string;
  disposition?: { attached_pic?: number };
  tags?: Record<string, string>;
  side_data_list?: Array<{ side_data_type?: string; rotation?: number }>;
}

interface FfprobeOutput {
  streams?: FfprobeStream[];
  format?: { format_name?: string; start_time?: string; duration?: string };
}

/** Demuxers and codecs that hold a single still picture. */
const IMAGE_FORMAT = /(_pipe|^image2)$/;
const IMAGE_CODECS = new Set(['png', 'mjpeg', 'webp', 'bmp', 'tiff', 'jpeg2000', 'jpegxl', 'gif', 'qoi']);
const HDR_TRANSFERS = new Set(['smpte2084', 'arib-std-b67']);
/** Messages from ffmpeg/ffprobe that mean the data is damaged rather than of an unknown kind. */
export const CORRUPTION_PATTERN =
  /invalid data found|moov atom not found|partial file|error (while )?decoding|decoding error|error submitting packet|invalid nal|corrupt|truncat|end of file|missing picture|no frame!/i;

/** Recent successful probes, keyed by path, size and mtime: sampling after probing need not ask ffprobe twice. */
const recent = new Map<string, MediaInfo>();
const RECENT_MAX = 64;

/** Forget the remembered probes (Clear caches): the next probe of each file asks ffprobe again. */
export function forgetProbes(): void {
  recent.clear();
}

/** The lines of an ffmpeg log that complain about damaged data (the file's own name aside, which may say "corrupt"). */
export function corruptionLines(stderr: string, path: string): string[] {
  return stderr
    .split(/\r?\n/)
    .filter(
      (line) => !/^\s|^(Input|Output) #/.test(line) && CORRUPTION_PATTERN.test(line.replaceAll(path, '')),
    );
}

/** Demuxers that accept what is no video: text as ANSI art (tty, bin, xbin, adf, idf), playlists of other files. */
const NOT_VIDEO_FORMATS = new Set(['tty', 'bin', 'xbin', 'adf', 'idf', 'hls', 'concat', 'ffmetadata']);

/** Probe `path`: what it is and how to read it. Throws LoupeError with a media code for unusable files. */
export async function probe(
  path: string,
  signal?: AbortSignal,
  options: ProbeOptions = {},
): Promise<MediaInfo> {
  const stats = await statMedia(path);
  const key = `${path}\0${stats.size}\0${stats.mtimeMs}\0${options.decodeCheck ?? true}`;
  const known = recent.get(key);
  if (known) return { ...known };
  const info = await probeFile(path, stats, signal, options);
  if (recent.size >= RECENT_MAX) recent.delete(recent.keys().next().value!);
  recent.set(key, info);
  return { ...info };
}

async function probeFile(
  path: string,
  stats: Stats,
  signal: AbortSignal | undefined,
  options: ProbeOptions,
): Promise<MediaInfo> {
  const { ffprobe } = await resolveBinaries();
  let data: FfprobeOutput;
  try {
    const { stdout } = await runProcess(
      ffprobe.path,
      ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', fileInput(path)],
      { signal, timeoutMs: 60_000 },
    );
    data = JSON.parse(stdout.toString('utf8')) as FfprobeOutput;
  } catch (error) {
    if (error instanceof LoupeError && error.code === 'FFMPEG_FAILED' && !error.details.timedOut) {
      throw await unreadable(path, String(error.details.stderr ?? ''), error);
    }
    throw error;
  }

  const streams = data.streams ?? [];
  const format = data.format ?? {};
  const video = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  const hasAudio = streams.some((s) => s.codec_type === 'audio');
  if (!video) {
    if (hasAudio) {
      throw new LoupeError('NO_VIDEO_STREAM', `${path} has sound but no pictures: choose a video file.`, {
        path,
      });
    }
    if (streams.length === 0 && !(num(format.duration) > 0)) throw zeroDuration(path);
    throw notAVideo(path);
  }

  const formatName = format.format_name ?? 'unknown';
  // ffprobe reads any text file as ANSI art (a "video"), and playlists stand for other files: neither is a video.
  if (formatName.split(',').some((f) => NOT_VIDEO_FORMATS.has(f)))
    throw notAVideo(path, `it is ${formatName === 'tty' ? 'text' : `a ${formatName} file`}, not a video`);
  const codec = video.codec_name ?? 'unknown';
  const frameCount = int(video.nb_frames);
  const kind: MediaInfo['kind'] =
    IMAGE_FORMAT.test(formatName) ||
    (IMAGE_CODECS.has(codec) && (frameCount ?? 1) <= 1 && !(num(video.duration) > 0))
      ? 'image'
      : 'video';

  const width = video.width ?? 0;
  const height = video.height ?? 0;
  if (!width || !height)
    throw new LoupeError('CORRUPT_MEDIA', `${path} has a video stream without a frame size.`, { path });
  const rotation = rotationOf(video);
  const sar = ratio(video.sample_aspect_ratio?.replace(':', '/')) || 1;
  const sarWidth = Math.round(width * sar);
  const quarterTurn = rotation === 90 || rotation === 270;

  const startTimeSec = firstFinite(num(format.start_time), num(video.start_time), 0);
  const fps = kind === 'image' ? 0 : ratio(video.avg_frame_rate) || ratio(video.r_frame_rate);
  let durationSec = 0;
  if (kind === 'video') {
    durationSec = num(video.duration) || num(format.duration) || (frameCount && fps ? frameCount / fps : 0);
    if (!(durationSec > 0) || frameCount === 0) throw zeroDuration(path);
  }
  const colorRange = video.color_range === 'pc' ? 'full' : video.color_range === 'tv' ? 'limited' : 'unknown';
  const colorTransfer = video.color_transfer ?? 'unknown';
  const pixFmt = video.pix_fmt ?? 'unknown';

  const info: MediaInfo = {
    path,
    kind,
    container: formatName.split(',')[0]!,
    durationSec,
    startTimeSec,
    videoStartSec:
      kind === 'video' ? Math.max(0, firstFinite(num(video.start_time), startTimeSec) - startTimeSec) : 0,
    fps,
    baseFps: kind === 'image' ? 0 : Math.max(fps, ratio(video.r_frame_rate)),
    width,
    height,
    displayWidth: quarterTurn ? height : sarWidth,
    displayHeight: quarterTurn ? sarWidth : height,
    rotation,
    codec,
    pixFmt,
    bitDepth: int(video.bits_per_raw_sample) || Number(/p(\d+)(le|be)$/.exec(pixFmt)?.[1] ?? 8),
    colorSpace: video.color_space ?? 'unknown',
    colorRange,
    colorTransfer,
    isHdr: HDR_TRANSFERS.has(colorTransfer),
    hasAudio,
    streamIndex: video.index,
    sizeBytes: stats.size,
    mtimeMs: stats.mtimeMs,
  };
  if (frameCount !== undefined) info.frameCount = frameCount;
  if (kind === 'video' && needsFrameIndex(info.container)) {
    // These containers' start times, durations and seeks cannot be trusted: read the packet index.
    const index = await frameIndex(
      ffprobe.path,
      { ...info, input: fileInput(path) },
      startTimeSec,
      fps,
      signal,
    );
    if (index.frames.length === 0) throw zeroDuration(path);
    info.durationSec = index.durationSec;
    info.videoStartSec = Math.max(0, index.frames[0]!.sec);
    info.timestampJumps = index.jumps;
    info.frameCount ??= index.frames.length;
  }
  if (options.decodeCheck ?? true) await checkFirstFrame(info, signal);
  return info;
}

/** A local path as an ffmpeg input: the file: protocol keeps names like "pipe:x" or "http:…" from meaning more. */
export function fileInput(path: string): string {
  return `file:${path}`;
}

/** Stat the file, turning the usual failures into FILE_NOT_FOUND / NOT_A_VIDEO. */
export async function statMedia(path: string): Promise<Stats> {
  let stats: Stats;
  try {
    stats = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'EACCES' || code === 'EPERM' ? 'cannot be opened (permission denied)' : 'does not exist';
    throw new LoupeError('FILE_NOT_FOUND', `${path} ${why}.`, { path, errno: code });
  }
  if (!stats.isFile())
    throw new LoupeError('NOT_A_VIDEO', `${path} is a folder, not a video or image.`, { path });
  if (stats.size === 0) throw notAVideo(path, 'it is empty');
  return stats;
}

/** Decode the first frame; a start ffmpeg cannot decode means the file is damaged. */
async function checkFirstFrame(info: MediaInfo, signal?: AbortSignal): Promise<void> {
  const { ffmpeg } = await resolveBinaries();
  const args = ['-nostdin', '-hide_banner', '-v', 'error', '-threads', '1', '-i', fileInput(info.path)];
  args.push('-map', `0:${info.streamIndex}`, '-frames:v', '1', '-f', 'framecrc', 'pipe:1');
  let result;
  try {
    result = await runProcess(ffmpeg.path, args, { signal, timeoutMs: 60_000 });
  } catch (error) {
    if (error instanceof LoupeError && error.code === 'FFMPEG_FAILED' && !error.details.timedOut) {
      throw corrupt(info.path, String(error.details.stderr ?? ''), error);
    }
    throw error;
  }
  const frames = result.stdout
    .toString('utf8')
    .split('\n')
    .filter((line) => /^\d/.test(line)).length;
  if (frames === 0 || corruptionLines(result.stderr, info.path).length)
    throw corrupt(info.path, result.stderr);
}

/** ffprobe gave up: damaged media if the file starts like a media container, otherwise something else. */
async function unreadable(path: string, stderr: string, cause: unknown): Promise<LoupeError> {
  return (await looksLikeMedia(path)) && corruptionLines(stderr, path).length
    ? corrupt(path, stderr, cause)
    : notAVideo(path, undefined, stderr, cause);
}

/** Magic numbers of common video and image containers. */
async function looksLikeMedia(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    // Zero-filled past the end of short files, which matches no signature.
    const { buffer: head } = await handle.read(Buffer.alloc(256), 0, 256, 0);
    const ascii = head.toString('latin1');
    return (
      /^....(ftyp|moov|mdat|free|wide|skip)/s.test(ascii) || // ISO BMFF: mp4, mov, m4v, 3gp
      head.readUInt32BE(0) === 0x1a45dfa3 || // EBML: mkv, webm
      /^(RIFF|OggS|FLV|\x89PNG|GIF8)/.test(ascii) ||
      (head[0] === 0xff && head[1] === 0xd8) || // JPEG
      (head[0] === 0x47 && head[188] === 0x47) || // MPEG-TS packets
      head.readUInt32BE(0) === 0x000001ba // MPEG-PS
    );
  } finally {
    await handle.close();
  }
}

export function corrupt(path: string, stderr: string, cause?: unknown): LoupeError {
  // The first complaint is the telling one ("moov atom not found"); drop ffmpeg's "[demuxer @ 0x…]" prefix.
  const first = corruptionLines(stderr, path)[0]
    ?.replace(/^(\[[^\]]*\]\s*)+/, '')
    .replace(`${fileInput(path)}: `, '')
    .replace(/\.$/, '')
    .trim();
  return new LoupeError(
    'CORRUPT_MEDIA',
    `${path} looks damaged or incomplete (${first || 'no frame could be decoded'}). ` +
      'If it is still downloading or copying, wait for it to finish; otherwise re-export it.',
    { path, stderr: lastLines(stderr, 10) },
    { cause },
  );
}

function notAVideo(path: string, why?: string, stderr = '', cause?: unknown): LoupeError {
  return new LoupeError(
    'NOT_A_VIDEO',
    `${path} is not a video or image Loupe can read${why ? ` (${why})` : ''}.`,
    { path, stderr: lastLines(stderr, 5) },
    { cause },
  );
}

function zeroDuration(path: string): LoupeError {
  return new LoupeError('ZERO_DURATION', `${path} contains no video frames (its duration is 0).`, { path });
}

/** Clockwise display rotation from the display matrix (counter-clockwise in ffprobe) or a legacy rotate tag. */
function rotationOf(stream: FfprobeStream): number {
  const matrix = stream.side_data_list?.find(
    (d) => d.side_data_type === 'Display Matrix' && d.rotation !== undefined,
  );
  const degrees = matrix ? -Number(matrix.rotation) : Number(stream.tags?.rotate ?? 0);
  if (!Number.isFinite(degrees)) return 0;
  return (((Math.round(degrees / 90) * 90) % 360) + 360) % 360;
}

function num(value: string | number | undefined): number {
  const n = Number(value);
  return value === undefined || value === 'N/A' || !Number.isFinite(n) ? NaN : n;
}

function firstFinite(...values: number[]): number {
  return values.find(Number.isFinite) ?? NaN;
}

function int(value: string | undefined): number | undefined {
  const n = num(value);
  return Number.isInteger(n) ? n : undefined;
}

/** "30000/1001" → 29.97; 0 for missing or "0/0". */
function ratio(value: string | undefined): number {
  const [a, b] = (value ?? '').split('/').map(Number);
  const r = b === undefined ? Number(a) : Number(a) / b;
  return Number.isFinite(r) && r > 0 ? r : 0;
}
