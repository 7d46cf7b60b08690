/**
 * The library half of the API: videos (add, list, remove, the sample clip), thumbnails, and playback (where the
 * player loads a video from, and which file a media URL may serve). On the library store and media/.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { LoupeError } from '../errors.ts';
import { discoverInputs, extensionOf, VIDEO_EXTENSIONS } from '../jobs/discover.ts';
import type { LibraryStore } from '../library/store.ts';
import { frameTimes, makeSampleClip, probe, thumbnailsAt, type MediaInfo } from '../media/index.ts';
import type { ProxyMaker } from '../playback/proxy.ts';
import { proxyReason } from '../playback/proxy.ts';
import type {
  CallOutput,
  FrameRef,
  ParsedCallInput,
  ParsedStreamInput,
  PlaybackEvent,
  Video,
} from './contract.ts';

/** Probe failures that mean the file is no video at all: such a file is skipped, not added with its error. */
const NOT_MEDIA = new Set(['NOT_A_VIDEO', 'FILE_NOT_FOUND']);
const FRAME_THUMB_WIDTH = 160;

export interface LibraryHooks {
  /** Where the renderer loads a video from: `/media/<id>` in web mode, `loupe-media://…` in Electron. */
  mediaUrl: (videoId: string, proxy: boolean) => string;
  /** A video is being removed (its conversations close). */
  onRemove: (videoId: string) => void;
}

export class LibraryApi {
  private readonly thumbCache = new Map<string, FrameRef[]>();
  private readonly servableCache = new Map<string, { key: string; info: MediaInfo }>();

  constructor(
    private readonly store: LibraryStore,
    private readonly dataDir: string,
    readonly proxies: ProxyMaker,
    private readonly hooks: LibraryHooks,
  ) {}

  async listVideos(): Promise<CallOutput<'listVideos'>> {
    const videos = await Promise.all(
      this.store.data.videos.map(async (v) => {
        // A file moved away since it was added shows why it cannot be opened; it comes back when the file does.
        const exists = await stat(v.path).then(
          () => true,
          () => false,
        );
        return exists
          ? v
          : { ...v, error: { code: 'FILE_NOT_FOUND', message: `The file is no longer at ${v.path}.` } };
      }),
    );
    return { videos };
  }

  async notices(): Promise<CallOutput<'notices'>> {
    return { notices: this.store.notices };
  }

  async addPaths({ paths, recursive }: ParsedCallInput<'addPaths'>): Promise<CallOutput<'addPaths'>> {
    const added: Video[] = [];
    const skipped: { path: string; reason: string }[] = [];
    const files: string[] = [];
    for (const given of paths) {
      const full = path.resolve(given);
      const info = await stat(full).catch(() => null);
      if (!info) skipped.push({ path: given, reason: 'There is no file or folder at this path.' });
      else if (info.isDirectory()) {
        const found = await listVideoFiles(full, recursive);
        if (found.length === 0)
          skipped.push({
            path: given,
            reason: `No video files in this folder${recursive ? ' or its sub-folders' : ''}.`,
          });
        files.push(...found);
      } else files.push(full);
    }
    for (const file of files) {
      const videoId = idFor(file);
      if (this.store.data.videos.some((v) => v.id === videoId)) {
        skipped.push({ path: file, reason: 'Already in the library.' });
        continue;
      }
      const video = await describe(file, videoId);
      // A file that is not media at all (or vanished) is not a library video: it is reported, not kept.
      if (video.error && NOT_MEDIA.has(video.error.code))
        skipped.push({ path: file, reason: video.error.message });
      else added.push(video);
    }
    if (added.length)
      await this.store.update((d) => {
        d.videos.push(...added);
        d.videos.sort((a, b) => a.name.localeCompare(b.name));
      });
    return { added, skipped };
  }

  async removeVideo({ videoId }: ParsedCallInput<'removeVideo'>): Promise<CallOutput<'removeVideo'>> {
    this.video(videoId);
    this.hooks.onRemove(videoId);
    await this.store.update((d) => {
      d.videos = d.videos.filter((v) => v.id !== videoId);
      d.conversations = d.conversations.filter((c) => c.videoId !== videoId);
    });
    return { ok: true };
  }

