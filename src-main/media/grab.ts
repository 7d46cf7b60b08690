/**
 * Decode the frames for a list of instants with as few ffmpeg processes as possible (one per 16 inputs).
 * grab-plan.ts decides which input decodes which frames (exact: the frame a player shows; fast: a nearby
 * keyframe inside each instant's segment); here the plan becomes one filter graph: each input's frames are
 * trimmed to the picks' windows, shrunk, and the chosen frame of each pick kept; the kept frames are joined
 * with concat into one output stream. Instants that found no frame (a seek that landed late, as in MPEG-TS)
 * are tried again from further back, down to the start of the file, so the only "no frame" left is a file
 * that has none.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { LoupeError } from '../errors.ts';
import { ffmpegHasFilter, resolveBinaries } from './binaries.ts';
import { frameIndex, needsFrameIndex, type FrameIndex } from './frame-index.ts';
import {
  exactFromKeyframes,
  exactPlan,
  firstMargin,
  frameShownBefore,
  indexedInput,
  keyframeBefore,
  keyframeInput,
  lookbackSec,
  nearestInside,
  segmentsAround,
  showUntil,
  type InputPlan,
  type SampleMode,
  type Segment,
  type TimeFacts,
} from './grab-plan.ts';
import { keyframesAt } from './keyframes.ts';
import { corrupt, corruptionLines, fileInput, statMedia, type MediaInfo } from './probe.ts';
import { lastLines, runProcess } from './process.ts';
import { formatTime } from './frame-times.ts';

/** Inputs per ffmpeg process: each holds a demuxer and decoder open for the whole run. */
const BATCH = 16;
/** How much further back each retry seeks (from the first margin up to the start of the file). */
const RETRY_FACTOR = 4;
const RETRIES = 3;
/** Fast mode looks for keyframes only when some segment is at least this long. */
const MIN_FAST_SEGMENT_SEC = 1;

