/** The Batch view's Find mode: a query over a folder's clips, resumable, with per-clip intervals and exports. */
import type { FolderFindClip } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';
import { consumeStream } from './stream.ts';

export class FolderFindState {
  folder = $state('');
  recursive = $state(true);
  query = $state('');
  running = $state(false);
  done = $state(0);
  total = $state(0);
  clips = $state.raw<FolderFindClip[]>([]);
  error = $state<ApiError | null>(null);
  finished = $state(false);
  stopped = $state(false);
  private controller: AbortController | null = null;
  /** The search the clips belong to (exports name it). */
  private last: { folder: string; recursive: boolean; query: string } | null = null;

  constructor(private readonly api: ApiClient) {}

  readonly found = $derived(this.clips.filter((c) => c.found).length);

  async run(): Promise<void> {
    const folder = this.folder.trim();
    const query = this.query.trim();
    if (!folder || !query || this.running) return;
    this.last = { folder, recursive: this.recursive, query };
    Object.assign(this, { clips: [], error: null, finished: false, stopped: false, done: 0, total: 0 });
    this.running = true;
    const controller = (this.controller = new AbortController());
    const end = await consumeStream(this.api.stream('findFolder', this.last, controller.signal), (e) => {
      if (e.type === 'start') this.total = e.total;
      else if (e.type === 'clip') {
        this.clips = [...this.clips, e.clip];
        this.done = e.done;
      } else if (e.type === 'end') this.finished = true;
      else this.stopped = true;
    });
    if (end.stopped) this.stopped = true;
    this.error = end.error;
    if (this.controller === controller) this.controller = null;
    this.running = false;
  }

  stop(): void {
    this.controller?.abort();
  }

  async export(
    format: 'jsonl' | 'csv',
  ): Promise<{ fileName: string; mimeType: string; text: string } | null> {
    if (!this.last) return null;
    try {
      return await this.api.call('exportFolderFind', { ...this.last, format });
    } catch (e) {
      this.error = ApiError.from(e);
      return null;
    }
  }
}
