/**
 * The API contract implemented once, on top of Services and the library store. Both transports (ipc.ts,
 * http.ts) hand validated inputs to this class; it knows nothing of Electron or HTTP. It is assembled from one
 * part per domain and forwards each method to it:
 *   library-api.ts        videos, thumbnails, playback and the media files a URL may serve
 *   conversations-api.ts  open / ask / stop / history, the live KV caches
 *   models-api.ts         model info, packs, switching packs
 *   batches.ts            batches (BatchManager)
 * and keeps settings, privacy and the cross-domain clears here.
 */
import type { Dirent } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { forgetFindMemos } from '../find/scan.ts';
import { LibraryStore } from '../library/store.ts';
import { forgetMediaMemos } from '../media/index.ts';
import { log, LOG_FILE, logFile, openLog } from '../log.ts';
import { ProxyMaker } from '../playback/proxy.ts';
import type { Services } from '../services.ts';
import { BatchManager } from './batches.ts';
import { ChatApi } from './chat-api.ts';
import { FindApi } from './find.ts';
import type {
  BatchEvent,
  CallOutput,
  FindEvent,
  FolderFindEvent,
  LoupeApi,
  ParsedCallInput,
  ParsedStreamInput,
  Settings,
} from './contract.ts';
import { ConversationsApi, type OpenClip } from './conversations-api.ts';
import { idFor, LibraryApi } from './library-api.ts';
import { ModelsApi } from './models-api.ts';

export type { ClipSession } from './conversations-api.ts';
export { idFor } from './library-api.ts';

export interface ServiceOptions {
  /** Where the renderer loads a video from: `/media/<id>` in web mode, `loupe-media://…` in Electron. */
  mediaUrl: (videoId: string, proxy: boolean) => string;
  /** Opens a conversation on a clip; tests may wrap the real one (e.g. to pace tokens). */
  openClip?: OpenClip;
  /** Folders whose files `chat` (the OpenAI-compatible routes) may read besides the library's videos. */
  allowedFolders?: readonly string[];
}

export class LoupeService implements LoupeApi {
  readonly library: LibraryApi;
  readonly conversations: ConversationsApi;
  readonly models: ModelsApi;
  /** Moment search (api/find.ts); the methods below only hand through. */
  readonly finds: FindApi;
  /** Stateless chat about one image or video (api/chat-api.ts), for the OpenAI-compatible routes. */
  readonly chats: ChatApi;
  /** Set once by `create` (the manager needs the service to add finished clips to the library). */
  batches!: BatchManager;

  private constructor(
    readonly services: Services,
    readonly store: LibraryStore,
    options: ServiceOptions,
  ) {
    const proxies = new ProxyMaker(path.join(services.dataDir, 'cache', 'proxies'));
    this.library = new LibraryApi(store, services.dataDir, proxies, {
      mediaUrl: options.mediaUrl,
      onRemove: (videoId) => this.conversations.closeVideo(videoId),
    });
    this.conversations = new ConversationsApi(services, store, this.library, options.openClip);
    this.models = new ModelsApi(services, store, {
      batchBusy: () => this.batches.busy,
      closeConversations: () => {
        this.conversations.closeAll();
        this.chats.closeAll();
      },
    });
    this.chats = new ChatApi(services, {
      libraryPaths: () => this.store.data.videos.map((v) => v.path),
      allowedFolders: options.allowedFolders ?? [],
    });
    this.finds = new FindApi(services, (videoId) => this.library.playableVideo(videoId).path);
  }

  static async create(services: Services, options: ServiceOptions): Promise<LoupeService> {
    await mkdir(services.dataDir, { recursive: true });
    openLog(services.dataDir);
    const store = await LibraryStore.open(services.dataDir);
    for (const notice of store.notices) log.warn(notice);
    const service = new LoupeService(services, store, options);
    service.batches = await BatchManager.open({
      services,
      settings: () => service.store.data.settings,
      addToLibrary: async (paths) => void (await service.addPaths({ paths, recursive: false })),
      videoIdFor: idFor,
    });
    await service.models.useChosenPack();
    return service;
  }

  get proxies(): ProxyMaker {
    return this.library.proxies;
  }

