/** The model manager: the packs Loupe knows, importing one by path, verifying, switching the one in use. */
import type { ModelInfo, PackInfo } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';

export class ModelsState {
  packs = $state.raw<PackInfo[]>([]);
  providers = $state.raw<string[]>([]);
  importPath = $state('');
  link = $state(false);
  /** What is in progress: 'import', or `verify:<dir>` / `select:<dir>`. */
  busy = $state<string | null>(null);
  error = $state<string | null>(null);
  notice = $state<string | null>(null);
  /** Verification results by pack folder: true when every hash matched. */
  verified = $state<Record<string, true>>({});

  constructor(
    private readonly api: ApiClient,
    /** Called with the new model after a switch. */
    private readonly onSwitched: (model: ModelInfo) => void = () => {},
  ) {}

  async load(): Promise<void> {
    try {
      const { packs, providers } = await this.api.call('listModels', {});
      this.packs = packs;
      this.providers = providers;
    } catch (error) {
      this.error = ApiError.from(error).message;
    }
  }

  async import(): Promise<void> {
    const path = this.importPath.trim().replace(/^["']|["']$/g, '');
    this.error = this.notice = null;
    if (!path)
      return void (this.error =
        'Type or paste the path of a model pack folder (the one with manifest.json).');
    this.busy = 'import';
    try {
      const { pack } = await this.api.call('importModel', { path, link: this.link });
      this.importPath = '';
      this.verified = { ...this.verified, [pack.dir]: true }; // an import checks every hash
      this.notice = `Imported ${pack.name} ${pack.version}${this.link ? ' (linked)' : ''}.`;
      await this.load();
    } catch (error) {
      this.error = ApiError.from(error).message;
    } finally {
      this.busy = null;
    }
  }

  async verify(dir: string): Promise<void> {
    this.error = this.notice = null;
    this.busy = `verify:${dir}`;
    try {
      const { files } = await this.api.call('verifyModel', { dir });
      this.verified = { ...this.verified, [dir]: true };
      this.notice = `All ${files} files match their hashes.`;
    } catch (error) {
      this.error = ApiError.from(error).message;
    } finally {
      this.busy = null;
    }
  }

  async select(dir: string): Promise<void> {
    this.error = this.notice = null;
    this.busy = `select:${dir}`;
    try {
      const model = await this.api.call('selectModel', { dir });
      this.notice = `Now using ${model.name} ${model.version}.`;
      this.onSwitched(model);
      await this.load();
    } catch (error) {
      this.error = ApiError.from(error).message;
    } finally {
      this.busy = null;
    }
  }
}
