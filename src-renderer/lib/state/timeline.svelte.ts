/** The timeline: visible window (zoom), clip selection, thumbnail strip. Math lives in ../timeline-math.ts. */
import type { FrameRef } from '../../../src-main/api/contract.ts';
import type { ApiClient } from '../api/client.ts';
import * as tm from '../timeline-math.ts';

export class TimelineState {
  duration = $state(0);
  view = $state<tm.View>({ start: 0, end: 0 });
  selection = $state<tm.Range | null>(null);
  /** Strip width and height in pixels (bound from the component). */
  width = $state(0);
  height = $state(0);
  /** The video's display aspect (width / height): each thumbnail tile is a whole frame at this aspect. */
  aspect = $state(16 / 9);
  /** Thumbnails made so far, in time order: the whole video's at first, then the tiles' of zoomed views. */
  thumbs = $state.raw<FrameRef[]>([]);

  readonly zoom = $derived(tm.zoomLevel(this.view, this.duration));
  /** The strip's tiles, each with the thumbnail nearest its time (until its own arrives). */
  readonly tiles = $derived(
    tm.frameTiles(this.view, this.width, this.height, this.aspect, this.duration).map((tile) => ({
      ...tile,
      thumb: this.thumbs[tm.nearestIndex(this.thumbs, tile.from)]?.thumb ?? null,
    })),
  );
  readonly selectionLength = $derived(this.selection ? this.selection.to - this.selection.from : 0);

  /** Pointer and keyboard gestures that change the selection. */
  readonly drag: SelectionDrag = new SelectionDrag(this);

  constructor(private readonly api: ApiClient) {}

  private videoId: string | null = null;

  /** Tile times asked for (ms), so that a frame that comes back at another time is not asked for again. */
  private requested: Record<number, true> = {};
  private wanted: { videoId: string; times: number[]; tolerance: number } | null = null;
  private fetching = false;

  async reset(videoId: string | null, duration: number, aspect = 16 / 9): Promise<void> {
    this.videoId = videoId;
    this.duration = duration;
    this.aspect = aspect > 0 && Number.isFinite(aspect) ? aspect : 16 / 9;
    this.requested = {};
    this.wanted = null;
    this.view = { start: 0, end: duration };
    this.selection = null;
    this.thumbs = [];
    if (!videoId || !(duration > 0)) return;
    try {
      const { thumbnails } = await this.api.call('thumbnails', { videoId, count: 24, width: 160 });
      if (this.videoId === videoId) this.addThumbs(thumbnails); // another video may have been opened meanwhile
    } catch {
      // The strip stays plain; the player shows the error.
    }
  }

  /**
   * Fetch the frames of the tiles now shown whose nearest thumbnail is further than half a tile from them (a
   * zoomed view): one request at a time, the latest view's tiles next.
   */
  async fetchTiles(): Promise<void> {
    const videoId = this.videoId;
    const tiles = this.tiles;
    if (!videoId || !tiles.length || !this.thumbs.length) return; // the whole video's thumbnails come first
    this.wanted = {
      videoId,
      times: tiles.map((t) => t.from),
      tolerance: (tiles[0]!.to - tiles[0]!.from) / 2,
    };
    if (this.fetching) return;
    this.fetching = true;
    try {
      while (this.wanted) {
        const { videoId: id, times, tolerance } = this.wanted;
        this.wanted = null;
        if (id !== this.videoId) continue;
        const missing = times
          .filter((t) => {
            const near = this.thumbs[tm.nearestIndex(this.thumbs, t)];
            return (!near || Math.abs(near.timeSec - t) > tolerance) && !this.requested[Math.round(t * 1000)];
          })
          .slice(0, 64);
        if (!missing.length) continue;
        for (const t of missing) this.requested[Math.round(t * 1000)] = true;
        const { frames } = await this.api.call('frameThumbs', { videoId: id, times: missing });
        if (id === this.videoId) this.addThumbs(frames);
      }
    } catch {
      // The tiles keep their nearest thumbnails.
    } finally {
      this.fetching = false;
    }
  }

  private addThumbs(more: FrameRef[]): void {
    this.thumbs = tm.mergeByTime(this.thumbs, more);
  }