export interface GrabRequest {
  info: MediaInfo;
  /** Instants on the player's clock (0 = first frame); ignored for an image. */
  times: number[];
  /** exact (default): the frame shown at each instant; fast: a keyframe inside each instant's segment. */
  mode?: SampleMode;
  /** Each instant's share of the range, for fast mode (default: half-way to its neighbours). */
  segments?: Segment[];
  /** Size the picture is scaled to (the display aspect is the caller's business). */
  width: number;
  height: number;
  /** Filters after the frame has become full-range rgb24, the same for every frame (pad, format...). */
  tail: string;
  /** Output options, ending with the output itself. */
  output: string[];
  /** Cuts the output into its frames (JPEGs...); see frameBytes for raw frames. */
  split?: (stdout: Buffer) => Buffer[];
  /** Raw frames of this many bytes each: the output is cut as it streams in (instead of `split`). */
  frameBytes?: number;
  /**
   * Called with each raw frame as soon as ffmpeg has written it, while ffmpeg decodes the next ones (so the
   * caller's work on a frame overlaps the decoding). The same Buffer object is returned in the result.
   */
  onFrame?: (frame: Buffer) => void;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface GrabResult {
  /** One encoded frame per instant, in the order of `times` (the same buffer where two instants share a frame). */
  frames: Buffer[];
  /** Each frame's presentation time on the player's clock: the frame actually used. */
  timesSec: number[];
}

interface Got {
  frame: Buffer;
  sec: number;
}

/**
 * Hardware decoding for inputs that decode many frames: `auto` (`-hwaccel auto` where a GPU device node exists),
 * `off`, or one of ffmpeg's methods by name (`cuda`, `vaapi`, `qsv`, …), asked for wherever it runs (a device at
 * an unusual path; LOUPE_HWACCEL sets it). See setHardwareDecoding.
 */
export type HardwareDecoding = 'auto' | 'off' | (string & {});
let hardware: HardwareDecoding = hardwareMode(process.env.LOUPE_HWACCEL);

function hardwareMode(value: string | undefined): HardwareDecoding {
  if (!value) return 'auto';
  if (!/^[a-z0-9_]+$/.test(value)) return 'auto'; // not a method ffmpeg could name
  return value;
}
/** Input and decoder pairs whose hardware decoding failed: they decode in software from then on (others do not). */
const hardwareFailed = new Set<string>();
const HARDWARE_FAILED_MAX = 1000;

const hardwareKey = (info: { path: string; codec: string }) => `${info.path}\0${info.codec}`;

/** Turn hardware decoding on ("auto": where a GPU device is present; or a method by name) or off. */
export function setHardwareDecoding(mode: HardwareDecoding): void {
  hardware = hardwareMode(mode);
  hardwareFailed.clear();
}

/**
 * Whether the next runs use `-hwaccel auto`: a GPU device node exists, and (given an input) hardware decoding
 * has not failed before for that input and decoder.
 */
export function hardwareDecoding(input?: { path: string; codec: string }): boolean {
  if (hardware === 'off' || (input && hardwareFailed.has(hardwareKey(input)))) return false;
  if (hardware !== 'auto') return true; // a method named by the user: asked for wherever it runs
  return ['/dev/nvidia0', '/dev/dri/renderD128'].some((device) => existsSync(device));
}

export async function grabFrames(request: GrabRequest): Promise<GrabResult> {
  const { info } = request;
  await statMedia(info.path); // a file deleted since probing is FILE_NOT_FOUND, not an ffmpeg failure
  const { ffmpeg, ffprobe } = await resolveBinaries();
  const toRgb = await rgbFilter(info);
  const times = info.kind === 'image' ? [0] : request.times;
  const index =
    info.kind === 'video' && needsFrameIndex(info.container)
      ? await frameIndex(
          ffprobe.path,
          { ...info, input: fileInput(info.path) },
          info.startTimeSec,
          info.fps,
          request.signal,
        )
      : undefined;
  // Complaints about damaged data from every run: a frame that is missing where the index says it is and a
  // complaint together mean a damaged file, not a late seek.
  const complaints: string[] = [];
  const context: RunContext = {
    ffmpeg: ffmpeg.path,
    request,
    toRgb,
    index,
    cores: availableParallelism(),
    complaints,
  };
  const run = (inputs: InputPlan[]) => runInputs(context, inputs);
  const damaged = () => {
    if (complaints.length) throw corrupt(info.path, complaints.join('\n'));
  };
  if (info.kind === 'image') {
    const got = await run([{ keyOnly: false, picks: [{ sample: 0, kind: 'first' }] }]);
    return finish(info, times, [got.get(0)]);
  }

  const facts: TimeFacts = {
    fps: info.baseFps || info.fps,
    videoStartSec: info.videoStartSec,
    startTimeSec: info.startTimeSec,
  };
  const all = times.map((_, i) => i);
  const got: (Got | undefined)[] = times.map(() => undefined);
  const keep = (results: Map<number, Got>) => results.forEach((g, i) => (got[i] ??= g));
  const missing = () => all.filter((i) => !got[i]);

  // 1. Fast mode: a keyframe inside each instant's segment, where there is one.
  let exact = all;
  /** Instants without a keyframe in their segment, and the keyframe before them (decoding starts there). */
  const fromKeys: { sample: number; keySec: number }[] = [];
  const segments = request.segments ?? segmentsAround(times);
  const longest = Math.max(...segments.map((g) => g.to - g.from));
  // Segments shorter than this rarely hold a keyframe of their own: looking would cost more than it saves.
  if (request.mode === 'fast' && longest >= MIN_FAST_SEGMENT_SEC) {
    const keyInputs = new Map<number, InputPlan>();
    if (index) {
      times.forEach((t, i) => {
        const k = nearestKeyframe(index, t, segments[i]!);
        if (k) keyInputs.set(i, indexedInput(i, k, k, true));
      });
    } else {
      // The keyframe at or before the instant, and the last one before the segment's end.
      const points = times.flatMap((t, i) => [t, Math.max(t, segments[i]!.to - 0.001)]);
      const found = await keyframesAt(ffprobe.path, info, points, request.signal);
      times.forEach((t, i) => {
        const candidates = [found[2 * i], found[2 * i + 1]].filter((k): k is number => k !== undefined);
        const k = nearestInside(candidates, t, segments[i]!);
        if (k !== undefined) keyInputs.set(i, keyframeInput(i, k, facts));
        else if (found[2 * i] !== undefined) fromKeys.push({ sample: i, keySec: found[2 * i]! });
      });
    }
    exact = all.filter((i) => !keyInputs.has(i));
    // The keyframes, and (at the same time, in a process of its own) the instants whose segment holds none,
    // in one pass from each keyframe the lookup found before them through all of its instants.
    const passes = [
      keyInputs.size ? run([...keyInputs.values()]) : null,
      fromKeys.length ? run(exactFromKeyframes(times, fromKeys, facts, lookbackSec(facts.fps))) : null,
    ];
    for (const pass of await Promise.allSettled(passes))
      if (pass.status === 'rejected') throw pass.reason;
      else if (pass.value) keep(pass.value);
    exact = [...exact, ...all.filter((i) => keyInputs.has(i) && !got[i])]; // a keyframe that did not decode
  }

  // 2. Exact: the frame shown at each instant, seeking further back for instants that found none.
  if (index) {
    if (exact.length) keep(await run(indexedExact(index, times, exact, facts)));
    const left = missing();
    if (left.length) damaged();
    if (left.length) keep(await run(left.map((i) => fromStart(index, times, i, facts))));
  } else {
    let margin = firstMargin(info.fps);
    let attempt = 0;
    const lookback = lookbackSec(facts.fps);
    if (fromKeys.length) {
      // Those passes were a first try: what they missed is tried again from further back.
      exact = missing();
      if (exact.length) damaged();
      [attempt, margin] = [1, margin * RETRY_FACTOR];
    }
    for (; exact.length && attempt <= RETRIES + 1; attempt++) {
      // A first try looks for each frame near its instant only; a retry seeks further back and looks anywhere.
      const near = attempt === 0 ? lookback : Infinity;
      keep(await run(exactPlan(times, exact, facts, attempt > RETRIES ? Infinity : margin, near)));
      exact = missing();
      if (exact.length) damaged();
      margin *= RETRY_FACTOR;
    }
  }
  return finish(info, times, got);
}

/** Whether a window ending at `end` (raw seconds) reaches the last frames of the video. */
function reachesEnd(info: MediaInfo, end: number | undefined): boolean {
  const frame = info.fps > 0 ? 1 / info.fps : 0.04;
  return end !== undefined && end - info.startTimeSec >= info.durationSec - 2 * frame;
}

function finish(info: MediaInfo, times: readonly number[], got: readonly (Got | undefined)[]): GrabResult {
  const frames: Buffer[] = [];
  const timesSec: number[] = [];
  times.forEach((t, i) => {
    const g = got[info.kind === 'image' ? 0 : i];
    // Every way back to the start of the file was tried: the video has no decodable frame there.
    if (!g)
      throw new LoupeError(
        'CORRUPT_MEDIA',
        `${info.path} looks damaged or incomplete (no frame could be decoded near ${formatTime(t)}). ` +
          'If it is still downloading or copying, wait for it to finish; otherwise re-export it.',
        { path: info.path, timeSec: t },
      );
    frames.push(g.frame);
    timesSec.push(g.sec);
  });
  return { frames, timesSec };
}

/** The keyframe nearest `t` inside the segment, from an index. */
function nearestKeyframe(index: FrameIndex, t: number, segment: Segment) {
  const secs = index.keyframes.map((k) => k.sec);
  const sec = nearestInside(secs, t, segment);
  return sec === undefined ? undefined : index.keyframes[secs.indexOf(sec)];
}

/** Exact picks on an indexed file: the frame shown, decoded from its keyframe's byte offset (shared per keyframe). */
function indexedExact(
  index: FrameIndex,
  times: readonly number[],
  samples: readonly number[],
  facts: TimeFacts,
) {
  const until = showUntil(times, facts);
  const byKeyframe = new Map<number, InputPlan>();
  for (const i of samples) {
    const frame = frameShownBefore(index, until[i]!);
    if (!frame) continue;
    const from = keyframeBefore(index, frame) ?? index.frames[0]!;
    const input = indexedInput(i, frame, from, false);
    const shared = byKeyframe.get(from.pos);
    if (shared) shared.picks.push(...input.picks);
    else byKeyframe.set(from.pos, input);
  }
  return [...byKeyframe.values()];
}

/** The last resort for an indexed file: decode from the first byte to the frame. */
function fromStart(index: FrameIndex, times: readonly number[], i: number, facts: TimeFacts): InputPlan {
  const frame = frameShownBefore(index, showUntil(times, facts)[i]!) ?? index.frames[0]!;
  return { keyOnly: false, picks: [{ sample: i, kind: 'first', start: frame.raw - 0.0005 }] };
}

/** What every ffmpeg run of one grab shares. */
interface RunContext {
  ffmpeg: string;
  request: GrabRequest;
  toRgb: string;
  index: FrameIndex | undefined;
  cores: number;
  /** Complaints about damaged data, from every run. */
  complaints: string[];
}

/** Run inputs in processes of up to BATCH inputs, as many at once as the machine has cores for. */
async function runInputs(context: RunContext, inputs: InputPlan[]): Promise<Map<number, Got>> {
  const chunks: InputPlan[][] = [];
  for (let first = 0; first < inputs.length; first += BATCH) chunks.push(inputs.slice(first, first + BATCH));
  const parallel = Math.max(1, Math.min(chunks.length, Math.floor(context.cores / 2)));
  const results = new Map<number, Got>();
  for (let first = 0; first < chunks.length; first += parallel) {
    const done = await Promise.all(
      chunks.slice(first, first + parallel).map((chunk) => runChunk(context, chunk, parallel)),
    );
    for (const map of done) map.forEach((g, i) => results.set(i, g));
  }
  return results;
}

/**
 * One process; where hardware decoding fails, the same again in software (and software from then on for this
 * input and decoder: another file, or another codec, still tries the hardware).
 */
async function runChunk(
  context: RunContext,
  inputs: InputPlan[],
  processes: number,
): Promise<Map<number, Got>> {
  const { info } = context.request;
  const useHardware = hardwareDecoding(info);
  try {
    return await runBatch(context, inputs, useHardware, processes);
  } catch (error) {
    if (!useHardware || LoupeError.from(error).code !== 'FFMPEG_FAILED') throw error;
    if (hardwareFailed.size >= HARDWARE_FAILED_MAX) hardwareFailed.clear();
    hardwareFailed.add(hardwareKey(info));
    return runBatch(context, inputs, false, processes);
  }
}

/** One ffmpeg process for `inputs`; `processes` of them run at once. */
async function runBatch(context: RunContext, inputs: InputPlan[], useHardware: boolean, processes: number) {
  const { ffmpeg, request, toRgb, index, cores, complaints: sink } = context;
  const { info, width, height, tail } = request;
  const isImage = info.kind === 'image';
  const args = ['-nostdin', '-hide_banner', '-nostats', '-loglevel', 'info', '-copyts'];
  const chains: string[] = [];
  const picks: {
    sample: number;
    kind: 'last' | 'first';
    chained: boolean;
    input: number;
    end: number | undefined;
  }[] = [];
  // concat takes its inputs one after another, so each decoding input may use this process's share of the
  // cores while it runs.
  const threads = String(Math.max(1, Math.floor(cores / processes)));
  inputs.forEach((input, k) => {
    if (input.keyOnly) args.push('-threads', '1', '-skip_frame', 'nokey');
    else {
      args.push('-threads', threads);
      if (useHardware) args.push('-hwaccel', hardware);
    }
    if (input.byteOffset) args.push('-skip_initial_bytes', String(input.byteOffset));
    if (input.seekSec !== undefined) args.push('-noaccurate_seek', '-ss', input.seekSec.toFixed(6));
    args.push('-i', fileInput(info.path));
    const labels = input.picks.map((_, j) => `[s${k}_${j}]`);
    const source = `[${k}:${info.streamIndex}]`;
    // Picks that may find no new frame need to know whether decoding went on past them (a still stretch)
    // or stopped (a file cut short): a sentinel branch logs the first frame after the last pick.
    const lastEnd = input.picks.at(-1)!.end;
    const sentinel = input.picks.length > 1 && lastEnd !== undefined;
    if (sentinel) labels.push(`[e${k}]`);
    if (labels.length > 1) chains.push(`${source}split=${labels.length}${labels.join('')}`);
    if (sentinel)
      chains.push(
        `[e${k}]trim=start=${lastEnd.toFixed(6)},trim=end_frame=1,showinfo@e${k}=checksum=0,nullsink`,
      );
    input.picks.forEach((pick, j) => {
      const id = picks.length;
      picks.push({
        sample: pick.sample,
        kind: pick.kind,
        chained: pick.continues ?? (j > 0 && pick.start !== undefined),
        input: k,
        end: pick.end,
      });
      const window = [
        pick.start !== undefined && `start=${pick.start.toFixed(6)}`,
        pick.end !== undefined && `end=${pick.end.toFixed(6)}`,
      ].filter(Boolean);
      const steps = [
        window.length ? `trim=${window.join(':')}` : '',
        pick.kind === 'first' ? 'trim=end_frame=1' : '',
        // No checksums: showinfo would hash every frame of every window (most of a 1080p pass's time).
        `scale=${width}:${height}:flags=bicubic,setsar=1,showinfo@f${id}=checksum=0`,
        // The last frame of the window: reverse hands it to trim first.
        pick.kind === 'last' ? 'reverse,trim=end_frame=1' : '',
        `${toRgb},${tail}`,
      ].filter(Boolean);
      const from = labels.length > 1 ? labels[j]! : source;
      chains.push(`${from}${steps.join(',')}[v${id}]`);
    });
  });
  const outputs = picks.map((_, id) => `[v${id}]`).join('');
  // Frames picked from one keyframe interval can share a timestamp after concat; encoders such as mjpeg
  // refuse non-increasing pts, so number the output frames (their real times come from showinfo above).
  const graph = `${chains.join(';')};${outputs}concat=n=${picks.length}:v=1:a=0,setpts=N/TB[out]`;
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

  // The showinfo lines of each pick: the first (first) or last (last) describes the frame kept.
  // Complaints about damaged data are kept apart: showinfo's lines would push them out of the stderr tail.
  const shown = new Map<number, { pts: number; pos: number }>();
  const passed = new Set<number>(); // inputs whose decoding went on past their last pick
  const complaints: string[] = [];
  const onStderrLine = (line: string) => {
    const match =
      /^\[showinfo@f(\d+) @ [^\]]*\] n:\s*\d+\s+pts:\s*-?\d+\s+pts_time:(\S+)\s+pos:\s*(-?\d+)/.exec(line);
    const sentinel = /^\[showinfo@e(\d+) @ [^\]]*\] n:/.exec(line);
    if (sentinel) passed.add(Number(sentinel[1]));
    else if (match) {
      const id = Number(match[1]);
      if (picks[id]!.kind === 'last' || !shown.has(id))
        shown.set(id, { pts: Number(match[2]), pos: Number(match[3]) });
    } else if (complaints.length < 20 && !line.startsWith('[showinfo@'))
      complaints.push(...corruptionLines(line, info.path));
  };
  const { signal, timeoutMs } = request;
  const stream = request.frameBytes ? rawFrames(request.frameBytes, request.onFrame) : undefined;
  const result = await runProcess(ffmpeg, args, {
    onStderrLine,
    signal,
    timeoutMs,
    ...(stream ? { onStdout: stream.push } : {}),
  }).catch((error: unknown) => {
    if (error instanceof LoupeError && error.code === 'FFMPEG_FAILED' && complaints.length) {
      throw corrupt(info.path, complaints.join('\n'), error);
    }
    throw error;
  });

  const frames = stream ? stream.end(info.path) : request.split!(result.stdout);
  const produced = picks.map((_, id) => id).filter((id) => shown.has(id));
  if (frames.length !== produced.length) {
    if (complaints.length) throw corrupt(info.path, complaints.join('\n'));
    throw new LoupeError(
      'FFMPEG_FAILED',
      `ffmpeg returned ${frames.length} frames for ${produced.length} picks from ${info.path}.`,
      { path: info.path, stderr: lastLines(result.stderr, 10) },
    );
  }
  const byPos = index && new Map(index.frames.map((f) => [f.pos, f.sec]));
  const results = new Map<number, Got>();
  let previous: Got | undefined;
  let k = 0;
  picks.forEach((pick, id) => {
    const s = shown.get(id);
    let got: Got | undefined;
    if (s) {
      const sec = isImage ? 0 : (byPos?.get(s.pos) ?? s.pts - info.startTimeSec);
      got = { frame: frames[k++]!, sec };
      // A frame far older than its instant while ffmpeg complains of damage: the frames between are lost.
      const frame = info.fps > 0 ? 1 / info.fps : 0.04;
      const late = request.times[pick.sample]! - sec > 2 * frame;
      if (complaints.length && pick.kind === 'last' && !isImage && late)
        throw corrupt(info.path, complaints.join('\n'));
    } else if (pick.chained && (passed.has(pick.input) || reachesEnd(info, pick.end))) {
      // No new frame since the previous pick, and decoding went on (or the video ends): it is still showing.
      got = previous;
    }
    if (got) results.set(pick.sample, got);
    previous = got;
  });
  if (results.size === 0 && complaints.length) throw corrupt(info.path, complaints.join('\n'));
  sink.push(...complaints);
  return results;
}

/** Cuts a stream of raw frames of `size` bytes into one Buffer per frame, handing each on as it completes. */
function rawFrames(size: number, onFrame?: (frame: Buffer) => void) {
  const frames: Buffer[] = [];
  let partial: Buffer | undefined;
  let filled = 0;
  let failure: unknown;
  return {
    push(chunk: Buffer) {
      for (let at = 0; at < chunk.length;) {
        partial ??= Buffer.allocUnsafe(size);
        const n = Math.min(size - filled, chunk.length - at);
        chunk.copy(partial, filled, at, at + n);
        [filled, at] = [filled + n, at + n];
        if (filled < size) break;
        const frame = partial;
        [partial, filled] = [undefined, 0];
        frames.push(frame);
        try {
          if (!failure) onFrame?.(frame);
        } catch (error) {
          failure = error; // thrown once ffmpeg has exited
        }
      }
    },
    end(path: string): Buffer[] {
      if (failure) throw failure;
      if (partial) {
        const message = `ffmpeg returned ${frames.length * size + filled} bytes, not whole frames of ${size} bytes.`;
        throw new LoupeError('FFMPEG_FAILED', message, { path });
      }
      return frames;
    },
  };
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
