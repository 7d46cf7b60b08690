/**
 * End to end, a newcomer's first ten minutes (issue 25), in web mode (real services, the built-in model, ffmpeg)
 * through Chromium with playwright-core: path completion and the add messages, answers kept in view, the first
 * word's time and its parts, an answer stopped before its first word, continuing an earlier conversation, a
 * video's conversation and Find text when coming back to it, and undoing a removal. Screenshots at 1024×700 and
 * 1440×900, light and dark, go to test/screenshots/newcomer-*.png.
 *
 * Answers are paced (a short pause before each event, through the service's `openClip` seam) and an answer can
 * be held before its first word until Stop, so that Stop lands there whatever the machine's speed.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClipSession } from '../src-main/api/service.ts';
import { serve, type RunningWeb } from '../src-main/cli/serve.ts';
import type { AnswerEvent } from '../src-main/model/engine.ts';
import { ClipConversation, earlierMessages } from '../src-main/qa/ask.ts';
import { LoupeError } from '../src-main/errors.ts';
import { COLORS, makeShapesClip } from './fixtures/clips.ts';
import { launchChromium, openPage, poll } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHOTS = path.join(ROOT, 'test', 'screenshots');
const TOKEN_PAUSE_MS = 40;

const pause = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const stop = () => (clearTimeout(timer), resolve());
    const timer = setTimeout(() => (signal?.removeEventListener('abort', stop), resolve()), ms);
    signal?.addEventListener('abort', stop, { once: true });
  });

/** Set to hold the next answer before its first word until it is stopped. */
let holdFirstWord = false;

