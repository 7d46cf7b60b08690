/**
 * Batch progress as data: a discriminated union per clip and an overall summary. ProgressTracker is the
 * one place statuses change, and it refuses any change that would go backwards (a done clip never becomes
 * running again, a fraction never shrinks), so every consumer (CLI bar, app, tests) sees a monotone story.
 */
import type { RecordError, ResultRecord } from './record.ts';

export type ClipStatus =
  | { state: 'queued' }
  | { state: 'running'; stage: 'preparing' | 'answering'; fraction: number }
  /**
   * Done. partial: segment mode, where `failed` of the clip's `answers` (whole clip + segments) could not be
   * read; they are recorded with their errors and the others landed: the clip is partly failed.
   */
  | { state: 'done'; resumed: boolean; partial?: { failed: number; answers: number } }
  | { state: 'failed'; error: RecordError }
  | { state: 'cancelled' };

export interface ClipEvent {
  type: 'clip';
  index: number;
  path: string;
  relPath: string;
  status: ClipStatus;
}

export interface OverallProgress {
  type: 'overall';
  /** Clips finished, failed ones included (and those found done in a resumed journal). */
  done: number;
  failed: number;
  total: number;
  /** Clips finished per minute in this run (resumed ones excluded). */
  clipsPerMin: number;
  /** Seconds left at that rate; null until a clip has finished in this run. */
  etaSec: number | null;
  paused: boolean;
  /** The batch is waiting for an interactive question to finish. */
  yielding: boolean;
}

export type BatchEvent = ClipEvent | OverallProgress | { type: 'record'; record: ResultRecord };

/** 0 queued, 1 running, 2 finished (done, failed or cancelled). */
export function progressRank(status: ClipStatus): number {
  return status.state === 'queued' ? 0 : status.state === 'running' ? 1 : 2;
}

/** Whether `next` may follow `prev` for one clip. */
export function isForward(prev: ClipStatus, next: ClipStatus): boolean {
  const a = progressRank(prev);
  const b = progressRank(next);
  if (b !== a) return b > a;
  if (prev.state === 'running' && next.state === 'running') return next.fraction > prev.fraction;
  return false; // the same queued or finished state again says nothing new
}

export class ProgressTracker {
  private readonly statuses: ClipStatus[];
  private finished = 0;
  private failedCount = 0;
  private finishedThisRun = 0;
  private readonly started = performance.now();
  paused = false;
  yielding = false;

  constructor(readonly items: readonly { path: string; relPath: string }[]) {
    this.statuses = items.map(() => ({ state: 'queued' }) as ClipStatus);
  }

  status(index: number): ClipStatus {
    return this.statuses[index]!;
  }

  /** Move clip `index` forward; null when `next` would not move it forward (nothing to report). */
  update(index: number, next: ClipStatus): ClipEvent | null {
    const prev = this.statuses[index]!;
    if (next.state === 'running') next = { ...next, fraction: Math.min(1, Math.max(0, next.fraction)) };
    if (!isForward(prev, next)) return null;
    this.statuses[index] = next;
    if (next.state === 'done' || next.state === 'failed') {
      this.finished++;
      if (next.state === 'failed') this.failedCount++;
      if (!(next.state === 'done' && next.resumed)) this.finishedThisRun++;
    }
    const item = this.items[index]!;
    return { type: 'clip', index, path: item.path, relPath: item.relPath, status: next };
  }

  overall(now = performance.now()): OverallProgress {
    const minutes = (now - this.started) / 60_000;
    const clipsPerMin = this.finishedThisRun && minutes > 0 ? this.finishedThisRun / minutes : 0;
    const left = this.items.length - this.finished;
    return {
      type: 'overall',
      done: this.finished,
      failed: this.failedCount,
      total: this.items.length,
      clipsPerMin,
      etaSec: clipsPerMin > 0 ? (left / clipsPerMin) * 60 : left === 0 ? 0 : null,
      paused: this.paused,
      yielding: this.yielding,
    };
  }
}
