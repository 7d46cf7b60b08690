import { cp, lstat, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { builtinPackDir } from '../paths.ts';
import { importName, importPack, listPackInfos, memoryFit, onnxBytes, verifyPackFiles } from './manage.ts';

const GB = 1e9;

describe('the memory check before loading a pack', () => {
  it('needs about 1.5× the ONNX files', () => {
    expect(memoryFit(2 * GB, { freeBytes: 8 * GB, totalBytes: 16 * GB })).toEqual({
      needBytes: 3 * GB,
      freeBytes: 8 * GB,
      totalBytes: 16 * GB,
      fits: true,
      message: null,
    });
  });

  it('says a pack larger than all memory cannot run here, and suggests a smaller precision', () => {
    const fit = memoryFit(12 * GB, { freeBytes: 6 * GB, totalBytes: 16 * GB });
    expect(fit.fits).toBe(false);
    expect(fit.message).toMatch(/needs about 18\.0 GB .* has 16\.0 GB in all.*int4/);
  });

  it('says to close programs when it fits the machine but not what is free, counting the pack it replaces', () => {
    expect(memoryFit(4 * GB, { freeBytes: 3 * GB, totalBytes: 16 * GB }).message).toMatch(
      /only 3\.0 GB is free now: close other programs/,
    );
    expect(memoryFit(4 * GB, { freeBytes: 3 * GB, totalBytes: 16 * GB, reclaimableBytes: 4 * GB }).fits).toBe(
      true,
    );
  });

  it('warns when it is tight', () => {
    expect(memoryFit(2 * GB, { freeBytes: 3.5 * GB, totalBytes: 16 * GB })).toMatchObject({
      fits: true,
      message: expect.stringMatching(/^Tight/),
    });
  });

  it('counts only the ONNX files of a manifest', () => {
    expect(
      onnxBytes({
        files: {
          'a.onnx': { sha256: '', bytes: 10 },
          'tokenizer.json': { sha256: '', bytes: 5 },
          'b.onnx': { sha256: '', bytes: 1 },
        },
      }),
    ).toBe(11);
  });
});

describe('importing a pack', () => {
  let dir: string;
  let source: string;
  let dest: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-packs-'));
    source = path.join(dir, 'my pack');
    dest = path.join(dir, 'data', 'models');
    await cp(builtinPackDir(), source, { recursive: true });
  });

  it('copies a valid pack under <name>-<version>, verified, leaving no temporary folder', async () => {
    const { dir: imported, manifest } = await importPack(source, dest);
    expect(imported).toBe(path.join(dest, importName(manifest)));
    expect(await readdir(dest)).toEqual([importName(manifest)]);
    expect((await lstat(imported)).isSymbolicLink()).toBe(false);
    await expect(verifyPackFiles(imported)).resolves.toMatchObject({
      files: Object.keys(manifest.files).length,
    });
  });

  it('links instead of copying with link', async () => {
    const { dir: imported } = await importPack(source, dest, { link: true });
    expect((await lstat(imported)).isSymbolicLink()).toBe(true);
    const [pack] = (
      await listPackInfos({ builtinDir: builtinPackDir(), userDir: dest }, builtinPackDir())
    ).filter((p) => !p.builtin);
    expect(pack).toMatchObject({ linked: true, active: false, error: null });
  });

  it('refuses a pack whose file fails its hash, and imports nothing', async () => {
    const manifest = JSON.parse(await readFile(path.join(source, 'manifest.json'), 'utf8')) as {
      files: Record<string, unknown>;
    };
    const victim = path.join(source, 'tokenizer_config.json');
    const text = await readFile(victim, 'utf8');
    await writeFile(victim, text.replace(/.$/s, text.endsWith(' ') ? '\n' : ' ')); // same size, different bytes
    expect(Object.keys(manifest.files)).toContain('tokenizer_config.json');
    await expect(importPack(source, dest)).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringMatching(/hash check/),
    });
    expect(await readdir(dest).catch(() => [])).toEqual([]);
  });

  it('refuses a folder that is not a pack, and a pack imported already', async () => {
    await expect(importPack(path.join(dir, 'nowhere'), dest)).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
    });
    await importPack(source, dest);
    await expect(importPack(source, dest)).rejects.toMatchObject({
      code: 'USAGE',
      message: expect.stringMatching(/already imported/),
    });
  });

  it('lists the built-in pack first and marked, the active one, and a damaged imported one with its error', async () => {
    const { dir: imported } = await importPack(source, dest);
    await writeFile(path.join(dest, 'junk'), 'not a folder');
    await cp(source, path.join(dest, 'broken'), { recursive: true });
    await writeFile(path.join(dest, 'broken', 'manifest.json'), '{');
    const packs = await listPackInfos({ builtinDir: builtinPackDir(), userDir: dest }, imported, {
      freeBytes: 8 * GB,
      totalBytes: 16 * GB,
    });
    expect(packs.map((p) => [path.basename(p.dir), p.builtin, p.active])).toEqual([
      [path.basename(builtinPackDir()), true, false],
      ['broken', false, false],
      [path.basename(imported), false, true],
    ]);
    expect(packs[0]!.memory?.fits).toBe(true);
    expect(packs[1]!.error?.code).toBe('MODEL_INVALID');
  });
});
