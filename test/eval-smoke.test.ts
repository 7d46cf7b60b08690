/**
 * A small, seeded evaluation of the built-in model that fails if accuracy collapses: zero-shot video QA on
 * clips from the lavfi renderer (not the training renderer), H.264 and VP9, moving and late shapes, plus
 * clips with no shapes at all. The full evaluation (models/README.md) uses many more clips.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatTable, runVideoEval } from './eval/video-eval.ts';
import { FIXTURES, testServices } from './helpers.ts';

describe('built-in model accuracy smoke (seeded, tens of questions)', () => {
  let dispose = async () => {};
  afterAll(() => dispose());

  it('answers most questions about unseen clips correctly', async () => {
    const services = await testServices({ featureCache: false });
    dispose = () => services.dispose();
    const result = await runVideoEval({
      services,
      n: 8,
      seed: 424242,
      dir: path.join(FIXTURES, 'eval-smoke'),
      offDomain: 3,
    });
    const rows = Object.values(result.byType);
    const correct = rows.reduce((n, r) => n + r.correct, 0);
    const total = rows.reduce((n, r) => n + r.total, 0);
    console.log(formatTable(result));
    expect(total).toBe(8 * 5 + 3);
    // Chance is about 25% on this mix; the shipped model 1.1.0 scores 72% here (31/43; 1.0.0 scored ~53%), with
    // colour and count at 100% (models/README.md): a collapse, or a regression to 1.0.0, fails.
    expect(correct / total).toBeGreaterThanOrEqual(Number(process.env.LOUPE_SMOKE_MIN ?? 0.65));
    expect(result.byType.color!.correct + result.byType.count!.correct).toBeGreaterThanOrEqual(15);
  }, 600_000);
});
