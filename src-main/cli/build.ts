/**
 * Bundle the command line into dist-main/cli/main.js (ESM, dependencies left to node_modules), so that
 * `bin/loupe.js` starts plain JavaScript instead of transpiling the TypeScript sources on every run.
 * `npm run build:cli` runs it; the test suite's global setup does too.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';

export async function buildCli(root: string): Promise<string> {
  const { build } = await import('esbuild');
  const outdir = path.join(root, 'dist-main', 'cli');
  await rm(outdir, { recursive: true, force: true });
  await build({
    // The model's worker process and the frame preparation thread are entries of their own: model/engine.ts
    // forks `./engine-worker.js` and media/prepare-pool.ts starts `./prepare-worker.js` beside the code that
    // holds them, so chunks sit in the same folder as the entries.
    entryPoints: {
      main: path.join(root, 'src-main', 'cli', 'main.ts'),
      'engine-worker': path.join(root, 'src-main', 'model', 'engine-worker.ts'),
      'prepare-worker': path.join(root, 'src-main', 'media', 'prepare-worker.ts'),
    },
    outdir,
    bundle: true,
    // Code behind dynamic imports (the model runtime, the web server) becomes chunks loaded on first use, so
    // `loupe --version` or a usage error does not load onnxruntime.
    splitting: true,
    chunkNames: 'chunk-[name]-[hash]',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
  return path.join(outdir, 'main.js');
}

if (process.argv[1]?.endsWith('cli/build.ts')) {
  const { resourcesRoot } = await import('../paths.ts');
  await buildCli(resourcesRoot());
}
