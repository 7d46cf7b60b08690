/** Shared test setup: a fixtures folder, a temp data folder, and Services on the built-in pack. */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Services, type ServicesOptions } from '../src-main/services.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES = path.join(ROOT, 'test', '.fixtures');
export const PYTHON = path.join(ROOT, '.venv', 'bin', 'python');
export const CHECKPOINT = path.join(ROOT, 'models', 'builtin', 'checkpoint');

export async function tempDir(prefix = 'loupe-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function testServices(options: ServicesOptions = {}): Promise<Services> {
  return new Services({ dataDir: await tempDir(), threads: 2, ...options });
}
