import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CURRENT_VERSION, migrate, migrations } from './migrations.ts';
import { LIBRARY_FILE, LibraryStore } from './store.ts';

const v1 = {
  version: 1,
  videos: [
    { id: 'a1', path: '/videos/beach.mp4', name: 'beach.mp4', size: 1200, duration: 12.5 },
    {
      id: 'b2',
      path: '/videos/broken.mp4',
      name: 'broken.mp4',
      size: 10,
      duration: 0,
      error: { code: 'CORRUPT_MEDIA', message: 'damaged' },
    },
  ],
  settings: { frames: 6, maxTokens: 128 },
};

describe('library migrations', () => {
  it('has one migration per version step up to the current version', () => {
    for (let v = 1; v < CURRENT_VERSION; v++)
      expect(migrations[v], `migration ${v}→${v + 1}`).toBeTypeOf('function');
  });

  it('migrates v1 to v2: unit-named fields, settings renamed and completed, empty history', () => {
    const v2 = migrations[1]!(v1);
    expect(v2.version).toBe(2);
    const [beach, broken] = v2.videos as Record<string, unknown>[];
    expect(beach).toMatchObject({ id: 'a1', sizeBytes: 1200, durationSec: 12.5, error: null });
    expect(broken).toMatchObject({ error: { code: 'CORRUPT_MEDIA', message: 'damaged' } });
    expect(v2.settings).toEqual({ frames: 6, maxNewTokens: 128, temperature: 0, theme: 'system' });
    expect(v2.conversations).toEqual([]);
  });

  it('validates the migrated document and reports where it started', () => {
    const { data, migratedFrom } = migrate(v1);
    expect(migratedFrom).toBe(1);
    expect(data.version).toBe(CURRENT_VERSION);
    expect(migrate(data).migratedFrom).toBeNull();
  });

  it('refuses a library written by a newer Loupe instead of overwriting it', () => {
    expect(() => migrate({ version: CURRENT_VERSION + 1 })).toThrow(/newer version of Loupe/);
  });

  it('migrates v2 to v3: settings gain modelPack (the built-in pack), nothing else changes', () => {
    const v2 = {
      version: 2,
      videos: [],
      settings: { frames: null, maxNewTokens: 256, temperature: 0.3, theme: 'dark' },
      conversations: [],
    };
    const v3 = migrations[2]!(v2);
    expect(v3).toEqual({ ...v2, version: 3, settings: { ...v2.settings, modelPack: null } });
    expect(migrate(v2).data.settings.modelPack).toBeNull();
  });

  it('names the damaged field of an invalid library', () => {
    expect(() => migrate({ version: 2, videos: [{ id: 'x' }], settings: {}, conversations: [] })).toThrow(
      /damaged: videos\.0/,
    );
  });
});

describe('library store', () => {
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-store-'))));
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('starts empty and persists changes across reopening', async () => {
    const store = await LibraryStore.open(dir);
    expect(store.data.videos).toEqual([]);
    await store.update((d) => void (d.settings.temperature = 0.7));
    const again = await LibraryStore.open(dir);
    expect(again.data.settings.temperature).toBe(0.7);
  });

  it('migrates an old file on open, keeping a backup of it', async () => {
    await writeFile(path.join(dir, LIBRARY_FILE), JSON.stringify(v1));
    const store = await LibraryStore.open(dir);
    expect(store.data.videos[0]!.sizeBytes).toBe(1200);
    expect(JSON.parse(await readFile(path.join(dir, LIBRARY_FILE), 'utf8')).version).toBe(CURRENT_VERSION);
    expect(JSON.parse(await readFile(path.join(dir, `${LIBRARY_FILE}.v1.bak`), 'utf8'))).toEqual(v1);
  });

  it('writes atomically: no temporary files are left and concurrent updates all land', async () => {
    const store = await LibraryStore.open(dir);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.update((d) => {
          d.conversations.push({
            id: `c${i}`,
            videoId: 'v',
            range: { from: 0, to: 1 },
            frameTimes: [],
            createdAt: '',
            model: 'm',
            turns: [],
          });
        }),
      ),
    );
    expect((await LibraryStore.open(dir)).data.conversations).toHaveLength(20);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('keeps the current data when a change throws', async () => {
    const store = await LibraryStore.open(dir);
    await expect(
      store.update(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    await store.update((d) => void (d.settings.frames = 4));
    expect(store.data.settings.frames).toBe(4);
  });

  it('moves an unreadable file aside and starts with an empty library', async () => {
    await writeFile(path.join(dir, LIBRARY_FILE), '{ not json');
    const store = await LibraryStore.open(dir);
    expect(store.data.videos).toEqual([]);
    expect(store.recoveredFrom).toMatch(/library\.json\.damaged-\d+$/);
    expect(store.notices[0]).toMatch(/not valid JSON.*empty library.*library\.json\.damaged-/);
  });

  it('moves a file that fails validation aside, keeps it byte for byte, and says why', async () => {
    const text = JSON.stringify({
      version: CURRENT_VERSION,
      videos: [{ id: 7 }],
      settings: {},
      conversations: [],
    });
    await writeFile(path.join(dir, LIBRARY_FILE), text);
    const store = await LibraryStore.open(dir);
    expect(store.data.videos).toEqual([]);
    expect(await readFile(store.recoveredFrom!, 'utf8')).toBe(text);
    expect(store.notices[0]).toMatch(/damaged: videos\.0/);
    await store.update((d) => void (d.settings.frames = 3)); // the fresh library saves
    expect((await LibraryStore.open(dir)).data.settings.frames).toBe(3);
  });

  it('never moves aside a file from a newer Loupe: opening refuses', async () => {
    const text = JSON.stringify({ version: CURRENT_VERSION + 1 });
    await writeFile(path.join(dir, LIBRARY_FILE), text);
    await expect(LibraryStore.open(dir)).rejects.toThrow(/newer version of Loupe/);
    expect(await readFile(path.join(dir, LIBRARY_FILE), 'utf8')).toBe(text);
  });
});
