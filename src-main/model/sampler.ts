/** Next-token choice from logits: greedy, or temperature + nucleus (top-p) with a seeded generator. */

export interface SamplingOptions {
  temperature: number; // 0 = greedy
  topP: number;
  seed?: number;
}

/** mulberry32: small, fast and seedable, so sampled answers are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(logits: Float32Array, offset = 0, length = logits.length - offset): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = logits[offset + i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

export function sampleToken(
  logits: Float32Array,
  offset: number,
  vocab: number,
  opts: SamplingOptions,
  random: () => number,
): number {
  if (opts.temperature <= 0) return argmax(logits, offset, vocab);
  const scaled = new Float64Array(vocab);
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[offset + i]! / opts.temperature);
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += scaled[i] = Math.exp(logits[offset + i]! / opts.temperature - max);
  const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => scaled[b]! - scaled[a]!);
  const keep: number[] = [];
  let mass = 0;
  for (const i of order) {
    keep.push(i);
    mass += scaled[i]! / sum;
    if (mass >= opts.topP) break;
  }
  let r = random() * mass;
  for (const i of keep) {
    r -= scaled[i]! / sum;
    if (r <= 0) return i;
  }
  return keep[keep.length - 1]!;
}
