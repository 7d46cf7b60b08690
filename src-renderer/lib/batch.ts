/** The batch view's pure logic: folding stream events into a batch, and the words and numbers it shows. */
import type {
  BatchClipStatus,
  BatchDetail,
  BatchEvent,
  BatchResult,
  BatchState,
} from '../../src-main/api/contract.ts';

/** 0 queued, 1 running, 2 finished: a clip's state never moves back (a late event is ignored). */
function rank(status: BatchClipStatus): number {
  return status.state === 'queued' ? 0 : status.state === 'running' ? 1 : 2;
}

/** Whether `next` may replace `prev` for one clip (same rule as the batch engine's tracker). */
export function movesForward(prev: BatchClipStatus, next: BatchClipStatus): boolean {
  if (rank(next) !== rank(prev)) return rank(next) > rank(prev);
  if (prev.state === 'running' && next.state === 'running')
    return next.fraction >= prev.fraction || next.stage !== prev.stage;
  return false;
}

/** The batch after one event (a new object when something changed; null until the first snapshot). */
export function applyBatchEvent(batch: BatchDetail | null, event: BatchEvent): BatchDetail | null {
  if (event.type === 'snapshot') return event.batch;
  if (!batch) return batch;
  switch (event.type) {
    case 'clip': {
      const at = batch.clips.findIndex((c) => c.relPath === event.clip.relPath);
      if (at < 0) return { ...batch, clips: [...batch.clips, event.clip] };
      if (!movesForward(batch.clips[at]!.status, event.clip.status)) return batch;
      const clips = batch.clips.slice();
      clips[at] = event.clip;
      return { ...batch, clips };
    }
    case 'overall':
      return { ...batch, state: event.state, overall: event.overall };
    case 'end':
      return { ...batch, state: event.state, error: event.error };
  }
}

/** Fraction of the batch finished, counting the running clips' progress (0…1). */
export function batchFraction(batch: Pick<BatchDetail, 'clips' | 'overall'>): number {
  const total = Math.max(batch.overall.total, batch.clips.length);
  if (total === 0) return 0;
  let done = 0;
  for (const c of batch.clips)
    done += rank(c.status) === 2 ? 1 : c.status.state === 'running' ? c.status.fraction : 0;
  return Math.min(1, done / total);
}

export function isLive(state: BatchState): boolean {
  return state === 'running' || state === 'paused';
}

export const STATE_LABELS: Record<BatchState, string> = {
  running: 'Running',
  paused: 'Paused',
  done: 'Finished',
  cancelled: 'Cancelled',
  failed: 'Stopped by an error',
  interrupted: 'Interrupted',
};

export function clipLabel(status: BatchClipStatus): string {
  switch (status.state) {
    case 'queued':
      return 'Queued';
    case 'running':
      return status.stage === 'preparing'
        ? 'Reading frames'
        : `Answering · ${Math.round(status.fraction * 100)}%`;
    case 'done':
      if (status.partial)
        return `Partly failed · ${status.partial.failed} of ${status.partial.answers} unreadable`;
      return status.resumed ? 'Done (earlier run)' : 'Done';
    case 'failed':
      return 'Failed';
    case 'cancelled':
      return 'Cancelled';
  }
}

/** "2:05 left", "1:02:05 left"; empty while unknown. */
export function formatEta(sec: number | null): string {
  if (sec === null || !Number.isFinite(sec)) return '';
  const s = Math.max(0, Math.round(sec));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${r} left` : `${m}:${r} left`;
}

/** "12 clips/min", "0.5 clips/min"; empty before the first clip finished. */
export function formatRate(clipsPerMin: number): string {
  if (!(clipsPerMin > 0)) return '';
  return `${clipsPerMin >= 10 ? Math.round(clipsPerMin) : clipsPerMin.toFixed(1)} clips/min`;
}

/**
 * A segment length as typed: "30", "30s", "2m", "1:30". Empty: no segments (null). Throws a message for
 * anything else.
 */
export function parseSegmentLength(text: string): number | null {
  const t = text.trim().toLowerCase();
  if (!t) return null;
  let sec: number;
  const clock = /^(\d+):([0-5]?\d(?:\.\d+)?)$/.exec(t);
  const unit = /^(\d+(?:\.\d+)?)\s*(s|sec|m|min)?$/.exec(t);
  if (clock) sec = Number(clock[1]) * 60 + Number(clock[2]);
  else if (unit) sec = Number(unit[1]) * (unit[2]?.startsWith('m') ? 60 : 1);
  else throw new Error('Write the segment length as 30, 30s, 2m or 1:30.');
  if (!(sec >= 1)) throw new Error('Segments must be at least one second long.');
  return sec;
}

export interface SegmentMarker {
  from: number;
  to: number;
  text: string;
  failed: boolean;
}

/** The segment answers of a video's batch results, as timeline markers (the first prompt's, in time order). */
export function segmentMarkers(results: readonly BatchResult[]): SegmentMarker[] {
  const withSegments = results.find((r) => r.segments.length > 0);
  if (!withSegments) return [];
  return withSegments.segments
    .map((s) => ({
      from: s.from,
      to: s.to,
      text: s.answer ?? s.error?.message ?? '',
      failed: s.answer === null,
    }))
    .sort((a, b) => a.from - b.from);
}

/** Trigger a download of `text` in the page (the renderer has no file system). */
export function downloadText(fileName: string, mimeType: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: mimeType }));
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
