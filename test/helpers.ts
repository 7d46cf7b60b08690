/** Shared test setup: a fixtures folder, a temp data folder, and Services on the built-in pack. */
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { Services, type ServicesOptions } from '../src-main/services.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES = path.join(ROOT, 'test', '.fixtures');
export const PYTHON = path.join(ROOT, '.venv', 'bin', 'python');
export const CHECKPOINT = path.join(ROOT, 'models', 'builtin', 'checkpoint');

export async function tempDir(prefix = 'loupe-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * Wait until `ready()` holds, looking again every few milliseconds: tests synchronise on the state itself, never
 * on a guessed delay. `timeoutMs` only catches a hang (docs/testing.md); the error says what never happened.
 */
export async function until(
  ready: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await ready())) {
    if (performance.now() > deadline)
      throw new Error(`Still waiting after ${timeoutMs / 1000} s for ${what}.`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
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

/** Run the real CLI (TypeScript through tsx); resolves with its exit code, signal and output. `onStart` gets the child. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
  onStart?: (child: ReturnType<typeof spawn>) => void,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'src-main/cli/main.ts'), ...args],
      {
        cwd: ROOT,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (t: string) => (stdout += t));
    child.stderr!.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    onStart?.(child);
  });
}

/**
 * A page for an end-to-end suite: its default timeout is a hang guard on a busy machine, not a timing, and its
 * uncaught errors go to `errors` (the suites check it stays empty).
 */
export async function openPage(
  browser: Browser,
  options: Parameters<Browser['newPage']>[0],
  errors: string[],
  timeoutMs = 60_000,
): Promise<Page> {
  const page = await browser.newPage(options);
  page.setDefaultTimeout(timeoutMs);
  page.on('pageerror', (e) => errors.push(e.message));
  return page;
}

/** expect.poll with room for a busy machine (its default is one second): a hang guard, not a timing. */
export function poll<T>(fn: () => Promise<T> | T, options: { timeout?: number } = {}) {
  return expect.poll(fn, { timeout: 60_000, ...options });
}
