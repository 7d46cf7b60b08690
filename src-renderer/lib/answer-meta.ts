/**
 * The line under an answer: when the first word came, and the decode speed only where it means something, and
 * the details of where the time before the first word went.
 * A speed needs several decoded tokens to be a rate: under a one-token answer ("red") it would be the time of a
 * single step (or nothing at all), so it is left out below MIN_RATE_TOKENS.
 */
import type { FirstWord, Timings } from '../../src-main/api/contract.ts';

/** Decode steps (tokens after the first) a speed is measured over before it is shown. */
export const MIN_RATE_TOKENS = 4;

/** Tokens the decode rate was measured over (the engine reports tokens after the first per decode second). */
export function rateTokens(t: Timings): number {
  return Math.round((t.decodeTokensPerSec * t.decodeMs) / 1000);
}

const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/**
 * `askToFirstMs`: from Ask to the first word on screen, as this window measured it (answers asked here). Without
 * it (an answer from the history) only the model's part is known, and the line says so.
 */
export function answerMeta(t: Timings, askToFirstMs: number | null = null): string {
  const first =
    askToFirstMs !== null
      ? `first word ${sec(askToFirstMs)} after Ask`
      : `first word ${sec(t.firstTokenMs)} after the model started`;
  return rateTokens(t) >= MIN_RATE_TOKENS ? `${first} · ${t.decodeTokensPerSec.toFixed(0)} tokens/s` : first;
}

/** Where the time before the first word went, biggest parts as main measured them, then the trip here and back. */
export function firstWordParts(fw: FirstWord, askToFirstMs: number | null): { label: string; ms: number }[] {
  const parts = [
    { label: 'frame sampling', ms: fw.samplingMs },
    { label: 'vision encoder', ms: fw.visionMs },
    { label: 'prefill', ms: fw.prefillMs },
    { label: 'first token', ms: fw.firstTokenMs },
    { label: 'waiting for the model', ms: fw.waitMs },
  ];
  if (askToFirstMs !== null)
    parts.push({ label: 'to the app and back', ms: Math.max(0, askToFirstMs - fw.totalMs) });
  return parts.filter((p) => p.ms >= 0.5);
}

export function formatMs(ms: number): string {
  return ms >= 1000 ? sec(ms) : `${Math.round(ms)} ms`;
}
