/** Shared test setup: a fixtures folder, a temp data folder, and Services on the built-in pack. */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
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

/**
 * Debian's Chromium, headless, with everything that would reach for the network turned off (this machine has
 * none, and Loupe must work without it).
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}
