/**
 * Play what Chromium cannot decode (HEVC, ProRes, 10-bit, AVI…): a low-resolution, seekable H.264 copy made
 * with ffmpeg in the background, with progress. Shared by web mode and Electron; one job per file at a time.
 * ffmpeg runs through media/'s tracked `runProcess`, so aborts and app exit end it.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { LoupeError } from '../errors.ts';
import { fileInput, resolveBinaries, runProcess, type MediaInfo } from '../media/index.ts';

/** Codecs, pixel formats and containers Chromium (and Electron) play without help. */
const PLAYABLE_CODECS = new Set(['h264', 'vp8', 'vp9', 'av1', 'theora']);
const PLAYABLE_PIXFMTS = new Set(['yuv420p', 'yuvj420p']);
const PLAYABLE_CONTAINERS = new Set(['mov', 'matroska', 'ogg']);

/** Why `info` needs a proxy to play in Chromium, in words for the UI; null when it plays as it is. */
export function proxyReason(info: MediaInfo): string | null {
  if (info.kind === 'image') return null;
  if (!PLAYABLE_CODECS.has(info.codec)) return `${info.codec.toUpperCase()} video cannot be played directly`;
  if (!PLAYABLE_PIXFMTS.has(info.pixFmt)) return `${info.pixFmt} pixels cannot be played directly`;
  if (!PLAYABLE_CONTAINERS.has(info.container))
    return `the ${info.container} container cannot be played directly`;
  return null;
}

/** Seconds of output written so far, from one line of ffmpeg's `-progress` report (null for other lines). */
export function parseProgressLine(line: string): number | null {
  const us = /^out_time_(?:us|ms)=(\d+)$/.exec(line.trim());
  if (us) return Number(us[1]) / 1e6; // out_time_ms is microseconds too (a long-standing ffmpeg misnomer)
  const clock = /^out_time=(\d+):(\d+):(\d+(?:\.\d+)?)$/.exec(line.trim());
  if (clock) return Number(clock[1]) * 3600 + Number(clock[2]) * 60 + Number(clock[3]);
  return null;
}

export type ProxyProgress = { type: 'converting'; fraction: number } | { type: 'ready'; file: string };

interface Job {
  fraction: number;
  done: Promise<string>;
  /** Resolves at the next progress change (then replaced). */
  changed: Promise<void>;
  controller: AbortController;
}

export class ProxyMaker {
  private readonly jobs = new Map<string, Job>();

  constructor(readonly dir: string) {}

  /** The proxy's file name: a new one whenever the original changes. */
  fileFor(info: MediaInfo): string {
    const key = createHash('sha256')
      .update(JSON.stringify([info.path, info.sizeBytes, info.mtimeMs, 'proxy-v1']))
      .digest('hex');
    return path.join(this.dir, `${key.slice(0, 24)}.mp4`);
  }

  /** The finished proxy for `info`, or null. */
  existing(info: MediaInfo): string | null {
    const file = this.fileFor(info);
    return existsSync(file) ? file : null;
  }

  /**
   * Progress until the proxy exists. `signal` only stops the listening: the conversion goes on, so a
   * reopened video finds it further along (clear() or app exit ends it).
   */
  async *ensure(info: MediaInfo, signal?: AbortSignal): AsyncGenerator<ProxyProgress> {
    const ready = this.existing(info);
    if (ready) return yield { type: 'ready', file: ready };
    const file = this.fileFor(info);
    let job = this.jobs.get(file);
    if (!job) {
      job = this.start(info, file);
      this.jobs.set(file, job);
      const forget = () => this.jobs.delete(file);
      job.done.then(forget, forget);
    }
    let finished = false;
    job.done.then(
      () => (finished = true),
      () => (finished = true),
    );
    yield { type: 'converting', fraction: job.fraction };
    while (!finished) {
      if (signal?.aborted) throw new LoupeError('CANCELLED', 'Cancelled.');
      const before = job.fraction;
      await Promise.race([job.changed, job.done.catch(() => undefined)]);
      if (!finished && job.fraction > before) yield { type: 'converting', fraction: job.fraction };
    }
    yield { type: 'ready', file: await job.done };
  }

  private start(info: MediaInfo, file: string): Job {
    const controller = new AbortController();
    let notify = () => {};
    const job: Job = {
      fraction: 0,
      controller,
      changed: new Promise((r) => (notify = r)),
      done: Promise.resolve(''),
    };
    const onLine = (line: string) => {
      const sec = parseProgressLine(line);
      if (sec === null || !(info.durationSec > 0)) return;
      const fraction = Math.min(0.99, Math.max(job.fraction, sec / info.durationSec)); // never backwards
      if (fraction - job.fraction < 0.01) return;
      job.fraction = fraction;
      const wake = notify;
      job.changed = new Promise((r) => (notify = r));
      wake();
    };
    job.done = (async () => {
      await mkdir(this.dir, { recursive: true });
      const { ffmpeg } = await resolveBinaries();
      const tmp = `${file}.${process.pid}.tmp.mp4`;
      try {
        // prettier-ignore
        await runProcess(ffmpeg.path, [
          '-nostdin', '-hide_banner', '-nostats', '-loglevel', 'error', '-y', '-progress', 'pipe:2',
          '-i', fileInput(info.path), '-map', '0:v:0', '-map', '0:a:0?',
          // ≤ 540 lines, even sizes, 8-bit 4:2:0; a keyframe every second keeps seeking quick.
          '-vf', "scale=-2:'min(540,ih)':flags=bicubic,format=yuv420p", '-c:v', 'libx264', '-preset', 'veryfast',
          '-crf', '26', '-g', String(Math.max(1, Math.round(info.fps || 25))), '-threads', '2',
          '-c:a', 'aac', '-b:a', '96k', '-movflags', '+faststart', '-f', 'mp4', tmp,
        ], { signal: controller.signal, onStderrLine: onLine });
        await rename(tmp, file);
        return file;
      } finally {
        await rm(tmp, { force: true });
        notify();
      }
    })();
    job.done.catch(() => undefined); // observed by ensure(); never an unhandled rejection
    return job;
  }

  /** Stop every running conversion and delete every proxy. */
  async clear(): Promise<void> {
    const jobs = [...this.jobs.values()];
    for (const job of jobs) job.controller.abort();
    await Promise.all(jobs.map((j) => j.done.catch(() => undefined)));
    await rm(this.dir, { recursive: true, force: true });
  }
}
