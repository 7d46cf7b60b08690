/**
 * Finds ffmpeg and ffprobe: env FFMPEG_PATH/FFPROBE_PATH → the optional `ffmpeg-static` package (ffmpeg only)
 * → an ffprobe beside the chosen ffmpeg → PATH. (No npm package ships a current ffprobe: `ffprobe-static` 3.1 has
 * ffprobe 4.0.2 from 2018, below our ffmpeg 5.1 floor, in 336 MB for every platform; so ffprobe comes from the
 * system, as the .deb's `depends: ffmpeg` guarantees, or from FFPROBE_PATH.) Each candidate must run `-version`;
 * the result is cached in memory and on disk (`<data>/cache/media-binaries.json`, with the filters the build
 * has), keyed by the size and mtime of every candidate file, so a new process knows its binaries without running
 * them: each ffmpeg start costs 0.1–0.5 s here (Debian's build links some 200 libraries).
 */
import { existsSync, readFileSync, renameSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { LoupeError } from '../errors.ts';
import { userDataDir } from '../paths.ts';
import { runProcess } from './process.ts';

export type BinarySource = 'env' | 'ffmpeg-static' | 'beside-ffmpeg' | 'path';

export interface ResolvedBinary {
  path: string;
  source: BinarySource;
  /** e.g. "5.1.9-0+deb12u1" */
  version: string;
}

export interface MediaBinaries {
  ffmpeg: ResolvedBinary;
  ffprobe: ResolvedBinary;
}

interface Candidate {
  path: string;
  source: BinarySource;
}

const exe = process.platform === 'win32' ? '.exe' : '';
let cached: Promise<MediaBinaries> | undefined;
const filterCache = new Map<string, Promise<Set<string>>>();

interface DiskCache {
  v: 1;
  key: string;
  binaries: MediaBinaries;
  /** Filter names of that ffmpeg, once asked for. */
  filters?: string[];
}

const DISK_CACHE_VERSION = 1;

function diskCachePath(): string {
  return join(userDataDir(), 'cache', 'media-binaries.json');
}

/** Where a command name resolves on PATH (what spawn would run), or the path itself. */
function onPath(file: string): string | undefined {
  if (file.includes('/') || file.includes('\\')) return existsSync(file) ? file : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter))
    if (dir && existsSync(join(dir, file))) return join(dir, file);
  return undefined;
}

/** Every candidate's file, size and mtime: any change (an install, an upgrade, a new env var) misses the cache. */
function candidatesKey(ffmpegPath: string | undefined): string {
  const print = (c: Candidate) => {
    const file = onPath(c.path);
    if (!file) return `${c.source}:${c.path}:-`;
    try {
      const st = statSync(file);
      return `${c.source}:${file}:${st.size}:${st.mtimeMs}`;
    } catch {
      return `${c.source}:${file}:-`;
    }
  };
  return JSON.stringify([ffmpegCandidates().map(print), ffprobeCandidates(ffmpegPath).map(print)]);
}

function readDiskCache(): DiskCache | undefined {
  try {
    const data = JSON.parse(readFileSync(diskCachePath(), 'utf8')) as DiskCache;
    if (data.v !== DISK_CACHE_VERSION || data.key !== candidatesKey(data.binaries.ffmpeg.path))
      return undefined;
    return data;
  } catch {
    return undefined;
  }
}

/** Atomic (write + rename); a cache that cannot be written only costs the next process its spawns. */
function writeDiskCache(data: DiskCache): void {
  try {
    const file = diskCachePath();
    mkdirSync(dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(data));
    renameSync(tmp, file);
  } catch {
    // read-only or full disk: fine
  }
}

/** Resolve (once) the ffmpeg and ffprobe binaries the media layer runs. */
export function resolveBinaries(): Promise<MediaBinaries> {
  const known = cached ? undefined : readDiskCache();
  if (known) {
    cached = Promise.resolve(known.binaries);
    if (known.filters) filterCache.set(known.binaries.ffmpeg.path, Promise.resolve(new Set(known.filters)));
  }
  cached ??= findBinaries().catch((error: unknown) => {
    cached = undefined; // let a later call succeed once ffmpeg is installed
    throw error;
  });
  return cached;
}

/** Forget the resolved binaries (tests, or after the user changed settings). */
export function resetBinariesCache(): void {
  cached = undefined;
  filterCache.clear();
}

