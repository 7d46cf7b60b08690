/**
 * Where the keyframes are near some instants, without decoding: one ffprobe run seeks to each instant
 * (`-read_intervals T%+#1`) and reads the packet it lands on, which for files with a seek index (MP4, MOV,
 * Matroska, WebM…) is the last keyframe at or before T.
 */
import { fileInput } from './probe.ts';
import { runProcess } from './process.ts';

/**
 * For each instant (player's clock), the time of the keyframe ffmpeg's seek lands on, or undefined when the
 * packet found is not a keyframe (or nothing was read). Seeks that land on the same packet repeat it.
 */
export async function keyframesAt(
  ffprobe: string,
  file: { path: string; streamIndex: number; startTimeSec: number },
  times: readonly number[],
  signal?: AbortSignal,
): Promise<(number | undefined)[]> {
  if (!times.length) return [];
  // read_intervals take the stream's own timestamps (the player's clock plus the container's start).
  const intervals = times.map((t) => `${(t + file.startTimeSec).toFixed(6)}%+#1`).join(',');
  const args = ['-v', 'error', '-select_streams', String(file.streamIndex), '-read_intervals', intervals];
  args.push('-show_entries', 'packet=pts_time,flags', '-of', 'csv=p=0', fileInput(file.path));
  const { stdout } = await runProcess(ffprobe, args, { signal, timeoutMs: 30_000 });
  const packets = stdout
    .toString('utf8')
    .split('\n')
    .map((line) => line.split(','))
    .filter(([pts]) => pts && pts !== 'N/A' && Number.isFinite(Number(pts)));
  // One packet per interval; anything else (an interval past the end read nothing) cannot be matched up.
  if (packets.length !== times.length) return times.map(() => undefined);
  return packets.map(([pts, flags]) =>
    (flags ?? '').startsWith('K') ? Number(pts) - file.startTimeSec : undefined,
  );
}
