/**
 * Where the app keeps its batches: `<dir>/<id>.json` per batch (what was asked, its state and last progress;
 * written atomically), beside the jobs module's `<id>.jsonl` results journal. The stored shapes are defined here,
 * below the API; api/contract.ts re-exports the summary as part of the contract.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeAtomic } from '../atomic.ts';
import { RecordErrorSchema } from './record.ts';

export const BatchOverallSchema = z.object({
  done: z.number().int().min(0),
  failed: z.number().int().min(0),
  total: z.number().int().min(0),
  clipsPerMin: z.number().min(0),
  etaSec: z.number().min(0).nullable(),
  /** Waiting for a question asked in the app (which goes first). */
  yielding: z.boolean(),
});
export type BatchOverall = z.infer<typeof BatchOverallSchema>;

/** interrupted: Loupe stopped while it ran (resume continues it from its results file). */
export const BatchStateSchema = z.enum(['running', 'paused', 'done', 'cancelled', 'failed', 'interrupted']);
export type BatchState = z.infer<typeof BatchStateSchema>;

export const BatchSummarySchema = z.object({
  id: z.string().min(1).max(200),
  folder: z.string(),
  recursive: z.boolean(),
  prompts: z.array(z.string()),
  segmentSec: z.number().positive().nullable(),
  createdAt: z.string(),
  state: BatchStateSchema,
  /** Why the batch stopped (the model could not load, the disk is full…). */
  error: RecordErrorSchema.nullable(),
  overall: BatchOverallSchema,
  model: z.string().nullable(),
});
export type BatchSummary = z.infer<typeof BatchSummarySchema>;

export const BATCH_META_VERSION = 1;
/** What is stored per batch: the API's summary plus a storage version and the prompts. */
export const BatchMetaSchema = BatchSummarySchema.extend({
  v: z.literal(BATCH_META_VERSION),
  prompts: z.array(z.string()).min(1),
});
export type BatchMeta = z.infer<typeof BatchMetaSchema>;

export const batchMetaFile = (dir: string, id: string) => path.join(dir, `${id}.json`);
export const batchJournalFile = (dir: string, id: string) => path.join(dir, `${id}.jsonl`);

/** Every valid batch record in `dir`; a damaged or foreign file is skipped (its journal is still there for the CLI). */
export async function readBatchMetas(dir: string): Promise<BatchMeta[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const metas: BatchMeta[] = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    const text = await readFile(path.join(dir, name), 'utf8').catch(() => null);
    let json: unknown = null;
    try {
      json = text === null ? null : JSON.parse(text);
    } catch {
      // damaged: skipped below
    }
    const parsed = BatchMetaSchema.safeParse(json);
    if (parsed.success) metas.push(parsed.data);
  }
  return metas;
}

/** Save a batch's record atomically. */
export function saveBatchMeta(dir: string, meta: BatchMeta): Promise<void> {
  return writeAtomic(batchMetaFile(dir, meta.id), JSON.stringify(meta, null, 1));
}
