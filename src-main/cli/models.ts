/** `loupe models …`: list and verify model packs. */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Engine } from '../model/engine.ts';
import { loadPack } from '../model/pack.ts';
import { builtinPackDir, userDataDir } from '../paths.ts';

export interface PackSummary {
  dir: string;
  name: string;
  version: string;
  precision: string;
  bytes: number;
  builtin: boolean;
  contextLength?: number;
  error?: string;
}

export function userPacksDir(): string {
  return path.join(userDataDir(), 'models');
}

export async function listPacks(): Promise<PackSummary[]> {
  const dirs = [builtinPackDir()];
  const names = await readdir(userPacksDir()).catch(() => [] as string[]);
  for (const n of names) dirs.push(path.join(userPacksDir(), n));
  const out: PackSummary[] = [];
  for (const dir of dirs) {
    const builtin = dir === builtinPackDir();
    try {
      const pack = await loadPack(dir, { hashLimitBytes: 0 });
      const m = pack.manifest;
      out.push({
        dir,
        name: m.name,
        version: m.version,
        precision: m.precision,
        bytes: Object.values(m.files).reduce((n, f) => n + f.bytes, 0),
        builtin,
        contextLength: m.decoder.contextLength,
      });
    } catch (e) {
      const info = await stat(dir).catch(() => null);
      if (info?.isDirectory())
        out.push({
          dir,
          name: path.basename(dir),
          version: '?',
          precision: '?',
          bytes: 0,
          builtin,
          error: (e as Error).message,
        });
    }
  }
  return out;
}

export async function verifyPack(
  dir = builtinPackDir(),
): Promise<{ name: string; version: string; files: number; provider: string }> {
  const pack = await loadPack(dir, { verifyHashes: true });
  const engine = await Engine.load(dir, { provider: 'cpu' }); // graphs open and have the expected inputs/outputs
  try {
    return {
      name: pack.manifest.name,
      version: pack.manifest.version,
      files: Object.keys(pack.manifest.files).length,
      provider: engine.provider.used,
    };
  } finally {
    await engine.dispose();
  }
}
