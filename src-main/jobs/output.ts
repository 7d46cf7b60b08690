/**
 * Where a batch's results go: the resume journal plus the file in the chosen format, or stdout.
 *
 * jsonl: the output file is the journal itself.
 * csv/md: the journal sits beside it (`<out>.journal.jsonl`) and is the truth; the output file is appended
 * as records arrive and re-rendered from the journal when a batch is resumed, so a report cut off by a crash
 * is repaired before the batch goes on.
 */
import { existsSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { writeAtomic } from '../atomic.ts';
import { LoupeError } from '../errors.ts';
import { exporterFor, formatFromPath, renderRecords, type Exporter, type OutputFormat } from './export.ts';
import { Journal, latestRecords, type JournalContents } from './journal.ts';
import type { ResultRecord } from './record.ts';

export interface BatchOutputOptions {
  /** The output file; none: stream to `stdout` (no journal, so no resume). */
  out?: string;
  /** Default: from the file name (jsonl when it says nothing). */
  format?: OutputFormat;
  resume?: boolean;
  force?: boolean;
  stdout?: NodeJS.WritableStream;
}

/** The journal file of an output: the output itself for jsonl, `<out>.journal.jsonl` otherwise. */
export function journalPathFor(out: string, format: OutputFormat = formatFromPath(out)): string {
  return format === 'jsonl' ? out : `${out}.journal.jsonl`;
}

export class BatchOutput {
  private constructor(
    readonly format: OutputFormat,
    private readonly exporter: Exporter,
    private readonly journal: Journal | null,
    private readonly file: FileHandle | null,
    private readonly stream: NodeJS.WritableStream | null,
    /** Results already in the journal (latest per clip and prompt). */
    readonly previous: ResultRecord[],
    /** What reading the journal found (a torn last line, invalid lines). */
    readonly recovered: Pick<JournalContents, 'tornTail' | 'invalidLines'>,
    readonly out: string | undefined,
  ) {}

  private readonly written: ResultRecord[] = [];

  static async open(options: BatchOutputOptions): Promise<BatchOutput> {
    const { out } = options;
    const format = options.format ?? (out ? formatFromPath(out) : 'jsonl');
    const exporter = exporterFor(format);
    if (!out) {
      if (options.resume)
        throw new LoupeError('USAGE', '--resume needs --out: the file the interrupted batch wrote.');
      const stream = options.stdout ?? process.stdout;
      stream.write(exporter.header());
      return new BatchOutput(
        format,
        exporter,
        null,
        null,
        stream,
        [],
        { tornTail: false, invalidLines: [] },
        undefined,
      );
    }

    const journalPath = journalPathFor(out, format);
    if (journalPath !== out && existsSync(out) && !existsSync(journalPath) && !options.force)
      throw new LoupeError(
        'USAGE',
        `${out} already exists and has no journal (${journalPath}) to resume from: pass --force to overwrite it, or choose another --out.`,
        { path: out },
      );
    const journal = await Journal.open(journalPath, { resume: options.resume, force: options.force });
    const previous = latestRecords(journal.existing.records);
    let file: FileHandle | null = null;
    try {
      if (journalPath !== out) {
        // Re-render what the journal holds (atomically), then append to it.
        await writeAtomic(out, renderRecords(format, previous, false));
        file = await open(out, 'a');
        if (format === 'md') for (const r of previous) exporter.record(r); // keep its "current clip" in step
      }
    } catch (error) {
      await journal.close();
      throw LoupeError.from(error);
    }
    const { tornTail, invalidLines } = journal.existing;
    return new BatchOutput(format, exporter, journal, file, null, previous, { tornTail, invalidLines }, out);
  }

  /** Persist one record: the journal first (fsync'd), then the formatted output. */
  async write(record: ResultRecord): Promise<void> {
    await this.journal?.append(record);
    this.written.push(record);
    const text = this.journal && !this.file ? '' : this.exporter.record(record);
    if (this.file) await this.file.write(text);
    else if (this.stream && text) this.stream.write(text);
  }

  /** All results: those resumed and those written now. */
  all(): ResultRecord[] {
    return latestRecords([...this.previous, ...this.written]);
  }

  /** Close the files; `complete`: the batch ran to its end, so a report gets its summary. */
  async close(complete: boolean): Promise<void> {
    try {
      if (complete) {
        const footer = this.exporter.footer(this.all());
        if (footer && this.file) await this.file.write(footer);
        else if (footer && this.stream) this.stream.write(footer);
      }
      await this.file?.sync();
    } finally {
      await this.file?.close();
      await this.journal?.close();
    }
  }
}