  toX(t: number): number {
    return tm.timeToX(t, this.view, this.width);
  }

  toTime(x: number): number {
    return tm.xToTime(x, this.view, this.width, this.duration);
  }

  select(range: tm.Range | null): void {
    this.selection = range && tm.clampSelection(range, this.duration);
  }

  setIn(t: number): void {
    this.selection = tm.setIn(this.selection, t, this.duration);
  }

  setOut(t: number): void {
    this.selection = tm.setOut(this.selection, t, this.duration);
  }

  zoomBy(factor: number, anchor: number): void {
    this.view = tm.zoomView(this.view, this.duration, factor, anchor);
  }

  /** Zoom (the toolbar's buttons, + and −) around the selection, or the playhead `t` when there is none. */
  zoomAround(factor: number, t: number): void {
    this.view = tm.zoomAround(this.view, this.duration, factor, this.selection, t);
  }

  zoomToFit(): void {
    this.view = { start: 0, end: this.duration };
  }

  /** Scroll the zoomed view by a fraction of its span. */
  pan(fraction: number): void {
    const span = this.view.end - this.view.start;
    this.view = tm.panView(
      { start: this.view.start + span * fraction, end: this.view.end + span * fraction },
      this.duration,
    );
  }

  follow(t: number): void {
    const next = tm.followTime(this.view, t, this.duration);
    if (next.start !== this.view.start) this.view = next;
  }
}

export type DragMode = 'pending' | 'select' | 'in' | 'out' | 'move';

/** Pixels a press may move and still count as a click (which seeks) rather than a drag (which selects). */
const CLICK_SLOP_PX = 4;

/**
 * Pointer gestures on the strip and keyboard nudges of the handles, in times: press (pending) then either a
 * click (seek) or a drag that selects, moves the selection, or moves one of its ends.
 */
export class SelectionDrag {
  private gesture: { mode: DragMode; startX: number; startT: number; from: number; to: number } | null = null;

  constructor(private readonly timeline: TimelineState) {}

  get active(): boolean {
    return this.gesture !== null;
  }

  begin(mode: DragMode, t: number, x: number): void {
    const sel = this.timeline.selection;
    this.gesture = { mode, startX: x, startT: t, from: sel?.from ?? t, to: sel?.to ?? t };
  }

  moveTo(t: number, x: number): void {
    const g = this.gesture;
    if (!g) return;
    if (g.mode === 'pending' && Math.abs(x - g.startX) > CLICK_SLOP_PX) g.mode = 'select';
    const min = tm.MIN_SELECTION_SEC;
    if (g.mode === 'select') this.timeline.select({ from: g.startT, to: t });
    else if (g.mode === 'in') this.timeline.select({ from: Math.min(t, g.to - min), to: g.to });
    else if (g.mode === 'out') this.timeline.select({ from: g.from, to: Math.max(t, g.from + min) });
    else if (g.mode === 'move') {
      const len = g.to - g.from;
      const from = tm.clamp(g.from + (t - g.startT), 0, this.timeline.duration - len);
      this.timeline.select({ from, to: from + len });
    }
  }

  /** Ends the gesture; returns the time to seek to when it was a click, else null. */
  end(t: number): number | null {
    const click = this.gesture?.mode === 'pending';
    this.gesture = null;
    return click ? t : null;
  }

  cancel(): void {
    this.gesture = null;
  }

  /** Arrow keys on a focused handle move it by a tenth of a second (Shift: one second). True when handled. */
  nudge(which: 'in' | 'out', key: string, shift: boolean): boolean {
    const sel = this.timeline.selection;
    const step = shift ? 1 : 0.1;
    const d = key === 'ArrowLeft' ? -step : key === 'ArrowRight' ? step : 0;
    if (!sel || !d) return false;
    const min = tm.MIN_SELECTION_SEC;
    const next =
      which === 'in'
        ? { from: Math.min(sel.from + d, sel.to - min), to: sel.to }
        : { from: sel.from, to: Math.max(sel.to + d, sel.from + min) };
    this.timeline.select(tm.clampSelection(next, this.timeline.duration));
    return true;
  }
}
