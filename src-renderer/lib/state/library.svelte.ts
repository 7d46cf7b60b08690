/**
 * The video library: the list, search (client-side, by name), adding paths (with path completion), removing (with
 * a few seconds to undo), the sample clip.
 */
import type { CallOutput, Video } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';
import { aboutFile } from '../errors.ts';

/** How long the add messages stay (they also go on the next add, or when dismissed). */
export const ADD_MESSAGE_MS = 8000;
/** How long a removal can be undone before it is made. */
export const UNDO_MS = 6000;

export type PathSuggestion = CallOutput<'completePath'>['entries'][number];

export class LibraryState {
  videos = $state.raw<Video[]>([]);
  query = $state('');
  selectedId = $state<string | null>(null);
  busy = $state<null | 'loading' | 'adding' | 'sample'>('loading');
  /** Shown beside the add field: why the last add failed or what was skipped. */
  addError = $state<string | null>(null);
  addNotes = $state.raw<string[]>([]);
  /** What Loupe must tell the user about this run (a damaged library file moved aside…), shown until dismissed. */
  notices = $state.raw<string[]>([]);
  /** First thumbnail of each video, by id. */
  covers = $state<Record<string, string>>({});
  /** A video removed from the list whose removal is not made yet (Undo brings it back). */
  removing = $state.raw<{ video: Video; wasSelected: boolean } | null>(null);
  /** Folders and videos for the path being typed in the Add field. */
  suggestions = $state.raw<PathSuggestion[]>([]);
  private messageTimer: ReturnType<typeof setTimeout> | null = null;
  private removeTimer: ReturnType<typeof setTimeout> | null = null;
  private completing = 0;

  /** The videos shown: all but one being removed. */
  readonly shown = $derived(this.videos.filter((v) => v.id !== this.removing?.video.id));
  readonly filtered = $derived(filterVideos(this.shown, this.query));
  readonly selected = $derived(this.videos.find((v) => v.id === this.selectedId) ?? null);

  constructor(private readonly api: ApiClient) {}

  async load(): Promise<void> {
    try {
      const [{ videos }, { notices }] = await Promise.all([
        this.api.call('listVideos', {}),
        this.notices.length ? { notices: this.notices } : this.api.call('notices', {}),
      ]);
      this.videos = videos;
      this.notices = notices;
    } catch (error) {
      this.addError = ApiError.from(error).message;
    } finally {
      this.busy = null;
    }
    void this.loadCovers();
  }

  async add(text: string, recursive: boolean): Promise<Video[]> {
    const paths = text
      .split(/\n/)
      .map((p) => p.trim().replace(/^["']|["']$/g, ''))
      .filter(Boolean);
    this.dismissMessages();
    this.suggestions = [];
    if (paths.length === 0) {
      this.showMessages('Type or paste the full path of a video file or a folder.', []);
      return [];
    }
    this.busy = 'adding';
    try {
      await this.finishRemoval(); // a video removed a moment ago and added again is added afresh
      const { added, skipped } = await this.api.call('addPaths', { paths, recursive });
      await this.load();
      this.showMessages(
        added.length === 0 && skipped.length ? 'Nothing was added.' : null,
        skipped.map((s) => `${basename(s.path)}: ${aboutFile(s.reason, s.path)}`),
      );
      return added;
    } catch (error) {
      this.showMessages(ApiError.from(error).message, []);
      return [];
    } finally {
      this.busy = null;
    }
  }

  /** Show the add messages for ADD_MESSAGE_MS. */
  private showMessages(error: string | null, notes: string[]): void {
    this.addError = error;
    this.addNotes = notes;
    if (this.messageTimer) clearTimeout(this.messageTimer);
    this.messageTimer =
      error || notes.length ? setTimeout(() => this.dismissMessages(), ADD_MESSAGE_MS) : null;
  }

  dismissMessages(): void {
    if (this.messageTimer) clearTimeout(this.messageTimer);
    this.messageTimer = null;
    this.addError = null;
    this.addNotes = [];
  }

  /** Ask main for the folders and videos a typed path could go on to (absolute paths and ~ only). */
  async complete(text: string): Promise<void> {
    const prefix = text.trim();
    const ticket = ++this.completing;
    if (!/^([/\\~]|[A-Za-z]:[/\\])/.test(prefix) || prefix.includes('\n')) {
      this.suggestions = [];
      return;
    }
    try {
      const { entries } = await this.api.call('completePath', { prefix, limit: 50 });
      if (ticket === this.completing) this.suggestions = entries;
    } catch {
      if (ticket === this.completing) this.suggestions = [];
    }
  }

  async makeSample(): Promise<Video | null> {
    this.busy = 'sample';
    this.addError = null;
    try {
      const { video } = await this.api.call('makeSample', {});
      await this.load();
      return video;
    } catch (error) {
      this.addError = `Could not make the sample clip: ${ApiError.from(error).message}`;
      return null;
    } finally {
      this.busy = null;
    }
  }

  /**
   * Take a video off the list; the removal is made after UNDO_MS unless undone (another removal, or an add,
   * makes the pending one at once). Closing the window before then keeps the video.
   */
  async remove(id: string): Promise<void> {
    const video = this.videos.find((v) => v.id === id);
    if (!video) return;
    await this.finishRemoval();
    const wasSelected = this.selectedId === id;
    if (wasSelected) this.selectedId = null;
    this.removing = { video, wasSelected };
    this.removeTimer = setTimeout(() => void this.finishRemoval(), UNDO_MS);
  }

  /** Put the video being removed back; returns it (and whether it was the one shown), or null. */
  undoRemove(): { video: Video; wasSelected: boolean } | null {
    const pending = this.removing;
    if (this.removeTimer) clearTimeout(this.removeTimer);
    this.removeTimer = null;
    this.removing = null;
    return pending;
  }

  /** Make the pending removal now. */
  async finishRemoval(): Promise<void> {
    const pending = this.removing;
    if (!pending) return;
    if (this.removeTimer) clearTimeout(this.removeTimer);
    this.removeTimer = null;
    try {
      await this.api.call('removeVideo', { videoId: pending.video.id });
    } catch (error) {
      this.showMessages(`Could not remove ${pending.video.name}: ${ApiError.from(error).message}`, []);
    } finally {
      if (this.removing === pending) this.removing = null;
    }
    await this.load();
  }

  private async loadCovers(): Promise<void> {
    for (const v of this.videos) {
      if (v.error || this.covers[v.id]) continue;
      try {
        const { thumbnails } = await this.api.call('thumbnails', { videoId: v.id, count: 1, width: 160 });
        if (thumbnails[0]) this.covers[v.id] = thumbnails[0].thumb;
      } catch {
        // The list still shows the name; the player reports the problem when the video is opened.
      }
    }
  }
}

export function filterVideos(videos: readonly Video[], query: string): Video[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return [...videos];
  return videos.filter((v) => words.every((w) => v.name.toLowerCase().includes(w)));
}

export function basename(p: string): string {
  return p.split(/[\\/]/).filter(Boolean).pop() ?? p;
}
