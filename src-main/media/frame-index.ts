/**
 * A packet index for the containers whose timestamps cannot be trusted for seeking: MPEG transport and program
 * streams (.ts/.mts/.m2ts/.mpg, TV and AVCHD recordings). Their clocks often start late (1.4 s is common),
 * jump or restart where recordings were spliced, and ffmpeg's timestamp seek lands on any packet, not on a
 * keyframe. One ffprobe pass lists the video packets (no decoding); from it we know every frame's time on the
 * player's clock, the keyframes, and their byte positions, so sampling can start decoding at a keyframe's byte
 * offset and pick frames by position. Built once per file (size + mtime) and kept in memory.
 */
import { cancelled } from '../errors.ts';
import { runProcess } from './process.ts';

/** ffmpeg's own rule (`-dts_delta_threshold`): a jump of more than 10 s (or backwards) is a discontinuity. */
const JUMP_SEC = 10;
const BACKWARD_SEC = 0.1;

export interface IndexedFrame {
  /** Presentation time on the player's clock (discontinuities removed, 0 = the container's start). */
  sec: number;
  /** The packet's own pts in seconds, as ffmpeg -copyts reports it. */
  raw: number;
  key: boolean;
  /** Byte offset of the packet: a decoder started there (`-skip_initial_bytes`) begins at this frame. */
  pos: number;
}

export interface FrameIndex {
  /** Frames in presentation order on the player's clock. */
  frames: IndexedFrame[];
  /** Keyframes only, in presentation order. */
  keyframes: IndexedFrame[];
  /** Where the last frame ends on the player's clock. */
  durationSec: number;
  /** How many times the timestamps jumped (0 for a clean recording). */
  jumps: number;
}

interface Packet {
  pts: number;
  dts: number;
  key: boolean;
  pos: number;
  duration: number;
}

/** Parse `ffprobe -show_entries packet=pts_time,dts_time,duration_time,flags,pos -of csv=p=0` output. */
export function parsePackets(csv: string): Packet[] {
  const out: Packet[] = [];
  for (const line of csv.split('\n')) {
    // Field order follows ffprobe's packet section: pts_time, dts_time, duration_time, pos, flags.
    const [pts, dts, duration, pos, flags] = line.split(',');
    const p = Number(pts);
    const d = Number(dts);
    if (!pts || pts === 'N/A' || !Number.isFinite(p) || !pos) continue;
    out.push({
      pts: p,
      dts: Number.isFinite(d) && dts !== 'N/A' ? d : p,
      duration: Number(duration) > 0 ? Number(duration) : 0,
      pos: Number(pos),
      key: (flags ?? '').startsWith('K'),
    });
  }
  return out;
}

/**
 * Build the index from packets in file (decode) order, removing discontinuities the way ffmpeg does when it
 * transcodes (which is what a player and the playable copy show): when a packet's dts is more than 10 s
 * away from the predicted next dts, or goes backwards, every later timestamp is shifted to continue the clock.
 * Pure.
 */
export function buildFrameIndex(packets: readonly Packet[], startTimeSec: number, fps: number): FrameIndex {
  const frameSec = fps > 0 ? 1 / fps : 0.04;
  let offset = 0;
  let jumps = 0;
  let nextDts: number | undefined;
  let maxTs = -Infinity;
  const frames: IndexedFrame[] = [];
  for (const p of packets) {
    const dts = p.dts + offset;
    if (nextDts !== undefined) {
      const delta = dts - nextDts;
      if (delta > JUMP_SEC || delta < -JUMP_SEC || dts + BACKWARD_SEC < maxTs) {
        offset -= delta;
        jumps++;
      }
    }
    const step = p.duration || frameSec;
    nextDts = p.dts + offset + step;
    maxTs = Math.max(maxTs, p.dts + offset, p.pts + offset);
    const sec = Math.round((p.pts + offset - startTimeSec) * 1e6) / 1e6;
    frames.push({ sec, raw: p.pts, key: p.key, pos: p.pos });
  }
  frames.sort((a, b) => a.sec - b.sec || a.pos - b.pos);
  const first = frames[0];
  const last = frames[frames.length - 1];
  const durationSec = first && last ? Math.round(Math.max(0, last.sec + frameSec) * 1e6) / 1e6 : 0;
  return { frames, keyframes: frames.filter((f) => f.key), durationSec, jumps };
}

/** Formats whose timestamps need the index (ffprobe's format_name, first name). */
export function needsFrameIndex(container: string): boolean {
  return container === 'mpegts' || container === 'mpeg';
}

/**
 * One ffprobe pass per file, shared by every caller that asks while it runs. The pass belongs to no caller: each
 * waits with its own signal, and the pass is stopped only when every caller that could stop has left (one
 * caller's Stop never cancels the others'). A caller without a signal keeps it running.
 */
interface SharedIndex {
  promise: Promise<FrameIndex>;
  controller: AbortController;
  /** Callers waiting now; those without a signal are never subtracted. */
  waiting: number;
  settled: boolean;
}

const memo = new Map<string, SharedIndex>();
const MEMO_MAX = 16;

/** The index of `path`'s video stream (one ffprobe pass, remembered per size + mtime). */
export function frameIndex(
  ffprobe: string,
  file: { path: string; input: string; sizeBytes: number; mtimeMs: number; streamIndex: number },
  startTimeSec: number,
  fps: number,
  signal?: AbortSignal,
): Promise<FrameIndex> {
  if (signal?.aborted) return Promise.reject(cancelled());
  const key = `${file.path}\0${file.sizeBytes}\0${file.mtimeMs}\0${file.streamIndex}`;
  let shared = memo.get(key);
  if (!shared) {
    const args = ['-v', 'error', '-select_streams', String(file.streamIndex)];
    args.push('-show_entries', 'packet=pts_time,dts_time,duration_time,pos,flags', '-of', 'csv=p=0');
    const controller = new AbortController();
    const made: SharedIndex = { controller, waiting: 0, settled: false, promise: Promise.resolve(null!) };
    made.promise = runProcess(ffprobe, [...args, file.input], {
      signal: controller.signal,
      timeoutMs: 300_000,
    }).then(({ stdout }) => buildFrameIndex(parsePackets(stdout.toString('utf8')), startTimeSec, fps));
    made.promise.then(
      () => void (made.settled = true),
      () => {
        made.settled = true;
        if (memo.get(key) === made) memo.delete(key);
      },
    );
    if (memo.size >= MEMO_MAX) memo.delete(memo.keys().next().value!);
    memo.set(key, made);
    shared = made;
  }
  return waitFor(shared, key, signal);
}

/** Forget the remembered indexes (Clear caches); passes that run keep serving their waiters. */
export function forgetFrameIndexes(): void {
  memo.clear();
}

function waitFor(shared: SharedIndex, key: string, signal: AbortSignal | undefined): Promise<FrameIndex> {
  shared.waiting++;
  if (!signal) return shared.promise; // never leaves: the pass runs to its end
  return new Promise<FrameIndex>((resolve, reject) => {
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      signal.removeEventListener('abort', onAbort);
      shared.waiting--;
      if (shared.waiting === 0 && !shared.settled) {
        // the last caller left: nobody wants the pass any more
        shared.controller.abort();
        if (memo.get(key) === shared) memo.delete(key);
      }
    };
    const onAbort = () => {
      leave();
      reject(cancelled());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    shared.promise.then(
      (index) => {
        leave();
        resolve(index);
      },
      (error: unknown) => {
        leave();
        reject(error);
      },
    );
  });
}
