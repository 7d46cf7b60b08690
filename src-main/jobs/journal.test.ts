import { mkdtemp, readFile, writeFile, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Journal, latestRecords, parseJournal, readJournal } from './journal.ts';
import { mergeRecords } from './merge.ts';
import { fakeRecord } from './record.fixture.ts';

const line = (r: unknown) => JSON.stringify(r) + '\n';

describe('the resume journal', () => {
  it('ignores a torn last line and says where appending may resume', () => {
    const whole = line(fakeRecord('a.mp4')) + line(fakeRecord('b.mp4'));
    const parsed = parseJournal(Buffer.from(whole + '{"v":1,"path":"/vid'));
    expect(parsed.records.map((r) => r.relPath)).toEqual(['a.mp4', 'b.mp4']);
    expect(parsed.tornTail).toBe(true);
    expect(parsed.keepBytes).toBe(Buffer.byteLength(whole));
  });

  it('skips lines that are not valid records', () => {
    const text =
      line(fakeRecord('a.mp4')) +
      'garbage\n' +
      line({ ...fakeRecord('b.mp4'), v: 99 }) +
      line(fakeRecord('c.mp4'));
    const parsed = parseJournal(Buffer.from(text));
    expect(parsed.records.map((r) => r.relPath)).toEqual(['a.mp4', 'c.mp4']);
    expect(parsed.invalidLines).toEqual([2, 3]);
  });

  it('cuts a torn tail off when resumed and appends whole lines after it', async () => {
    const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'loupe-journal-')), 'out.jsonl');
    await writeFile(file, line(fakeRecord('a.mp4')) + '{"torn');
    const journal = await Journal.open(file, { resume: true });
    expect([...journal.doneKeys()]).toHaveLength(1);
    await journal.append(fakeRecord('b.mp4'));
    await journal.close();
    const back = await readJournal(file);
    expect(back.records.map((r) => r.relPath)).toEqual(['a.mp4', 'b.mp4']);
    expect(back.tornTail).toBe(false);
    expect((await readFile(file, 'utf8')).endsWith('\n')).toBe(true);
  });

  it('refuses to overwrite results unless resuming or forced', async () => {
    const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'loupe-journal-')), 'out.jsonl');
    await appendFile(file, line(fakeRecord('a.mp4')));
    await expect(Journal.open(file)).rejects.toThrow(/--resume/);
    const forced = await Journal.open(file, { force: true });
    expect(forced.doneKeys().size).toBe(0);
    await forced.close();
    expect(await readFile(file, 'utf8')).toBe('');
  });

  it('rejects an invalid record instead of writing it', async () => {
    const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'loupe-journal-')), 'out.jsonl');
    const journal = await Journal.open(file);
    await expect(journal.append({ ...fakeRecord('a.mp4'), relPath: '' })).rejects.toThrow();
    await journal.close();
    expect(await readFile(file, 'utf8')).toBe('');
  });

  it('keeps the latest record per clip and prompt, in first-seen order', () => {
    const latest = latestRecords([
      fakeRecord('a.mp4', { answer: 'old' }),
      fakeRecord('b.mp4'),
      fakeRecord('a.mp4', { answer: 'new' }),
    ]);
    expect(latest.map((r) => [r.relPath, r.answer])).toEqual([
      ['a.mp4', 'new'],
      ['b.mp4', 'about b.mp4'],
    ]);
  });
});

describe('merging shard outputs', () => {
  it('deduplicates by path and prompt, prefers successes and sorts deterministically', () => {
    const failed = fakeRecord('b.mp4', { answer: null, error: { code: 'CORRUPT_MEDIA', message: 'x' } });
    const second = fakeRecord('a.mp4', { prompt: 'Colors?', promptIndex: 1 });
    const one = mergeRecords([
      [fakeRecord('c.mp4'), failed],
      [second, fakeRecord('a.mp4'), fakeRecord('b.mp4')],
    ]);
    const other = mergeRecords([
      [second, fakeRecord('a.mp4'), fakeRecord('b.mp4')],
      [failed, fakeRecord('c.mp4')],
    ]);
    expect(one.records.map((r) => `${r.relPath}:${r.promptIndex}`)).toEqual([
      'a.mp4:0',
      'a.mp4:1',
      'b.mp4:0',
      'c.mp4:0',
    ]);
    expect(one.records.find((r) => r.relPath === 'b.mp4')!.error).toBeNull();
    expect(one.duplicates).toBe(1);
    expect(other.records).toEqual(one.records);
  });
});
