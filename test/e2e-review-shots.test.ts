/**
 * Review screenshots (issue 25), in web mode (real services, the built-in model, ffmpeg) through Chromium with
 * playwright-core: the Player with a zoomed timeline and a selection, Ask with a long conversation (real answers),
 * Batch with a finished clip's answers expanded, and Settings, each at 1024×700, 1440×900 and 1920×1080, light
 * and dark. They go to test/screenshots/review/ (committed, unlike the other screenshots) as
 * `<screen>-<width>x<height>-<theme>.png`.
 *
 * At each size and theme the test also checks the layout: the main panels do not overlap, no visible text is
 * clipped (an element cut with overflow or an ellipsis shows all of its text; a text's box lies inside its
 * panel), and the timeline's thumbnails fill their tiles at the video's aspect.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve, type RunningWeb } from '../src-main/cli/serve.ts';
import { COLORS, makeShapesClip } from './fixtures/clips.ts';
import { launchChromium, openPage, poll } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHOTS = path.join(ROOT, 'test', 'screenshots', 'review');
const SIZES = [
  [1024, 700],
  [1440, 900],
  [1920, 1080],
] as const;
const THEMES = ['light', 'dark'] as const;
const ASPECT = 320 / 180;

/** What the page's layout check found wrong; every list empty when all is well. */
interface LayoutFacts {
  missing: string[];
  overlaps: string[];
  clipped: string[];
  spills: string[];
}

/**
 * Runs in the page. `panels` name the main panels (CSS selectors): no two may overlap, and each must lie in the
 * window. Inside each, every visible element cut by `overflow` or `text-overflow` must show all its text
 * (scrollWidth ≤ clientWidth), and every visible run of text must lie, left to right, inside its panel.
 */
function checkLayout(panels: string[]): LayoutFacts {
  const facts: LayoutFacts = { missing: [], overlaps: [], clipped: [], spills: [] };
  const name = (el: Element) =>
    `${el.tagName.toLowerCase()}${el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : ''} “${(el.textContent ?? '').trim().slice(0, 40)}”`;
  const visible = (el: Element) => {
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return false;
    for (let e: Element | null = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || Number(s.opacity) === 0) return false;
      if (e.classList.contains('visually-hidden')) return false;
    }
    return true;
  };
  const found = panels.map((sel) => [sel, document.querySelector(sel)] as const);
  const boxes: [string, DOMRect, Element][] = [];
  for (const [sel, el] of found) {
    if (!el || !visible(el)) facts.missing.push(sel);
    else boxes.push([sel, el.getBoundingClientRect(), el]);
  }
  for (const [sel, r] of boxes)
    if (r.left < -0.5 || r.top < -0.5 || r.right > innerWidth + 0.5 || r.bottom > innerHeight + 0.5)
      facts.spills.push(`${sel} outside the window: ${r.left},${r.top}–${r.right},${r.bottom}`);
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, ra] = boxes[i]!;
      const [b, rb] = boxes[j]!;
      const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
      const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (w > 0.5 && h > 0.5) facts.overlaps.push(`${a} and ${b} overlap by ${w}×${h}`);
    }
  for (const [sel, panel, root] of boxes) {
    for (const el of root.querySelectorAll('*')) {
      if (
        el instanceof SVGElement ||
        ['IMG', 'VIDEO', 'CANVAS', 'INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName)
      )
        continue;
      const ownText = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent!.trim());
      if (!ownText || !visible(el)) continue;
      const s = getComputedStyle(el);
      const cut = s.textOverflow === 'ellipsis' || ['hidden', 'clip'].includes(s.overflowX);
      if (cut && el.scrollWidth > el.clientWidth + 1)
        facts.clipped.push(`${sel}: ${name(el)} shows ${el.clientWidth} of ${el.scrollWidth} px`);
      if (['hidden', 'clip'].includes(s.overflowY) && el.scrollHeight > el.clientHeight + 1)
        facts.clipped.push(`${sel}: ${name(el)} shows ${el.clientHeight} of ${el.scrollHeight} px high`);
      if (cut) continue; // its text box runs past what is shown: the check above covers it
      for (const n of el.childNodes) {
        if (n.nodeType !== Node.TEXT_NODE || !n.textContent!.trim()) continue;
        const range = document.createRange();
        range.selectNodeContents(n);
        const r = range.getBoundingClientRect();
        if (r.width < 1) continue;
        // what of it an ancestor cutting its overflow lets show: none (hidden on purpose, as a ruler's last
        // tick), all, or part of it (clipped)
        let [left, right] = [r.left, r.right];
        for (let a = el.parentElement; a && a !== root.parentElement; a = a.parentElement)
          if (getComputedStyle(a).overflowX !== 'visible') {
            const c = a.getBoundingClientRect();
            [left, right] = [Math.max(left, c.left), Math.min(right, c.right)];
          }
        if (right - left < 1) continue;
        if (left > r.left + 1 || right < r.right - 1)
          facts.clipped.push(`${sel}: ${name(el)} text at ${r.left}–${r.right}, shown ${left}–${right}`);
        else if (r.left < panel.left - 1 || r.right > panel.right + 1)
          facts.spills.push(
            `${sel}: ${name(el)} text at ${r.left}–${r.right}, panel ${panel.left}–${panel.right}`,
          );
      }
    }
  }
  return facts;
}

