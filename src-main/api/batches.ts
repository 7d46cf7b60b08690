/**
 * Batches started from the app: the batch view's half of the API, on the jobs module's `summarize`.
 *
 * Each batch is two files in `<data>/batches/`: `<id>.json` (what was asked, its state and last progress; written
 * atomically) and `<id>.jsonl`, the jobs module's results file and resume journal (one fsync'd line per answer).
 * A batch that was running when Loupe stopped is listed as interrupted; resuming it runs `summarize` again with
 * `resume`, which skips every answer its journal holds. One batch runs at a time, in the model gate's background
 * lane, so questions asked in the app go first.
 */
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { LoupeError } from '../errors.ts';
import {
  checkSpec,
  DEFAULT_PROMPT,
  discoverInputs,
  latestRecords,
  PauseSwitch,
  readJournal,
  renderRecords,
  summarize,
  type ClipStatus,
  type OutputFormat,
  type ResultRecord,
} from '../jobs/index.ts';
import {
  BATCH_META_VERSION,
  batchJournalFile,
  batchMetaFile,
  readBatchMetas,
  saveBatchMeta,
  type BatchMeta,
} from '../jobs/batch-store.ts';
import { log } from '../log.ts';
import { PushQueue } from '../push-queue.ts';
import type { ModelLease, Services } from '../services.ts';
import {
  type BatchClip,
  type BatchClipStatus,
  type BatchDetail,
  type BatchEvent,
  type BatchOverall,
  type BatchResult,
  type BatchState,
  type BatchSummary,
  type ParsedCallInput,
} from './contract.ts';

/** What the batch manager needs from the rest of the service. */
export interface BatchHost {
  services: Services;
  /** The app's answer settings at the time a batch starts. */
  settings(): { frames: number | null; maxNewTokens: number; sampling: 'auto' | 'exact' };
  /** Put finished clips in the library so they can be opened (already-present ones are left alone). */
  addToLibrary(paths: string[]): Promise<void>;
  /** The library id of a file. */
  videoIdFor(file: string): string;
}

const EMPTY_OVERALL: BatchOverall = {
  done: 0,
  failed: 0,
  total: 0,
  clipsPerMin: 0,
  etaSec: null,
  yielding: false,
};
const LIVE_STATES: readonly BatchState[] = ['running', 'paused'];

const FORMATS: Record<OutputFormat, { ext: string; mimeType: string }> = {
  jsonl: { ext: 'jsonl', mimeType: 'application/x-ndjson' },
  md: { ext: 'md', mimeType: 'text/markdown' },
  csv: { ext: 'csv', mimeType: 'text/csv' },
};

class BatchRun {
  /** Clips by path relative to the folder, in the batch's order. */
  readonly clips = new Map<string, BatchClip>();
  readonly listeners = new Set<(event: BatchEvent) => void>();
  controller: AbortController | null = null;
  pause = new PauseSwitch();
  /** Set when Loupe quits mid-batch: the batch then ends as interrupted, not cancelled. */
  quitting = false;
  /** Paused by the person (the gate watchdog's brief flips of the switch do not count). */
  userPaused = false;
  /** Clips read back from the journal (done once, for batches of an earlier run of Loupe). */
  loadedFromJournal = false;

  constructor(
    public meta: BatchMeta,
    readonly dir: string,
  ) {}

  get live(): boolean {
    return this.controller !== null;
  }
  get journal(): string {
    return batchJournalFile(this.dir, this.meta.id);
  }
  get metaFile(): string {
    return batchMetaFile(this.dir, this.meta.id);
  }

  emit(event: BatchEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }

  summary(): BatchSummary {
    const rest: Partial<typeof this.meta> = { ...this.meta };
    delete rest.v; // the storage version is not part of the API's summary
    return structuredClone(rest) as BatchSummary;
  }
}

export class BatchManager {
  private readonly runs = new Map<string, BatchRun>();
  private libraryQueue: Promise<void> = Promise.resolve();
  private readonly journalCache = new Map<string, { key: string; records: ResultRecord[] }>();

  private constructor(
    private readonly host: BatchHost,
    readonly dir: string,
  ) {}

  /** Read the batches of earlier runs; those that were running are now interrupted. */
  static async open(host: BatchHost): Promise<BatchManager> {
    const manager = new BatchManager(host, path.join(host.services.dataDir, 'batches'));
    for (const meta of await readBatchMetas(manager.dir)) {
      const run = new BatchRun(meta, manager.dir);
      if (LIVE_STATES.includes(run.meta.state)) {
        run.meta.state = 'interrupted';
        await manager
          .save(run)
          .catch((e: unknown) => log.error('batch state not saved', e, { batch: run.meta.id }));
      }
      manager.runs.set(run.meta.id, run);
    }
    return manager;
  }

