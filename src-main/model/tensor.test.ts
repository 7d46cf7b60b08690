import { describe, expect, it } from 'vitest';
import { flattenFrames, poolAndConcatFrames, stackFrames, tensor } from './tensor.ts';

describe('poolAndConcatFrames', () => {
  it('max-pools pairs of tokens per frame and concatenates frames in order', () => {
    // 2 frames, 3 tokens (odd: the last is dropped), 2 channels
    const f0 = tensor(Float32Array.from([1, 9, 5, 2, 7, 7]), [3, 2] as const);
    const f1 = tensor(Float32Array.from([-1, -2, -3, 0, 4, 4]), [3, 2] as const);
    const pooled = poolAndConcatFrames(stackFrames([f0, f1]));
    expect(pooled.dims).toEqual([2, 2]);
    expect(Array.from(pooled.data)).toEqual([5, 9, -1, 0]);
  });

  it('keeps every token on the image path', () => {
    const f0 = tensor(Float32Array.from([1, 2, 3, 4]), [2, 2] as const);
    expect(flattenFrames(stackFrames([f0])).dims).toEqual([2, 2]);
  });

  it('refuses data that does not match its dims', () => {
    expect(() => tensor(new Float32Array(3), [2, 2] as const)).toThrow(/need 4/);
  });
});
