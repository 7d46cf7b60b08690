/**
 * Many conversations at once, over the real service and the built-in model: none is released before its first
 * question, idle ones go least recently used first, one released before its first question is reopened without
 * the caller noticing, and one released after it says why.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COLORS, makeShapesClip } from '../../test/fixtures/clips.ts';
import { LoupeError } from '../errors.ts';
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

  it('releases the least recently used idle conversation, and one with turns says why when asked', async () => {
    const first = await service.openConversation({ videoId: videoIds[0]!, from: 0, to: 2 });
    await askOnce(first.conversationId);
    const others = [];
    for (let i = 0; i < 8; i++)
      others.push(await service.openConversation({ videoId: videoIds[1]!, from: 0, to: 2 }));
    const error = await askOnce(first.conversationId).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LoupeError);
    expect(error).toMatchObject({ code: 'NOT_FOUND', details: { reason: 'evicted' } });
    expect((error as LoupeError).message).toMatch(/make room for newer ones.*saved in the history/);
    // The newest are still live and answer; an id never opened is "closed", not "evicted".
    expect((await askOnce(others.at(-1)!.conversationId))?.type).toBe('done');
    await expect(askOnce('no-such-conversation')).rejects.toMatchObject({ details: { reason: 'closed' } });
  });
});
