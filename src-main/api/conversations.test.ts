/**
 * Many conversations at once, over the real service and the built-in model: none is released before its first
 * question, idle ones go least recently used first, and one released (by eviction or a restart) is reopened
 * from its stored turns without the caller noticing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COLORS, makeShapesClip } from '../../test/fixtures/clips.ts';
import { Services } from '../services.ts';
import { LoupeService } from './service.ts';

describe('live conversations', () => {
  let dir: string;
  let service: LoupeService;
  const videoIds: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-conversations-'));
    const colors = [COLORS.red, COLORS.green, COLORS.blue, COLORS.yellow];
    for (const [i, color] of colors.entries()) {
      const clip = await makeShapesClip(path.join(dir, 'clips'), {
        name: `clip-${i}.mp4`,
        width: 96,
        height: 64,
        duration: 2,
        fps: 5,
        codec: 'h264',
        background: COLORS.white,
        shapes: [{ kind: 'circle', color, radius: 0.25, x0: 0.5, y0: 0.5 }],
      });
      videoIds.push(
        (await (service ??= await open()).addPaths({ paths: [clip], recursive: false })).added[0]!.id,
      );
    }
    await service.setSettings({ frames: 2, maxNewTokens: 3 });
  }, 120_000);

  const open = () =>
    LoupeService.create(new Services({ dataDir: path.join(dir, 'data'), threads: 1 }), {
      mediaUrl: (id) => id,
    });

  afterAll(async () => {
    service?.dispose();
    await service?.services.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  const askOnce = async (conversationId: string) => {
    const events = [];
    for await (const e of service.ask(
      { conversationId, question: 'What color is the circle?' },
      new AbortController().signal,
    ))
      events.push(e);
    return events.at(-1);
  };

  it('answers twelve conversations opened at once (three rounds over four clips), each asked once', async () => {
    const opened = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        service.openConversation({ videoId: videoIds[i % 4]!, from: 0, to: 2 }),
      ),
    );
    const answers = await Promise.all(opened.map((o) => askOnce(o.conversationId)));
    expect(answers.map((a) => a?.type)).toEqual(Array(12).fill('done'));
  });

  it('releases the least recently used idle conversation, and reopens one with turns from them when asked', async () => {
    const first = await service.openConversation({ videoId: videoIds[0]!, from: 0, to: 2 });
    const answered = await askOnce(first.conversationId);
    expect(answered).toMatchObject({ type: 'done', firstWord: { totalMs: expect.any(Number) } });
    const others = [];
    for (let i = 0; i < 8; i++)
      others.push(await service.openConversation({ videoId: videoIds[1]!, from: 0, to: 2 }));
    // Released to keep eight live: asking again reopens it on the same clip, with its first turn prefilled.
    const again = await askOnce(first.conversationId);
    expect(again?.type).toBe('done');
    if (again?.type !== 'done') return;
    expect(again.timings.prefillTokens).toBeGreaterThan(
      answered?.type === 'done' ? answered.timings.prefillTokens : Infinity,
    );
    const { conversations } = await service.history({ videoId: videoIds[0]! });
    expect(conversations.find((c) => c.id === first.conversationId)?.turns).toHaveLength(2);
    // The newest are still live and answer; an id never opened is "closed".
    expect((await askOnce(others.at(-1)!.conversationId))?.type).toBe('done');
    await expect(askOnce('no-such-conversation')).rejects.toMatchObject({ details: { reason: 'closed' } });
  });

  it('continues a stored conversation after a restart, and reports where the first word’s time went', async () => {
    const opened = await service.openConversation({ videoId: videoIds[2]!, from: 0, to: 2 });
    const first = await askOnce(opened.conversationId);
    expect(first?.type).toBe('done');
    if (first?.type !== 'done') return;
    const fw = first.firstWord!;
    expect(fw.samplingMs + fw.visionMs).toBeGreaterThan(0); // this clip's frames were not cached
    expect(fw.prefillMs).toBe(first.timings.prefillMs);
    const parts = fw.samplingMs + fw.visionMs + fw.prefillMs + fw.firstTokenMs + fw.waitMs;
    expect(parts).toBeGreaterThanOrEqual(fw.totalMs - 1e-6);
    // (the 3 tokens set above are below what a library file may hold: 8 is the least that reads back)
    await service.setSettings({ maxNewTokens: 8 });
    service.dispose();
    await service.services.dispose();
    service = await open();
    const again = await askOnce(opened.conversationId);
    expect(again?.type).toBe('done');
    const { conversations } = await service.history({ videoId: videoIds[2]! });
    expect(conversations.find((c) => c.id === opened.conversationId)?.turns).toHaveLength(2);
  });
});
