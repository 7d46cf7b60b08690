#!/usr/bin/env node
// Runs the bundled CLI (dist-main/cli/main.js, from `npm run build:cli`) in this process. Where the bundle is
// missing or older than the TypeScript sources (a development checkout), the sources run through tsx instead.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bundle = path.join(root, 'dist-main', 'cli', 'main.js');

function mtime(file) {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** Whether the bundle is at least as new as every source file (an installed package ships no sources). */
function bundleIsFresh() {
  const built = mtime(bundle);
  if (built < 0) return false;
  const sources = path.join(root, 'src-main');
  let files;
  try {
    files = readdirSync(sources, { recursive: true });
  } catch {
    return true;
  }
  return files.every((f) => !String(f).endsWith('.ts') || mtime(path.join(sources, String(f))) <= built);
}

let entry = bundle;
if (!bundleIsFresh()) {
  const { register } = await import('tsx/esm/api');
  register();
  entry = path.join(root, 'src-main', 'cli', 'main.ts');
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv);
