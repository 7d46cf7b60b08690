import { describe, expect, it } from 'vitest';
import { sampleToken, seededRandom } from './sampler.ts';

/** The nucleus as a full sort of the vocabulary finds it (the old implementation, kept here as the oracle). */
function nucleusBySort(scaled: Float64Array, topP: number): number[] {
  const sum = scaled.reduce((a, b) => a + b, 0);
  const order = Array.from(scaled.keys()).sort((a, b) => scaled[b]! - scaled[a]!);
  const keep: number[] = [];
  let mass = 0;
  for (const i of order) {
    keep.push(i);
    mass += scaled[i]! / sum;
    if (mass >= topP) break;
  }
  return keep;
}

describe('sampler', () => {
  it('draws the same tokens as sampling from the full sort’s nucleus, for flat and peaked distributions', () => {
    const random = seededRandom(11);
    for (const [vocab, spread, topP] of [
      [640, 0.5, 0.9], // flat: the nucleus is hundreds of tokens (beyond the first 64 looked at)
      [49152, 8, 0.9], // peaked, a real vocabulary's size
      [300, 3, 1],
    ] as const) {
      const logits = Float32Array.from({ length: vocab }, () => (random() - 0.5) * spread * 2);
      const temperature = 0.8;
      const max = Math.max(...logits) / temperature;
      const scaled = Float64Array.from(logits, (l) => Math.exp(l / temperature - max));
      const nucleus = nucleusBySort(scaled, topP);
      const sum = scaled.reduce((a, b) => a + b, 0);
      const mass = nucleus.reduce((m, i) => m + scaled[i]! / sum, 0);
      const [mine, oracle] = [seededRandom(5), seededRandom(5)];
      const seen = new Set<number>();
      for (let i = 0; i < 200; i++) {
        const id = sampleToken(logits, 0, vocab, { temperature, topP }, mine);
        let r = oracle() * mass;
        const expected = nucleus.find((j) => (r -= scaled[j]! / sum) <= 0) ?? nucleus[nucleus.length - 1];
        expect(id).toBe(expected);
        seen.add(id);
      }
      expect(seen.size).toBeGreaterThan(1);
    }
  });

  it('is greedy at temperature 0', () => {
    const logits = Float32Array.from([0.1, 3, -2, 2.9]);
    expect(sampleToken(logits, 0, 4, { temperature: 0, topP: 0.9 }, Math.random)).toBe(1);
  });
});
