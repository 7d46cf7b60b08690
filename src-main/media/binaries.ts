/**
 * Finds ffmpeg and ffprobe: env FFMPEG_PATH/FFPROBE_PATH → the optional `ffmpeg-static` package (ffmpeg only)
 * → an ffprobe beside the chosen ffmpeg → PATH. (No npm package ships a current ffprobe: `ffprobe-static` 3.1 has
 * ffprobe 4.0.2 from 2018, below our ffmpeg 5.1 floor, in 336 MB for every platform; so ffprobe comes from the
 * system, as the .deb's `depends: ffmpeg` guarantees, or from FFPROBE_PATH.) Each candidate must run `-version`; the result is cached.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LoupeError } from '../errors.ts';
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

/** Resolve (once) the ffmpeg and ffprobe binaries the media layer runs. */
export function resolveBinaries(): Promise<MediaBinaries> {
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
  return { ffmpeg, ffprobe };
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
