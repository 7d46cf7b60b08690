/**
 * Decode the frames shown at a list of instants with ONE ffmpeg process per batch: each instant is its own
 * input (`-noaccurate_seek -ss T -i file`, so the cost depends on the GOP, not the video's length), decoded up to
 * T, shrunk, and the last frame before T kept; the kept frames are joined with concat into one output stream.
 */
import { LoupeError } from '../errors.ts';
import { ffmpegHasFilter, resolveBinaries } from './binaries.ts';
import { corrupt, corruptionLines, fileInput, statMedia, type MediaInfo } from './probe.ts';
import { lastLines, runProcess } from './process.ts';
import { formatTime } from './frame-times.ts';

/** Inputs per ffmpeg process: each holds a demuxer and decoder open for the whole run. */
const BATCH = 16;

export interface GrabRequest {
  info: MediaInfo;
  /** Instants on the player's clock (0 = first frame); ignored for an image. */
  times: number[];
  /** Size the picture is scaled to (the display aspect is the caller's business). */
  width: number;
  height: number;
  /** Filters after the frame has become full-range rgb24, the same for every frame (pad, format...). */
  tail: string;
  /**
   * Keep only frames this many seconds before each instant while looking for the one shown (a frame-sized
   * buffer instead of the whole keyframe interval, for full-size frames); an instant with no frame in that
   * window (a variable-frame-rate gap) is looked for again without it.
   */
  lookbackSec?: number;
  /** Output options, ending with the output itself. */
  output: string[];
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface GrabResult {
  /** The frames, in the order of `times`, as the output options encode them. */
  stdout: Buffer;
  /** Each frame's presentation time on the player's clock. */
  timesSec: number[];
}

export async function grabFrames(request: GrabRequest): Promise<GrabResult> {
  const { info } = request;
  await statMedia(info.path); // a file deleted since probing is FILE_NOT_FOUND, not an ffmpeg failure
  const { ffmpeg } = await resolveBinaries();
  const toRgb = await rgbFilter(info);
  const times = info.kind === 'image' ? [0] : request.times;
  const chunks: Buffer[] = [];
  const timesSec: number[] = [];
  for (let first = 0; first < times.length; first += BATCH) {
    const batch = times.slice(first, first + BATCH);
    const { stdout, shown } = await runBatch(ffmpeg.path, request, batch, toRgb).catch((error: unknown) => {
      if (
        request.lookbackSec === undefined ||
        !(error instanceof LoupeError) ||
        error.code !== 'FFMPEG_FAILED'
      )
        throw error;
      return runBatch(ffmpeg.path, { ...request, lookbackSec: undefined }, batch, toRgb);
    });
    chunks.push(stdout);
    timesSec.push(...shown);
  }
  return { stdout: Buffer.concat(chunks), timesSec };
}

async function runBatch(ffmpeg: string, request: GrabRequest, times: number[], toRgb: string) {
  const { info, width, height, tail } = request;
  const isImage = info.kind === 'image';
  // Ask for the frame shown half a frame after t: for constant frame rates that is the frame nearest to t.
  const halfFrame = info.fps > 0 ? 0.5 / info.fps : 0.02;
  const args = ['-nostdin', '-hide_banner', '-nostats', '-loglevel', 'info', '-copyts'];
  const chains: string[] = [];
  times.forEach((t, i) => {
    const shrink = `scale=${width}:${height}:flags=bicubic,setsar=1,showinfo@f${i}`;
    const finish = `${toRgb},${tail}[v${i}]`;
    if (isImage) {
      args.push('-threads', '2', '-i', fileInput(info.path));
      chains.push(`[${i}:${info.streamIndex}]${shrink},${finish}`);
      return;
    }
    const until = Math.max(t, info.videoStartSec) + halfFrame;
    // -ss counts from the container's start; with -copyts, trim and showinfo see absolute timestamps.
    args.push('-threads', '2', '-noaccurate_seek', '-ss', until.toFixed(6), '-i', fileInput(info.path));
    const untilPts = (info.startTimeSec + until).toFixed(6);
    const { lookbackSec } = request;
    const window =
      lookbackSec === undefined
        ? ''
        : `trim=start=${Math.max(0, info.startTimeSec + until - lookbackSec).toFixed(6)},`;
    // Frames from the keyframe (or the lookback window) up to `until`; reverse hands the last of them to trim first.
    chains.push(
      `[${i}:${info.streamIndex}]trim=end=${untilPts},${window}${shrink},reverse,trim=end_frame=1,${finish}`,
    );
  });
  const inputs = times.map((_, i) => `[v${i}]`).join('');
  // Frames picked from one keyframe interval can share a timestamp after concat; encoders such as mjpeg
  // refuse non-increasing pts, so number the output frames (their real times come from showinfo above).
  const graph = `${chains.join(';')};${inputs}concat=n=${times.length}:v=1:a=0,setpts=N/TB[out]`;
  args.push(
    '-filter_complex',
    graph,
    '-filter_complex_threads',
    '1',
    '-map',
    '[out]',
    '-fps_mode',
    'passthrough',
  );
  if (isImage) args.push('-frames:v', '1');
  args.push(...request.output);

  // showinfo sits before reverse, so the last line of each instance describes the frame that was kept.
  // Complaints about damaged data are kept apart: showinfo's lines would push them out of the stderr tail.
  const lastPts = new Map<number, number>();
  const complaints: string[] = [];
  const onStderrLine = (line: string) => {
    const match = /^\[showinfo@f(\d+) @ [^\]]*\] n:\s*\d+\s+pts:\s*-?\d+\s+pts_time:(\S+)/.exec(line);
    if (match) lastPts.set(Number(match[1]), Number(match[2]));
    else if (complaints.length < 20 && !line.startsWith('[showinfo@'))
      complaints.push(...corruptionLines(line, info.path));
  };
  const { signal, timeoutMs } = request;
  const result = await runProcess(ffmpeg, args, { onStderrLine, signal, timeoutMs }).catch(
    (error: unknown) => {
      if (error instanceof LoupeError && error.code === 'FFMPEG_FAILED' && complaints.length) {
        throw corrupt(info.path, complaints.join('\n'), error);
      }
      throw error;
    },
  );

