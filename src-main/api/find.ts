/**
 * The app's side of moment search (issue 14): the `find` and `findFolder` streams and the `findHistory` and
 * `exportFolderFind` calls, on src-main/find/. service.ts hands these methods through, nothing more.
 */
import { randomUUID, createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PushQueue } from '../push-queue.ts';
import { LoupeError } from '../errors.ts';
import { findInFolder, readFindJournal, toCsv, type FindRecord } from '../find/folder.ts';
import { FindHistory } from '../find/history.ts';
import { findMoments } from '../find/scan.ts';
import { discoverInputs } from '../jobs/discover.ts';
import type { Services } from '../services.ts';
import type {
  CallOutput,
  FindEvent,
  FindSearch,
  FolderFindClip,
  FolderFindEvent,
  ParsedCallInput,
  ParsedStreamInput,
} from './contract.ts';

export class FindApi {
  readonly history: FindHistory;

  constructor(
    private readonly services: Services,
    /** The library's file for a video id (throws NOT_FOUND). */
    private readonly videoPath: (videoId: string) => string,
  ) {
    this.history = new FindHistory(path.join(services.dataDir, 'find-history'));
  }

  async *find(
    { videoId, query, from, to, step }: ParsedStreamInput<'find'>,
    signal: AbortSignal,
  ): AsyncGenerator<FindEvent> {
    const file = this.videoPath(videoId);
    const model = await this.services.lease(); // the model stays loaded for the whole search
    const lease = this.services.gate.interactive(); // a search asked in the app goes before batch work
    let done = 0;
    try {
      for await (const event of findMoments(model.engine, this.services.denseMedia, this.services.cache, {
        path: file,
        query,
        from,
        to,
        step,
        signal,
      })) {
        if (event.type === 'start') yield { ...event };
        else if (event.type === 'progress') {
          done = event.done;
          yield event;
        } else {
          const r = event.result;
          const search: FindSearch = {
            id: randomUUID(),
            videoId,
            query: r.query,
            question: r.question,
            range: r.range,
            step: r.step,
            threshold: r.threshold,
            intervals: r.intervals,
            scores: r.scores,
            createdAt: new Date().toISOString(),
            model: `${model.engine.manifest.name}@${model.engine.manifest.version}`,
            cachedFrames: r.cachedFrames,
            totalMs: r.timings.totalMs,
          };
          await this.history.add(search);
          yield { type: 'done', search };
        }
      }
    } catch (error) {
      if (LoupeError.from(error).code === 'CANCELLED') return void (yield { type: 'cancelled', done });
      throw error;
    } finally {
      lease.release();
      model.release();
    }
  }

  async findHistory({ videoId }: ParsedCallInput<'findHistory'>): Promise<CallOutput<'findHistory'>> {
    this.videoPath(videoId);
    return { searches: await this.history.list(videoId) };
  }

  /** Where a folder search keeps its results: the same folder, query and step resume the same file. */
  private resultsFile(input: { folder: string; recursive: boolean; query: string; step: number }): string {
    const key = JSON.stringify([path.resolve(input.folder), input.recursive, input.query, input.step]);
    const name = createHash('sha256').update(key).digest('hex').slice(0, 24);
    return path.join(this.services.dataDir, 'finds', `${name}.jsonl`);
  }

  async *findFolder(
    input: ParsedStreamInput<'findFolder'>,
    signal: AbortSignal,
  ): AsyncGenerator<FolderFindEvent> {
    const out = this.resultsFile(input);
    await mkdir(path.dirname(out), { recursive: true });
    const { items } = await discoverInputs([input.folder], { recursive: input.recursive, signal });
    // The model stays loaded for the whole search (a model switch waits for it), and the search asked in the app
    // goes before batch work.
    const model = await this.services.lease();
    const lease = this.services.gate.interactive();
    // findInFolder reports through a callback: queue its clips and hand them out as events.
    const queue = new PushQueue<FolderFindEvent>();
    let done = 0;
    let failure: unknown = null;
    let running: Promise<void> = Promise.resolve();
    try {
      yield { type: 'start', total: items.length, resultsFile: out };
      running = findInFolder(model.engine, this.services.denseMedia, this.services.cache, items, {
        query: input.query,
        step: input.step,
        out,
        signal,
        onClip: ({ record, done, total, skipped }) =>
          queue.push({ type: 'clip', clip: toClip(record, skipped), done, total }),
      }).then(
        (summary) => queue.push({ type: 'end', found: summary.found, total: summary.records.length }),
        (error: unknown) => void (failure = error),
      );
      void running.finally(() => queue.close());
      for await (const next of queue) {
        if (next.type === 'clip') done = next.done;
        yield next;
      }
      if (failure) {
        if (LoupeError.from(failure).code === 'CANCELLED') return void (yield { type: 'cancelled', done });
        throw failure;
      }
    } finally {
      await running;
      lease.release();
      model.release();
    }
  }

  async exportFolderFind(
    input: ParsedCallInput<'exportFolderFind'>,
  ): Promise<CallOutput<'exportFolderFind'>> {
    const file = this.resultsFile(input);
    const { records } = await readFindJournal(file);
    if (!records.length)
      throw new LoupeError('NOT_FOUND', 'This search has no results yet: run it first.', { file });
    const base = `find-${input.query.replace(/[^\w-]+/g, '-').slice(0, 40)}`;
    if (input.format === 'csv')
      return { fileName: `${base}.csv`, mimeType: 'text/csv', text: toCsv(records) };
    return {
      fileName: `${base}.jsonl`,
      mimeType: 'application/x-ndjson',
      text: await readFile(file, 'utf8').then((t) => t.slice(0, t.lastIndexOf('\n') + 1)),
    };
  }
}

function toClip(r: FindRecord, resumed: boolean): FolderFindClip {
  return {
    relPath: r.relPath,
    path: r.path,
    found: r.found,
    intervals: r.intervals,
    maxScore: r.maxScore,
    error: r.error,
    resumed,
  };
}
