/**
 * The API contract implemented once, on top of Services and the library store. Both transports (ipc.ts,
 * http.ts) hand validated inputs to this class; it knows nothing of Electron or HTTP.
 *
 * Conversations: one map from id to the live ClipConversation (which keeps the model's KV cache for
 * follow-ups) and the AbortController of its running answer, so Stop can end it.
 */
import { randomUUID, createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { LoupeError } from '../errors.ts';
import {
  frameTimes,
  probe,
  resolveBinaries,
  runProcess,
  thumbnailsAt,
  type MediaInfo,
} from '../media/index.ts';
import type { AnswerEvent, GenerateOptions } from '../model/engine.ts';
import { loadPack } from '../model/pack.ts';
import {
  importPack,
  listPackInfos,
  memoryFit,
  onnxBytes,
  systemMemory,
  verifyPackFiles,
} from '../packs/manage.ts';
import { builtinPackDir } from '../paths.ts';
import { ProxyMaker, proxyReason } from '../playback/proxy.ts';
import { ClipConversation } from '../qa/ask.ts';
import type { ClipRequest } from '../qa/clip-features.ts';
import type { Services } from '../services.ts';
import { LibraryStore } from '../library/store.ts';
import { BatchManager } from './batches.ts';
import type {
  AskEvent,
  CallOutput,
  ConversationRecord,
  FrameRef,
  LoupeApi,
  ParsedCallInput,
  ParsedStreamInput,
  PlaybackEvent,
  Settings,
  Turn,
  Video,
  BatchEvent,
} from './contract.ts';

/** What the service needs of an open clip conversation (qa/ask.ts's ClipConversation has it). */
export interface ClipSession {
  readonly clip: { range: { from: number; to: number }; frames: { timeSec: number }[] };
  ask(question: string, options: GenerateOptions): AsyncIterable<AnswerEvent>;
}

export interface ServiceOptions {
  /** Where the renderer loads a video from: `/media/<id>` in web mode, `loupe-media://…` in Electron. */
  mediaUrl: (videoId: string, proxy: boolean) => string;
  /** Opens a conversation on a clip; tests may wrap the real one (e.g. to pace tokens). */
  openClip?: (services: Services, request: ClipRequest) => Promise<ClipSession>;
}

/** File extensions picked up when a folder is added. */
export const VIDEO_EXTENSIONS = new Set([
  '.mp4',
  '.m4v',
  '.mov',
  '.mkv',
  '.webm',
  '.avi',
  '.mpg',
  '.mpeg',
  '.ts',
  '.mts',
  '.m2ts',
  '.wmv',
  '.flv',
  '.3gp',
  '.ogv',
]);
const LIVE_CONVERSATIONS = 8;
const FRAME_THUMB_WIDTH = 160;

interface Live {
  id: string;
  videoId: string;
  session: ClipSession;
  record: ConversationRecord;
  controller: AbortController | null;
}

const defaultOpenClip = async (services: Services, request: ClipRequest): Promise<ClipSession> =>
  ClipConversation.open(await services.engine(), await services.extractor(), request);

export class LoupeService implements LoupeApi {
  private readonly live = new Map<string, Live>();
  private readonly thumbCache = new Map<string, FrameRef[]>();
  readonly proxies: ProxyMaker;
  /** Set once by `create` (the manager needs the service to add finished clips to the library). */
  batches!: BatchManager;
  /** The pack loaded, when the memory check held (memory given back when switching away from it). */
  private loadedPackBytes = 0;

  private constructor(
    readonly services: Services,
    readonly store: LibraryStore,
    private readonly options: ServiceOptions,
  ) {
    this.proxies = new ProxyMaker(path.join(services.dataDir, 'cache', 'proxies'));
  }

  static async create(services: Services, options: ServiceOptions): Promise<LoupeService> {
    await mkdir(services.dataDir, { recursive: true });
    const service = new LoupeService(services, await LibraryStore.open(services.dataDir), options);
    service.batches = await BatchManager.open({
      services,
      settings: () => service.store.data.settings,
      addToLibrary: async (paths) => void (await service.addPaths({ paths, recursive: false })),
      videoIdFor: idFor,
    });
    await service.useChosenPack();
    return service;
  }

  /** The folder imported packs go to. */
  get userPacksDir(): string {
    return path.join(this.services.dataDir, 'models');
  }

  // ─── Library ──────────────────────────────────────────────────────────────────────────────────────

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
      added.push(await describe(file, videoId));
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
    for (const live of this.live.values()) if (live.videoId === videoId) this.close(live.id);
    await this.store.update((d) => {
      d.videos = d.videos.filter((v) => v.id !== videoId);
      d.conversations = d.conversations.filter((c) => c.videoId !== videoId);
    });
    return { ok: true };
  }

  async makeSample(): Promise<CallOutput<'makeSample'>> {
    const dir = path.join(this.services.dataDir, 'samples');
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
    if (!reason) return yield { type: 'ready', url: this.options.mediaUrl(videoId, false), proxy: false };
    for await (const p of this.proxies.ensure(info, signal)) {
      if (p.type === 'converting') yield { type: 'converting', fraction: p.fraction, reason };
      else yield { type: 'ready', url: this.options.mediaUrl(videoId, true), proxy: true };
    }
  }

  /** The file a media URL stands for: the original, or its finished proxy. */
  async mediaFile(videoId: string, proxy: boolean): Promise<string> {
    const video = this.video(videoId);
    if (!proxy) return video.path;
    const file = this.proxies.existing(await probe(video.path));
    if (!file)
      throw new LoupeError('NOT_FOUND', 'The playable copy of this video is not ready yet.', { videoId });
    return file;
  }

  // ─── Conversations ────────────────────────────────────────────────────────────────────────────────

  async openConversation({
    videoId,
    from,
    to,
  }: ParsedCallInput<'openConversation'>): Promise<CallOutput<'openConversation'>> {
    const video = this.playableVideo(videoId);
    if (to < from) throw new LoupeError('USAGE', 'The clip ends before it starts.', { from, to });
    const { frames } = this.store.data.settings;
    const open = this.options.openClip ?? defaultOpenClip;
    // Interactive work goes first: a running batch yields the model until the person is done.
    const session = await this.services.gate.runInteractive(() =>
      open(this.services, { path: video.path, from, to, frames: frames ?? undefined }),
    );
    const engine = await this.services.engine();
    const id = randomUUID();
    const times = session.clip.frames.map((f) => f.timeSec);
    const record: ConversationRecord = {
      id,
      videoId,
      range: session.clip.range,
      frameTimes: times,
      createdAt: new Date().toISOString(),
      model: `${engine.manifest.name}@${engine.manifest.version}`,
      turns: [],
    };
    this.live.set(id, { id, videoId, session, record, controller: null });
    this.evictIdle();
    return { conversationId: id, range: record.range, frames: await thumbsAt(video.path, times) };
  }

  async *ask(
    { conversationId, question }: ParsedStreamInput<'ask'>,
    signal: AbortSignal,
  ): AsyncGenerator<AskEvent> {
    const live = this.live.get(conversationId);
    if (!live)
      throw new LoupeError(
        'NOT_FOUND',
        'This conversation is closed (Loupe was restarted, or its history was cleared). Ask again to start a new one.',
        { conversationId },
      );
    if (live.controller)
      throw new LoupeError('USAGE', 'This conversation is still answering: wait, or press Stop.');
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    live.controller = controller;
    const { maxNewTokens, temperature } = this.store.data.settings;
    const turn: Turn = {
      question,
      answer: '',
      stopped: 'eos',
      askedAt: new Date().toISOString(),
      timings: null,
      error: null,
    };
    const lease = this.services.gate.interactive();
    try {
      for await (const event of live.session.ask(question, {
        maxNewTokens,
        temperature,
        topP: 0.9,
        signal: controller.signal,
      })) {
        if (event.type === 'token') {
          if (!event.text) continue; // the API streams text; ids without text show nothing
          turn.answer += event.text;
          yield { type: 'token', text: event.text };
        } else {
          Object.assign(turn, { answer: event.text, stopped: event.stopped, timings: event.timings });
          await this.saveTurn(live, turn);
          yield {
            type: 'done',
            text: event.text,
            tokens: event.tokens,
            stopped: event.stopped,
            timings: event.timings,
          };
        }
      }
    } catch (error) {
      const err = LoupeError.from(error);
      if (err.code === 'CANCELLED') {
        Object.assign(turn, { answer: turn.answer.trim(), stopped: 'cancelled' });
        await this.saveTurn(live, turn);
        yield { type: 'cancelled', text: turn.answer };
        return;
      }
      Object.assign(turn, { stopped: 'error', error: err.toJSON() });
      await this.saveTurn(live, turn).catch(() => undefined);
      throw err;
    } finally {
      lease.release();
      signal.removeEventListener('abort', onAbort);
      live.controller = null;
    }
  }

  async stop({ conversationId }: ParsedCallInput<'stop'>): Promise<CallOutput<'stop'>> {
    this.live.get(conversationId)?.controller?.abort();
    return { ok: true };
  }

  async history({ videoId }: ParsedCallInput<'history'>): Promise<CallOutput<'history'>> {
    return {
      conversations: this.store.data.conversations.filter((c) => c.videoId === videoId && c.turns.length > 0),
    };
  }

  private async saveTurn(live: Live, turn: Turn): Promise<void> {
    live.record.turns.push({ ...turn });
    const record = structuredClone(live.record);
    await this.store.update((d) => {
      const at = d.conversations.findIndex((c) => c.id === record.id);
      if (at >= 0) d.conversations[at] = record;
      else if (d.videos.some((v) => v.id === record.videoId)) d.conversations.push(record);
    });
  }

  private close(id: string): void {
    this.live.get(id)?.controller?.abort();
    this.live.delete(id);
  }

  /** Keep at most LIVE_CONVERSATIONS model caches alive: the oldest idle ones go first. */
  private evictIdle(): void {
    for (const live of this.live.values()) {
      if (this.live.size <= LIVE_CONVERSATIONS) break;
      if (!live.controller) this.live.delete(live.id);
    }
  }

  // ─── Model, settings, privacy ─────────────────────────────────────────────────────────────────────

  async modelInfo(): Promise<CallOutput<'modelInfo'>> {
    const engine = await this.services.engine();
    const m = engine.manifest;
    this.loadedPackBytes = memoryFit(onnxBytes(m), systemMemory()).needBytes;
    const memory = process.memoryUsage();
    return {
      name: m.name,
      version: m.version,
      description: m.description,
      domain: m.domain,
      builtin: path.resolve(this.services.packDir) === path.resolve(builtinPackDir()),
      packDir: this.services.packDir,
      packBytes: Object.values(m.files).reduce((n, f) => n + f.bytes, 0),
      precision: m.precision,
      provider: {
        requested: engine.provider.requested,
        used: engine.provider.used,
        fallbacks: engine.provider.fallbacks.map((f) => ({
          provider: String(f.provider),
          error: String(f.error),
        })),
      },
      framesDefault: m.defaults.frames,
      maxFrames: engine.maxFrames(this.store.data.settings.maxNewTokens),
      contextLength: m.decoder.contextLength,
      memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
    };
  }

  // ─── Model packs ──────────────────────────────────────────────────────────────────────────────────

  async listModels(): Promise<CallOutput<'listModels'>> {
    const packs = await listPackInfos(
      { builtinDir: builtinPackDir(), userDir: this.userPacksDir },
      this.services.packDir,
      systemMemory(this.loadedPackBytes),
    );
    const { supportedProviders } = await import('../model/ort.ts');
    return { packs, providers: ['cpu', ...supportedProviders().filter((p) => p !== 'cpu')] };
  }

  async importModel({
    path: source,
    link,
  }: ParsedCallInput<'importModel'>): Promise<CallOutput<'importModel'>> {
    const { dir } = await importPack(source, this.userPacksDir, { link });
    const packs = await this.listModels();
    const pack = packs.packs.find((p) => path.resolve(p.dir) === path.resolve(dir));
    if (!pack) throw new LoupeError('INTERNAL', `The pack was imported to ${dir} but is not listed.`);
    return { pack };
  }

  async verifyModel({ dir }: ParsedCallInput<'verifyModel'>): Promise<CallOutput<'verifyModel'>> {
    return verifyPackFiles(dir);
  }

  /**
   * Switch to another pack: 1. it must read (manifest, sizes, small files' hashes); 2. it must fit in memory;
   * 3. no batch may be using the model; 4. open conversations close (their caches belong to the old model);
   * 5. load it (on failure the previous pack comes back); 6. remember the choice.
   */
  async selectModel({ dir }: ParsedCallInput<'selectModel'>): Promise<CallOutput<'selectModel'>> {
    const target = path.resolve(dir);
    if (target === path.resolve(this.services.packDir)) return this.modelInfo();
    const { manifest } = await loadPack(target);
    const fit = memoryFit(onnxBytes(manifest), systemMemory(this.loadedPackBytes));
    if (!fit.fits)
      throw new LoupeError('MODEL_TOO_LARGE', fit.message!, {
        dir: target,
        needBytes: fit.needBytes,
        freeBytes: fit.freeBytes,
      });
    if (this.batches.busy)
      throw new LoupeError(
        'USAGE',
        'A batch is using the model: let it finish, or cancel it, before switching models.',
      );
    for (const id of [...this.live.keys()]) this.close(id);
    const previous = this.services.packDir;
    await this.services.setPackDir(target);
    try {
      await this.services.engine();
    } catch (error) {
      await this.services.setPackDir(previous);
      throw error;
    }
    const builtin = target === path.resolve(builtinPackDir());
    await this.store.update((d) => void (d.settings.modelPack = builtin ? null : target));
    return this.modelInfo();
  }

  /** At start: load the pack chosen earlier, unless `--model` named one; fall back to the built-in pack if it cannot be used. */
  private async useChosenPack(): Promise<void> {
    const chosen = this.store.data.settings.modelPack;
    if (!chosen || path.resolve(this.services.packDir) !== path.resolve(builtinPackDir())) return;
    try {
      const { manifest } = await loadPack(chosen, { hashLimitBytes: 0 });
      if (memoryFit(onnxBytes(manifest), systemMemory()).fits) await this.services.setPackDir(chosen);
    } catch {
      // Moved or deleted since: the built-in pack is used, and the model list shows the pack's error.
    }
  }

  // ─── Batches ──────────────────────────────────────────────────────────────────────────────────────

  startBatch(input: ParsedCallInput<'startBatch'>): Promise<CallOutput<'startBatch'>> {
    return this.batches.start(input);
  }

  async listBatches(): Promise<CallOutput<'listBatches'>> {
    return { batches: this.batches.list() };
  }

  batchResults({ batchId }: ParsedCallInput<'batchResults'>): Promise<CallOutput<'batchResults'>> {
    return this.batches.results(batchId);
  }

  async pauseBatch({ batchId }: ParsedCallInput<'pauseBatch'>): Promise<CallOutput<'pauseBatch'>> {
    await this.batches.pause(batchId);
    return { ok: true };
  }

  async resumeBatch({ batchId }: ParsedCallInput<'resumeBatch'>): Promise<CallOutput<'resumeBatch'>> {
    await this.batches.resume(batchId);
    return { ok: true };
  }

  async cancelBatch({ batchId }: ParsedCallInput<'cancelBatch'>): Promise<CallOutput<'cancelBatch'>> {
    await this.batches.cancel(batchId);
    return { ok: true };
  }

  exportBatch({ batchId, format }: ParsedCallInput<'exportBatch'>): Promise<CallOutput<'exportBatch'>> {
    return this.batches.export(batchId, format);
  }

  async videoSummaries({
    videoId,
  }: ParsedCallInput<'videoSummaries'>): Promise<CallOutput<'videoSummaries'>> {
    return { results: await this.batches.videoSummaries(videoId) };
  }

  batchEvents({ batchId }: ParsedStreamInput<'batchEvents'>, signal: AbortSignal): AsyncIterable<BatchEvent> {
    return this.batches.events(batchId, signal);
  }

  async getSettings(): Promise<Settings> {
    return this.store.data.settings;
  }

  async setSettings(change: ParsedCallInput<'setSettings'>): Promise<Settings> {
    return this.store.update((d) => {
      d.settings = { ...d.settings, ...change };
      return d.settings;
    });
  }

  async privacyInfo(): Promise<CallOutput<'privacyInfo'>> {
    return {
      dataDir: this.services.dataDir,
      cacheBytes: await folderBytes(path.join(this.services.dataDir, 'cache')),
      conversations: this.store.data.conversations.length,
    };
  }

  async clearHistory(): Promise<CallOutput<'clearHistory'>> {
    for (const id of [...this.live.keys()]) this.close(id);
    await this.store.update((d) => void (d.conversations = []));
    return { ok: true };
  }

  async clearCaches(): Promise<CallOutput<'clearCaches'>> {
    this.thumbCache.clear();
    await this.proxies.clear();
    await this.services.cache?.clear();
    await rm(path.join(this.services.dataDir, 'cache'), { recursive: true, force: true });
    return { ok: true };
  }

  /** End every running answer and batch (app quit). */
  dispose(): void {
    for (const id of [...this.live.keys()]) this.close(id);
    this.batches.dispose();
  }

  // ─── Helpers ──────────────────────────────────────────────────────────────────────────────────────

  private video(videoId: string): Video {
    const video = this.store.data.videos.find((v) => v.id === videoId);
    if (!video)
      throw new LoupeError('NOT_FOUND', 'This video is not in the library (any more).', { videoId });
    return video;
  }

  /** A video that can be read: its stored error (corrupt, not a video…) is thrown as it is. */
  private playableVideo(videoId: string): Video {
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

async function listVideoFiles(dir: string, recursive: boolean): Promise<string[]> {
  const out: string[] = [];
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.startsWith('.')) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory() && recursive) out.push(...(await listVideoFiles(full, true)));
    else if (e.isFile() && VIDEO_EXTENSIONS.has(path.extname(e.name).toLowerCase())) out.push(full);
  }
  return out;
}

