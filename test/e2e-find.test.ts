/**
 * End to end: moment search in the app (web mode, real services, the built-in model, ffmpeg) driven through
 * Chromium. Find with progress and Stop, the heat strip, interval chips that select a clip, past searches kept
 * after a reload, and the Player laid out without overlap at 1024×700 and 1920×1080 in both themes
 * (screenshots in test/screenshots/f*-*.png, reviewed by hand).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve, type RunningWeb } from '../src-main/cli/serve.ts';
import { COLORS, makeShapesClip } from './fixtures/clips.ts';
import { launchChromium, openPage, ROOT } from './helpers.ts';

const SHOTS = path.join(ROOT, 'test', 'screenshots');

type Box = { x: number; y: number; width: number; height: number };
const overlaps = (a: Box, b: Box) =>
  a.x < b.x + b.width - 0.5 &&
  b.x < a.x + a.width - 0.5 &&
  a.y < b.y + b.height - 0.5 &&
  b.y < a.y + a.height - 0.5;

describe('moment search in the app', () => {
  let dir: string;
  let running: RunningWeb;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const poll = <T>(fn: () => Promise<T> | T, options: { timeout?: number } = {}) =>
    expect.poll(fn, { timeout: 30_000, ...options });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-e2e-find-'));
    await mkdir(SHOTS, { recursive: true });
    await Promise.all([
      makeShapesClip(path.join(dir, 'clips'), {
        name: 'shapes-40s.mp4',
        width: 320,
        height: 180,
        duration: 40,
        fps: 10,
        codec: 'h264',
        background: COLORS.black,
        shapes: [
          { kind: 'square', color: COLORS.yellow, radius: 0.14, x0: 0.22, y0: 0.5 },
          {
            kind: 'circle',
            color: COLORS.red,
            radius: 0.16,
            x0: 0.7,
            y0: 0.5,
            visible: [
              [6, 14],
              [26, 31],
            ],
          },
        ],
      }),
    ]);
    running = await serve({ dataDir: path.join(dir, 'data'), port: 0, log: null });
    browser = await launchChromium();
    page = await openPage(
      browser,
      {
        viewport: { width: 1024, height: 700 },
        colorScheme: 'light',
        acceptDownloads: true,
      },
      pageErrors,
      30_000,
    );
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await running?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The Player's parts that must never run under one another (the 1024×700 bug). */
  async function checkLayout(label: string): Promise<void> {
    const box = async (selector: string) => (await page.locator(selector).first().boundingBox())!;
    const ask = await box('aside.ask');
    const library = await box('aside.library');
    const parts = {
      stage: await box('main.stage'),
      timeline: await box('section.timeline'),
      find: await box('section.find'),
      strip: await box('[data-testid="strip"]'),
      zoom: await box('.zoom'),
      question: await box('#question'),
    };
    for (const [name, b] of Object.entries(parts))
      if (name !== 'question') {
        expect(overlaps(b, ask), `${label}: ${name} runs under the Ask panel`).toBe(false);
        expect(overlaps(b, library), `${label}: ${name} runs under the library`).toBe(false);
      }
    expect(overlaps(parts.question, parts.stage), `${label}: the question box overlaps the stage`).toBe(
      false,
    );
    // Nothing in the stage is wider than the stage (no horizontal overflow).
    const overflow = await page.locator('main.stage').evaluate((el) => el.scrollWidth - el.clientWidth);
    expect(overflow, `${label}: the stage overflows`).toBeLessThanOrEqual(0);
    // The video keeps a margin to the panel.
    expect(ask.x - (parts.stage.x + parts.stage.width)).toBeGreaterThanOrEqual(0);
  }

  it('finds a moment: progress and Stop, then the heat strip and interval chips that select a clip', async () => {
    await page.goto(running.web.openUrl);
    await page.fill('#add-path', path.join(dir, 'clips'));
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.getByRole('button', { name: /^shapes-40s\.mp4/ }).click();
    await poll(() => page.locator('.strip img').count()).toBeGreaterThan(2);

    await page.fill('#find-query', 'red circle');
    await page.getByTestId('find-go').click();
    await poll(() => page.getByTestId('find-progress').isVisible()).toBe(true);
    await poll(async () =>
      Number(await page.getByTestId('heat-strip').getAttribute('data-scores')),
    ).toBeGreaterThan(0);
    await page.getByTestId('find-stop').click();
    await poll(() => page.getByText(/^Stopped\./).isVisible()).toBe(true);

    await page.getByTestId('find-go').click();
    await poll(() => page.getByTestId('find-chips').isVisible(), { timeout: 120_000 }).toBe(true);
    expect(await page.getByTestId('heat-strip').getAttribute('data-scores')).toBe('80'); // 40 s at 0.5 s
    const chip = page.getByTestId('find-chips').getByRole('button').first();
    const [, from, to] = /^Select (\S+) to (\S+)/.exec((await chip.getAttribute('aria-label'))!)!;
    await chip.click();
    const selection = await page.getByTestId('selection').textContent();
    expect(selection).toContain(`Clip ${from} – ${to}`);
    await checkLayout('1024×700 light');
    await page.screenshot({ path: path.join(SHOTS, 'f1-find-1024x700-light.png') });
  }, 240_000);

  it('keeps past searches in the video history, across a reload', async () => {
    await page.reload();
    await page.getByRole('button', { name: /^shapes-40s\.mp4/ }).click();
    const past = page.locator('#find-past');
    await poll(() => past.locator('option').count()).toBe(2); // the label and the one finished search
    await past.selectOption({ index: 1 });
    await poll(() => page.getByTestId('find-chips').isVisible()).toBe(true);
    expect(await page.getByTestId('heat-strip').getAttribute('data-scores')).toBe('80');
  });

  it('lays the Player out without overlap at 1024×700 and 1920×1080, in both themes', async () => {
    for (const [width, height] of [
      [1024, 700],
      [1280, 720],
      [1920, 1080],
    ] as const)
      for (const theme of ['light', 'dark'] as const) {
        await page.setViewportSize({ width, height });
        await page.emulateMedia({ colorScheme: theme });
        // the new size has reached the page, and two frames have been laid out since (resize observers ran)
        await page.waitForFunction((w) => window.innerWidth === w, width);
        await page.evaluate(
          () => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))),
        );
        await checkLayout(`${width}×${height} ${theme}`);
        if (width !== 1280)
          await page.screenshot({ path: path.join(SHOTS, `f2-player-${width}x${height}-${theme}.png`) });
      }
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it('finds across a folder in the Batch view, with a CSV export', async () => {
    await page.setViewportSize({ width: 1280, height: 720 });
    await page.getByRole('button', { name: 'Batch' }).click();
    await page.getByRole('group', { name: 'Batch mode' }).getByRole('button', { name: 'Find' }).click();
    await page.fill('#ff-folder', path.join(dir, 'clips'));
    await page.fill('#ff-query', 'yellow square');
    await page.getByLabel('Find in a folder').getByRole('button', { name: 'Find' }).click();
    const list = page.getByTestId('folder-find');
    await poll(() => list.getByText(/clips show “yellow square”/).isVisible(), { timeout: 120_000 }).toBe(
      true,
    );
    await poll(() => list.getByRole('listitem').count()).toBe(1);
    expect(await list.getByRole('listitem').first().textContent()).toContain('shapes-40s.mp4');
    const download = page.waitForEvent('download');
    await list.getByRole('button', { name: 'CSV' }).click();
    const file = await (await download).path();
    const { readFile } = await import('node:fs/promises');
    expect((await readFile(file, 'utf8')).split('\n')[0]).toBe(
      'file,query,found,from,to,score,max_score,error',
    );
    await page.screenshot({ path: path.join(SHOTS, 'f3-batch-find.png') });
    expect(pageErrors).toEqual([]);
  }, 240_000);
});
