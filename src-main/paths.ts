/** Where Loupe keeps things: the built-in pack and the user-data folder (the same one Electron uses). */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const APP_NAME = 'Loupe';

/** The project root in development; resources folder when packaged by electron-builder. */
export function resourcesRoot(): string {
  const packaged = (process as NodeJS.Process & { resourcesPath?: string }).resourcesPath;
  if (packaged && !packaged.includes(`${path.sep}node_modules${path.sep}electron${path.sep}`))
    return packaged;
  // In development this file runs from src-main/ (tsx) or bundled into dist-main/electron/: walk up to package.json.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 4 && !existsSync(path.join(dir, 'package.json')); up++) dir = path.dirname(dir);
  return existsSync(path.join(dir, 'package.json'))
    ? dir
    : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
}

/** The built renderer (vite's output). */
export function rendererDir(): string {
  return path.join(resourcesRoot(), 'dist-renderer');
}

export function builtinPackDir(): string {
  return process.env.LOUPE_BUILTIN_PACK ?? path.join(resourcesRoot(), 'build', 'models', 'builtin-shapes');
}

/** Electron's `app.getPath('userData')` for an app named Loupe, computed the same way without Electron. */
export function userDataDir(): string {
  if (process.env.LOUPE_DATA_DIR) return process.env.LOUPE_DATA_DIR;
  const home = os.homedir();
  if (process.platform === 'win32')
    return path.join(process.env.APPDATA ?? path.join(home, 'AppData', 'Roaming'), APP_NAME);
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Application Support', APP_NAME);
  return path.join(process.env.XDG_CONFIG_HOME ?? path.join(home, '.config'), APP_NAME);
}
