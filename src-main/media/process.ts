/**
 * The one place media child processes are spawned. Every live child sits in `live` so that aborts,
 * app shutdown and tests can see (and end) them; a promise settles only after its child has exited.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { basename } from 'node:path';
import { LoupeError, cancelled } from '../errors.ts';

export interface RunOptions {
  signal?: AbortSignal;
  /** Kill the child (FFMPEG_FAILED) when it runs longer than this. */
  timeoutMs?: number;
  /** Time between SIGTERM and SIGKILL. */
  killGraceMs?: number;
  /** Only the last this-many characters of stderr are kept (ffmpeg can be chatty). */
  stderrCapChars?: number;
  /** Called for every complete stderr line, so callers can parse logs longer than the cap. */
  onStderrLine?: (line: string) => void;
  /** Streams stdout to the caller instead of collecting it (the result's stdout is then empty). */
  onStdout?: (chunk: Buffer) => void;
  /**
   * Given once the child runs: pause and resume its stdout (backpressure: a paused pipe fills and the child
   * waits on its write, so a slow reader never has a whole video's frames queued in memory).
   */
  onFlow?: (flow: { pause(): void; resume(): void }) => void;
}

export interface RunResult {
  stdout: Buffer;
  /** The tail of stderr (see `stderrCapChars`). */
  stderr: string;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Children spawned by the media layer that have not exited yet. */
export function liveProcessCount(): number {
  return live.size;
}

/** Kill every live child at once, e.g. when the app quits. */
export function killAllProcesses(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const child of live) child.kill(signal);
}

/** Run `command args`, resolving with its output when it exits 0. */
export function runProcess(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const {
    signal,
    timeoutMs,
    killGraceMs = 1000,
    stderrCapChars = 64 * 1024,
    onStderrLine,
    onStdout,
    onFlow,
  } = options;
  if (signal?.aborted) return Promise.reject(cancelled());
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A quitting app must not leave ffmpeg running on its own.
    process.once('exit', () => killAllProcesses());
  }
  const name = basename(command);

  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    live.add(child);
    const chunks: Buffer[] = [];
    let stderr = '';
    let partialLine = '';
    let stopReason: 'abort' | 'timeout' | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let settled = false;

    const stop = (reason: 'abort' | 'timeout') => {
      if (stopReason || child.exitCode !== null || child.signalCode !== null) return;
      stopReason = reason;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), killGraceMs);
    };
    const onAbort = () => stop('abort');
    signal?.addEventListener('abort', onAbort, { once: true });
    const timeoutTimer = timeoutMs ? setTimeout(() => stop('timeout'), timeoutMs) : undefined;

    const finish = (error: LoupeError | undefined) => {
      if (settled) return;
      settled = true;
      live.delete(child);
      clearTimeout(killTimer);
      clearTimeout(timeoutTimer);
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve({ stdout: Buffer.concat(chunks), stderr });
    };

    child.stdout!.on('data', (chunk: Buffer) => (onStdout ? onStdout(chunk) : chunks.push(chunk)));
    onFlow?.({ pause: () => child.stdout!.pause(), resume: () => child.stdout!.resume() });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      stderr = (stderr + text).slice(-stderrCapChars);
      if (!onStderrLine) return;
      const lines = (partialLine + text).split(/\r?\n|\r/);
      partialLine = lines.pop() ?? '';
      for (const line of lines) onStderrLine(line);
    });

    child.on('error', (error: NodeJS.ErrnoException) => {
      // Spawning failed (no such binary, not executable): there is no process to wait for.
      if (child.pid !== undefined) return;
      const code = error.code === 'ENOENT' || error.code === 'EACCES' ? 'FFMPEG_NOT_FOUND' : 'FFMPEG_FAILED';
      finish(
        new LoupeError(code, `Could not start ${name}: ${error.message}`, { command }, { cause: error }),
      );
    });

    child.on('close', (exitCode, exitSignal) => {
      if (partialLine && onStderrLine) onStderrLine(partialLine);
      if (stopReason === 'abort') return finish(cancelled());
      if (stopReason === 'timeout') {
        return finish(
          new LoupeError(
            'FFMPEG_FAILED',
            `${name} took longer than ${Math.round(timeoutMs! / 1000)} s and was stopped.`,
            {
              command: name,
              timedOut: true,
              stderr: lastLines(stderr, 20),
            },
          ),
        );
      }
      if (exitCode === 0) return finish(undefined);
      const why = lastLines(stderr, 1) || (exitSignal ? `killed by ${exitSignal}` : `exit code ${exitCode}`);
      finish(
        new LoupeError('FFMPEG_FAILED', `${name} failed: ${why}`, {
          command: name,
          exitCode,
          signal: exitSignal,
          stderr: lastLines(stderr, 20),
        }),
      );
    });
  });
}

/** The last `n` non-empty lines of `text`. */
export function lastLines(text: string, n: number): string {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter(Boolean)
    .slice(-n)
    .join('\n');
}
