/**
 * Managing model packs: listing, importing (copy or link, atomic), verifying, and the memory check made
 * before a pack is loaded. The built-in pack is always listed; imported packs live one folder each under
 * `<data>/models/`, named `<name>-<version>`.
 */
import { randomUUID } from 'node:crypto';
import { copyFile, lstat, mkdir, readdir, rename, rm, stat, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { MemoryFit, PackInfo } from '../api/contract.ts';
import { LoupeError } from '../errors.ts';
import { loadPack, type Manifest } from '../model/pack.ts';

/** How much memory a loaded pack takes, relative to its ONNX files (weights plus runtime buffers). */
export const MEMORY_FACTOR = 1.5;

export interface MemoryState {
  freeBytes: number;
  totalBytes: number;
  /** Memory given back before the pack loads (the pack in use now, which is unloaded first). */
  reclaimableBytes?: number;
}

export function systemMemory(reclaimableBytes = 0): MemoryState {
  return { freeBytes: os.freemem(), totalBytes: os.totalmem(), reclaimableBytes };
}

/** The ONNX part of a pack: what is loaded into memory. */
export function onnxBytes(manifest: Pick<Manifest, 'files'>): number {
  return Object.entries(manifest.files).reduce(
    (n, [name, f]) => (name.endsWith('.onnx') ? n + f.bytes : n),
    0,
  );
}

/** Whether a pack of `onnx` bytes should load now (pure). */
export function memoryFit(onnx: number, memory: MemoryState): MemoryFit {
  const needBytes = Math.round(onnx * MEMORY_FACTOR);
  const freeBytes = memory.freeBytes + (memory.reclaimableBytes ?? 0);
  const base = { needBytes, freeBytes, totalBytes: memory.totalBytes };
  if (needBytes > memory.totalBytes)
    return {
      ...base,
      fits: false,
      message: `This model needs about ${gb(needBytes)} of memory and this computer has ${gb(memory.totalBytes)} in all: it cannot run here. Choose a smaller or lower-precision pack (int4, fp16).`,
    };
  if (needBytes > freeBytes)
    return {
      ...base,
      fits: false,
      message: `This model needs about ${gb(needBytes)} of memory and only ${gb(freeBytes)} is free now: close other programs, then try again.`,
    };
  if (needBytes > 0.75 * freeBytes)
    return {
      ...base,
      fits: true,
      message: `Tight: it needs about ${gb(needBytes)} of the ${gb(freeBytes)} free now.`,
    };
  return { ...base, fits: true, message: null };
}

function gb(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${Math.max(1, Math.round(bytes / 1e6))} MB`;
}

export interface PackPlaces {
  builtinDir: string;
  /** Where imported packs go (`<data>/models`). */
  userDir: string;
}

const same = (a: string, b: string) => path.resolve(a) === path.resolve(b);

/** Describe one pack folder; a pack that does not read is returned with its error (never thrown). */
export async function describePack(
  dir: string,
  context: { builtin: boolean; active: boolean; memory?: MemoryState },
): Promise<PackInfo> {
  const linked = await lstat(dir).then(
    (s) => s.isSymbolicLink(),
    () => false,
  );
  try {
    const { manifest: m } = await loadPack(dir, { hashLimitBytes: 0 });
    const onnx = onnxBytes(m);
    return {
      dir,
      name: m.name,
      version: m.version,
      description: m.description,
      domain: m.domain,
      precision: m.precision,
      bytes: Object.values(m.files).reduce((n, f) => n + f.bytes, 0),
      onnxBytes: onnx,
      contextLength: m.decoder.contextLength,
      ...context,
      linked,
      memory: context.memory ? memoryFit(onnx, context.memory) : null,
      error: null,
    };
  } catch (e) {
    const err = LoupeError.from(e);
    return {
      dir,
      name: path.basename(dir),
      version: '',
      description: '',
      domain: null,
      precision: '',
      bytes: 0,
      onnxBytes: 0,
      contextLength: null,
      ...context,
      linked,
      memory: null,
      error: { code: err.code, message: err.message },
    };
  }
}

/**
 * Every pack Loupe knows: the built-in one first (listed even when missing, with its error), then the imported
 * ones by name. `memory` judges each pack except the active one against what is free once the active one is unloaded.
 */
export async function listPackInfos(
  places: PackPlaces,
  activeDir: string,
  memory?: MemoryState,
): Promise<PackInfo[]> {
  const names = await readdir(places.userDir).catch(() => [] as string[]);
  const dirs = [
    places.builtinDir,
    ...names
      .filter((n) => !n.startsWith('.'))
      .sort((a, b) => a.localeCompare(b))
      .map((n) => path.join(places.userDir, n)),
  ];
  const out: PackInfo[] = [];
  for (const dir of dirs) {
    const info = await stat(dir).catch(() => null);
    const builtin = dir === places.builtinDir;
    if (!builtin && !info?.isDirectory()) continue;
    const active = same(dir, activeDir);
    out.push(await describePack(dir, { builtin, active, memory: active ? undefined : memory }));
  }
  // The active pack may live elsewhere (`--model DIR`): list it too.
  if (!out.some((p) => p.active)) out.push(await describePack(activeDir, { builtin: false, active: true }));
  return out;
}

/** Check every file of a pack against its manifest's sha256 (MODEL_INVALID names the first that fails). */
export async function verifyPackFiles(dir: string): Promise<{ files: number; bytes: number }> {
  const { manifest } = await loadPack(dir, { verifyHashes: true });
  const files = Object.values(manifest.files);
  return { files: files.length, bytes: files.reduce((n, f) => n + f.bytes, 0) };
}

/** The folder name an imported pack gets: `<name>-<version>`, kept to safe characters. */
export function importName(manifest: Pick<Manifest, 'name' | 'version'>): string {
  return (
    `${manifest.name}-${manifest.version}`.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[.]+/, '') || 'pack'
  );
}

export interface ImportOptions {
  /** Link to the folder instead of copying it (it must then stay where it is). */
  link?: boolean;
}

/**
 * Import the pack at `source` into `destRoot`:
 *   1. validate it, every hash included (a damaged pack is never imported);
 *   2. copy its manifest and listed files (or make a link) under a hidden temporary name in `destRoot`;
 *   3. check the copy's hashes again, then rename it to `<name>-<version>` (atomic: a half-copied pack is never listed).
 */
export async function importPack(
  source: string,
  destRoot: string,
  options: ImportOptions = {},
): Promise<{ dir: string; manifest: Manifest }> {
  const src = path.resolve(source);
  const info = await stat(src).catch(() => null);
  if (!info?.isDirectory())
    throw new LoupeError(
      'MODEL_NOT_FOUND',
      `There is no folder at ${src}: give the folder that holds manifest.json.`,
      { dir: src },
    );
  const { manifest } = await loadPack(src, { verifyHashes: true });
  for (const name of Object.keys(manifest.files))
    if (path.isAbsolute(name) || name.split(/[\\/]/).includes('..'))
      throw new LoupeError(
        'MODEL_INVALID',
        `The manifest of ${src} lists a file outside the pack (${name}).`,
        { dir: src, file: name },
      );
  const dest = path.join(destRoot, importName(manifest));
  if (await stat(dest).catch(() => null))
    throw new LoupeError(
      'USAGE',
      `${manifest.name} ${manifest.version} is already imported (${dest}). Delete that folder first to import it again.`,
      { dir: dest },
    );
  await mkdir(destRoot, { recursive: true });
  const tmp = path.join(destRoot, `.importing-${importName(manifest)}-${randomUUID().slice(0, 8)}`);
  try {
    if (options.link)
      await symlink(src, tmp, 'junction'); // 'junction' is ignored off Windows, and needs no admin there
    else {
      await mkdir(tmp);
      for (const name of ['manifest.json', ...Object.keys(manifest.files)]) {
        await mkdir(path.dirname(path.join(tmp, name)), { recursive: true });
        await copyFile(path.join(src, name), path.join(tmp, name));
      }
      await loadPack(tmp, { verifyHashes: true }); // the copy is what will be loaded: check it, not just the source
    }
    await rename(tmp, dest);
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw LoupeError.from(error);
  }
  return { dir: dest, manifest };
}
