/**
 * Bundle the Electron main process, the model's worker and the frame preparation thread (ESM, dependencies
 * left to node_modules; both must sit beside main.js, where model/engine.ts and media/prepare-pool.ts look) and the sandboxed preload
 * (CommonJS, self-contained: a sandboxed preload cannot load other files) into dist-main/electron/.
 * A build step, not part of the shell: it lives with the CLI (`npm start` runs it) and names electron/'s entry
 * points as files, never importing them.
 */
import path from 'node:path';

export async function buildElectron(root: string): Promise<void> {
  const { build } = await import('esbuild');
  const out = path.join(root, 'dist-main', 'electron');
  for (const [entry, file] of [
    [path.join(root, 'src-main', 'electron', 'main.ts'), 'main.js'],
    [path.join(root, 'src-main', 'model', 'engine-worker.ts'), 'engine-worker.js'],
    [path.join(root, 'src-main', 'media', 'prepare-worker.ts'), 'prepare-worker.js'],
  ] as const)
    await build({
      entryPoints: [entry],
      outfile: path.join(out, file),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      logLevel: 'warning',
    });
  await build({
    entryPoints: [path.join(root, 'src-main', 'electron', 'preload.ts')],
    outfile: path.join(out, 'preload.cjs'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['electron'],
    logLevel: 'warning',
  });
}

if (process.argv[1]?.endsWith('cli/build-electron.ts')) {
  const { resourcesRoot } = await import('../paths.ts');
  await buildElectron(resourcesRoot());
}