  /** A start or resume between its check and its launch (they await files and the model in between). */
  private claimed = false;

  /** A batch is running or paused, or one is being started (a model switch must wait for it). */
  get busy(): boolean {
    return this.claimed || [...this.runs.values()].some((r) => r.live);
  }

  /**
   * Check that no batch runs and claim the right to launch one, in one synchronous step: two starts (or a start
   * and a resume) that arrive together cannot both pass the check while the first awaits the disk and the model.
   */
  private async claimLaunch<T>(busyMessage: string, body: () => Promise<T>): Promise<T> {
    if (this.busy) throw new LoupeError('USAGE', busyMessage);
    this.claimed = true;
    try {
      return await body(); // a launched run is live from here on, so `busy` stays true after the claim ends
    } finally {
      this.claimed = false;
    }
  }

  start(input: ParsedCallInput<'startBatch'>): Promise<{ batchId: string }> {
    return this.claimLaunch(
      'A batch is already running: wait for it to finish, or cancel it, before starting another.',
      () => this.startClaimed(input),
    );
  }

  private async startClaimed(input: ParsedCallInput<'startBatch'>): Promise<{ batchId: string }> {
    const folder = path.resolve(input.folder);
    const info = await stat(folder).catch(() => null);
    if (!info?.isDirectory())
      throw new LoupeError('FILE_NOT_FOUND', `There is no folder at ${folder}.`, { path: folder });
    const prompts = input.prompts.length ? input.prompts : [DEFAULT_PROMPT];
    // Check the spec against the model now, so a bad one is answered here rather than as a failed batch.
    const engine = await this.host.services.engine();
    const { frames, maxNewTokens } = this.host.settings();
    checkSpec(engine, {
      prompts,
      frames: frames ?? undefined,
      maxNewTokens,
      segmentSec: input.segmentSec ?? undefined,
    });
    const now = new Date();
    const id = `${now.toISOString().slice(0, 19).replace(/[-:T]/g, '')}-${randomUUID().slice(0, 6)}`;
    const run = new BatchRun(
      {
        v: BATCH_META_VERSION,
        id,
        folder,
        recursive: input.recursive,
        prompts,
        segmentSec: input.segmentSec,
        createdAt: now.toISOString(),
        state: 'running',
        error: null,
        overall: { ...EMPTY_OVERALL },
        model: `${engine.manifest.name}@${engine.manifest.version}`,
      },
      this.dir,
    );
    this.runs.set(id, run);
    await this.save(run);
    this.launch(run);
    return { batchId: id };
  }

