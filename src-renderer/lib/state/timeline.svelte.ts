/** The timeline: visible window (zoom), clip selection, thumbnail strip. Math lives in ../timeline-math.ts. */
import type { FrameRef } from '../../../src-main/api/contract.ts';
import type { ApiClient } from '../api/client.ts';
import * as tm from '../timeline-math.ts';

export class TimelineState {
  duration = $state(0);
  view = $state<tm.View>({ start: 0, end: 0 });
  selection = $state<tm.Range | null>(null);
  /** Strip width in pixels (bound from the component). */
  width = $state(0);
  thumbs = $state.raw<FrameRef[]>([]);

  readonly zoom = $derived(tm.zoomLevel(this.view, this.duration));
  readonly selectionLength = $derived(this.selection ? this.selection.to - this.selection.from : 0);

  constructor(private readonly api: ApiClient) {}

  private videoId: string | null = null;

  async reset(videoId: string | null, duration: number): Promise<void> {
    this.videoId = videoId;
    this.duration = duration;
    this.view = { start: 0, end: duration };
    this.selection = null;
    this.thumbs = [];
    if (!videoId || !(duration > 0)) return;
    try {
      const { thumbnails } = await this.api.call('thumbnails', { videoId, count: 24, width: 160 });
      if (this.videoId === videoId) this.thumbs = thumbnails; // another video may have been opened meanwhile
    } catch {
      // The strip stays plain; the player shows the error.
    }
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
