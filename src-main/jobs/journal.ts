/**
 * The resume journal: an append-only JSONL file, one ResultRecord per line. Each record is written with a
 * single write() and fsync'd before the batch calls its clip done, so after a crash, kill or power loss the
 * file holds every finished result, plus at most one torn last line, which reading ignores and reopening
 * cuts off. Every line is validated when read back; an invalid line in the middle is skipped (its clip is
 * simply done again), never trusted.
 */
import { open, readFile, truncate, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { LoupeError } from '../errors.ts';
import { parseRecord, recordKey, ResultRecordSchema, type ResultRecord } from './record.ts';

export interface JournalContents {
  /** Valid records in file order. */
  records: ResultRecord[];
  /** Bytes up to and including the last complete, valid-or-skipped line: where appending may resume. */
  keepBytes: number;
  /** The file ended in a partial line (a write cut short). */
  tornTail: boolean;
  /** The last record lacks its newline (complete JSON, newline lost): one must be added before appending. */
  needsNewline: boolean;
  /** 1-based numbers of complete lines that were not valid records. */
  invalidLines: number[];
}

const NEWLINE = 0x0a;

/** Parse journal bytes (pure). */
export function parseJournal(bytes: Buffer): JournalContents {
  const records: ResultRecord[] = [];
  const invalidLines: number[] = [];
  let start = 0;
  let line = 0;
  let keepBytes = 0;
  let tornTail = false;
  let needsNewline = false;
  while (start < bytes.length) {
    line++;
    const end = bytes.indexOf(NEWLINE, start);
    const complete = end !== -1;
    const text = bytes
      .subarray(start, complete ? end : bytes.length)
      .toString('utf8')
      .trim();
    const record = text ? parseLine(text) : null;
    if (complete) {
      if (record) records.push(record);
      else if (text) invalidLines.push(line);
      keepBytes = end + 1;
      start = end + 1;
    } else {
      // The last line has no newline: a torn write, unless it is a whole valid record.
      if (record) {
        records.push(record);
        keepBytes = bytes.length;
        needsNewline = true;
      } else tornTail = text.length > 0;
      break;
    }
  }
  return { records, keepBytes, tornTail, needsNewline, invalidLines };
}

function parseLine(text: string): ResultRecord | null {
  try {
    return parseRecord(JSON.parse(text));
  } catch {
    return null;
  }
}

/** Read a journal (or a JSONL export); a missing file reads as empty. */
export async function readJournal(file: string): Promise<JournalContents> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return { records: [], keepBytes: 0, tornTail: false, needsNewline: false, invalidLines: [] };
    throw new LoupeError('FILE_NOT_FOUND', `Cannot read ${file}: ${(error as Error).message}`, {
      path: file,
    });
  }
  return parseJournal(bytes);
}

/** The latest record per (clip, prompt), in order of first appearance. */
export function latestRecords(records: readonly ResultRecord[]): ResultRecord[] {
  const byKey = new Map<string, ResultRecord>();
  for (const r of records) {
    const key = recordKey(r);
    byKey.delete(key);
    byKey.set(key, r);
  }
  // Re-sort by first appearance so a replaced record keeps its place.
  const first = new Map<string, number>();
  records.forEach((r, i) => first.has(recordKey(r)) || first.set(recordKey(r), i));
  return [...byKey.values()].sort((a, b) => first.get(recordKey(a))! - first.get(recordKey(b))!);
}

export interface JournalOpenOptions {
  /** Continue an existing journal (a missing one starts empty, so a retried job can always pass it). */
  resume?: boolean;
  /** Start over even if the file holds results. */
  force?: boolean;
}

export class Journal {
  private constructor(
    readonly file: string,
    private handle: FileHandle | null,
    /** What the file held when opened (valid records only). */
    readonly existing: JournalContents,
  ) {}

  /** Open `file` for appending. Without resume/force, a file that already holds results is refused. */
  static async open(file: string, options: JournalOpenOptions = {}): Promise<Journal> {
    const contents = await readJournal(file);
    const holdsData = contents.keepBytes > 0 || contents.tornTail;
    if (holdsData && !options.resume && !options.force)
      throw new LoupeError(
        'USAGE',
        `${file} already holds ${contents.records.length} results: pass --resume to continue that batch, ` +
          '--force to start it over, or choose another --out.',
        { path: file },
      );
    const fresh = !options.resume || !holdsData;
    if (fresh && holdsData) await truncate(file, 0);
    else if (contents.tornTail) await truncate(file, contents.keepBytes); // cut the torn line off
    const handle = await open(file, 'a');
    try {
      if (!fresh && contents.needsNewline) {
        await handle.write('\n');
        await handle.sync();
      }
      if (fresh) await syncDir(path.dirname(path.resolve(file))); // the new file's name survives a power loss
    } catch (error) {
      await handle.close();
      throw LoupeError.from(error);
    }
    const existing = fresh
      ? { ...contents, records: [], keepBytes: 0, tornTail: false, needsNewline: false }
      : contents;
    return new Journal(file, handle, existing);
  }

  /** Keys (clip, prompt) already answered, failures included. */
  doneKeys(): Set<string> {
    return new Set(this.existing.records.map(recordKey));
  }

  /** Append one record durably: validated, one write, fsync. */
  async append(record: ResultRecord): Promise<void> {
    if (!this.handle) throw new LoupeError('INTERNAL', `The journal ${this.file} is closed.`);
    const line = JSON.stringify(ResultRecordSchema.parse(record)) + '\n';
    try {
      await this.handle.write(line);
      await this.handle.sync();
    } catch (error) {
      throw LoupeError.from(error);
    }
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  // Not every platform can fsync a folder (Windows cannot open one): best effort.
  const handle = await open(dir, 'r').catch(() => null);
  try {
    await handle?.sync();
  } catch {
    /* best effort */
  } finally {
    await handle?.close();
  }
}