  list(): BatchSummary[] {
    return [...this.runs.values()]
      .map((r) => r.summary())
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  async detail(batchId: string): Promise<BatchDetail> {
    const run = this.get(batchId);
    if (!run.live && !run.loadedFromJournal && run.clips.size === 0) {
      // A batch of an earlier run: its finished clips come from the journal.
      for (const record of await this.records(run)) {
        const before = run.clips.get(record.relPath)?.status;
        const error = record.error ?? record.segments?.find((s) => s.error)?.error ?? null;
        const status: BatchClipStatus =
          before?.state === 'failed'
            ? before
            : error
              ? { state: 'failed', error: { code: error.code, message: error.message } }
              : { state: 'done', resumed: false };
        run.clips.set(record.relPath, {
          relPath: record.relPath,
          path: record.path,
          videoId: this.host.videoIdFor(record.path),
          status,
        });
      }
      run.loadedFromJournal = true;
    }
    return { ...run.summary(), clips: [...run.clips.values()].map((c) => structuredClone(c)) };
  }

  async results(batchId: string): Promise<{ batch: BatchDetail; results: BatchResult[] }> {
    const run = this.get(batchId);
    return {
      batch: await this.detail(batchId),
      results: (await this.records(run)).map((r) => this.toResult(run.meta.id, r)),
    };
  }

  async pause(batchId: string): Promise<void> {
    const run = this.get(batchId);
    if (!run.live) throw new LoupeError('USAGE', 'This batch is not running.');
    run.userPaused = true;
    run.pause.pause();
    this.setState(run, 'paused');
  }

  async resume(batchId: string): Promise<void> {
    const run = this.get(batchId);
    if (run.live) {
      run.userPaused = false;
      run.pause.resume();
      this.setState(run, 'running');
      return;
    }
    if (run.meta.state === 'done')
      throw new LoupeError('USAGE', 'This batch is finished: there is nothing left to resume.');
    await this.claimLaunch('Another batch is running: wait for it, or cancel it, first.', async () => {
      run.meta.error = null;
      this.setState(run, 'running');
      await this.save(run);
      this.launch(run);
    });
  }

  async cancel(batchId: string): Promise<void> {
    const run = this.get(batchId);
    if (run.live) run.controller!.abort();
    else if (run.meta.state === 'interrupted') {
      run.meta.state = 'cancelled';
      await this.save(run);
    }
  }

  async export(
    batchId: string,
    format: OutputFormat,
  ): Promise<{ fileName: string; mimeType: string; text: string }> {
    const run = this.get(batchId);
    const records = await this.records(run);
    const { ext, mimeType } = FORMATS[format];
    const name = path.basename(run.meta.folder).replace(/[^\w.-]+/g, '-') || 'batch';
    return {
      fileName: `loupe-${name}-${run.meta.createdAt.slice(0, 10)}.${ext}`,
      mimeType,
      text: renderRecords(format, records, run.meta.state === 'done'),
    };
  }

  /** The latest batch that answered about `videoId`: its answers (summary and segments). */
  async videoSummaries(videoId: string): Promise<BatchResult[]> {
    const runs = [...this.runs.values()].sort((a, b) => b.meta.createdAt.localeCompare(a.meta.createdAt));
    for (const run of runs) {
      const mine = (await this.records(run)).filter((r) => this.host.videoIdFor(r.path) === videoId);
      if (mine.length)
        return mine.sort((a, b) => a.promptIndex - b.promptIndex).map((r) => this.toResult(run.meta.id, r));
    }
    return [];
  }

  /** The events of one batch: a snapshot, then changes until it stops (a stopped batch: snapshot and end). */
  async *events(batchId: string, signal: AbortSignal): AsyncGenerator<BatchEvent> {
    const run = this.get(batchId);
    const queue = new PushQueue<BatchEvent>();
    const listener = (event: BatchEvent) => queue.push(event);
    const onAbort = () => queue.close();
    run.listeners.add(listener);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      yield { type: 'snapshot', batch: await this.detail(batchId) };
      if (!run.live) return yield { type: 'end', state: run.meta.state, error: run.meta.error };
      if (signal.aborted) return;
      for await (const event of queue) {
        yield event;
        if (event.type === 'end') return;
      }
    } finally {
      run.listeners.delete(listener);
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Loupe is quitting: stop running batches; they are listed as interrupted next time. */
  dispose(): void {
    for (const run of this.runs.values())
      if (run.live) {
        run.quitting = true;
        run.controller!.abort();
      }
  }

  // ─── The run ──────────────────────────────────────────────────────────────────────────────────────

  private launch(run: BatchRun): void {
    run.controller = new AbortController();
    run.pause = new PauseSwitch();
    run.quitting = run.userPaused = false;
    void this.execute(run, run.controller.signal);
  }

  private async execute(run: BatchRun, signal: AbortSignal): Promise<void> {
    const { meta } = run;
    let complete = false;
    let lease: ModelLease | null = null;
    try {
      // 1. List the clips first, so the view shows them all queued (finished ones keep their state); the run
      //    below uses this one discovery.
      const found = await discoverInputs([meta.folder], {
        recursive: meta.recursive,
        signal,
        exclude: [run.journal],
      });
      const previous = new Map(run.clips);
      run.clips.clear();
      for (const item of found.items) {
        const before = previous.get(item.relPath)?.status;
        const keep = before && (before.state === 'done' || before.state === 'failed');
        run.clips.set(item.relPath, {
          relPath: item.relPath,
          path: item.path,
          videoId: this.host.videoIdFor(item.path),
          status: keep ? before : { state: 'queued' },
        });
      }
      meta.overall = { ...meta.overall, total: found.items.length };
      run.emit({ type: 'snapshot', batch: await this.detailOf(run) });

      // 2. Run it: summarize resumes from the journal (a new batch has none yet).
      const services = this.host.services;
      // held for the whole run: a model switch waits for the batch, never pulls the model from under it
      lease = await services.lease();
      const { engine: model, extractor } = lease;
      const { frames, maxNewTokens, sampling } = this.host.settings();
      meta.model = `${model.manifest.name}@${model.manifest.version}`;
      for await (const event of summarize(
        { model, extractor },
        {
          inputs: [meta.folder],
          discovered: found,
          prompts: meta.prompts,
          segmentSec: meta.segmentSec ?? undefined,
          frames: frames ?? undefined,
          mode: sampling === 'exact' ? 'exact' : 'fast',
          maxNewTokens,
          out: run.journal,
          format: 'jsonl',
          resume: true,
          gate: services.gate,
          pause: run.pause,
          signal,
        },
      )) {
        if (event.type === 'clip') {
          const clip: BatchClip = {
            relPath: event.relPath,
            path: event.path,
            videoId: this.host.videoIdFor(event.path),
            status: toClipStatus(event.status),
          };
          run.clips.set(event.relPath, clip);
          run.emit({ type: 'clip', clip: structuredClone(clip) });
          if (clip.status.state === 'done' || clip.status.state === 'failed') this.addToLibrary(event.path);
        } else if (event.type === 'overall') {
          const { done, failed, total, clipsPerMin, etaSec, yielding } = event;
          meta.overall = {
            done,
            failed,
            total,
            clipsPerMin,
            etaSec: etaSec === null ? null : Math.max(0, etaSec),
            yielding,
          };
          if (!signal.aborted) meta.state = run.userPaused ? 'paused' : 'running';
          run.emit({ type: 'overall', state: meta.state, overall: { ...meta.overall } });
          await this.saveOrLog(run);
        } else if (event.type === 'outcome') complete = event.complete;
      }
      meta.state = complete ? 'done' : run.quitting ? 'interrupted' : 'cancelled';
    } catch (error) {
      const err = LoupeError.from(error);
      meta.state = err.code === 'CANCELLED' ? (run.quitting ? 'interrupted' : 'cancelled') : 'failed';
      meta.error = err.code === 'CANCELLED' ? null : { code: err.code, message: err.message };
    } finally {
      lease?.release();
      run.controller = null;
      meta.overall = { ...meta.overall, etaSec: meta.state === 'done' ? 0 : null, yielding: false };
      this.journalCache.delete(run.journal);
      await this.saveOrLog(run);
      // the finished clips are in the library before anyone hears the batch has ended (the app reloads it then)
      await this.libraryQueue;
      run.emit({ type: 'overall', state: meta.state, overall: { ...meta.overall } });
      run.emit({ type: 'end', state: meta.state, error: meta.error });
    }
  }

  // ─── Helpers ──────────────────────────────────────────────────────────────────────────────────────

  private get(batchId: string): BatchRun {
    const run = this.runs.get(batchId);
    if (!run) throw new LoupeError('NOT_FOUND', 'There is no such batch (any more).', { batchId });
    return run;
  }

  private async detailOf(run: BatchRun): Promise<BatchDetail> {
    return { ...run.summary(), clips: [...run.clips.values()].map((c) => structuredClone(c)) };
  }

  private setState(run: BatchRun, state: BatchState): void {
    run.meta.state = state;
    run.emit({ type: 'overall', state, overall: { ...run.meta.overall } });
  }

  private save(run: BatchRun): Promise<void> {
    return saveBatchMeta(this.dir, run.meta);
  }

  /** Save progress as the batch goes; a failed write (disk full…) is logged and the batch goes on (its journal holds the answers). */
  private saveOrLog(run: BatchRun): Promise<void> {
    return this.save(run).catch((error: unknown) =>
      log.error('batch state not saved', error, { batch: run.meta.id, file: run.metaFile }),
    );
  }

  /** Add a finished clip to the library; one at a time, so a file is never added twice. Failures are logged. */
  private addToLibrary(file: string): void {
    this.libraryQueue = this.libraryQueue.then(() =>
      this.host
        .addToLibrary([file])
        .catch((error: unknown) => log.error('clip not added to the library', error, { file })),
    );
  }

  /** The latest answer per (clip, prompt) in a batch's journal; cached until the file changes. */
  private async records(run: BatchRun): Promise<ResultRecord[]> {
    const info = await stat(run.journal).catch(() => null);
    if (!info) return [];
    const key = `${info.size}:${info.mtimeMs}`;
    const cached = this.journalCache.get(run.journal);
    if (cached?.key === key) return cached.records;
    const records = latestRecords((await readJournal(run.journal)).records);
    this.journalCache.set(run.journal, { key, records });
    return records;
  }

  private toResult(batchId: string, r: ResultRecord): BatchResult {
    return {
      batchId,
      videoId: this.host.videoIdFor(r.path),
      path: r.path,
      relPath: r.relPath,
      prompt: r.prompt,
      promptIndex: r.promptIndex,
      durationSec: r.durationSec,
      answer: r.answer,
      frames: r.frames,
      segments: (r.segments ?? []).map((s) => ({ from: s.from, to: s.to, answer: s.answer, error: s.error })),
      error: r.error,
      finishedAt: r.finishedAt,
    };
  }
}

/** The jobs module's clip status in the contract's shape. */
export function toClipStatus(status: ClipStatus): BatchClipStatus {
  if (status.state === 'failed')
    return { state: 'failed', error: { code: status.error.code, message: status.error.message } };
  if (status.state === 'running')
    return { state: 'running', stage: status.stage, fraction: Math.min(1, Math.max(0, status.fraction)) };
  return status;
}
