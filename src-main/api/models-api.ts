/**
 * The model half of the API: what is loaded (modelInfo), the packs there are (list, import, verify), and
 * switching packs (with the memory check, and only while no batch uses the model).
 */
import path from 'node:path';
import { LoupeError } from '../errors.ts';
import type { LibraryStore } from '../library/store.ts';
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
import type { Services } from '../services.ts';
import type { CallOutput, ParsedCallInput } from './contract.ts';

export interface ModelsHooks {
  /** A batch is using the model (a switch must wait). */
  batchBusy: () => boolean;
  /** Close every open conversation (their caches belong to the old model). */
  closeConversations: () => void;
}

export class ModelsApi {
  /** The pack loaded, when the memory check held (memory given back when switching away from it). */
  private loadedPackBytes = 0;

  constructor(
    private readonly services: Services,
    private readonly store: LibraryStore,
    private readonly hooks: ModelsHooks,
  ) {}

  /** The folder imported packs go to. */
  get userPacksDir(): string {
    return path.join(this.services.dataDir, 'models');
  }

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
    if (this.hooks.batchBusy())
      throw new LoupeError(
        'USAGE',
        'A batch is using the model: let it finish, or cancel it, before switching models.',
      );
    this.hooks.closeConversations();
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
  async useChosenPack(): Promise<void> {
    const chosen = this.store.data.settings.modelPack;
    if (!chosen || path.resolve(this.services.packDir) !== path.resolve(builtinPackDir())) return;
    try {
      const { manifest } = await loadPack(chosen, { hashLimitBytes: 0 });
      if (memoryFit(onnxBytes(manifest), systemMemory()).fits) await this.services.setPackDir(chosen);
    } catch {
      // Moved or deleted since: the built-in pack is used, and the model list shows the pack's error.
    }
  }
}