  /** The folder imported packs go to. */
  get userPacksDir(): string {
    return this.models.userPacksDir;
  }

  // ─── Library and playback (library-api.ts) ────────────────────────────────────────────────────────

  listVideos = () => this.library.listVideos();
  notices = () => this.library.notices();
  addPaths = (input: ParsedCallInput<'addPaths'>) => this.library.addPaths(input);
  removeVideo = (input: ParsedCallInput<'removeVideo'>) => this.library.removeVideo(input);
  completePath = (input: ParsedCallInput<'completePath'>) => this.library.completePath(input);
  makeSample = () => this.library.makeSample();
  thumbnails = (input: ParsedCallInput<'thumbnails'>) => this.library.thumbnails(input);
  frameThumbs = (input: ParsedCallInput<'frameThumbs'>) => this.library.frameThumbs(input);
  playback = (input: ParsedStreamInput<'playback'>, signal: AbortSignal) =>
    this.library.playback(input, signal);
  /** The file a media URL stands for (only library videos that passed probing, or their finished proxy). */
  mediaFile = (videoId: string, proxy: boolean) => this.library.mediaFile(videoId, proxy);

  // ─── Conversations (conversations-api.ts) ─────────────────────────────────────────────────────────

  openConversation = (input: ParsedCallInput<'openConversation'>) =>
    this.conversations.openConversation(input);
  ask = (input: ParsedStreamInput<'ask'>, signal: AbortSignal) => this.conversations.ask(input, signal);
  chat = (input: ParsedStreamInput<'chat'>, signal: AbortSignal) => this.chats.chat(input, signal);
  stop = (input: ParsedCallInput<'stop'>) => this.conversations.stop(input);
  history = (input: ParsedCallInput<'history'>) => this.conversations.history(input);

  // ─── Moment search (find.ts) ──────────────────────────────────────────────────────────────────────

  find(input: ParsedStreamInput<'find'>, signal: AbortSignal): AsyncIterable<FindEvent> {
    return this.finds.find(input, signal);
  }
  findHistory(input: ParsedCallInput<'findHistory'>): Promise<CallOutput<'findHistory'>> {
    return this.finds.findHistory(input);
  }
  findFolder(input: ParsedStreamInput<'findFolder'>, signal: AbortSignal): AsyncIterable<FolderFindEvent> {
    return this.finds.findFolder(input, signal);
  }
  exportFolderFind(input: ParsedCallInput<'exportFolderFind'>): Promise<CallOutput<'exportFolderFind'>> {
    return this.finds.exportFolderFind(input);
  }

  // ─── Model and packs (models-api.ts) ──────────────────────────────────────────────────────────────

  modelInfo = () => this.models.modelInfo();
  listModels = () => this.models.listModels();
  importModel = (input: ParsedCallInput<'importModel'>) => this.models.importModel(input);
  verifyModel = (input: ParsedCallInput<'verifyModel'>) => this.models.verifyModel(input);
  selectModel = (input: ParsedCallInput<'selectModel'>) => this.models.selectModel(input);

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
      logFile: logFile() ?? path.join(this.services.dataDir, LOG_FILE),
      cacheBytes: await folderBytes(path.join(this.services.dataDir, 'cache')),
      conversations: this.store.data.conversations.length,
    };
  }

  async clearHistory(): Promise<CallOutput<'clearHistory'>> {
    this.conversations.closeAll();
    this.chats.closeAll();
    await this.store.update((d) => void (d.conversations = []));
    await this.finds.history.clear(); // moment searches are history too
    forgetFindMemos(); // and the scores they remembered
    return { ok: true };
  }

  async clearCaches(): Promise<CallOutput<'clearCaches'>> {
    this.library.clearThumbnails();
    await this.proxies.clear();
    await this.services.cache?.clear();
    await rm(path.join(this.services.dataDir, 'cache'), { recursive: true, force: true });
    forgetFindMemos();
    forgetMediaMemos();
    return { ok: true };
  }

  /** End every running answer and batch (app quit). */
  dispose(): void {
    this.conversations.closeAll();
    this.chats.closeAll();
    this.batches.dispose();
  }
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
