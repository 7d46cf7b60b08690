/** Moment search on the Player: the query, the scan's progress and Stop, per-instant scores, interval chips, past searches. */
import type { FindInterval, FindSearch, InstantScore } from '../../../src-main/api/contract.ts';
import type { ApiClient, ApiError } from '../api/client.ts';
import { consumeStream } from './stream.ts';

export class FindState {
  query = $state('');
  running = $state(false);
  done = $state(0);
  total = $state(0);
  /** Scores so far (during a scan) or of the search shown. */
  scores = $state.raw<InstantScore[]>([]);
  step = $state(0.5);
  intervals = $state.raw<FindInterval[]>([]);
  /** The search shown (null while scanning, or before any). */
  current = $state.raw<FindSearch | null>(null);
  history = $state.raw<FindSearch[]>([]);
  error = $state<ApiError | null>(null);
  /** Set when the last scan was stopped. */
  stopped = $state(false);

  private videoId: string | null = null;
  private controller: AbortController | null = null;
  /** Each video's Find text while another video is shown: the box never carries one video's text to the next. */
  private readonly queries = new Map<string, string>(); // eslint-disable-line svelte/prefer-svelte-reactivity

  constructor(private readonly api: ApiClient) {}

  async load(videoId: string | null): Promise<void> {
    this.stop();
    if (this.videoId !== null) this.queries.set(this.videoId, this.query);
    if (videoId !== this.videoId) this.query = (videoId && this.queries.get(videoId)) ?? '';
    this.videoId = videoId;
    this.clearShown();
    this.history = [];
    if (!videoId) return;
    try {
      const { searches } = await this.api.call('findHistory', { videoId });
      if (this.videoId === videoId) this.history = searches;
    } catch {
      // no history shown; a search still works
    }
  }

  private clearShown(): void {
    this.scores = [];
    this.intervals = [];
    this.current = null;
    this.error = null;
    this.stopped = false;
    this.done = 0;
    this.total = 0;
  }

  /** Show a past search again (no scan). */
  show(search: FindSearch): void {
    this.clearShown();
    this.current = search;
    this.query = search.query;
    this.scores = search.scores;
    this.step = search.step;
    this.intervals = search.intervals;
  }

  async run(range?: { from: number; to: number }): Promise<void> {
    const videoId = this.videoId;
    const query = this.query.trim();
    if (!videoId || !query || this.running) return;
    this.clearShown();
    this.running = true;
    const controller = (this.controller = new AbortController());
    const scores: InstantScore[] = [];
    const end = await consumeStream(
      this.api.stream('find', { videoId, query, from: range?.from, to: range?.to }, controller.signal),
      (event) => {
        if (event.type === 'start') {
          this.total = event.total;
          this.step = event.step;
        } else if (event.type === 'progress') {
          scores.push(...event.scores);
          this.scores = [...scores];
          this.done = event.done;
        } else if (event.type === 'done') {
          this.show(event.search);
          this.history = [event.search, ...this.history.filter((s) => s.id !== event.search.id)];
        } else this.stopped = true;
      },
    );
    if (end.stopped) this.stopped = true;
    this.error = end.error;
    if (this.controller === controller) this.controller = null;
    this.running = false;
  }

  stop(): void {
    this.controller?.abort();
  }
}
