/** Test helper: a valid ResultRecord with overridable fields. */
import { RECORD_VERSION, type ResultRecord } from './record.ts';

export function fakeRecord(relPath: string, extra: Partial<ResultRecord> = {}): ResultRecord {
  return {
    v: RECORD_VERSION,
    path: `/videos/${relPath}`,
    relPath,
    prompt: 'Summarize the video.',
    promptIndex: 0,
    durationSec: 2,
    answer: `about ${relPath}`,
    frames: [0.5, 1.5],
    model: 'm@1',
    provider: 'cpu',
    timings: { prepareMs: 1, answerMs: 2, tokens: 3 },
    error: null,
    finishedAt: '2025-01-01T00:00:00.000Z',
    ...extra,
  };
}
