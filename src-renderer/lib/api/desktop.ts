/** What only the desktop app offers (Electron's preload bridge): the system's picker and dropped files' paths. */
import type { LoupeBridge } from '../../../src-main/api/contract.ts';

export const desktop: Pick<LoupeBridge, 'pickPaths' | 'pathForFile'> | null =
  (globalThis as { loupe?: LoupeBridge }).loupe ?? null;
