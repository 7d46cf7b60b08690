/**
 * Past moment searches, per video: one JSON file per video under `<data>/find-history/`, newest first, at most
 * MAX_SEARCHES kept. Writes are atomic (temp file + rename); a damaged file reads as an empty history.
 */
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { FindSearchSchema, type FindSearch } from './records.ts';
import { writeAtomic } from '../atomic.ts';

export const MAX_SEARCHES = 20;
const FileSchema = z.object({ version: z.literal(1), searches: z.array(FindSearchSchema) });

export class FindHistory {
  private writing = Promise.resolve();

  constructor(readonly dir: string) {}

  private fileFor(videoId: string): string {
    return path.join(this.dir, `${createHash('sha256').update(videoId).digest('hex').slice(0, 32)}.json`);
  }

  async list(videoId: string): Promise<FindSearch[]> {
    const text = await readFile(this.fileFor(videoId), 'utf8').catch(() => null);
    if (!text) return [];
    try {
      return FileSchema.parse(JSON.parse(text)).searches.filter((s) => s.videoId === videoId);
    } catch {
      return [];
    }
  }

  /** Add a search (newest first); serialized, so two searches finishing together both stay. */
  add(search: FindSearch): Promise<void> {
    const next = this.writing.then(async () => {
      const searches = [search, ...(await this.list(search.videoId))].slice(0, MAX_SEARCHES);
      await writeAtomic(this.fileFor(search.videoId), JSON.stringify({ version: 1, searches }));
    });
    this.writing = next.catch(() => undefined);
    return next;
  }

  async clear(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
