/**
 * `loupe merge`: join the outputs of shards (or of several runs) into one. Records are deduplicated by
 * (path relative to the input root, prompt): a success wins over a failure, otherwise the first input
 * wins. The result is sorted by path, then by prompt order, so the same inputs always give the same file,
 * whatever order the shards finished in.
 */
import { existsSync } from 'node:fs';
import { writeAtomic } from '../atomic.ts';
import { LoupeError } from '../errors.ts';
import { formatFromPath, renderRecords, type OutputFormat } from './export.ts';
import { readJournal } from './journal.ts';
import { journalPathFor } from './output.ts';
import { recordFailed, recordKey, type ResultRecord } from './record.ts';

export interface MergeResult {
  records: ResultRecord[];
  /** Records dropped as duplicates. */
  duplicates: number;
  /** Per input: the JSONL file read, its valid records, and lines that were not records. */
  inputs: { file: string; records: number; invalidLines: number; tornTail: boolean }[];
}

/** Deduplicate and order records (pure). */
export function mergeRecords(sets: readonly (readonly ResultRecord[])[]): {
  records: ResultRecord[];
  duplicates: number;
} {
  const byKey = new Map<string, ResultRecord>();
  let duplicates = 0;
  for (const set of sets)
    for (const r of set) {
      const key = recordKey(r);
      const held = byKey.get(key);
      if (!held) byKey.set(key, r);
      else {
        duplicates++;
        if (recordFailed(held) && !recordFailed(r)) byKey.set(key, r);
      }
    }
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const records = [...byKey.values()].sort(
    (a, b) => cmp(a.relPath, b.relPath) || a.promptIndex - b.promptIndex || cmp(a.prompt, b.prompt),
  );
  return { records, duplicates };
}

/** The JSONL behind an input: itself, or the journal beside a CSV/Markdown output. */
export function mergeSource(input: string): string {
  if (formatFromPath(input) === 'jsonl') return input;
  const journal = journalPathFor(input);
  if (!existsSync(journal))
    throw new LoupeError(
      'USAGE',
      `${input} is not JSONL and has no journal beside it (${journal}) to merge from.`,
      {
        path: input,
      },
    );
  return journal;
}

/** Merge `inputs` into `out` (written atomically, in `format` or the one its name implies). */
export async function mergeFiles(
  out: string,
  inputs: readonly string[],
  format?: OutputFormat,
): Promise<MergeResult> {
  if (!inputs.length) throw new LoupeError('USAGE', 'Name the shard outputs to merge.');
  const sets: ResultRecord[][] = [];
  const report: MergeResult['inputs'] = [];
  for (const input of inputs) {
    const file = mergeSource(input);
    if (!existsSync(file)) throw new LoupeError('FILE_NOT_FOUND', `${file} does not exist.`, { path: file });
    const contents = await readJournal(file);
    sets.push(contents.records);
    report.push({
      file,
      records: contents.records.length,
      invalidLines: contents.invalidLines.length,
      tornTail: contents.tornTail,
    });
  }
  const { records, duplicates } = mergeRecords(sets);
  const text = renderRecords(format ?? formatFromPath(out), records, true);
  await writeAtomic(out, text).catch((error: unknown) => {
    throw LoupeError.from(error);
  });
  return { records, duplicates, inputs: report };
}
