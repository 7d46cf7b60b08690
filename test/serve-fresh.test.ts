/**
 * The README's promise for web mode: right after the install command, `npx loupe serve` serves the app, with no
 * other command first (issue 25). A fresh clone of this repository (no dist-renderer/, no bundled CLI) with the
 * installed packages runs `bin/loupe.js serve`, which builds the pages itself; the page it names answers 200
 * with the app's HTML. Only the clone is touched: the checkout the other suites use keeps its own build.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { expect, it } from 'vitest';
import { ROOT, tempDir } from './helpers.ts';

const run = promisify(execFile);

it('a fresh clone serves the app (200) with `loupe serve` alone, building its pages first', async () => {
  const clone = path.join(await tempDir('loupe-fresh-'), 'loupe');
  await run('git', ['clone', '--quiet', '--shared', ROOT, clone]);
  await symlink(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'));
  expect(existsSync(path.join(clone, 'dist-renderer'))).toBe(false);
  expect(existsSync(path.join(clone, 'dist-main'))).toBe(false);
  const data = await tempDir('loupe-fresh-data-');
  const child = spawn(process.execPath, [path.join(clone, 'bin', 'loupe.js'), 'serve', '--port', '0'], {
    cwd: clone,
    env: { ...process.env, LOUPE_DATA_DIR: data },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    let out = '';
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const found = /open (http:\/\/127\.0\.0\.1:\d+\/\S*)/.exec(out);
        if (found) resolve(found[1]!);
      });
      child.on('exit', (code) => reject(new Error(`serve exited (${code}) before its URL:\n${out}\n${err}`)));
    });
    // as a browser opens the link: it sets the session cookie and redirects to the page
    const link = await fetch(url, { redirect: 'manual' });
    expect(link.status).toBe(303);
    const cookie = link.headers.get('set-cookie')!.split(';')[0]!;
    const res = await fetch(new URL(link.headers.get('location')!, url), { headers: { cookie } });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('<script type="module"');
    expect(existsSync(path.join(clone, 'dist-renderer', 'index.html'))).toBe(true);
    expect(html).toBe(await readFile(path.join(clone, 'dist-renderer', 'index.html'), 'utf8'));
    expect(out + err).toContain("Building the app's pages");
  } finally {
    child.kill('SIGINT');
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
  }
}, 300_000);
