import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src-main/**/*.test.ts', 'src-renderer/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/real/**', '**/node_modules/**'],
    // Time limits here only catch hangs: they sit far above any duration seen, also on a machine kept busy by
    // other work (docs/testing.md). Speed is measured in the bench, never by a test's time limit.
    testTimeout: 180_000,
    hookTimeout: 300_000,
    // The machine has 2 cores and tests run real ffmpeg and onnxruntime: keep parallelism modest.
    maxWorkers: 2,
    globalSetup: ['test/global-setup.ts'],
  },
});
