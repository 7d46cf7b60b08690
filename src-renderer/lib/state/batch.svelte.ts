/** The batch view: the form (folder, prompts, segments), the list of batches, and the one being watched. */
import type { BatchDetail, BatchResult, BatchSummary } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';
import { applyBatchEvent, batchFraction, downloadText, isLive, parseSegmentLength } from '../batch.ts';

export const DEFAULT_PROMPT = 'Summarize the video.';

export class BatchViewState {
  folder = $state('');
  recursive = $state(true);
  prompts = $state<string[]>([DEFAULT_PROMPT]);
  segmentText = $state('');
  batches = $state.raw<BatchSummary[]>([]);
  /** The batch shown on the right, kept current by its event stream. */
  current = $state.raw<BatchDetail | null>(null);
  selectedId = $state<string | null>(null);
  busy = $state<null | 'starting' | 'exporting'>(null);
  formError = $state<string | null>(null);
  actionError = $state<string | null>(null);
  /** Clips (relPath) of the shown batch whose answers are open in the list. */
  expanded = $state<string[]>([]);
  /** The shown batch's answers, fetched when a clip is first opened and again as opened clips finish. */
  results = $state.raw<BatchResult[] | null>(null);
  resultsError = $state<string | null>(null);

  readonly fraction = $derived(this.current ? batchFraction(this.current) : 0);
  readonly live = $derived(!!this.current && isLive(this.current.state));
  private watching: AbortController | null = null;

  constructor(
    private readonly api: ApiClient,
    /** Called when a batch stops (its clips are now in the library). */
    private readonly onFinished: () => void = () => {},
  ) {}

  async load(): Promise<void> {
    try {
      this.batches = (await this.api.call('listBatches', {})).batches;
      if (!this.selectedId && this.batches[0]) void this.select(this.batches[0].id);
    } catch (error) {
      this.actionError = ApiError.from(error).message;
    }
  }

  addPrompt(): void {
    this.prompts = [...this.prompts, ''];
  }

  removePrompt(index: number): void {
    this.prompts = this.prompts.filter((_, i) => i !== index);
    if (this.prompts.length === 0) this.prompts = [DEFAULT_PROMPT];
  }

  async start(): Promise<void> {
    this.formError = null;
    const folder = this.folder.trim().replace(/^["']|["']$/g, '');
    if (!folder) return void (this.formError = 'Type or paste the full path of a folder of videos.');
    let segmentSec: number | null;
    try {
      segmentSec = parseSegmentLength(this.segmentText);
    } catch (error) {
      return void (this.formError = (error as Error).message);
    }
    const prompts = this.prompts.map((p) => p.trim()).filter(Boolean);
    this.busy = 'starting';
    try {
      const { batchId } = await this.api.call('startBatch', {
        folder,
        recursive: this.recursive,
        prompts,
        segmentSec,
      });
      await this.load();
      void this.select(batchId); // follows the batch until it stops
    } catch (error) {
      this.formError = ApiError.from(error).message;
    } finally {
      this.busy = null;
    }
  }

  /** Show a batch and follow its events until it stops (or another is shown). */
  async select(batchId: string): Promise<void> {
    this.watching?.abort();
    const controller = new AbortController();
    this.watching = controller;
    this.selectedId = batchId;
    this.actionError = null;
    if (this.current?.id !== batchId) {
      this.current = null;
      this.expanded = [];
      this.results = null;
    }
    try {
      for await (const event of this.api.stream('batchEvents', { batchId }, controller.signal)) {
        this.current = applyBatchEvent(this.current, event);
        if (
          event.type === 'clip' &&
          event.clip.status.state === 'done' &&
          this.expanded.includes(event.clip.relPath)
        )
          void this.loadResults();
        if (event.type === 'overall' || event.type === 'end') this.patchSummary();
        if (event.type === 'end' && this.watching === controller) this.onFinished();
      }
    } catch (error) {
      const e = ApiError.from(error);
      if (e.code !== 'CANCELLED') this.actionError = e.message;
    }
  }

  /** Open or close a clip's answers in the list. */
  async toggleClip(relPath: string): Promise<void> {
    if (this.expanded.includes(relPath)) {
      this.expanded = this.expanded.filter((p) => p !== relPath);
      return;
    }
    this.expanded = [...this.expanded, relPath];
    if (!this.results || !this.results.some((r) => r.relPath === relPath)) await this.loadResults();
  }

  /** The shown batch's answers for one clip, in prompt order. */
  resultsOf(relPath: string): BatchResult[] {
    return (this.results ?? [])
      .filter((r) => r.relPath === relPath)
      .sort((a, b) => a.promptIndex - b.promptIndex);
  }

  private async loadResults(): Promise<void> {
    const batchId = this.current?.id;
    if (!batchId) return;
    try {
      const { results } = await this.api.call('batchResults', { batchId });
      if (this.current?.id === batchId) {
        this.results = results;
        this.resultsError = null;
      }
    } catch (error) {
      this.resultsError = ApiError.from(error).message;
    }
  }

  async pause(): Promise<void> {
    await this.act('pauseBatch');
  }

  async resume(): Promise<void> {
    if (!this.current) return;
    const restart = !isLive(this.current.state);
    await this.act('resumeBatch');
    if (restart) void this.select(this.current.id); // a stopped batch runs again: follow its new events
  }

  async cancel(): Promise<void> {
    await this.act('cancelBatch');
  }

  async exportAs(format: 'jsonl' | 'md' | 'csv'): Promise<void> {
    if (!this.current) return;
    this.busy = 'exporting';
    try {
      const file = await this.api.call('exportBatch', { batchId: this.current.id, format });
      downloadText(file.fileName, file.mimeType, file.text);
    } catch (error) {
      this.actionError = ApiError.from(error).message;
    } finally {
      this.busy = null;
    }
  }

  dispose(): void {
    this.watching?.abort();
  }

  private async act(method: 'pauseBatch' | 'resumeBatch' | 'cancelBatch'): Promise<void> {
    if (!this.current) return;
    this.actionError = null;
    try {
      await this.api.call(method, { batchId: this.current.id });
    } catch (error) {
      this.actionError = ApiError.from(error).message;
    }
  }

  /** Keep the list's entry of the watched batch in step with it. */
  private patchSummary(): void {
    const b = this.current;
    if (!b) return;
    this.batches = this.batches.map((s) =>
      s.id === b.id ? { ...s, state: b.state, overall: b.overall, error: b.error } : s,
    );
  }
}
