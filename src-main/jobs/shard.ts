/**
 * Deterministic sharding: `--shard K/N` keeps the clips whose path (relative to the input root) hashes to
 * K. The hash depends only on that relative path, so every machine computes the same partition whatever
 * the archive's mount point, file order or clip count, and the N shards cover the input exactly once.
 */
import { createHash } from 'node:crypto';
import { LoupeError } from '../errors.ts';

export interface Shard {
  /** 1-based: 1..count. */
  index: number;
  count: number;
}

/** Parse "K/N" (1 ≤ K ≤ N). */
export function parseShard(text: string): Shard {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = Number(match?.[1]);
  const count = Number(match?.[2]);
  if (!match || count < 1 || index < 1 || index > count)
    throw new LoupeError(
      'USAGE',
      `"${text}" is not a shard: use K/N with 1 ≤ K ≤ N, e.g. 1/4 (a Kubernetes index i is shard ${'$'}((i+1))/N).`,
      { text },
    );
  return { index, count };
}

/** A relative path in its stable form: "/" separators, Unicode NFC, no leading "./". */
export function normalizeRelPath(relPath: string): string {
  return relPath
    .replaceAll('\\', '/')
    .normalize('NFC')
    .replace(/^(\.\/)+/, '');
}

/** The 1-based shard of `relPath` among `count` (sha256 of the normalized path, first 48 bits, mod count). */
export function shardOf(relPath: string, count: number): number {
  const digest = createHash('sha256').update(normalizeRelPath(relPath), 'utf8').digest();
  return (digest.readUIntBE(0, 6) % count) + 1;
}

export function inShard(relPath: string, shard: Shard | undefined): boolean {
  return !shard || shard.count === 1 || shardOf(relPath, shard.count) === shard.index;
}

/** The items of `shard`, in their original order. */
export function selectShard<T extends { relPath: string }>(
  items: readonly T[],
  shard: Shard | undefined,
): T[] {
  return items.filter((item) => inShard(item.relPath, shard));
}
