import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tensor } from '../model/tensor.ts';
import { FeatureCache, type FrameKey } from './feature-cache.ts';

const file = { path: '/v/a.mp4', sizeBytes: 100, mtimeMs: 1, sampleHash: 'abc' };
const key = (over: Partial<FrameKey> = {}): FrameKey => ({
  file,
  requestedSec: 1.5,
  visionId: 'pack@1:aa',
  preprocessing: '96:mean',
  ...over,
});

describe('FeatureCache', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-cache-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('returns exactly the features that were stored', async () => {
    const cache = new FeatureCache(dir);
    const features = tensor(Float32Array.from([0.1, -2.5, 3e-8, 7]), [2, 2] as const);
    await cache.put(key(), { timeSec: 1.48, features });
    const hit = await cache.get(key());
    expect(hit?.timeSec).toBe(1.48);
    expect(Array.from(hit!.features.data)).toEqual(Array.from(features.data));
    expect(hit!.features.dims).toEqual([2, 2]);
  });

  it('misses when the file, time, model or preprocessing differ', async () => {
    const cache = new FeatureCache(dir);
    await cache.put(key(), { timeSec: 1, features: tensor(new Float32Array(4), [2, 2] as const) });
    expect(await cache.get(key({ file: { ...file, sampleHash: 'other' } }))).toBeNull();
    expect(await cache.get(key({ file: { ...file, mtimeMs: 2 } }))).toBeNull();
    expect(await cache.get(key({ requestedSec: 2 }))).toBeNull();
    expect(await cache.get(key({ visionId: 'pack@2:bb' }))).toBeNull();
    expect(await cache.get(key({ preprocessing: '384:half' }))).toBeNull();
  });

  it('evicts least recently used entries beyond its size bound', async () => {
    const cache = new FeatureCache(dir, 3000);
    const big = tensor(new Float32Array(250), [1, 250] as const); // ~1 KB per entry
    for (let i = 0; i < 6; i++) await cache.put(key({ requestedSec: i }), { timeSec: i, features: big });
    expect(await cache.sizeBytes()).toBeLessThanOrEqual(3000);
    expect(await cache.get(key({ requestedSec: 5 }))).not.toBeNull();
    expect(await cache.get(key({ requestedSec: 0 }))).toBeNull();
  });
});
