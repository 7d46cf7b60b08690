/**
 * `npm start`: the desktop app when the Electron binary is installed, web mode otherwise.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { resourcesRoot } from '../paths.ts';
import { serveUntilInterrupted, type ServeOptions } from './serve.ts';

/** The Electron binary's path, or null when the npm package has no binary (e.g. its download failed). */
export function electronBinary(): string | null {
  try {
    const exported: unknown = createRequire(import.meta.url)('electron');
    return typeof exported === 'string' && existsSync(exported) ? exported : null;
  } catch {
    return null;
  }
}

export async function start(options: ServeOptions = {}): Promise<void> {
  const binary = electronBinary();
  if (!binary) {
    process.stdout.write(
      'Electron is not installed here (no binary in node_modules/electron): starting web mode instead.\n',
    );
    return serveUntilInterrupted(options);
  }
  const root = resourcesRoot();
  const { buildElectron } = await import('./build-electron.ts');
  await buildElectron(root);
  const child = spawn(binary, [path.join(root, 'dist-main', 'electron', 'main.js')], { stdio: 'inherit' });
  await new Promise<void>((resolve) =>
    child.on('exit', (code) => ((process.exitCode = code ?? 0), resolve())),
  );
}

if (process.argv[1]?.endsWith('cli/start.ts')) {
  start().catch((error: unknown) => {
    process.stderr.write(`loupe: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
