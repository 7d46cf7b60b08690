/**
 * End to end: web mode (real services, the built-in model, ffmpeg) driven through Chromium with playwright-core.
 * A fresh data folder per run; clips generated with ffmpeg. Screenshots of each main screen go to
 * test/screenshots/.
 *
 * Answers are paced (a short pause before each token, through the service's `openClip` seam) so that the
 * test can watch tokens arrive and press Stop in the middle of an answer: the built-in model answers in a
 * few tokens, faster than a click.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, openPage, poll } from './helpers.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClipSession } from '../src-main/api/service.ts';
import { serve, type RunningWeb } from '../src-main/cli/serve.ts';
import type { AnswerEvent } from '../src-main/model/engine.ts';
import { ClipConversation } from '../src-main/qa/ask.ts';
import { COLORS, makeCorrupt, makeShapesClip } from './fixtures/clips.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHOTS = path.join(ROOT, 'test', 'screenshots');
const COLOR_WORDS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'white', 'black'];
const TOKEN_PAUSE_MS = 200;

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });

/** The real conversation, with a pause before each event of an answer. */
async function pacedClip(...args: Parameters<typeof ClipConversation.open>): Promise<ClipSession> {
  const real = await ClipConversation.open(...args);
  return {
    clip: real.clip,
    async *ask(question, options): AsyncGenerator<AnswerEvent> {
      for await (const event of real.ask(question, options)) {
        await sleep(TOKEN_PAUSE_MS, options.signal);
        yield event;
      }
    },
    close: () => real.close(),
  };
}

function rawStatus(port: number, route: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: route, method: 'POST', headers }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end('{}');
  });
}

