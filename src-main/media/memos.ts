/** What media/ remembers in memory between calls, forgotten at once (Clear caches). */
import { forgetFrameIndexes } from './frame-index.ts';
import { forgetProbes } from './probe.ts';

export function forgetMediaMemos(): void {
  forgetProbes();
  forgetFrameIndexes();
}
