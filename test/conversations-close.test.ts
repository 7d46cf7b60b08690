/**
 * Whoever opens a conversation closes it: the model worker's KV caches come back when conversations close, not
 * when garbage collection happens to run. The engine's close(), an ask left early without abort, and the
 * conversations API's eviction past its limit, counted by the worker itself (`workerStats`).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoupeService } from '../src-main/api/service.ts';
import { leakedConversationCount, liveWorkerCount, type Engine } from '../src-main/model/engine.ts';
import { Services } from '../src-main/services.ts';
import { COLORS, makeShapesClip } from './fixtures/clips.ts';
import { tempDir } from './helpers.ts';

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const e of stream) out.push(e);
  return out;
}

describe('closing conversations', () => {
  let services: Services;
  let service: LoupeService;
  let engine: Engine;
  let videoId: string;
  let folder: string;

  beforeAll(async () => {
    const dir = await tempDir('loupe-close-');
    folder = path.join(dir, 'clips');
    await mkdir(folder);
    const clip = await makeShapesClip(folder, {
      name: 'circle.mp4',
      width: 160,
      height: 90,
      duration: 2,
      fps: 10,
      codec: 'h264',
      background: COLORS.blue,
      shapes: [{ kind: 'circle', color: COLORS.yellow, radius: 0.2, x0: 0.5, y0: 0.5 }],
    });
    services = new Services({ dataDir: path.join(dir, 'data'), threads: 2, featureCache: false });
    service = await LoupeService.create(services, { mediaUrl: (id) => `/media/${id}` });
    videoId = (await service.addPaths({ paths: [clip], recursive: false })).added[0]!.id;
    engine = await services.engine();
  });
  afterAll(async () => {
    service?.dispose();
    await services?.dispose();
    expect(liveWorkerCount()).toBe(0);
  });

  it('close() frees the worker cache at once; an ask left early without abort leaves the conversation usable', async () => {
    const [frame] = await engine.encodeImages([new Float32Array(3 * engine.manifest.vision.imageSize ** 2)]);
    const opened = Array.from({ length: 5 }, () =>
      engine.startConversation({ kind: 'image', frames: [frame!] }),
    );
    for (const c of opened) await collect(c.ask('How many shapes are there?', { maxNewTokens: 4 }));
    expect(await engine.workerStats()).toMatchObject({ openConversations: 5, liveKvCaches: 5 });
    for (const c of opened) c.close();
    expect(await engine.workerStats()).toMatchObject({ openConversations: 0, liveKvCaches: 0 });

    const c = engine.startConversation({ kind: 'image', frames: [frame!] });
    // the consumer leaves after the first token, without an AbortSignal: the worker had decoded ahead and would
    // wait for a reader forever
    for await (const e of c.ask('Describe the video.', { maxNewTokens: 24, ignoreEos: true })) {
      expect(e.type).toBe('token');
      break;
    }
    const next = await collect(c.ask('How many shapes are there?', { maxNewTokens: 4 }));
    expect(next.at(-1)!.type).toBe('done');
    await using disposable = engine.startConversation({ kind: 'image', frames: [frame!] });
    await collect(disposable.ask('What color is the circle?', { maxNewTokens: 2 }));
    c.close();
    c.close(); // idempotent
    expect(await engine.workerStats()).toMatchObject({ openConversations: 1, liveKvCaches: 1 });
  });

  it('the conversations API keeps at most 8 caches live, closing what it evicts, and closing all frees them all', async () => {
    // the disposable of the test before is gone by now
    expect(await engine.workerStats()).toMatchObject({ openConversations: 0, liveKvCaches: 0 });
    for (let i = 0; i < 11; i++) {
      const { conversationId } = await service.openConversation({ videoId, from: 0, to: 2 });
      const events = await collect(
        service.ask({ conversationId, question: 'How many shapes are there?' }, new AbortController().signal),
      );
      expect(events.at(-1)!.type).toBe('done');
      const stats = (await engine.workerStats())!;
      expect(stats.liveKvCaches).toBe(Math.min(i + 1, 8));
      expect(service.conversations.liveCount).toBe(Math.min(i + 1, 8));
    }
    service.conversations.closeAll();
    expect(await engine.workerStats()).toMatchObject({ openConversations: 0, liveKvCaches: 0 });
    expect(leakedConversationCount()).toBe(0);
  });

  it('two batch starts at once: one runs, the other is refused with USAGE; the batch closes what it opened', async () => {
    const input = { folder, recursive: false, prompts: ['Describe the video.'], segmentSec: 1 };
    const starts = await Promise.allSettled([service.startBatch(input), service.startBatch(input)]);
    const ran = starts.filter((s) => s.status === 'fulfilled');
    const refused = starts.filter((s) => s.status === 'rejected');
    expect([ran.length, refused.length]).toEqual([1, 1]);
    expect(refused[0]!.reason).toMatchObject({ code: 'USAGE' });
    const { batchId } = ran[0]!.value;
    let ended = '';
    for await (const e of service.batchEvents({ batchId }, new AbortController().signal))
      if (e.type === 'end') ended = e.state;
    expect(ended).toBe('done');
    const { results } = await service.batchResults({ batchId });
    expect(results[0]!.segments).toHaveLength(2); // one conversation per segment, each closed
    expect(await engine.workerStats()).toMatchObject({ openConversations: 0, liveKvCaches: 0 });
  });
});
