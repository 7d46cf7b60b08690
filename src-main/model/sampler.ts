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

/** Buckets of the nucleus search: by log-probability below the best token, 1/4 nat each (the last holds the rest). */
const BUCKETS = 64;
const BUCKETS_PER_NAT = 4;

/**
 * Greedy at temperature 0; otherwise nucleus sampling: the most probable tokens whose mass reaches `topP`,
 * and one draw from them. Instead of sorting the whole vocabulary per token (the old cost), one pass files
 * each token's probability into log-spaced buckets; only the tokens in the buckets that reach `topP` are
 * sorted (a handful for a confident model). Same nucleus, same order, as a full stable sort.
 */
export function sampleToken(
  logits: Float32Array,
  offset: number,
  vocab: number,
  opts: SamplingOptions,
  random: () => number,
): number {
  if (opts.temperature <= 0) return argmax(logits, offset, vocab);
  const scaled = new Float64Array(vocab);
  const bucketOf = new Uint8Array(vocab);
  const bucketMass = new Float64Array(BUCKETS);
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[offset + i]! / opts.temperature);
  let sum = 0;
  for (let i = 0; i < vocab; i++) {
    const below = max - logits[offset + i]! / opts.temperature; // -log(p / p_best) >= 0
    const p = (scaled[i] = Math.exp(-below));
    sum += p;
    const b = Math.min(BUCKETS - 1, Math.floor(below * BUCKETS_PER_NAT));
    bucketOf[i] = b;
    bucketMass[b] = bucketMass[b]! + p;
  }
  let last = 0;
  for (let cumulative = 0; last < BUCKETS - 1; last++) {
    cumulative += bucketMass[last]! / sum;
    if (cumulative >= opts.topP) break;
  }
  const candidates: number[] = [];
  for (let i = 0; i < vocab; i++) if (bucketOf[i]! <= last) candidates.push(i);
  candidates.sort((a, b) => scaled[b]! - scaled[a]! || a - b);
  const keep: number[] = [];
  let mass = 0;
  for (const i of candidates) {
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
