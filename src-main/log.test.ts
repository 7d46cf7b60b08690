import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../test/helpers.ts';
import { LoupeError } from './errors.ts';
import { flushLog, log, LOG_FILE, logFile, openLog } from './log.ts';

describe('the app log', () => {
  let dir: string;
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('writes JSON lines with the error code, message and stack to <data>/logs/loupe.log', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-log-'));
    const file = openLog(dir);
    expect(file).toBe(path.join(dir, LOG_FILE));
    expect(logFile()).toBe(file);
    log.error('batch state not saved', new LoupeError('DISK_FULL', 'The disk is full.'), { batch: 'b1' });
    log.warn('window state not saved');
    let lines: Record<string, unknown>[] = [];
    await until(async () => {
      flushLog();
      const text = await readFile(file, 'utf8').catch(() => '');
      lines = text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      return lines.length >= 2;
    }, 'both lines in the log file');
    expect(lines[0]).toMatchObject({
      level: 50,
      msg: 'batch state not saved',
      code: 'DISK_FULL',
      batch: 'b1',
    });
    expect((lines[0]!.err as { stack: string }).stack).toMatch(/LoupeError: The disk is full/);
    expect(lines[1]).toMatchObject({ level: 40, msg: 'window state not saved' });
  });
});