describe('review screenshots at three sizes, light and dark', () => {
  let dir: string;
  let clips: string;
  let running: RunningWeb;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-e2e-review-'));
    clips = path.join(dir, 'Holiday clips');
    await mkdir(clips, { recursive: true });
    await mkdir(SHOTS, { recursive: true });
    const clip = { width: 320, height: 180, fps: 10, codec: 'h264' as const, gop: 10 };
    await Promise.all([
      makeShapesClip(clips, {
        ...clip,
        name: 'red-circle-crossing.mp4',
        duration: 6,
        background: COLORS.white,
        shapes: [{ kind: 'circle', color: COLORS.red, radius: 0.2, x0: 0.2, y0: 0.5, x1: 0.8, y1: 0.5 }],
      }),
      makeShapesClip(clips, {
        ...clip,
        name: 'green-square.mp4',
        duration: 3,
        background: COLORS.black,
        shapes: [{ kind: 'square', color: COLORS.green, radius: 0.2, x0: 0.5, y0: 0.5 }],
      }),
      makeShapesClip(clips, {
        ...clip,
        name: 'blue-triangle.mp4',
        duration: 4,
        background: COLORS.white,
        shapes: [{ kind: 'triangle', color: COLORS.blue, radius: 0.2, x0: 0.5, y0: 0.5 }],
      }),
    ]);
    running = await serve({ dataDir: path.join(dir, 'data'), port: 0, log: null, threads: 2 });
    browser = await launchChromium();
    page = await openPage(
      browser,
      { viewport: { width: 1440, height: 900 }, colorScheme: 'light' },
      pageErrors,
    );
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await running?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const answers = () => page.getByTestId('conversation').getByTestId('answer');
  const PLAYER_PANELS = ['.library', '.player', '.timeline', '.find', '.ask'];

  /** The strip's inner size and its tiles' rendered boxes and pictures' aspect, once decoded. */
  const tileFacts = () =>
    page.getByTestId('strip').evaluate(async (strip: HTMLElement) => {
      const imgs = [...strip.querySelectorAll('img')];
      await Promise.all(imgs.map((img) => img.decode().catch(() => undefined)));
      return {
        height: strip.clientHeight,
        tiles: imgs.map((img) => {
          const r = img.getBoundingClientRect();
          return { width: r.width, height: r.height, naturalAspect: img.naturalWidth / img.naturalHeight };
        }),
      };
    });

  /** What was found wrong, by screen, size and theme; checked at the end, after every screenshot was taken. */
  const problems: string[] = [];

  /**
   * At each size and theme: the screenshot `<screen>-WxH-theme.png`, the layout checked (again for a few seconds
   * while it is still settling) and `extra` run; what stays wrong goes to `problems`.
   */
  async function shoot(screen: string, panels: string[], extra?: () => Promise<string[]>) {
    for (const [width, height] of SIZES)
      for (const theme of THEMES) {
        const size = `${width}x${height}-${theme}`;
        await page.setViewportSize({ width, height });
        await page.emulateMedia({ colorScheme: theme });
        await page.mouse.move(width - 1, height - 1); // no hover left on what was clicked last
        await poll(() => page.evaluate(() => document.documentElement.dataset.theme)).toBe(theme);
        let found: string[] = [];
        for (let attempt = 0; attempt < 10; attempt++) {
          await page.evaluate(
            () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))),
          );
          const facts = await page.evaluate(checkLayout, panels);
          found = [
            ...facts.missing.map((m) => `missing ${m}`),
            ...facts.overlaps,
            ...facts.clipped,
            ...facts.spills,
            ...((await extra?.()) ?? []),
          ];
          if (!found.length) break;
          await new Promise((r) => setTimeout(r, 500));
        }
        problems.push(...found.map((f) => `${screen} ${size}: ${f}`));
        await page.screenshot({ path: path.join(SHOTS, `${screen}-${size}.png`) });
      }
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.emulateMedia({ colorScheme: 'light' });
  }

  /** The strip's thumbnails fill their tiles: as tall as the strip inside its border, at the video's aspect. */
  async function thumbnailsFill(): Promise<string[]> {
    const { height, tiles } = await tileFacts();
    if (tiles.length < 3) return [`only ${tiles.length} timeline tiles`];
    return tiles
      .filter(
        (t) =>
          Math.abs(t.height - height) > 0.5 ||
          Math.abs(t.width / t.height - ASPECT) > 0.03 ||
          Math.abs(t.naturalAspect - ASPECT) > 0.05,
      )
      .map(
        (t) => `a timeline tile ${t.width}×${t.height} (picture ${t.naturalAspect}) in a ${height} px strip`,
      );
  }

  it('the Player with a zoomed timeline and a selection', async () => {
    await page.goto(running.web.openUrl);
    await poll(() => page.getByRole('button', { name: 'Make a sample clip' }).isVisible()).toBe(true);
    await page.fill('#add-path', clips);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await poll(() => page.locator('.library .list [role="listitem"]').count()).toBe(3);
    await poll(() => page.locator('.item .thumb img').count()).toBe(3);
    await page.getByRole('button', { name: /^red-circle-crossing\.mp4/ }).click();
    await poll(() => page.locator('.strip img').count()).toBeGreaterThan(3);
    const box = (await page.getByTestId('strip').boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2, { steps: 10 });
    await page.mouse.up();
    expect(await page.getByTestId('selection').textContent()).toMatch(/Clip 0:01\.\d – 0:04\.\d/);
    // the playhead at 3 s, then 2×: a 3 s view around it that holds the whole selection
    await page.getByTestId('strip').focus();
    await page.keyboard.press('Home');
    for (let i = 0; i < 3; i++) await page.keyboard.press('Shift+ArrowRight');
    await poll(() => page.locator('video').evaluate((v: HTMLVideoElement) => v.currentTime)).toBeCloseTo(
      3,
      1,
    );
    await page.keyboard.press('+');
    await poll(() => page.getByLabel('Zoom level').textContent()).toBe('2.0×');
    await poll(() => page.locator('video').evaluate((v: HTMLVideoElement) => v.readyState)).toBeGreaterThan(
      1,
    );
    await shoot('player', PLAYER_PANELS, thumbnailsFill);
  });

  it('Ask with a long conversation (real answers from the built-in model)', async () => {
    const questions = [
      'What color is the circle?',
      'What shape is it?',
      'What color is the background?',
      'Where is it at the start of the clip?',
      'Is it moving?',
      'Describe the clip in one sentence.',
    ];
    for (const [i, q] of questions.entries()) {
      await poll(() => page.getByRole('button', { name: 'Stop the answer' }).count()).toBe(0);
      await page.fill('#question', q);
      await page.keyboard.press('Enter');
      await poll(() => answers().nth(i).getAttribute('data-status'), { timeout: 120_000 }).toMatch(
        /eos|length/,
      );
    }
    expect((await answers().first().textContent())!.toLowerCase()).toContain('red');
    await shoot('ask', PLAYER_PANELS, thumbnailsFill);
  }, 600_000);

  it('Batch with a finished clip’s answers expanded', async () => {
    await page.getByRole('button', { name: 'Batch', exact: true }).click();
    await poll(() => page.getByText('Summarize a whole folder').isVisible()).toBe(true);
    await page.fill('#batch-folder', clips);
    await page.getByRole('button', { name: 'Add a prompt' }).click();
    await page.getByRole('textbox', { name: 'Prompt 2' }).fill('What shape is it, and what color?');
    await page.fill('#batch-segments', '2s');
    await page.getByRole('button', { name: 'Start batch' }).click();
    await poll(() => page.getByTestId('batch-state').textContent(), { timeout: 180_000 }).toBe('Finished');
    const row = page.getByTestId('batch-clip').filter({ hasText: 'red-circle-crossing.mp4' });
    await row.getByRole('button', { name: 'Show the answers for red-circle-crossing.mp4' }).click();
    await poll(() => row.getByTestId('clip-answer').count()).toBe(2);
    // the expanded answers lie inside their row, the row's padding kept on the right
    const answersInRow = () =>
      row.evaluate((li: HTMLElement) => {
        const a = li.querySelector('[data-testid="clip-answers"]')!.getBoundingClientRect();
        const r = li.getBoundingClientRect();
        const pad = parseFloat(getComputedStyle(li).paddingRight);
        return a.left >= r.left && a.right <= r.right - pad + 0.5
          ? []
          : [`the answers (${a.left}–${a.right}) run past their row (${r.left}–${r.right}, padding ${pad})`];
      });
    await shoot('batch', ['.setup', '.run'], answersInRow);
  }, 300_000);

  it('Settings', async () => {
    await page.getByRole('button', { name: 'Settings and model' }).click();
    const dialog = page.getByTestId('settings');
    await poll(() => dialog.getByTestId('model-statement').textContent()).toMatch(/never audio/);
    await poll(() => dialog.getByTestId('build-providers').textContent()).toMatch(/^CPU\b/);
    await shoot('settings', ['[data-testid="settings"]']);
    await page.keyboard.press('Escape');
  });

  it('found the layout right at every size and theme, and threw no page errors', () => {
    expect(problems).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
