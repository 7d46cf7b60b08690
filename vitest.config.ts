import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src-main/**/*.test.ts', 'src-renderer/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/real/**', '**/node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // The machine has 2 cores and tests run real ffmpeg and onnxruntime: keep parallelism modest.
    maxWorkers: 2,
    globalSetup: ['test/global-setup.ts'],
  },
});
