/** The video library: the list, search (client-side, by name), adding paths, removing, the sample clip. */
import type { Video } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';

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

  readonly filtered = $derived(filterVideos(this.videos, this.query));
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
    this.addError = null;
    this.addNotes = [];
    if (paths.length === 0) {
      this.addError = 'Type or paste the full path of a video file or a folder.';
      return [];
    }
    this.busy = 'adding';
    try {
      const { added, skipped } = await this.api.call('addPaths', { paths, recursive });
      await this.load();
      this.addNotes = skipped.map((s) => `${basename(s.path)}: ${s.reason}`);
      if (added.length === 0 && skipped.length) this.addError = 'Nothing was added.';
      return added;
    } catch (error) {
      this.addError = ApiError.from(error).message;
      return [];
    } finally {
      this.busy = null;
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

  async remove(id: string): Promise<void> {
    await this.api.call('removeVideo', { videoId: id });
    if (this.selectedId === id) this.selectedId = null;
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
