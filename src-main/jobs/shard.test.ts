import { describe, expect, it } from 'vitest';
import { parseShard, selectShard, shardOf } from './shard.ts';
import { segmentRanges } from './segments.ts';

const paths = Array.from({ length: 500 }, (_, i) => ({ relPath: `day${i % 7}/clip-${i}.mp4` }));

describe('sharding', () => {
  it('covers every path exactly once for any shard count', () => {
    for (const count of [1, 2, 3, 7, 16]) {
      const seen = new Map<string, number>();
      for (let index = 1; index <= count; index++)
        for (const item of selectShard(paths, { index, count }))
          seen.set(item.relPath, (seen.get(item.relPath) ?? 0) + 1);
      expect(seen.size).toBe(paths.length);
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
    }
  });

  it('depends only on the relative path, not on order or the other files', () => {
    const reversed = [...paths].reverse();
    expect(
      selectShard(reversed, { index: 2, count: 3 })
        .map((p) => p.relPath)
        .sort(),
    ).toEqual(
      selectShard(paths, { index: 2, count: 3 })
        .map((p) => p.relPath)
        .sort(),
    );
    expect(shardOf('a\\b.mp4', 5)).toBe(shardOf('a/b.mp4', 5));
    expect(shardOf('./a/b.mp4', 5)).toBe(shardOf('a/b.mp4', 5));
  });

  it('spreads paths roughly evenly', () => {
    const sizes = [1, 2, 3, 4].map((index) => selectShard(paths, { index, count: 4 }).length);
    for (const size of sizes) expect(size).toBeGreaterThan(90);
  });

  it('parses K/N and rejects shards outside 1..N', () => {
    expect(parseShard('2/5')).toEqual({ index: 2, count: 5 });
    for (const bad of ['0/3', '4/3', '1/0', 'x', '1-3']) expect(() => parseShard(bad)).toThrow(/shard/);
  });
});

describe('segment ranges', () => {
  it('cover the clip with consecutive windows ending at its end', () => {
    expect(segmentRanges(3, 1)).toEqual([
      { from: 0, to: 1 },
      { from: 1, to: 2 },
      { from: 2, to: 3 },
    ]);
    expect(segmentRanges(70, 30)).toEqual([
      { from: 0, to: 30 },
      { from: 30, to: 60 },
      { from: 60, to: 70 },
    ]);
  });

  it('fold a remainder shorter than a quarter window into the previous one', () => {
    expect(segmentRanges(61, 30)).toEqual([
      { from: 0, to: 30 },
      { from: 30, to: 61 },
    ]);
    expect(segmentRanges(10, 30)).toEqual([{ from: 0, to: 10 }]);
  });

  it('keep exact boundaries for fractional lengths', () => {
    const ranges = segmentRanges(1, 0.1);
    expect(ranges).toHaveLength(10);
    expect(ranges[3]).toEqual({ from: 0.3, to: 0.4 });
    expect(ranges.at(-1)!.to).toBe(1);
  });
});