function held(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!signal || signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** The real conversation, paced; `holdFirstWord` keeps an answer's first event back until Stop. */
function pacedClip(real: ClipConversation): ClipSession {
  return {
    clip: real.clip,
    async *ask(question, options): AsyncGenerator<AnswerEvent> {
      const hold = holdFirstWord;
      holdFirstWord = false;
      let first = true;
      for await (const event of real.ask(question, options)) {
        if (first && hold) {
          await held(options.signal);
          throw new LoupeError('CANCELLED', 'Stopped.'); // as the engine does when stopped before a token
        }
        first = false;
        await pause(TOKEN_PAUSE_MS, options.signal);
        yield event;
      }
    },
    close: () => real.close(),
  };
}

describe('a newcomer’s first ten minutes, in web mode', () => {
  let dir: string;
  let clips: string;
  let running: RunningWeb;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-e2e-newcomer-'));
    clips = path.join(dir, 'clips');
    await mkdir(path.join(clips, 'sub'), { recursive: true });
    await mkdir(SHOTS, { recursive: true });
    await writeFile(path.join(clips, 'notes.txt'), 'not a video');
    await Promise.all([
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
      makeShapesClip(clips, {
        name: 'green-square.mp4',
        width: 320,
        height: 180,
        duration: 3,
        fps: 10,
        codec: 'h264',
        background: COLORS.black,
        shapes: [{ kind: 'square', color: COLORS.green, radius: 0.2, x0: 0.5, y0: 0.5 }],
      }),
    ]);
    running = await serve({
      dataDir: path.join(dir, 'data'),
      port: 0,
      log: null,
      openClip: async (services, req, earlier = []) => {
        const engine = await services.engine();
        const extractor = await services.extractor();
        return pacedClip(
          await ClipConversation.open(engine, extractor, req, earlierMessages(engine, earlier)),
        );
      },
    });
    browser = await launchChromium();
    page = await openPage(
      browser,
      { viewport: { width: 1024, height: 700 }, colorScheme: 'light' },
      pageErrors,
    );
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await running?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const answers = () => page.getByTestId('conversation').getByTestId('answer');
  const items = () => page.locator('.library .list [role="listitem"]');
  const suggestions = () =>
    page
      .getByTestId('path-suggestions')
      .locator('option')
      .evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
  const shot = async (name: string) => {
    for (const [w, h] of [
      [1024, 700],
      [1440, 900],
    ] as const)
      for (const scheme of ['light', 'dark'] as const) {
        await page.setViewportSize({ width: w, height: h });
        await page.emulateMedia({ colorScheme: scheme });
        await page.screenshot({ path: path.join(SHOTS, `newcomer-${name}-${w}-${scheme}.png`) });
      }
    await page.setViewportSize({ width: 1024, height: 700 });
    await page.emulateMedia({ colorScheme: 'light' });
  };
  /** The element's box lies inside the Ask panel's scrolling area (what the person sees of it). */
  const inAskView = (testId: string, nth: number) =>
    page.evaluate(
      ([id, n]) => {
        const scroller = document.querySelector('.ask .scroll')!;
        const el = document.querySelectorAll(`[data-testid="conversation"] [data-testid="${id}"]`)[
          n as number
        ];
        if (!el) return 'missing';
        const v = scroller.getBoundingClientRect();
        const r = el.getBoundingClientRect();
        return r.top >= v.top - 1 && r.bottom <= v.bottom + 1
          ? 'visible'
          : `outside ${r.top}-${r.bottom} of ${v.top}-${v.bottom}`;
      },
      [testId, nth] as const,
    );
  async function ask(question: string) {
    // the previous answer has ended (Ask is back in place of Stop)
    await poll(() => page.getByRole('button', { name: 'Stop the answer' }).count()).toBe(0);
    await page.fill('#question', question);
    await page.keyboard.press('Enter');
  }

  it('suggests folders and videos (never other files) for a path being typed', async () => {
    await page.goto(running.web.openUrl);
    await poll(() => page.getByRole('button', { name: 'Make a sample clip' }).isVisible()).toBe(true);
    await page.locator('#add-path').pressSequentially(path.join(dir, 'cl'));
    await poll(suggestions).toEqual([clips + path.sep]);
    await page.locator('#add-path').fill('');
    await page.locator('#add-path').pressSequentially(clips + path.sep);
    await poll(suggestions).toEqual([
      path.join(clips, 'sub') + path.sep,
      path.join(clips, 'green-square.mp4'),
      path.join(clips, 'red-circle.mp4'),
    ]);
  });

  it('says what was not added over the list, without moving it, and the message goes', async () => {
    await page.fill('#add-path', clips);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await poll(() => items().count()).toBe(2);
    const top = (await items().first().boundingBox())!.y;
    // a file that is not a video
    await page.fill('#add-path', path.join(clips, 'notes.txt'));
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    const messages = page.getByTestId('add-messages');
    await poll(() => messages.textContent()).toMatch(/notes\.txt/);
    expect((await items().first().boundingBox())!.y).toBe(top);
    await shot('add-message');
    await page.getByRole('button', { name: 'Dismiss these messages' }).click();
    await poll(() => messages.count()).toBe(0);
    // already in the library: the message goes by itself after a while
    await page.fill('#add-path', path.join(clips, 'red-circle.mp4'));
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await poll(() => messages.textContent()).toMatch(/Already in the library/);
    expect((await items().first().boundingBox())!.y).toBe(top);
    await poll(() => messages.count()).toBe(0);
  });

  it('answers, with the time from Ask to the first word and where it went', async () => {
    await page.getByRole('button', { name: /^red-circle\.mp4/ }).click();
    await poll(() => page.locator('.strip img').count()).toBeGreaterThan(2);
    await ask('What color is the circle?');
    await poll(() => answers().first().getAttribute('data-status')).toMatch(/eos|length/);
    expect((await answers().first().textContent())!.toLowerCase()).toContain('red');
    const details = page.getByTestId('answer-details').first();
    expect(await details.locator('summary').textContent()).toMatch(/first word \d+\.\d\d s after Ask/);
    await details.locator('summary').click();
    const parts = await details.getByRole('list').textContent();
    // a fresh data folder: the frames were sampled and encoded for this question
    expect(parts).toMatch(/frame sampling/);
    expect(parts).toMatch(/vision encoder/);
    expect(parts).toMatch(/prefill/);
    expect(parts).toMatch(/to the app and back/);
  });

  it('keeps a new answer in view with an earlier conversation expanded below', async () => {
    // a clip of the video: a new conversation; the first goes under "Earlier on this video"
    const box = (await page.getByTestId('strip').boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.1, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 10 });
    await page.mouse.up();
    await ask('What shape is it?');
    await poll(() => answers().first().getAttribute('data-status')).toMatch(/eos|length/);
    const earlier = page.getByTestId('history-item').first();
    await earlier.locator('summary').click();
    await poll(() => earlier.textContent()).toContain('What color is the circle?');
    for (const [i, q] of ['Where is it?', 'What is the background?', 'Is it moving?'].entries()) {
      await ask(q);
      await poll(() =>
        answers()
          .nth(i + 1)
          .getAttribute('data-status'),
      ).toMatch(/eos|length/);
      await poll(() => inAskView('turn', i + 1)).toBe('visible');
    }
    await shot('answer-kept-in-view');
  });

  it('says in one line that an answer was stopped before its first word', async () => {
    holdFirstWord = true;
    await ask('Describe every frame in detail.');
    await page.getByRole('button', { name: 'Stop the answer' }).click();
    const last = answers().nth(4);
    await poll(() => last.getAttribute('data-status')).toBe('cancelled');
    expect((await last.textContent())!.trim()).toBe('Stopped before the first word');
    await poll(() => inAskView('turn', 4)).toBe('visible');
    await shot('stopped-before-first-word');
  });

  it('continues an earlier conversation', async () => {
    const earlier = page.getByTestId('history-item').filter({ hasText: 'What color is the circle?' });
    if (!(await earlier.evaluate((d) => (d as HTMLDetailsElement).open)))
      await earlier.locator('summary').click();
    await earlier.getByRole('button', { name: 'Continue' }).click();
    await poll(() => page.getByTestId('conversation').getByTestId('turn').count()).toBe(1);
    expect(await page.getByTestId('conversation').textContent()).toContain('What color is the circle?');
    expect(await page.getByTestId('new-conversation-note').count()).toBe(0); // its clip is selected
    await ask('And the background?');
    await poll(() => answers().nth(1).getAttribute('data-status')).toMatch(/eos|length/);
    await poll(() => inAskView('turn', 1)).toBe('visible');
    // the other conversation is now the earlier one
    await poll(() => page.getByTestId('history-item').first().textContent()).toContain('What shape is it?');
  });

  it('keeps the conversation and the Find text of a video when coming back to it', async () => {
    await page.getByTestId('find-query').fill('a red circle');
    await page.getByRole('button', { name: /^green-square\.mp4/ }).click();
    await poll(() => page.getByTestId('find-query').inputValue()).toBe('');
    await poll(() => page.getByTestId('conversation').count()).toBe(0);
    await page.getByTestId('find-query').fill('a green square');
    await page.getByRole('button', { name: /^red-circle\.mp4/ }).click();
    await poll(() => page.getByTestId('find-query').inputValue()).toBe('a red circle');
    await poll(() => page.getByTestId('conversation').getByTestId('turn').count()).toBe(2);
    expect(await page.getByTestId('new-conversation-note').count()).toBe(0);
    // still answerable, not a read-only card
    await ask('Is it still red?');
    await poll(() => answers().nth(2).getAttribute('data-status')).toMatch(/eos|length/);
    await page.getByRole('button', { name: /^green-square\.mp4/ }).click();
    await poll(() => page.getByTestId('find-query').inputValue()).toBe('a green square');
  });

  it('removes a video with a few seconds to undo it, then for good', async () => {
    const remove = page.getByRole('button', { name: 'Remove green-square.mp4 from the library' });
    await remove.click();
    const toast = page.getByTestId('undo-remove');
    await poll(() => toast.textContent()).toContain('green-square.mp4');
    await poll(() => items().count()).toBe(1);
    await shot('undo-remove');
    // it was the video shown: the player let go of it
    await poll(() => page.getByTestId('find-query').inputValue()).toBe('');
    await toast.getByRole('button', { name: 'Undo' }).click();
    await poll(() => items().count()).toBe(2);
    await poll(() => page.getByTestId('find-query').inputValue()).toBe('a green square'); // shown again
    expect(await toast.count()).toBe(0);
    // not undone: the removal is made when the toast goes
    await remove.click();
    await poll(() => toast.count()).toBe(0);
    const listed = async () => {
      const reply = await fetch(new URL('/api/call/listVideos', running.web.url), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Loupe-Token': running.web.token },
        body: '{}',
      });
      const { value } = (await reply.json()) as { value: { videos: { name: string }[] } };
      return value.videos.map((v) => v.name);
    };
    await poll(listed).toEqual(['red-circle.mp4']);
    await page.reload();
    await poll(() => items().count()).toBe(1);
  });

  it('threw no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