  const shown = times.map((t, i) => {
    const pts = lastPts.get(i);
    if (pts !== undefined) return isImage ? 0 : pts - info.startTimeSec;
    if (complaints.length) throw corrupt(info.path, complaints.join('\n'));
    throw new LoupeError('FFMPEG_FAILED', `ffmpeg decoded no frame near ${formatTime(t)} in ${info.path}.`, {
      path: info.path,
      timeSec: t,
      stderr: lastLines(result.stderr, 10),
    });
  });
  return { stdout: result.stdout, shown };
}

/**
 * Filters turning a (small) decoded frame into full-range rgb24 with the stream's own matrix and range,
 * so untagged or unusual files are not silently read as BT.601 limited. PQ/HLG is tone-mapped to SDR BT.709
 * with zscale+tonemap; builds without them fall back to a plain BT.2020 matrix conversion (dim, flat colors).
 */
export async function rgbFilter(info: MediaInfo): Promise<string> {
  if (RGB_LIKE.test(info.pixFmt)) return 'format=rgb24';
  const range =
    info.colorRange !== 'unknown' ? info.colorRange : info.pixFmt.startsWith('yuvj') ? 'full' : 'limited';
  if (info.isHdr && (await ffmpegHasFilter('zscale')) && (await ffmpegHasFilter('tonemap'))) {
    const matrix = info.colorSpace === 'bt2020c' ? 'bt2020c' : 'bt2020nc';
    return (
      `zscale=tin=${info.colorTransfer}:min=${matrix}:pin=bt2020:rin=${range}:t=linear:npl=100,format=gbrpf32le,` +
      'zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=full,format=rgb24'
    );
  }
  return (
    `scale=in_color_matrix=${swscaleMatrix(info)}:in_range=${range}:out_range=full:` +
    'flags=bicubic+accurate_rnd+full_chroma_int,format=rgb24'
  );
}

const RGB_LIKE = /^(rgb|bgr|gbr|argb|abgr|0rgb|0bgr|x2rgb|x2bgr|gray|ya|pal|mono)/;

function swscaleMatrix(info: MediaInfo): string {
  switch (info.colorSpace) {
    case 'bt709':
      return 'bt709';
    case 'bt470bg':
    case 'smpte170m':
      return 'bt601';
    case 'bt2020nc':
    case 'bt2020c':
      return 'bt2020';
    case 'smpte240m':
      return 'smpte240m';
    case 'fcc':
      return 'fcc';
    default:
      // Untagged: what players assume, BT.709 for HD and BT.601 for SD and for JPEG-style images.
      return info.kind === 'video' && (info.height >= 720 || info.width >= 1280) ? 'bt709' : 'bt601';
  }
}

/** The largest size of aspect w:h that fits a box×box square. */
export function fitInside(w: number, h: number, box: number): [number, number] {
  const scale = Math.min(box / w, box / h);
  return [
    Math.min(box, Math.max(1, Math.round(w * scale))),
    Math.min(box, Math.max(1, Math.round(h * scale))),
  ];
}
