/** `loupe models …`: list (the one pack listing, packs/manage.ts) and verify model packs. */
import path from 'node:path';
import type { PackInfo } from '../api/contract.ts';
import { Engine } from '../model/engine.ts';
import { loadPack } from '../model/pack.ts';
import { listPackInfos } from '../packs/manage.ts';
import { builtinPackDir, userDataDir } from '../paths.ts';

export function userPacksDir(): string {
  return path.join(userDataDir(), 'models');
}

/** The packs Loupe knows, as the app lists them (packs/manage.ts: the built-in one, then the imported ones). */
export function listPacks(): Promise<PackInfo[]> {
  return listPackInfos({ builtinDir: builtinPackDir(), userDir: userPacksDir() }, builtinPackDir());
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