  async completePath({
    prefix,
    limit,
  }: ParsedCallInput<'completePath'>): Promise<CallOutput<'completePath'>> {
    const typed = prefix === '~' || /^~[\\/]/.test(prefix) ? os.homedir() + prefix.slice(1) : prefix;
    if (!path.isAbsolute(typed)) return { folder: '', entries: [], truncated: false };
    const endsInSep = /[\\/]$/.test(typed);
    const folder = path.resolve(endsInSep ? typed : path.dirname(typed));
    const part = endsInSep ? '' : path.basename(typed);
    const dirents = await readdir(folder, { withFileTypes: true }).catch(() => []);
    const lower = part.toLowerCase();
    const matches: { path: string; name: string; kind: 'folder' | 'video' }[] = [];
    for (const d of dirents) {
      if (!d.name.toLowerCase().startsWith(lower) || (d.name.startsWith('.') && !part.startsWith('.')))
        continue;
      const full = path.join(folder, d.name);
      // A link counts as what it points to (normal fs semantics).
      const isDir =
        d.isDirectory() || (d.isSymbolicLink() && (await stat(full).catch(() => null))?.isDirectory());
      if (isDir) matches.push({ path: full + path.sep, name: d.name, kind: 'folder' });
      else if (VIDEO_EXTENSIONS.has(extensionOf(d.name)))
        matches.push({ path: full, name: d.name, kind: 'video' });
    }
    matches.sort((a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === 'folder' ? -1 : 1));
    return { folder, entries: matches.slice(0, limit), truncated: matches.length > limit };
  }

  async makeSample(): Promise<CallOutput<'makeSample'>> {
    const dir = path.join(this.dataDir, 'samples');
    await mkdir(dir, { recursive: true });
    const existing = new Set(await readdir(dir));
    let n = 1;
    while (existing.has(`shapes-sample-${n}.mp4`)) n++;
    const file = path.join(dir, `shapes-sample-${n}.mp4`);
    await makeSampleClip(file);
    const { added } = await this.addPaths({ paths: [file], recursive: false });
    const video = added[0] ?? this.store.data.videos.find((v) => v.id === idFor(file));
    if (!video) throw new LoupeError('INTERNAL', 'The sample clip was made but could not be added.');
    return { video };
  }

  async thumbnails({
    videoId,
    count,
    width,
  }: ParsedCallInput<'thumbnails'>): Promise<CallOutput<'thumbnails'>> {
    const video = this.playableVideo(videoId);
    const key = `${videoId}:${video.sizeBytes}:${count}:${width}`;
    let thumbs = this.thumbCache.get(key);
    if (!thumbs) {
      const info = await probe(video.path);
      const times = info.kind === 'image' ? [0] : frameTimes(0, info.durationSec, count, info.fps);
      thumbs = await thumbsAt(video.path, times, width);
      this.thumbCache.set(key, thumbs);
    }
    return { thumbnails: thumbs };
  }

  async frameThumbs({ videoId, times }: ParsedCallInput<'frameThumbs'>): Promise<CallOutput<'frameThumbs'>> {
    const video = this.playableVideo(videoId);
    return { frames: await thumbsAt(video.path, times) };
  }

  // ─── Playback ─────────────────────────────────────────────────────────────────────────────────────

  async *playback(
    { videoId, forceProxy }: ParsedStreamInput<'playback'>,
    signal: AbortSignal,
  ): AsyncGenerator<PlaybackEvent> {
    const video = this.playableVideo(videoId);
    const info = await probe(video.path, signal);
    const reason = proxyReason(info) ?? (forceProxy ? 'the player could not decode the original' : null);
    if (!reason) return yield { type: 'ready', url: this.hooks.mediaUrl(videoId, false), proxy: false };
    for await (const p of this.proxies.ensure(info, signal)) {
      if (p.type === 'converting') yield { type: 'converting', fraction: p.fraction, reason };
      else yield { type: 'ready', url: this.hooks.mediaUrl(videoId, true), proxy: true };
    }
  }

