import { describe, expect, it } from 'vitest';
import type { BatchClip, BatchDetail, BatchResult } from '../../src-main/api/contract.ts';
import {
  applyBatchEvent,
  batchFraction,
  clipLabel,
  formatEta,
  formatRate,
  movesForward,
  parseSegmentLength,
  segmentMarkers,
} from './batch.ts';

const clip = (relPath: string, status: BatchClip['status']): BatchClip => ({
  relPath,
  path: `/v/${relPath}`,
  videoId: relPath,
  status,
});
const batch = (clips: BatchClip[]): BatchDetail => ({
  id: 'b1',
  folder: '/v',
  recursive: true,
  prompts: ['Summarize the video.'],
  segmentSec: null,
  createdAt: '2026-01-01T00:00:00.000Z',
  state: 'running',
  error: null,
  overall: { done: 0, failed: 0, total: clips.length, clipsPerMin: 0, etaSec: null, yielding: false },
  model: 'm@1',
  clips,
});

describe('folding batch events', () => {
  it('starts from the snapshot and ignores changes before it', () => {
    expect(
      applyBatchEvent(null, { type: 'clip', clip: clip('a.mp4', { state: 'done', resumed: false }) }),
    ).toBeNull();
    const b = batch([clip('a.mp4', { state: 'queued' })]);
    expect(applyBatchEvent(null, { type: 'snapshot', batch: b })).toBe(b);
  });

  it('moves a clip forward and never back (a late running event after done is ignored)', () => {
    let b: BatchDetail | null = batch([clip('a.mp4', { state: 'queued' })]);
    b = applyBatchEvent(b, {
      type: 'clip',
      clip: clip('a.mp4', { state: 'running', stage: 'answering', fraction: 0.5 }),
    });
    b = applyBatchEvent(b, { type: 'clip', clip: clip('a.mp4', { state: 'done', resumed: false }) });
    const after = applyBatchEvent(b, {
      type: 'clip',
      clip: clip('a.mp4', { state: 'running', stage: 'answering', fraction: 0.9 }),
    });
    expect(after).toBe(b);
    expect(after!.clips[0]!.status).toEqual({ state: 'done', resumed: false });
  });

  it('adds clips it did not know and takes the state and overall progress from overall and end events', () => {
    let b = applyBatchEvent(batch([]), { type: 'clip', clip: clip('new.mp4', { state: 'queued' }) })!;
    expect(b.clips.map((c) => c.relPath)).toEqual(['new.mp4']);
    b = applyBatchEvent(b, {
      type: 'overall',
      state: 'paused',
      overall: { ...b.overall, done: 1, total: 1 },
    })!;
    expect([b.state, b.overall.done]).toEqual(['paused', 1]);
    b = applyBatchEvent(b, { type: 'end', state: 'failed', error: { code: 'DISK_FULL', message: 'full' } })!;
    expect([b.state, b.error?.code]).toEqual(['failed', 'DISK_FULL']);
  });

  it('compares clip states like the batch engine: rank first, then a running fraction that grows', () => {
    expect(movesForward({ state: 'queued' }, { state: 'failed', error: { code: 'X', message: '' } })).toBe(
      true,
    );
    expect(movesForward({ state: 'cancelled' }, { state: 'queued' })).toBe(false);
    expect(
      movesForward(
        { state: 'running', stage: 'answering', fraction: 0.6 },
        { state: 'running', stage: 'answering', fraction: 0.4 },
      ),
    ).toBe(false);
  });
});

describe('progress numbers', () => {
  it('counts finished clips whole and running ones by their fraction', () => {
    const b = batch([
      clip('a', { state: 'done', resumed: false }),
      clip('b', { state: 'failed', error: { code: 'CORRUPT_MEDIA', message: 'x' } }),
      clip('c', { state: 'running', stage: 'answering', fraction: 0.5 }),
      clip('d', { state: 'queued' }),
    ]);
    expect(batchFraction(b)).toBeCloseTo(2.5 / 4);
    expect(batchFraction(batch([]))).toBe(0);
  });

  it('formats the rate and the time left, and says nothing while they are unknown', () => {
    expect(formatRate(0)).toBe('');
    expect(formatRate(4.25)).toBe('4.3 clips/min');
    expect(formatRate(38.6)).toBe('39 clips/min');
    expect(formatEta(null)).toBe('');
    expect(formatEta(125.4)).toBe('2:05 left');
    expect(formatEta(3725)).toBe('1:02:05 left');
  });

  it('labels clip states in words', () => {
    expect(clipLabel({ state: 'running', stage: 'answering', fraction: 0.42 })).toBe('Answering · 42%');
    expect(clipLabel({ state: 'done', resumed: true })).toBe('Done (earlier run)');
  });
});

describe('segment length', () => {
  it('reads seconds, minutes and clock times; empty means no segments', () => {
    expect(parseSegmentLength('')).toBeNull();
    expect(parseSegmentLength('30')).toBe(30);
    expect(parseSegmentLength('30s')).toBe(30);
    expect(parseSegmentLength('2m')).toBe(120);
    expect(parseSegmentLength('1:30')).toBe(90);
  });

  it('refuses anything else with a message that shows the accepted forms', () => {
    expect(() => parseSegmentLength('soon')).toThrow(/30s/);
    expect(() => parseSegmentLength('0.2')).toThrow(/at least one second/);
  });
});

describe('segment markers', () => {
  const result = (segments: BatchResult['segments'], promptIndex = 0): BatchResult => ({
    batchId: 'b1',
    videoId: 'v',
    path: '/v/a.mp4',
    relPath: 'a.mp4',
    prompt: `p${promptIndex}`,
    promptIndex,
    durationSec: 4,
    answer: 'a',
    frames: [],
    segments,
    error: null,
    finishedAt: '2026-01-01T00:00:00.000Z',
  });

  it('come from the record that has segments, in time order, failed ones marked with their error', () => {
    const markers = segmentMarkers([
      result([], 1),
      result([
        { from: 2, to: 4, answer: null, error: { code: 'CORRUPT_MEDIA', message: 'bad frames' } },
        { from: 0, to: 2, answer: 'A red circle.', error: null },
      ]),
    ]);
    expect(markers).toEqual([
      { from: 0, to: 2, text: 'A red circle.', failed: false },
      { from: 2, to: 4, text: 'bad frames', failed: true },
    ]);
    expect(segmentMarkers([result([])])).toEqual([]);
  });
});
