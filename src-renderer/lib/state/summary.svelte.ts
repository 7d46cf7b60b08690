/** What batches said about the open video: its summary (each prompt's answer) and segment answers as markers. */
import type { BatchResult } from '../../../src-main/api/contract.ts';
import type { ApiClient } from '../api/client.ts';
import { segmentMarkers } from '../batch.ts';

export class SummaryState {
  results = $state.raw<BatchResult[]>([]);
  readonly markers = $derived(segmentMarkers(this.results));
  private videoId: string | null = null;

  constructor(private readonly api: ApiClient) {}

  async load(videoId: string | null): Promise<void> {
    this.videoId = videoId;
    this.results = [];
    if (!videoId) return;
    try {
      const { results } = await this.api.call('videoSummaries', { videoId });
      if (this.videoId === videoId) this.results = results;
    } catch {
      // No summary shown; questions still work.
    }
  }
}
