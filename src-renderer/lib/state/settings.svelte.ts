/** Settings, the active model's description and the privacy facts, plus the light/dark theme. */
import type { ModelInfo, Settings } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';

export class SettingsState {
  /**
   * The saved settings, null until the first `getSettings` answers: the defaults live in one place, main's
   * library (DEFAULT_SETTINGS in src-main/library/records.ts), and come through the API like any saved value.
   */
  settings = $state<Settings | null>(null);
  model = $state<ModelInfo | null>(null);
  modelError = $state<string | null>(null);
  privacy = $state<{ dataDir: string; logFile: string; cacheBytes: number; conversations: number } | null>(
    null,
  );
  saveError = $state<string | null>(null);
  notice = $state<string | null>(null);
  /** The theme in effect (system resolved through prefers-color-scheme). */
  systemDark = $state(false);
  readonly dark = $derived(
    this.settings?.theme === 'dark' || ((this.settings?.theme ?? 'system') === 'system' && this.systemDark),
  );

  constructor(private readonly api: ApiClient) {}

  async load(): Promise<void> {
    try {
      this.settings = await this.api.call('getSettings', {});
    } catch (error) {
      this.saveError = ApiError.from(error).message;
    }
  }

  async loadModel(): Promise<void> {
    try {
      this.model = await this.api.call('modelInfo', {});
      this.modelError = null;
    } catch (error) {
      this.modelError = ApiError.from(error).message;
    }
  }

  async loadPrivacy(): Promise<void> {
    this.privacy = await this.api.call('privacyInfo', {}).catch(() => null);
  }

  async update(change: Partial<Omit<Settings, 'modelPack'>>): Promise<void> {
    this.saveError = null;
    try {
      this.settings = await this.api.call('setSettings', change);
      if ('maxNewTokens' in change) void this.loadModel(); // the frame limit depends on the answer length
    } catch (error) {
      this.saveError = ApiError.from(error).message;
    }
  }

  toggleTheme(): void {
    void this.update({ theme: this.dark ? 'light' : 'dark' });
  }

  async clearHistory(): Promise<void> {
    await this.api.call('clearHistory', {});
    this.notice = 'History cleared.';
    await this.loadPrivacy();
  }

  async clearCaches(): Promise<void> {
    await this.api.call('clearCaches', {});
    this.notice = 'Caches cleared.';
    await this.loadPrivacy();
  }
}
