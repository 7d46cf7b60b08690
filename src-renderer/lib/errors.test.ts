import { describe, expect, it } from 'vitest';
import { aboutFile } from './errors.ts';

describe('error text about a file', () => {
  it('replaces the leading path with "This file"', () => {
    expect(aboutFile('/v/a b.mp4 looks damaged (moov atom not found).', '/v/a b.mp4')).toBe(
      'This file looks damaged (moov atom not found).',
    );
  });
  it('replaces the path inside a sentence and leaves other messages alone', () => {
    expect(aboutFile('Could not read /v/a.mp4 now.', '/v/a.mp4')).toBe('Could not read this file now.');
    expect(aboutFile('The disk is full.', '/v/a.mp4')).toBe('The disk is full.');
  });
});