describe('the Loupe app in web mode', () => {
  let dir: string;
  let clips: string;
  let running: RunningWeb;
  let browser: Browser;
  let page: Page;
  const cspViolations: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-e2e-'));
    clips = path.join(dir, 'My clips');
    await mkdir(path.join(clips, 'more'), { recursive: true });
    await mkdir(SHOTS, { recursive: true });
    const [, , corrupt] = await Promise.all([
      makeShapesClip(clips, {
        name: 'red-circle.mp4',
        width: 320,
        height: 180,
        duration: 6,
        fps: 10,
        codec: 'h264',
        background: COLORS.white,
        gop: 10,
        shapes: [{ kind: 'circle', color: COLORS.red, radius: 0.2, x0: 0.2, y0: 0.5, x1: 0.8, y1: 0.5 }],
      }),
      makeShapesClip(path.join(clips, 'more'), {
        name: 'green-square.mp4',
        width: 320,
        height: 180,
        duration: 3,
        fps: 10,
        codec: 'h264',
        background: COLORS.black,
        shapes: [{ kind: 'square', color: COLORS.green, radius: 0.2, x0: 0.5, y0: 0.5 }],
      }),
      makeCorrupt(path.join(dir, 'corrupt'), 'truncated'),
    ]);
    await copyFile(corrupt, path.join(clips, 'broken-download.mp4'));
    process.env.LOUPE_DATA_DIR = path.join(dir, 'data');
    running = await serve({
      dataDir: path.join(dir, 'data'),
      port: 0,
      log: null,
      openClip: (services, req) =>
        services.engine().then(async (engine) => pacedClip(engine, await services.extractor(), req)),
    });
    browser = await launchChromium();
    page = await openPage(
      browser,
      { viewport: { width: 1440, height: 900 }, colorScheme: 'light' },
      pageErrors,
    );
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await running?.close();
    delete process.env.LOUPE_DATA_DIR;
    await rm(dir, { recursive: true, force: true });
  });

  const answers = () => page.getByTestId('conversation').getByTestId('answer');
  /** The strip's inner size and its tiles' boxes (relative to the strip) and pictures' aspect, once decoded. */
  const tileFacts = () =>
    page.getByTestId('strip').evaluate(async (strip: HTMLElement) => {
      const imgs = [...strip.querySelectorAll('img')];
      await Promise.all(imgs.map((img) => img.decode().catch(() => undefined)));
      return {
        width: strip.clientWidth,
        height: strip.clientHeight,
        tiles: imgs.map((img) => ({
          left: img.offsetLeft,
          width: img.offsetWidth,
          height: img.offsetHeight,
          naturalAspect: img.naturalWidth / img.naturalHeight,
          picture: img.src.slice(-80), // enough of the data: URL to tell frames apart
        })),
      };
    });
  /** Bounding boxes of the timeline (`section`), its strip, the selection body and the lanes' buttons. */
  const timelineBoxes = () =>
    page.getByRole('region', { name: 'Timeline' }).evaluate((section: HTMLElement) => {
      const box = (el: Element) => {
        const r = el.getBoundingClientRect();
        return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
      };
      const strip = section.querySelector('[data-testid="strip"]')!;
      const sel = strip.querySelector('.sel');
      return {
        timeline: box(section),
        strip: box(strip),
        selection: sel ? box(sel) : null,
        shades: [...strip.querySelectorAll('.shade')].map(box),
        lanes: [...section.querySelectorAll('.marker, .segment')].map(box),
      };
    });

  it('refuses requests without the token or from another origin', async () => {
    const { web } = running;
    const noToken = await fetch(web.url);
    expect(noToken.status).toBe(401);
    const json = {
      'Content-Type': 'application/json',
      'X-Loupe-Token': web.token,
      Host: `127.0.0.1:${web.port}`,
    };
    expect(
      await rawStatus(web.port, '/api/call/listVideos', { ...json, Origin: 'http://evil.example' }),
    ).toBe(403);
    expect(await rawStatus(web.port, '/api/call/listVideos', { ...json, Host: 'evil.example' })).toBe(403);
    expect(await rawStatus(web.port, '/api/call/listVideos', json)).toBe(200);
    // A page elsewhere cannot read the API even from the same browser.
    const other = await browser.newPage();
    await other.goto(web.url);
    expect(await other.textContent('body')).toMatch(/access token/);
    await other.close();
  });

  it('opens on an empty library that offers a sample clip', async () => {
    await page.goto(running.web.openUrl);
    expect(page.url()).toBe(running.web.url); // the token left the address bar
    await poll(() => page.getByRole('button', { name: 'Make a sample clip' }).isVisible()).toBe(true);
    await page.screenshot({ path: path.join(SHOTS, '1-empty-library.png') });
  });

  it('adds a folder (with sub-folders): thumbnails for the videos, its error for the corrupt file', async () => {
    await page.fill('#add-path', clips);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    const items = page.getByRole('listitem');
    await poll(() => items.count()).toBe(3);
    const broken = items.filter({ hasText: 'broken-download.mp4' });
    await poll(() => broken.getByTestId('video-error').textContent()).toMatch(/\w+/);
    await page.getByRole('button', { name: /^red-circle\.mp4/ }).click();
    // The strip is tiled with whole frames at the video's aspect (320×180), each as tall as the strip, edge to edge.
    await poll(() => page.locator('.strip img').count()).toBeGreaterThan(3);
    const strip = await tileFacts();
    expect(strip.tiles.length).toBeGreaterThan(3);
    for (const [i, tile] of strip.tiles.entries()) {
      expect(tile.naturalAspect).toBeCloseTo(320 / 180, 1);
      expect(tile.height).toBe(strip.height);
      expect(Math.abs(tile.width / tile.height - 320 / 180)).toBeLessThan(0.03);
      if (i > 0) expect(tile.left).toBe(strip.tiles[i - 1]!.left + strip.tiles[i - 1]!.width); // no seams
    }
    expect(strip.tiles[0]!.left).toBe(0);
    expect(strip.tiles.at(-1)!.left + strip.tiles.at(-1)!.width).toBeGreaterThanOrEqual(strip.width);
    await poll(() => page.locator('.item .thumb img').count()).toBe(2);
    await poll(() => page.locator('video').evaluate((v: HTMLVideoElement) => v.readyState)).toBeGreaterThan(
      0,
    );
  });

  it('selects a clip by dragging on the timeline and asks about it: the answer streams in', async () => {
    const box = (await page.getByTestId('strip').boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.1, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 10 });
    await page.mouse.up();
    const chip = await page.getByTestId('selection').textContent();
    expect(chip).toMatch(/Clip 0:00\.[56] – 0:03\.[56]/);

    await page.fill('#question', 'What color is the circle?');
    await page.keyboard.press('Enter');
    await poll(() => answers().first().getAttribute('data-status')).toBe('answering');
    await poll(() => answers().first().getAttribute('data-status'), { timeout: 60_000 }).toMatch(
      /eos|length/,
    );
    const answer = (await answers().first().textContent())!.trim().toLowerCase();
    expect(answer).toContain('red'); // the built-in model answers its own domain right (models/README.md)
    expect(COLOR_WORDS.filter((c) => answer.includes(c))).toEqual(['red']);
    // Each answer shows its frames with timestamps; clicking one seeks the player there.
    const frames = page.getByRole('list', { name: 'Frames the model saw' }).getByRole('button');
    expect(await frames.count()).toBeGreaterThan(1);
    const label = (await frames.nth(2).getAttribute('aria-label'))!;
    await frames.nth(2).click();
    const t = Number(/0:0(\d\.\d)/.exec(label)![1]);
    await poll(() => page.locator('video').evaluate((v: HTMLVideoElement) => v.currentTime)).toBeCloseTo(
      t,
      0,
    );
    await page.screenshot({ path: path.join(SHOTS, '2-answer.png') });
  });

  it('asks a follow-up in the same conversation', async () => {
    await page.fill('#question', 'What color is the background?');
    await page.getByRole('button', { name: 'Ask', exact: true }).click();
    await poll(() => answers().count()).toBe(2);
    await poll(() => answers().nth(1).getAttribute('data-status'), { timeout: 60_000 }).toMatch(/eos|length/);
    expect(await page.getByTestId('new-conversation-note').count()).toBe(0);
  });

  it('stops an answer in the middle', async () => {
    await page.fill('#question', 'Tell me a long story about everything in this clip.');
    await page.keyboard.press('Enter');
    const stop = page.getByRole('button', { name: 'Stop the answer' });
    await stop.click();
    await poll(() => answers().nth(2).getAttribute('data-status')).toBe('cancelled');
    expect(await page.getByTestId('conversation').getByTestId('turn').nth(2).textContent()).toContain(
      'Stopped',
    );
    await poll(() => page.getByRole('button', { name: 'Ask', exact: true }).isVisible()).toBe(true);
  });

  it('says that a changed selection starts a new conversation', async () => {
    await page.getByTestId('strip').focus();
    await page.keyboard.press('End');
    await page.keyboard.press('o'); // out point at the end…
    await page.keyboard.press('Home');
    await page.keyboard.press('i'); // …in point at the start
    expect(await page.getByTestId('selection').textContent()).toMatch(/0:00\.0 – 0:06\.0/);
    await poll(() => page.getByTestId('new-conversation-note').isVisible()).toBe(true);
    await page.screenshot({ path: path.join(SHOTS, '3-new-selection.png') });
  });

  it('keeps the history of the video across a reload, with markers on the timeline', async () => {
    await page.reload();
    await page.getByRole('button', { name: /^red-circle\.mp4/ }).click();
    const item = page.getByTestId('history-item').first();
    await poll(() => item.textContent()).toContain('What color is the circle?');
    await item.locator('summary').click();
    await poll(() => item.textContent()).toContain('What color is the background?');
    expect(await page.locator('.marker').count()).toBeGreaterThan(0);
    await page.screenshot({ path: path.join(SHOTS, '4-history-after-reload.png') });
  });

  it('zooms around the selection (+ and − keys), its lanes and tiles kept inside the timeline', async () => {
    const strip = page.getByTestId('strip');
    const box = (await strip.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.84, box.y + box.height / 2, { steps: 10 });
    await page.mouse.up();
    expect(await page.getByTestId('selection').textContent()).toMatch(/Clip 0:0[23]\.\d – 0:05\.\d/);
    await strip.focus();
    await page.keyboard.press('Home'); // the playhead at 0: zooming around it would lose the selection
    await poll(() => page.locator('video').evaluate((v: HTMLVideoElement) => v.currentTime)).toBe(0);
    const zoomLevel = page.getByLabel('Zoom level');
    for (const [key, level] of [
      ['+', '2.0×'],
      ['+', '4.0×'],
      ['-', '2.0×'],
      ['+', '4.0×'],
    ] as const) {
      await page.keyboard.press(key);
      await poll(() => zoomLevel.textContent()).toBe(level);
      const b = await timelineBoxes();
      // The selection (2 s) stays in view: wholly at 2× (a 3 s view), its middle at 4× (a 1.5 s view).
      const sel = b.selection!;
      if (level === '2.0×') {
        expect(sel.left).toBeGreaterThanOrEqual(b.strip.left);
        expect(sel.right).toBeLessThanOrEqual(b.strip.right);
      } else {
        const mid = (sel.left + sel.right) / 2;
        expect(mid).toBeGreaterThan(b.strip.left);
        expect(mid).toBeLessThan(b.strip.right);
        // The selection fills the view: nothing of the strip is shaded as outside it.
        for (const shade of b.shades)
          expect(Math.min(shade.right, b.strip.right) - Math.max(shade.left, b.strip.left)).toBeLessThan(1);
      }
      // The earlier question (0.5–3.5 s) runs off the view's left edge: its marker is cut at the timeline's edge.
      expect(b.lanes.length).toBeGreaterThan(0);
      for (const lane of b.lanes) {
        expect(lane.left).toBeGreaterThanOrEqual(b.timeline.left - 0.5);
        expect(lane.right).toBeLessThanOrEqual(b.timeline.right + 0.5);
      }
    }
    // Zoomed tiles are whole frames too, and each gets its own frame (at 4× a tile is about 0.25 s, 10 fps).
    await poll(async () => {
      const { tiles } = await tileFacts();
      return new Set(tiles.map((t) => t.picture)).size === tiles.length;
    }).toBe(true);
    const zoomed = await tileFacts();
    for (const tile of zoomed.tiles) {
      expect(tile.height).toBe(zoomed.height);
      expect(Math.abs(tile.width / tile.height - 320 / 180)).toBeLessThan(0.03);
    }
    for (const [width, height] of [
      [1024, 700],
      [1440, 900],
    ] as const)
      for (const theme of ['light', 'dark'] as const) {
        await page.setViewportSize({ width, height });
        await page.emulateMedia({ colorScheme: theme });
        await poll(async () => {
          const b = await timelineBoxes();
          return b.lanes.every((l) => l.left >= b.timeline.left - 0.5 && l.right <= b.timeline.right + 0.5);
        }).toBe(true);
        await page.screenshot({ path: path.join(SHOTS, `8-zoomed-${width}x${height}-${theme}.png`) });
      }
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.emulateMedia({ colorScheme: 'light' });
    await page.keyboard.press('0');
    await poll(() => zoomLevel.textContent()).toBe('1.0×');
  });

  it('shows a corrupt file’s error while the rest keeps working', async () => {
    await page.getByRole('button', { name: /^broken-download\.mp4/ }).click();
    await poll(() => page.getByRole('alert').first().textContent()).toMatch(/cannot be shown/);
    await page.screenshot({ path: path.join(SHOTS, '5-corrupt-file.png') });
    await page.getByRole('button', { name: /^green-square\.mp4/ }).click();
    await poll(() => page.locator('.strip img').count()).toBeGreaterThan(3);
  });

  it('shows the model, settings and privacy facts, in light and dark', async () => {
    await page.getByRole('button', { name: 'Settings and model' }).click();
    const dialog = page.getByTestId('settings');
    await poll(() => dialog.getByTestId('model-statement').textContent()).toMatch(/never audio/);
    expect(await dialog.getByTestId('data-dir').textContent()).toBe(path.join(dir, 'data'));
    // The form shows the saved settings (the defaults, from main: the renderer keeps no copy of them).
    const saved = running.service.store.data.settings;
    expect(await dialog.locator('#max-tokens').inputValue()).toBe(String(saved.maxNewTokens));
    expect(await dialog.locator('#sampling').inputValue()).toBe(saved.sampling);
    // What this build can use, and what the model runs on, said without contradiction.
    await poll(() => dialog.getByTestId('build-providers').textContent()).toMatch(/^CPU\b/);
    const runsOn = (await dialog.getByTestId('runs-on').textContent())!;
    expect(runsOn.trim()).toMatch(/^CPU($| \()/); // "CPU (CUDA … is not part of this build)"
    expect(runsOn).not.toMatch(/tried|not available/);
    // The way to a real model is the doc's path, as code (nothing leaves the machine).
    expect(await dialog.getByTestId('model-statement').locator('code').textContent()).toBe(
      'docs/real-models.md',
    );
    await page.screenshot({ path: path.join(SHOTS, '6-settings.png') });
    await dialog.getByText('Dark', { exact: true }).click();
    await poll(() => page.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');
    await page.keyboard.press('Escape');
    await page.screenshot({ path: path.join(SHOTS, '7-dark.png') });
  });

  it('broke no Content-Security-Policy rule and threw no page errors', () => {
    expect(cspViolations).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
