import { describe, expect, it } from 'vitest';
import { parseProgressLine } from './proxy.ts';
import { mimeFor, parseRange } from './range.ts';

describe('Range header parsing', () => {
  it('reads closed, open-ended and suffix ranges', () => {
    expect(parseRange('bytes=0-99', 1000)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=500-', 1000)).toEqual({ start: 500, end: 999 });
    expect(parseRange('bytes=-100', 1000)).toEqual({ start: 900, end: 999 });
  });

  it('clips an end past the file and a suffix longer than it', () => {
    expect(parseRange('bytes=900-5000', 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRange('bytes=-5000', 1000)).toEqual({ start: 0, end: 999 });
  });

  it('reports ranges that cannot be satisfied', () => {
    expect(parseRange('bytes=1000-', 1000)).toBe('unsatisfiable');
    expect(parseRange('bytes=50-10', 1000)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 1000)).toBe('unsatisfiable');
  });

  it('ignores absent, malformed and multi-range headers (the whole file is sent)', () => {
    expect(parseRange(undefined, 1000)).toBeNull();
    expect(parseRange('items=0-5', 1000)).toBeNull();
    expect(parseRange('bytes=0-5,10-20', 1000)).toBeNull();
    expect(parseRange('bytes=-', 1000)).toBeNull();
  });

  it('labels video types the player understands', () => {
    expect(mimeFor('/a/B.MP4')).toBe('video/mp4');
    expect(mimeFor('x.webm')).toBe('video/webm');
    expect(mimeFor('x.xyz')).toBe('application/octet-stream');
  });
});

describe('ffmpeg progress lines', () => {
  it('reads out_time in microseconds and as a clock', () => {
    expect(parseProgressLine('out_time_us=1500000')).toBe(1.5);
    expect(parseProgressLine('out_time_ms=2500000')).toBe(2.5);
    expect(parseProgressLine('out_time=00:01:02.500000')).toBe(62.5);
  });

  it('ignores other lines', () => {
    expect(parseProgressLine('frame=12')).toBeNull();
    expect(parseProgressLine('progress=continue')).toBeNull();
  });
});
