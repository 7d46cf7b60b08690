/**
 * Frame-feature cache on disk. One file per (video identity, requested time, vision graph,
 * preprocessing): the projected tokens exactly as the vision encoder returned them, so a hit answers
 * exactly as a miss. Writes are atomic (temp file + rename); total size is bounded, least recently
 * used entries are evicted first.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { writeAtomic } from '../atomic.ts';
import { tensor, type Tokens2D } from '../model/tensor.ts';

export const CACHE_FORMAT = 1;

export interface FileIdentity {
  path: string;
  sizeBytes: number;
  mtimeMs: number;
  /** Hash of sampled bytes, so a file replaced in place with the same size and time is still told apart. */
  sampleHash: string;
}

export interface FrameKey {
  file: FileIdentity;
  requestedSec: number;
  visionId: string;
  /** Everything that changes the pixels: size, normalization, padding, resampling. */
  preprocessing: string;
}

export interface CachedFrame {
  timeSec: number;
  features: Tokens2D;
}

export function frameKey(key: FrameKey): string {
  return createHash('sha256')
    .update(
      JSON.stringify([CACHE_FORMAT, key.file, key.requestedSec.toFixed(6), key.visionId, key.preprocessing]),
    )
    .digest('hex');
}

export class FeatureCache {
  private totalBytes: number | null = null;

  constructor(
    readonly dir: string,
    readonly maxBytes = 512 * 1024 * 1024,
  ) {}

  private fileFor(hash: string): string {
    return path.join(this.dir, hash.slice(0, 2), `${hash}.f32`);
  }

  async get(key: FrameKey): Promise<CachedFrame | null> {
    const file = this.fileFor(frameKey(key));
    let buf: Buffer;
    try {
      buf = await readFile(file);
    } catch {
      return null;
    }
    try {
      const headerLength = buf.readUInt32LE(0);
      const header = JSON.parse(buf.subarray(4, 4 + headerLength).toString('utf8')) as {
        timeSec: number;
        dims: [number, number];
      };
      const start = 4 + headerLength;
      const data = new Float32Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + buf.length));
      const now = new Date();
      await utimes(file, now, now).catch(() => undefined); // recency for LRU eviction
      return { timeSec: header.timeSec, features: tensor(data, header.dims) };
    } catch {
      await rm(file, { force: true }); // a damaged entry is a miss, never an error
      return null;
    }
  }

  /** Whether an entry exists (nothing is read; a damaged one is found out by get, as a miss). */
  async has(key: FrameKey): Promise<boolean> {
    return stat(this.fileFor(frameKey(key))).then(
      (info) => info.isFile(),
      () => false,
    );
  }

  async put(key: FrameKey, value: CachedFrame): Promise<void> {
    const file = this.fileFor(frameKey(key));
    await mkdir(path.dirname(file), { recursive: true });
    const header = Buffer.from(JSON.stringify({ timeSec: value.timeSec, dims: value.features.dims }), 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32LE(header.length, 0);
    const data = Buffer.from(
      value.features.data.buffer,
      value.features.data.byteOffset,
      value.features.data.byteLength,
    );
    await writeAtomic(file, Buffer.concat([length, header, data]));
    if (this.totalBytes !== null) this.totalBytes += 4 + header.length + data.length;
    await this.evictIfNeeded();
  }

  private async entries(): Promise<{ file: string; size: number; mtimeMs: number }[]> {
    const out: { file: string; size: number; mtimeMs: number }[] = [];
    const shards = await readdir(this.dir).catch(() => [] as string[]);
    for (const shard of shards) {
      const names = await readdir(path.join(this.dir, shard)).catch(() => [] as string[]);
      for (const name of names) {
        const file = path.join(this.dir, shard, name);
        const info = await stat(file).catch(() => null);
        if (info?.isFile()) out.push({ file, size: info.size, mtimeMs: info.mtimeMs });
      }
    }
    return out;
  }

  async sizeBytes(): Promise<number> {
    return (await this.entries()).reduce((n, e) => n + e.size, 0);
  }

  private async evictIfNeeded(): Promise<void> {
    if (this.totalBytes === null) this.totalBytes = await this.sizeBytes();
    if (this.totalBytes <= this.maxBytes) return;
    const entries = (await this.entries()).sort((a, b) => a.mtimeMs - b.mtimeMs);
    let total = entries.reduce((n, e) => n + e.size, 0);
    for (const e of entries) {
      if (total <= this.maxBytes * 0.9) break;
      await rm(e.file, { force: true });
      total -= e.size;
    }
    this.totalBytes = total;
  }

  async clear(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    this.totalBytes = 0;
  }
}
