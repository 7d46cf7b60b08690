/**
 * End to end: the Batch view and the model manager in web mode (real services, the built-in pack, ffmpeg),
 * driven through Chromium with playwright-core. A fresh data folder; a folder of small generated clips plus one
 * damaged file. Screenshots go to test/screenshots/ (b*-*.png).
 *
 * Pause, Resume and Cancel need the batch to be mid-way; the tiny model finishes a small folder in seconds, so
 * the test holds the model gate's interactive lane (as a question asked in the app would): the batch then waits
 * at its first checkpoint, showing that it is yielding, until the lane is released.
 */
import { copyFile, cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, openPage, poll } from './helpers.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve, type RunningWeb } from '../src-main/cli/serve.ts';
import { builtinPackDir } from '../src-main/paths.ts';
import { COLORS, makeCorrupt, makeShapesClip } from './fixtures/clips.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHOTS = path.join(ROOT, 'test', 'screenshots');

describe('the Batch view and the model manager in web mode', () => {
  let dir: string;
  let folder: string;
  let running: RunningWeb;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const tiny = { width: 192, height: 108, duration: 4, fps: 8, codec: 'h264' as const, gop: 8 };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-e2e-batch-'));
    folder = path.join(dir, 'Trip clips');
    await mkdir(path.join(folder, 'day 2'), { recursive: true });
    await mkdir(SHOTS, { recursive: true });
    const [, , , corrupt] = await Promise.all([
      makeShapesClip(folder, {
        ...tiny,
        name: 'a-red-circle.mp4',
        background: COLORS.white,
        shapes: [{ kind: 'circle', color: COLORS.red, radius: 0.2, x0: 0.2, y0: 0.5, x1: 0.8, y1: 0.5 }],
      }),
      makeShapesClip(folder, {
        ...tiny,
        name: 'b-blue-square.mp4',
        background: COLORS.black,
        shapes: [{ kind: 'square', color: COLORS.blue, radius: 0.2, x0: 0.5, y0: 0.5 }],
      }),
      makeShapesClip(path.join(folder, 'day 2'), {
        ...tiny,
        name: 'c-yellow-triangle.mp4',
        background: COLORS.white,
        shapes: [{ kind: 'triangle', color: COLORS.yellow, radius: 0.2, x0: 0.5, y0: 0.5 }],
      }),
      makeCorrupt(path.join(dir, 'corrupt'), 'truncated'),
    ]);
    await copyFile(corrupt, path.join(folder, 'broken.mp4'));
    running = await serve({ dataDir: path.join(dir, 'data'), port: 0, log: null, threads: 2 });
    browser = await launchChromium();
    page = await openPage(
      browser,
      {
        viewport: { width: 1440, height: 900 },
        colorScheme: 'light',
        acceptDownloads: true,
      },
      pageErrors,
    );
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await running?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const clips = () => page.getByTestId('batch-clip');
  const clip = (name: string) => clips().filter({ hasText: name });
  const state = () => page.getByTestId('batch-state').textContent();

  it('starts a batch over a folder; while a question holds the model it waits, and it pauses and resumes', async () => {
    await page.goto(running.web.openUrl);
    await page.getByRole('button', { name: 'Batch', exact: true }).click();
    await poll(() => page.getByText('Summarize a whole folder').isVisible()).toBe(true);
    await page.fill('#batch-folder', folder);
    await page.getByRole('button', { name: 'Add a prompt' }).click();
    await page.getByRole('textbox', { name: 'Prompt 2' }).fill('What shape is it?');
    await page.fill('#batch-segments', '2s');

    const lease = running.services.gate.interactive(); // as if a question were being answered in the app
    try {
      await page.getByRole('button', { name: 'Start batch' }).click();
      await poll(() => clips().count()).toBe(4);
      await poll(() => page.getByText('Waiting for your question in the app').isVisible()).toBe(true);
      expect(await clip('a-red-circle.mp4').getAttribute('data-state')).toBe('queued');
      await page.screenshot({ path: path.join(SHOTS, 'b1-batch-waiting.png') });
      await page.getByRole('button', { name: 'Pause' }).click();
      await poll(state).toBe('Paused');
    } finally {
      lease.release();
    }
    await poll(() => running.services.gate.interactiveBusy).toBe(false); // past the cooldown: only the pause holds it now
    expect(await state()).toBe('Paused');
    expect(await page.getByTestId('batch-clip').and(page.locator('[data-state="done"]')).count()).toBe(0);
    await page.getByRole('button', { name: 'Resume' }).click();
    await poll(state).toMatch(/Running|Finished/);
  });

  it('shows each clip’s state and the overall progress; the damaged file fails with its error', async () => {
    await poll(() => clip('a-red-circle.mp4').getAttribute('data-state'), { timeout: 60_000 }).toBe('done');
    await poll(state, { timeout: 90_000 }).toBe('Finished');
    expect(await clip('broken.mp4').getAttribute('data-state')).toBe('failed');
    expect(await clip('broken.mp4').getByTestId('clip-error').textContent()).toMatch(
      /damaged|incomplete|corrupt|read/i,
    );
    for (const name of ['a-red-circle.mp4', 'b-blue-square.mp4', 'day 2/c-yellow-triangle.mp4'])
      expect(await clip(name).getAttribute('data-state')).toBe('done');
    expect(await page.getByTestId('batch-stats').textContent()).toMatch(/^4 of 4 clips · 1 failed/);
    expect(
      await page.getByRole('progressbar', { name: 'Batch progress' }).getAttribute('aria-valuenow'),
    ).toBe('100');
    expect(await page.getByTestId('batch-item').count()).toBe(1);
    await page.screenshot({ path: path.join(SHOTS, 'b2-batch-finished.png') });
  }, 300_000);

  it('reads a clip’s answers in the list by expanding its row', async () => {
    const row = clip('a-red-circle.mp4');
    const toggle = row.getByRole('button', { name: 'Show the answers for a-red-circle.mp4' });
    expect(await row.getByTestId('clip-answers').count()).toBe(0);
    await toggle.click();
    const answers = row.getByTestId('clip-answer');
    await poll(() => answers.count()).toBe(2); // one per prompt
    const batchId = running.service.batches.list()[0]!.id;
    const saved = (await running.service.batchResults({ batchId })).results
      .filter((r) => r.relPath === 'a-red-circle.mp4')
      .sort((a, b) => a.promptIndex - b.promptIndex);
    expect(await answers.allTextContents()).toEqual(saved.map((r) => r.answer));
    expect(saved[0]!.answer).toMatch(/\w/);
    const text = (await row.getByTestId('clip-answers').textContent())!;
    expect(text).toContain('Summarize the video.');
    expect(text).toContain('What shape is it?');
    // The segment answers (2 s each) are listed under the first prompt's.
    expect(await row.getByRole('list', { name: 'Segment answers' }).getByRole('listitem').count()).toBe(2);
    expect(await row.getByRole('button', { name: /^Hide the answers/ }).getAttribute('aria-expanded')).toBe(
      'true',
    );
    await page.screenshot({ path: path.join(SHOTS, 'b2b-batch-answers.png') });
    await row.getByRole('button', { name: /^Hide the answers/ }).click();
    await poll(() => row.getByTestId('clip-answers').count()).toBe(0);
  });

  it('styles the Find form like the Summaries form', async () => {
    const look = () =>
      page.locator('form.side-form').evaluate((form) => {
        const s = getComputedStyle(form);
        const label = getComputedStyle(form.querySelector('.label')!);
        return [s.padding, s.gap, label.fontSize, label.fontWeight, label.color].join(' ');
      });
    const summaries = await look();
    await page.getByRole('group', { name: 'Batch mode' }).getByRole('button', { name: 'Find' }).click();
    await poll(() => page.locator('#ff-folder').isVisible()).toBe(true);
    expect(await look()).toBe(summaries);
    await page.screenshot({ path: path.join(SHOTS, 'b2c-batch-find-form.png') });
    await page.getByRole('group', { name: 'Batch mode' }).getByRole('button', { name: 'Summaries' }).click();
    await poll(() => page.locator('#batch-folder').isVisible()).toBe(true);
  });

  it('exports the results as JSONL, Markdown and CSV downloads', async () => {
    const download = async (label: string) => {
      const [file] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: label, exact: true }).click(),
      ]);
      return { name: file.suggestedFilename(), text: await readFile((await file.path())!, 'utf8') };
    };
    const jsonl = await download('JSONL');
    expect(jsonl.name).toMatch(/^loupe-Trip-clips-\d{4}-\d\d-\d\d\.jsonl$/);
    const records = jsonl.text
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as { relPath: string; prompt: string; answer: string | null; segments?: unknown[] },
      );
    expect(records).toHaveLength(8); // 4 clips × 2 prompts
    const red = records.find((r) => r.relPath === 'a-red-circle.mp4' && r.prompt === 'Summarize the video.')!;
    expect(red.answer).toMatch(/\w/);
    expect(red.segments).toHaveLength(2);
    expect(records.filter((r) => r.relPath === 'broken.mp4').every((r) => r.answer === null)).toBe(true);
    const md = await download('Markdown');
    expect(md.name).toMatch(/\.md$/);
    expect(md.text).toContain('a-red-circle.mp4');
    const csv = await download('CSV');
    expect(csv.text.split('\r\n')[0]).toMatch(/^path,rel_path,prompt,segment_from,segment_to/);
  });

  it('opens a finished clip in the player with its summary, and its segment answers on the timeline', async () => {
    await clip('a-red-circle.mp4').getByRole('button', { name: 'Open a-red-circle.mp4' }).click();
    await poll(() => page.getByRole('main', { name: 'Player' }).isVisible()).toBe(true);
    const summary = page.getByTestId('batch-summary');
    await poll(() => summary.getByTestId('summary-answer').count()).toBe(2);
    expect(await summary.textContent()).toContain('Summarize the video.');
    const markers = page.getByTestId('segment-markers').getByRole('button');
    await poll(() => markers.count()).toBe(2);
    await markers.nth(1).click();
    expect(await page.getByTestId('selection').textContent()).toMatch(/Clip 0:02\.0 – 0:04\.0/);
    await poll(() => page.locator('.strip img').count()).toBeGreaterThan(3);
    await page.screenshot({ path: path.join(SHOTS, 'b3-clip-with-summary.png') });
    // The batch's clips are in the library, the damaged one with its error.
    expect(await page.getByRole('complementary', { name: 'Library' }).getByRole('listitem').count()).toBe(4);
  });

  it('cancels a batch, then resumes it from its results file', async () => {
    await page.getByRole('button', { name: 'Batch', exact: true }).click();
    await page.fill('#batch-folder', path.join(folder, 'day 2'));
    await page.getByRole('textbox', { name: 'Prompt 2' }).fill('Is there a triangle?');
    await page.fill('#batch-segments', '');
    const lease = running.services.gate.interactive();
    try {
      await page.getByRole('button', { name: 'Start batch' }).click();
      await poll(() => page.getByText('Waiting for your question in the app').isVisible()).toBe(true);
      await page.getByRole('button', { name: 'Cancel' }).click();
      await poll(state).toBe('Cancelled');
      expect(await clip('c-yellow-triangle.mp4').getAttribute('data-state')).toBe('cancelled');
    } finally {
      lease.release();
    }
    await page.getByRole('button', { name: 'Resume' }).click();
    await poll(() => running.service.batches.list()[0]!.state, { timeout: 60_000 }).toBe('done');
    await poll(state, { timeout: 60_000 }).toBe('Finished');
    expect(await clip('c-yellow-triangle.mp4').getAttribute('data-state')).toBe('done');
    expect(await page.getByTestId('batch-item').count()).toBe(2);
  }, 300_000);

  it('lists the built-in pack, imports a copy of it from a path, and switches to it', async () => {
    const copy = path.join(dir, 'packs', 'shapes copy');
    await cp(builtinPackDir(), copy, { recursive: true });
    const { version } = JSON.parse(await readFile(path.join(copy, 'manifest.json'), 'utf8')) as {
      version: string;
    };
    const importedDir = path.join(dir, 'data', 'models', `builtin-shapes-${version}`);
    await page.getByRole('button', { name: 'Settings and model' }).click();
    const models = page.getByTestId('models');
    await poll(() => models.getByTestId('pack').count()).toBe(1);
    expect(await models.getByTestId('pack').first().textContent()).toMatch(/built-in.*in use/s);
    await page.fill('#import-path', copy);
    await models.getByRole('button', { name: 'Import', exact: true }).click();
    await poll(() => models.getByTestId('pack').count()).toBe(2);
    const imported = models.getByTestId('pack').nth(1);
    expect(await imported.textContent()).toContain(importedDir);
    expect(await imported.textContent()).toContain('verified');
    await imported.getByRole('button', { name: /^Use / }).click();
    await poll(() => imported.textContent()).toContain('in use');
    expect(await models.getByTestId('pack').first().textContent()).not.toContain('in use');
    expect(running.service.store.data.settings.modelPack).toBe(importedDir);
    expect(running.services.packDir).toBe(importedDir);
    await models.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'b4-models.png') });
    // Importing the same pack again is refused, saying why.
    await page.fill('#import-path', copy);
    await models.getByRole('button', { name: 'Import', exact: true }).click();
    await poll(() => models.getByTestId('models-error').textContent()).toMatch(/already imported/);
    await page.keyboard.press('Escape');
  });

  it('threw no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
