/**
 * The frame index's ffprobe pass is shared by every caller that asks while it runs: one caller's Stop never
 * cancels the others', the pass stops when every caller has left, and Clear caches forgets the remembered ones.
 * The ffprobe here is a stand-in script that counts its runs and finishes only when the test says so, so nothing
 * depends on how fast anything runs.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../test/helpers.ts';
import { frameIndex } from './frame-index.ts';
import { forgetMediaMemos } from './memos.ts';
import { liveProcessCount } from './process.ts';

describe('the shared frame-index pass', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-frame-index-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** A stand-in ffprobe for one file: it notes each run, waits for `go`, then prints two packets. */
  async function standIn(name: string) {
    const folder = path.join(dir, name);
    const script = path.join(folder, 'ffprobe');
    await mkdir(folder);
    await writeFile(
      script,
      [
        '#!/bin/sh',
        `echo run >> '${folder}/runs'`,
        `while [ ! -e '${folder}/go' ]; do sleep 0.01; done`,
        "printf '1.0,1.0,0.04,564,K__\\n1.04,1.04,0.04,900,___\\n'",
        '',
      ].join('\n'),
    );
    await chmod(script, 0o755);
    const file = {
      path: path.join(folder, 'clip.ts'),
      input: 'clip.ts',
      sizeBytes: 1000,
      mtimeMs: 1,
      streamIndex: 0,
    };
    return {
      index: (signal?: AbortSignal) => frameIndex(script, file, 1, 25, signal),
      runs: async () =>
        (await readFile(path.join(folder, 'runs'), 'utf8').catch(() => '')).split('\n').filter(Boolean)
          .length,
      go: () => writeFile(path.join(folder, 'go'), ''),
    };
  }

  it('runs one pass for every caller, and one caller’s Stop leaves the others’ running', async () => {
    const probe = await standIn('shared');
    const a = new AbortController();
    const b = new AbortController();
    const first = probe.index(a.signal);
    const second = probe.index(b.signal);
    await until(async () => (await probe.runs()) === 1 && liveProcessCount() === 1, 'the pass to start');
    a.abort();
    await expect(first).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(liveProcessCount()).toBe(1); // still running for the second caller
    const third = probe.index(); // joins the running pass
    await probe.go();
    const [two, three] = await Promise.all([second, third]);
    expect(two.frames).toHaveLength(2);
    expect(three).toBe(two);
    expect(await probe.runs()).toBe(1);
    expect(liveProcessCount()).toBe(0);
    // remembered: no second pass, until Clear caches forgets it
    expect(await probe.index()).toBe(two);
    expect(await probe.runs()).toBe(1);
    forgetMediaMemos();
    expect((await probe.index()).frames).toHaveLength(2);
    expect(await probe.runs()).toBe(2);
  });

  it('stops the pass once every caller has left, and the next caller starts a new one', async () => {
    const probe = await standIn('left');
    const a = new AbortController();
    const b = new AbortController();
    const first = probe.index(a.signal);
    const second = probe.index(b.signal);
    await until(async () => (await probe.runs()) === 1 && liveProcessCount() === 1, 'the pass to start');
    a.abort();
    b.abort();
    await expect(first).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(second).rejects.toMatchObject({ code: 'CANCELLED' });
    await until(() => liveProcessCount() === 0, 'the stopped pass to exit');
    await probe.go();
    expect((await probe.index()).frames).toHaveLength(2);
    expect(await probe.runs()).toBe(2);
  });
});
