/**
 * Moment search across a folder: which clips show the query, and when. One record per clip, appended (one
 * write + fsync) to a JSONL journal, so a stopped or crashed run resumes where it was: clips already done for
 * the same query, step and range are skipped. A CSV output is rewritten from the journal, atomically, after
 * every clip (csv-stringify).
 */
import { open, readFile, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { z } from 'zod';
import { LoupeError, throwIfAborted } from '../errors.ts';
import type { BatchInput } from '../jobs/discover.ts';
import { writeAtomic } from '../atomic.ts';
import {
  findMoments,
  type DenseMediaPort,
  type FindModel,
  type FindResult,
  type FindTokens,
} from './scan.ts';
import type { FeatureCache } from '../cache/feature-cache.ts';

export const FindRecordSchema = z.object({
  kind: z.literal('find'),
  relPath: z.string(),
  path: z.string(),
  query: z.string(),
  step: z.number(),
  from: z.number().nullable(),
  to: z.number().nullable(),
  /** Whether any interval was found (false also for a failed clip: see error). */
  found: z.boolean(),
  intervals: z.array(z.object({ from: z.number(), to: z.number(), score: z.number() })),
  maxScore: z.number().nullable(),
  frames: z.number(),
  durationMs: z.number(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  finishedAt: z.string(),
});
export type FindRecord = z.infer<typeof FindRecordSchema>;

export type FolderOutputFormat = 'jsonl' | 'csv';

export interface FolderFindOptions {
  query: string;
  step?: number;
  from?: number;
  to?: number;
  threshold?: number;
  /** Score every instant of each clip (default: coarse to fine; see scan.ts). */
  full?: boolean;
  coarseStep?: number;
  tokens?: FindTokens;
  /** Output file (.jsonl or .csv); a CSV keeps its journal beside it, `<out>.journal.jsonl`. */
  out: string;
  /** Keep the records already in the journal (default); false starts over. */
  resume?: boolean;
  signal?: AbortSignal;
  onClip?: (event: { record: FindRecord; done: number; total: number; skipped: boolean }) => void;
}

export function formatOf(out: string): FolderOutputFormat {
  const ext = path.extname(out).toLowerCase();
  if (ext === '.jsonl' || ext === '.json') return 'jsonl';
  if (ext === '.csv') return 'csv';
  throw new LoupeError('USAGE', `Cannot tell the output format of ${out}: use a .jsonl or .csv file name.`);
}

export const journalFor = (out: string) => (formatOf(out) === 'jsonl' ? out : `${out}.journal.jsonl`);

/** Identity of a clip's work: the same file, query, step and range is done once. */
const keyOf = (r: Pick<FindRecord, 'relPath' | 'query' | 'step' | 'from' | 'to'>) =>
  JSON.stringify([r.relPath, r.query, r.step, r.from, r.to]);

/** Valid records of a journal; a torn or invalid line is skipped (that clip is done again). */
export async function readFindJournal(file: string): Promise<{ records: FindRecord[]; validBytes: number }> {
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return '';
    throw e;
  });
  const records: FindRecord[] = [];
  let validBytes = 0;
  let at = 0;
  for (const line of text.split('\n')) {
    const end = at + Buffer.byteLength(line) + 1;
    const complete = end <= Buffer.byteLength(text);
    let parsed: unknown;
    try {
      parsed = line.trim() ? JSON.parse(line) : null;
    } catch {
      parsed = null;
    }
    const record = FindRecordSchema.safeParse(parsed);
    if (record.success && complete) records.push(record.data);
    if (complete) validBytes = end;
    at = end;
  }
  return { records, validBytes };
}

export const CSV_COLUMNS = ['file', 'query', 'found', 'from', 'to', 'score', 'max_score', 'error'] as const;

