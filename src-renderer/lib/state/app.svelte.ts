/** The whole renderer's state: one instance, built in main.ts with the API client and passed down. */
import type { ConversationRecord } from '../../../src-main/api/contract.ts';
import type { ApiClient } from '../api/client.ts';
import { BatchViewState } from './batch.svelte.ts';
import { ConversationState } from './conversation.svelte.ts';
import { FindState } from './find.svelte.ts';
import { FolderFindState } from './folder-find.svelte.ts';
import { LibraryState } from './library.svelte.ts';
import { PlayerState } from './player.svelte.ts';
import { ModelsState } from './models.svelte.ts';
import { SettingsState } from './settings.svelte.ts';
import { SummaryState } from './summary.svelte.ts';
import { TimelineState } from './timeline.svelte.ts';

export class AppState {
  readonly library: LibraryState;
  readonly player: PlayerState;
  readonly timeline: TimelineState;
  readonly conversation: ConversationState;
  readonly settings: SettingsState;
  readonly batch: BatchViewState;
  readonly models: ModelsState;
  readonly summary: SummaryState;
  readonly find: FindState;
  readonly folderFind: FolderFindState;
  /** The Batch view's mode: summaries (batches) or moment search across a folder. */
  batchMode = $state<'summaries' | 'find'>('summaries');
  settingsOpen = $state(false);
  /** Which screen is shown: the player with questions, or batches. */
  view = $state<'ask' | 'batch'>('ask');

  /** What a question is about: the selection, or the whole video. */
  readonly scope = $derived(this.timelineScope());

  constructor(readonly api: ApiClient) {
    this.library = new LibraryState(api);
    this.player = new PlayerState(api);
    this.timeline = new TimelineState(api);
    this.conversation = new ConversationState(api);
    this.settings = new SettingsState(api);
    this.batch = new BatchViewState(api, () => void this.library.load());
    this.models = new ModelsState(api, (model) => {
      this.settings.model = model;
      this.settings.modelError = null;
      this.conversation.forgetKept();
      void this.open(this.library.selectedId); // the open conversation belonged to the previous model
    });
    this.summary = new SummaryState(api);
    this.find = new FindState(api);
    this.folderFind = new FolderFindState(api);
  }

  private timelineScope() {
    const sel = this.timeline.selection;
    return sel
      ? { from: sel.from, to: sel.to, whole: false }
      : { from: 0, to: this.timeline.duration, whole: true };
  }

  async start(): Promise<void> {
    await Promise.all([this.library.load(), this.settings.load()]);
    void this.settings.loadModel();
    const first = this.library.videos.find((v) => !v.error);
    if (first) await this.open(first.id);
  }

  async open(videoId: string | null): Promise<void> {
    this.library.selectedId = videoId;
    const video = this.library.selected;
    void this.player.load(video); // may take a while (a playable copy being made): it reports its own progress
    await Promise.all([
      this.timeline.reset(
        video && !video.error ? video.id : null,
        video?.durationSec ?? 0,
        video && video.height > 0 ? video.width / video.height : undefined,
      ),
      this.conversation.load(video && !video.error ? video.id : null),
      this.summary.load(video && !video.error ? video.id : null),
      this.find.load(video && !video.error ? video.id : null),
    ]);
    // Back on a video: its conversation is current again, on its clip.
    const current = this.conversation.current;
    if (current && this.library.selectedId === videoId) this.selectRange(current.range);
  }

  /** Make an earlier conversation of this video the current one, on its clip. */
  async continueConversation(record: ConversationRecord): Promise<void> {
    this.selectRange(record.range);
    this.player.seek(record.range.from);
    await this.conversation.continueFrom(record);
  }

  /** Select a clip on the timeline: none where it is the whole video (so the scope reads "the whole video"). */
  private selectRange(range: { from: number; to: number }): void {
    const whole = range.from < 0.05 && Math.abs(range.to - this.timeline.duration) < 0.05;
    this.timeline.select(whole ? null : range);
  }

  /** Open a clip of a batch in the player (it was added to the library when it finished). */
  async openFromBatch(videoId: string): Promise<void> {
    if (!this.library.videos.some((v) => v.id === videoId)) await this.library.load();
    this.view = 'ask';
    await this.open(videoId);
  }

  showBatches(): void {
    this.view = 'batch';
    void this.batch.load();
  }

  ask(): Promise<void> {
    return this.conversation.ask({ from: this.scope.from, to: this.scope.to });
  }
}