/** Whether this ffmpeg build has the named filter (e.g. "zscale", "tonemap"). */
export async function ffmpegHasFilter(name: string): Promise<boolean> {
  const { ffmpeg } = await resolveBinaries();
  let filters = filterCache.get(ffmpeg.path);
  if (!filters) {
    filters = runProcess(ffmpeg.path, ['-hide_banner', '-filters'], { timeoutMs: 15_000 }).then(
      ({ stdout }) => {
        // Lines look like " TSC zscale            V->V       Apply resizing..." (flag columns vary by version).
        const names = stdout
          .toString('utf8')
          .split('\n')
          .map((line) => /^\s*[A-Z.|]{2,4}\s+(\w+)\s+\S+->\S+/.exec(line)?.[1])
          .filter((n): n is string => Boolean(n));
        const disk = readDiskCache();
        if (disk?.binaries.ffmpeg.path === ffmpeg.path) writeDiskCache({ ...disk, filters: names });
        return new Set(names);
      },
    );
    filters.catch(() => filterCache.delete(ffmpeg.path)); // retry next time
    filterCache.set(ffmpeg.path, filters);
  }
  return (await filters).has(name);
}

async function findBinaries(): Promise<MediaBinaries> {
  const tried: string[] = [];
  const ffmpeg = await firstWorking('ffmpeg', ffmpegCandidates(), tried);
  const ffprobe = await firstWorking('ffprobe', ffprobeCandidates(ffmpeg?.path), tried);
  if (!ffmpeg || !ffprobe) {
    const missing = [!ffmpeg && 'ffmpeg', !ffprobe && 'ffprobe'].filter(Boolean).join(' and ');
    throw new LoupeError(
      'FFMPEG_NOT_FOUND',
      `Loupe needs ${missing} to read videos, but could not run it. Install FFmpeg (for example ` +
        '`sudo apt install ffmpeg`, `brew install ffmpeg` or `winget install ffmpeg`) so that it is on your PATH, ' +
        'or set FFMPEG_PATH and FFPROBE_PATH to the full paths of the two programs.',
      { tried },
    );
  }
  const binaries = { ffmpeg, ffprobe };
  writeDiskCache({ v: DISK_CACHE_VERSION, key: candidatesKey(ffmpeg.path), binaries });
  return binaries;
}

function ffmpegCandidates(): Candidate[] {
  const list: Candidate[] = [];
  if (process.env.FFMPEG_PATH) list.push({ path: process.env.FFMPEG_PATH, source: 'env' });
  const fromPackage = optionalPackagePath('ffmpeg-static');
  if (fromPackage) list.push({ path: fromPackage, source: 'ffmpeg-static' });
  list.push({ path: `ffmpeg${exe}`, source: 'path' });
  return list;
}

function ffprobeCandidates(ffmpegPath: string | undefined): Candidate[] {
  const list: Candidate[] = [];
  if (process.env.FFPROBE_PATH) list.push({ path: process.env.FFPROBE_PATH, source: 'env' });
  // FFMPEG_PATH often points into a folder that holds both programs.
  if (ffmpegPath?.includes('/') || ffmpegPath?.includes('\\')) {
    const beside = join(dirname(ffmpegPath), `ffprobe${exe}`);
    if (existsSync(beside)) list.push({ path: beside, source: 'beside-ffmpeg' });
  }
  list.push({ path: `ffprobe${exe}`, source: 'path' });
  return list;
}

/** The binary path exported by an optional npm package, or undefined when it is not installed. */
function optionalPackagePath(name: 'ffmpeg-static'): string | undefined {
  try {
    const exported: unknown = createRequire(import.meta.url)(name);
    const path = typeof exported === 'string' ? exported : (exported as { path?: unknown } | null)?.path;
    // Inside a packaged Electron app the binary is unpacked next to the asar archive.
    return typeof path === 'string' ? path.replace(/app\.asar([\\/])/, 'app.asar.unpacked$1') : undefined;
  } catch {
    return undefined;
  }
}

async function firstWorking(
  program: string,
  candidates: Candidate[],
  tried: string[],
): Promise<ResolvedBinary | undefined> {
  for (const candidate of candidates) {
    try {
      const { stdout } = await runProcess(candidate.path, ['-hide_banner', '-version'], {
        timeoutMs: 15_000,
      });
      const version = new RegExp(`${program} version (\\S+)`).exec(stdout.toString('utf8'))?.[1] ?? 'unknown';
      return { ...candidate, version };
    } catch (error) {
      tried.push(
        `${candidate.path} (${candidate.source}): ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
  return undefined;
}