  /**
   * The file a media URL stands for: the original, or its finished proxy. Only a library video that passed
   * probing is served, and only while the file at its path is still one ffprobe reads as media: a file swapped
   * since (for a symlink to something else, say) is probed again and refused when it is not a video.
   */
  async mediaFile(videoId: string, proxy: boolean): Promise<string> {
    const video = this.playableVideo(videoId);
    const info = await this.servable(video);
    if (!proxy) return video.path;
    const file = this.proxies.existing(info);
    if (!file)
      throw new LoupeError('NOT_FOUND', 'The playable copy of this video is not ready yet.', { videoId });
    return file;
  }

  /** The probe of a library file as it is now, cached by the file's identity (device, inode, size, mtime). */
  async servable(video: Video): Promise<MediaInfo> {
    const now = await stat(video.path).catch(() => null);
    const key = now?.isFile() ? `${now.dev}:${now.ino}:${now.size}:${now.mtimeMs}` : null;
    const known = this.servableCache.get(video.path);
    if (key && known?.key === key) return known.info;
    const refuse = () =>
      new LoupeError('NOT_FOUND', 'This library entry is no longer a video Loupe can play.', {
        videoId: video.id,
      });
    if (!key) throw refuse();
    const info = await probe(video.path, undefined, { decodeCheck: false }).catch(() => {
      throw refuse();
    });
    this.servableCache.set(video.path, { key, info });
    return info;
  }

  /** Forget the thumbnails made so far (the caches are being cleared). */
  clearThumbnails(): void {
    this.thumbCache.clear();
  }

  video(videoId: string): Video {
    const video = this.store.data.videos.find((v) => v.id === videoId);
    if (!video)
      throw new LoupeError('NOT_FOUND', 'This video is not in the library (any more).', { videoId });
    return video;
  }

  /** A video that can be read: its stored error (corrupt, not a video…) is thrown as it is. */
  playableVideo(videoId: string): Video {
    const video = this.video(videoId);
    if (video.error)
      throw LoupeError.fromJSON({ ...video.error, code: video.error.code as LoupeError['code'] });
    return video;
  }
}

/** A stable id for a file path. */
export function idFor(file: string): string {
  return createHash('sha256').update(path.resolve(file)).digest('hex').slice(0, 16);
}

/** Probe `file` into a library entry; an unreadable file is kept with its error. */
async function describe(file: string, id: string): Promise<Video> {
  const name = path.basename(file);
  const base = { id, path: file, name, addedAt: new Date().toISOString() };
  try {
    const info: MediaInfo = await probe(file);
    return {
      ...base,
      sizeBytes: info.sizeBytes,
      durationSec: info.durationSec,
      width: info.displayWidth,
      height: info.displayHeight,
      kind: info.kind,
      codec: info.codec,
      error: null,
    };
  } catch (error) {
    const err = LoupeError.from(error);
    const size = await stat(file).then(
      (s) => s.size,
      () => 0,
    );
    return {
      ...base,
      sizeBytes: size,
      durationSec: 0,
      width: 0,
      height: 0,
      kind: 'video',
      codec: '',
      error: { code: err.code, message: err.message },
    };
  }
}

/** The videos in a folder: the batch's discovery (video extensions, else ffprobe), so both find the same files. */
async function listVideoFiles(dir: string, recursive: boolean): Promise<string[]> {
  const found = await discoverInputs([dir], { recursive }).catch(() => null);
  return found?.items.map((item) => item.path) ?? [];
}

function dataUrl(jpeg: Buffer): string {
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}

/** Small JPEGs of the frames shown at `times`, as data URLs. */
export async function thumbsAt(
  file: string,
  times: number[],
  width = FRAME_THUMB_WIDTH,
): Promise<FrameRef[]> {
  const thumbs = await thumbnailsAt(file, times, { width });
  return thumbs.map((t) => ({ timeSec: t.timeSec, thumb: dataUrl(t.jpeg) }));
}
