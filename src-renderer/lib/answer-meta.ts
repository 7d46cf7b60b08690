/**
 * The line under an answer: when the first word came, and the decode speed only where it means something.
 * A speed needs several decoded tokens to be a rate: under a one-token answer ("red") it would be the time of a
 * single step (or nothing at all), so it is left out below MIN_RATE_TOKENS.
 */
import type { Timings } from '../../src-main/api/contract.ts';

/** Decode steps (tokens after the first) a speed is measured over before it is shown. */
export const MIN_RATE_TOKENS = 4;

/** Tokens the decode rate was measured over (the engine reports tokens after the first per decode second). */
export function rateTokens(t: Timings): number {
  return Math.round((t.decodeTokensPerSec * t.decodeMs) / 1000);
}

export function answerMeta(t: Timings): string {
  const first = `first word after ${(t.firstTokenMs / 1000).toFixed(2)} s`;
  return rateTokens(t) >= MIN_RATE_TOKENS ? `${first} · ${t.decodeTokensPerSec.toFixed(0)} tokens/s` : first;
}