/** One CSV row per interval (a clip without any gets one row with found = no). */
export function toCsv(records: readonly FindRecord[]): string {
  const rows: (string | number)[][] = [];
  for (const r of records) {
    const base = [r.relPath, r.query, r.found ? 'yes' : 'no'];
    const tail = [r.maxScore ?? '', r.error ? `${r.error.code}: ${r.error.message}` : ''];
    if (!r.intervals.length) rows.push([...base, '', '', '', ...tail]);
    for (const i of r.intervals) rows.push([...base, i.from, i.to, i.score, ...tail]);
  }
  return stringify(rows, { header: true, columns: [...CSV_COLUMNS], record_delimiter: 'unix' });
}

export interface FolderFindSummary {
  records: FindRecord[];
  found: number;
  failed: number;
  skipped: number;
}

/** Search every clip of `items` for the query; resumable (see the file comment). */
export async function findInFolder(
  model: FindModel,
  media: DenseMediaPort,
  cache: FeatureCache | null,
  items: readonly BatchInput[],
  options: FolderFindOptions,
): Promise<FolderFindSummary> {
  const format = formatOf(options.out);
  const journalFile = journalFor(options.out);
  const step = options.step ?? 0.5;
  const base = { query: options.query, step, from: options.from ?? null, to: options.to ?? null };
  if (options.resume === false) await rm(journalFile, { force: true });
  const previous = await readFindJournal(journalFile);
  const done = new Map(previous.records.map((r) => [keyOf(r), r]));
  let handle: FileHandle | null = null;
  const append = async (record: FindRecord) => {
    if (!handle) {
      handle = await open(journalFile, 'a+');
      const { size } = await handle.stat();
      if (size > previous.validBytes) await handle.truncate(previous.validBytes); // a torn last line
    }
    await handle.write(JSON.stringify(record) + '\n');
    await handle.sync();
  };
  const records: FindRecord[] = [];
  let skipped = 0;
  try {
    for (const [index, item] of items.entries()) {
      throwIfAborted(options.signal);
      const old = done.get(keyOf({ relPath: item.relPath, ...base }));
      if (old) {
        records.push(old);
        skipped++;
        options.onClip?.({ record: old, done: index + 1, total: items.length, skipped: true });
        continue;
      }
      const started = performance.now();
      let result: FindResult | null = null;
      let error: FindRecord['error'] = null;
      try {
        for await (const event of findMoments(model, media, cache, {
          path: item.path,
          query: options.query,
          step,
          from: options.from,
          to: options.to,
          threshold: options.threshold,
          full: options.full,
          coarseStep: options.coarseStep,
          tokens: options.tokens,
          signal: options.signal,
        }))
          if (event.type === 'done') result = event.result;
      } catch (e) {
        const err = LoupeError.from(e);
        if (err.code === 'CANCELLED' || err.code === 'MODEL_INVALID') throw err; // the run stops, the clip is not done
        error = { code: err.code, message: err.message };
      }
      const record: FindRecord = {
        kind: 'find',
        relPath: item.relPath,
        path: item.path,
        ...base,
        found: !!result?.intervals.length,
        intervals: result?.intervals ?? [],
        maxScore: result ? Math.max(...result.scores.map((s) => s.score)) : null,
        frames: result?.frames ?? 0,
        durationMs: Math.round(performance.now() - started),
        error,
        finishedAt: new Date().toISOString(),
      };
      await append(record);
      records.push(record);
      if (format === 'csv') await writeAtomic(options.out, toCsv(orderedRecords(previous.records, records)));
      options.onClip?.({ record, done: index + 1, total: items.length, skipped: false });
    }
  } finally {
    await (handle as FileHandle | null)?.close();
  }
  if (format === 'csv') await writeAtomic(options.out, toCsv(orderedRecords(previous.records, records)));
  return {
    records,
    found: records.filter((r) => r.found).length,
    failed: records.filter((r) => r.error).length,
    skipped,
  };
}

/** This run's records, plus the journal's records for other queries or clips, latest per key, in file order. */
function orderedRecords(previous: readonly FindRecord[], current: readonly FindRecord[]): FindRecord[] {
  const byKey = new Map<string, FindRecord>();
  for (const r of [...previous, ...current]) byKey.set(keyOf(r), r);
  return [...byKey.values()];
}
