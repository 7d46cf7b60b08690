/** The player: where to load the video from (original or playable copy), and its clock. */
import type { Video } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';
import { clamp } from '../timeline-math.ts';

export class PlayerState {
  src = $state<string | null>(null);
  isProxy = $state(false);
  /** Set while a playable copy is being made. */
  converting = $state<{ fraction: number; reason: string } | null>(null);
  error = $state<string | null>(null);
  currentTime = $state(0);
  duration = $state(0);
  paused = $state(true);
  element: HTMLVideoElement | null = null;
  private video: Video | null = null;
  private loading: AbortController | null = null;
  private triedProxy = false;

  constructor(private readonly api: ApiClient) {}

  async load(video: Video | null, forceProxy = false): Promise<void> {
    this.loading?.abort();
    this.video = video;
    this.src = null;
    this.error = null;
    this.converting = null;
    this.currentTime = 0;
    this.paused = true;
    if (!forceProxy) this.triedProxy = false;
    if (!video) return;
    this.duration = video.durationSec;
    if (video.error) {
      this.error = video.error.message;
      return;
    }
    const controller = new AbortController();
    this.loading = controller;
    try {
      for await (const event of this.api.stream(
        'playback',
        { videoId: video.id, forceProxy },
        controller.signal,
      )) {
        if (event.type === 'converting') this.converting = { fraction: event.fraction, reason: event.reason };
        else {
          this.converting = null;
          this.src = event.url;
          this.isProxy = event.proxy;
        }
      }
    } catch (error) {
      const e = ApiError.from(error);
      if (e.code !== 'CANCELLED') this.error = e.message;
    }
  }

  /** The <video> could not decode its source: try a playable copy once. */
  onMediaError(): void {
    if (!this.video) return;
    if (!this.isProxy && !this.triedProxy) {
      this.triedProxy = true;
      void this.load(this.video, true);
    } else
      this.error = 'This video cannot be played, even after conversion. Questions about it may still work.';
  }

  seek(t: number): void {
    const time = clamp(t, 0, this.duration || 0);
    this.currentTime = time;
    if (this.element) this.element.currentTime = time;
  }

  toggle(): void {
    if (!this.element) return;
    if (this.element.paused) void this.element.play().catch(() => undefined);
    else this.element.pause();
  }

  pause(): void {
    this.element?.pause();
  }

  /** Step by `seconds` (negative = back), paused. */
  step(seconds: number): void {
    this.pause();
    this.seek(this.currentTime + seconds);
  }
}
