/**
 * Web mode's pages on a development checkout: `loupe serve` right after `npm install` builds them (Vite) when
 * they are missing or older than their sources, as `npm start` does, instead of answering 503. An installed
 * app ships its pages and has no sources: nothing to do there.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { LoupeError } from '../errors.ts';

function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** The newest modification time of the files under `dir`. */
function newest(dir: string): number {
  let latest = -1;
  for (const f of readdirSync(dir, { recursive: true }))
    latest = Math.max(latest, mtime(path.join(dir, String(f))));
  return latest;
}

/** Whether the pages in `pagesDir` need building from the sources beside it (missing or stale). */
export function pagesNeedBuild(pagesDir: string): boolean {
  const root = path.dirname(path.resolve(pagesDir));
  const sources = path.join(root, 'src-renderer');
  if (!existsSync(sources) || !existsSync(path.join(root, 'vite.config.ts'))) return false;
  const built = mtime(path.join(pagesDir, 'index.html'));
  return built < 0 || newest(sources) > built;
}

/** Build the pages when `pagesNeedBuild`; `say` reports it (one line). */
export async function ensurePages(pagesDir: string, say: (line: string) => void): Promise<void> {
  if (!pagesNeedBuild(pagesDir)) return;
  const root = path.dirname(path.resolve(pagesDir));
  say("Building the app's pages (first run, or the renderer changed; about 10 s)…");
  let vite: typeof import('vite');
  try {
    vite = await import('vite');
  } catch (error) {
    throw new LoupeError(
      'USAGE',
      `The app's pages are not built and Vite is not installed: run \`npm install\`, then \`npm run build\`.`,
      { cause: String(error) },
    );
  }
  await vite.build({
    root: path.join(root, 'src-renderer'),
    configFile: path.join(root, 'vite.config.ts'),
    logLevel: 'warn',
  });
}
