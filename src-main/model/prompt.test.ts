import { describe, expect, it } from 'vitest';
import { TextStreamer } from './prompt.ts';

/** A byte-level "tokenizer": each id is a few bytes of UTF-8; decoding a slice may cut a character (U+FFFD). */
function byteTokens(
  text: string,
  size: number,
): { ids: number[]; decode: (ids: readonly number[]) => string } {
  const bytes = new TextEncoder().encode(text);
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) pieces.push(bytes.slice(i, i + size));
  const decoder = new TextDecoder();
  return {
    ids: pieces.map((_, i) => i),
    decode: (ids) => {
      const all = new Uint8Array(ids.reduce((n, id) => n + pieces[id]!.length, 0));
      ids.reduce((at, id) => (all.set(pieces[id]!, at), at + pieces[id]!.length), 0);
      return decoder.decode(all);
    },
  };
}

describe('TextStreamer', () => {
  it('streams deltas that add up to the answer, never splitting a character, without re-decoding it all', () => {
    const answer = '  Ein grüner Kreis 🟢 und ein 三角形. Done.';
    for (const size of [1, 2, 3, 5]) {
      const { ids, decode } = byteTokens(answer, size);
      let decoded = 0;
      const streamer = new TextStreamer((slice) => ((decoded += slice.length), decode(slice)));
      const deltas = ids.map((id) => streamer.push(id));
      expect(deltas.join('')).toBe(answer.trimStart());
      for (const d of deltas) expect(d).not.toContain('\uFFFD');
      expect(streamer.text).toBe(answer);
      // windows stay short: far fewer ids decoded than the quadratic n(n+1)/2 of whole-answer decoding
      expect(decoded).toBeLessThan(ids.length * 12);
    }
  });
});
