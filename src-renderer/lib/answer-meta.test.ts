import { describe, expect, it } from 'vitest';
import { answerMeta, firstWordParts, formatMs, MIN_RATE_TOKENS, rateTokens } from './answer-meta.ts';

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
    expect(answerMeta(timings(1, 8))).toBe('first word 0.12 s after the model started');
    expect(answerMeta(timings(0, 0.01))).toBe('first word 0.12 s after the model started');
  });

  it('counts from Ask where this window measured it', () => {
    expect(answerMeta(timings(1, 8), 1432)).toBe('first word 1.43 s after Ask');
  });

  it('shows tokens/s once it is measured over enough tokens', () => {
    expect(rateTokens(timings(12, 100))).toBe(12);
    expect(answerMeta(timings(12, 100))).toBe('first word 0.12 s after the model started · 120 tokens/s');
    expect(answerMeta(timings(MIN_RATE_TOKENS - 1, 30))).not.toContain('tokens/s');
    expect(answerMeta(timings(MIN_RATE_TOKENS, 40))).toContain('100 tokens/s');
  });

  it('breaks the time before the first word down, the trip to the app last', () => {
    const fw = {
      totalMs: 1300,
      samplingMs: 600,
      visionMs: 500,
      prefillMs: 80,
      firstTokenMs: 20,
      waitMs: 100,
    };
    expect(firstWordParts(fw, 1400)).toEqual([
      { label: 'frame sampling', ms: 600 },
      { label: 'vision encoder', ms: 500 },
      { label: 'prefill', ms: 80 },
      { label: 'first token', ms: 20 },
      { label: 'waiting for the model', ms: 100 },
      { label: 'to the app and back', ms: 100 },
    ]);
    // a follow-up: nothing sampled, nothing encoded
    expect(firstWordParts({ ...fw, samplingMs: 0, visionMs: 0 }, null).map((p) => p.label)).toEqual([
      'prefill',
      'first token',
      'waiting for the model',
    ]);
    expect(formatMs(1432)).toBe('1.43 s');
    expect(formatMs(81.6)).toBe('82 ms');
  });
});
