/**
 * Runs once, before any test file: builds what several suites share, so that no two test files build it at
 * the same time.
 *
 * The renderer is built on every run (about 2 s), never reused from an earlier run, so a stale dist-renderer/
 * cannot hide a regression. It is built into a temporary folder and swapped into place, so a server started
 * outside the tests (npm run web) never serves a half-written folder either.
 */
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { buildCli } from '../src-main/cli/build.ts';
import { ROOT } from './helpers.ts';

export const RENDERER = path.join(ROOT, 'dist-renderer');

export async function buildRendererOnce(): Promise<void> {
  const building = `${RENDERER}.tmp-${process.pid}`;
  const old = `${RENDERER}.old-${process.pid}`;
  await rm(building, { recursive: true, force: true });
  const { build } = await import('vite');
  await build({
    configFile: path.join(ROOT, 'vite.config.ts'),
    root: path.join(ROOT, 'src-renderer'),
    logLevel: 'warn',
    build: { outDir: building, emptyOutDir: true },
  });
  await rename(RENDERER, old).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  await rename(building, RENDERER);
  await rm(old, { recursive: true, force: true });
}

/** What the tests run that is built: the renderer, and the bundled command line (`bin/loupe.js` runs it). */
export default async function setup(): Promise<void> {
  await Promise.all([buildRendererOnce(), buildCli(ROOT)]);
}
