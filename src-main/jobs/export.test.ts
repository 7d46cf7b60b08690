import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { CSV_COLUMNS, csvLine, formatFromPath, renderRecords } from './export.ts';

/** Read CSV back with csv-parse (strict RFC 4180), never with our own code. */
const parseCsv = (text: string): string[][] => parse(text, { relax_column_count: true });
import { fakeRecord } from './record.fixture.ts';

describe('exports', () => {
  it('quote CSV fields so that commas, quotes and line breaks parse back', () => {
    const nasty = ['plain', 'a,b', 'say "hi"', 'two\nlines', ' padded ', '', 'crlf\r\nx', 'tab\tend '];
    expect(csvLine(['a', null, 3.5])).toBe('a,,3.5\r\n');
    expect(parseCsv(csvLine(nasty) + csvLine(['x']))).toEqual([nasty, ['x']]);
  });

  it('write one CSV row per clip and prompt plus one per segment', () => {
    const record = fakeRecord('dir/a, "b".mp4', {
      answer: 'A red circle,\nthen "a square".',
      segments: [
        { from: 0, to: 30, answer: 'first', frames: [1], error: null },
        { from: 30, to: 45.5, answer: null, frames: [], error: { code: 'FFMPEG_FAILED', message: 'boom' } },
      ],
    });
    const rows = parseCsv(renderRecords('csv', [record]));
    expect(rows[0]).toEqual([...CSV_COLUMNS]);
    const col = (name: (typeof CSV_COLUMNS)[number]) => CSV_COLUMNS.indexOf(name);
    expect(rows).toHaveLength(4);
    expect(rows[1]![col('rel_path')]).toBe('dir/a, "b".mp4');
    expect(rows[1]![col('answer')]).toBe('A red circle,\nthen "a square".');
    expect(rows[3]![col('segment_from')]).toBe('30');
    expect(rows[3]![col('segment_to')]).toBe('45.5');
    expect(rows[3]![col('error_code')]).toBe('FFMPEG_FAILED');
  });

  it('render a Markdown report with a section per clip, segment tables and failures', () => {
    const md = renderRecords('md', [
      fakeRecord('a|b.mp4', { segments: [{ from: 0, to: 1, answer: 'x | y', frames: [0.5], error: null }] }),
      fakeRecord('a|b.mp4', { prompt: 'Colors?', promptIndex: 1, answer: 'red' }),
      fakeRecord('bad.mp4', { answer: null, error: { code: 'NOT_A_VIDEO', message: 'not a video' } }),
    ]);
    expect(md.match(/^## `/gm)).toHaveLength(2);
    expect(md).toContain('| 0:00 | 0:01 | x \\| y |');
    expect(md).toMatch(/## Summary\n\n2 clips, 3 answers, 1 failed/);
    expect(md).toContain('- `bad.mp4`: NOT_A_VIDEO: not a video');
  });

  it('choose the format from the file name', () => {
    expect(formatFromPath('r.csv')).toBe('csv');
    expect(formatFromPath('r.MD')).toBe('md');
    expect(formatFromPath('r.jsonl')).toBe('jsonl');
    expect(formatFromPath('results')).toBe('jsonl');
  });
});