function dataUrl(jpeg: Buffer): string {
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}

/** Small JPEGs of the frames shown at `times`, as data URLs. */
async function thumbsAt(file: string, times: number[], width = FRAME_THUMB_WIDTH): Promise<FrameRef[]> {
  const thumbs = await thumbnailsAt(file, times, { width });
  return thumbs.map((t) => ({ timeSec: t.timeSec, thumb: dataUrl(t.jpeg) }));
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [] as Dirent[]);
  for (const e of entries)
    if (e.isFile())
      total += await stat(path.join(e.parentPath, e.name)).then(
        (s) => s.size,
        () => 0,
      );
  return total;
}

/**
 * A 10 s sample clip drawn with ffmpeg's lavfi filters (nothing is downloaded): a yellow circle crossing a
 * blue background, joined after 4 s by a red square, in the flat-shape world the built-in model knows.
 */
async function makeSampleClip(file: string): Promise<void> {
  const { ffmpeg } = await resolveBinaries();
  const [w, h, fps, d, r] = [640, 360, 15, 10, 60];
  const disc = `color=c=0xf0d728:s=${2 * r}x${2 * r}:r=${fps}:d=${d},format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='255*lte(hypot(X-${r}+0.5,Y-${r}+0.5),${r})'[disc]`;
  const graph = [
    `color=c=0x2346d7:s=${w}x${h}:r=${fps}:d=${d}[bg]`,
    disc,
    `[bg][disc]overlay=x='40+(${w}-${2 * r}-80)*t/${d}':y=${h / 2 - r}:eval=frame[a]`,
    `[a]drawbox=x=${w - 200}:y=40:w=110:h=110:color=0xd72323:t=fill:enable='gte(t,4)',format=yuv420p[v]`,
  ].join(';');
  const tmp = `${file}.${process.pid}.tmp.mp4`;
  try {
    // prettier-ignore
    await runProcess(ffmpeg.path, [
      '-nostdin', '-hide_banner', '-loglevel', 'error', '-y', '-filter_complex', graph, '-map', '[v]',
      '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '20', '-g', String(fps), '-threads', '2',
      '-movflags', '+faststart', '-f', 'mp4', tmp,
    ], { timeoutMs: 120_000 });
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}
