import { describe, expect, it } from 'vitest';
import { answerMeta, MIN_RATE_TOKENS, rateTokens } from './answer-meta.ts';

const timings = (decodeTokens: number, decodeMs: number) => ({
  prefillTokens: 300,
  prefillMs: 80,
  firstTokenMs: 123,
  decodeMs,
  decodeTokensPerSec: decodeTokens > 0 ? (decodeTokens * 1000) / decodeMs : 0,
});

describe('answer meta line', () => {
  it('leaves the speed out under a one-token answer', () => {
    // "red" then end of answer: one decode step, the engine's rate is over that single step
    expect(answerMeta(timings(1, 8))).toBe('first word after 0.12 s');
    expect(answerMeta(timings(0, 0.01))).toBe('first word after 0.12 s');
  });

  it('shows tokens/s once it is measured over enough tokens', () => {
    expect(rateTokens(timings(12, 100))).toBe(12);
    expect(answerMeta(timings(12, 100))).toBe('first word after 0.12 s · 120 tokens/s');
    expect(answerMeta(timings(MIN_RATE_TOKENS - 1, 30))).not.toContain('tokens/s');
    expect(answerMeta(timings(MIN_RATE_TOKENS, 40))).toContain('100 tokens/s');
  });
});
