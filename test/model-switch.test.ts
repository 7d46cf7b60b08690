/**
 * The model lifecycle: switching packs during an answer and during a batch. A switch waits for the work holding
 * the model (a counted lease), then disposes its sessions and worker; nothing crashes, nothing leaks, and the
 * new model answers.
 */
import { cp, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoupeService } from '../src-main/api/service.ts';
import { liveWorkerCount } from '../src-main/model/engine.ts';
import { builtinPackDir } from '../src-main/paths.ts';
import { Services } from '../src-main/services.ts';
import { COLORS, makeShapesClip } from './fixtures/clips.ts';
import { tempDir } from './helpers.ts';

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const e of stream) out.push(e);
  return out;
}

describe('switching models', () => {
  let dir: string;
  let folder: string;
  let otherPack: string;
  let services: Services;
  let service: LoupeService;
  let videoId: string;

  beforeAll(async () => {
    dir = await tempDir('loupe-switch-');
    folder = path.join(dir, 'clips');
    await mkdir(folder);
    const clips = [];
    for (const [name, color] of [
      ['red.mp4', COLORS.red],
      ['blue.mp4', COLORS.blue],
    ] as const)
      clips.push(
        await makeShapesClip(folder, {
          name,
          width: 160,
          height: 90,
          duration: 2,
          fps: 10,
          codec: 'h264',
          background: COLORS.white,
          shapes: [{ kind: 'circle', color, radius: 0.2, x0: 0.5, y0: 0.5 }],
        }),
      );
    otherPack = path.join(dir, 'pack-copy'); // the same model at another path: a real switch
    await cp(builtinPackDir(), otherPack, { recursive: true });
    services = new Services({ dataDir: path.join(dir, 'data'), threads: 2, featureCache: false });
    service = await LoupeService.create(services, { mediaUrl: (id) => `/media/${id}` });
    videoId = (await service.addPaths({ paths: [clips[0]!], recursive: false })).added[0]!.id;
  });
  afterAll(async () => {
    service?.dispose();
    await services?.dispose();
    expect(liveWorkerCount()).toBe(0);
  });

  it('during an answer: the answer ends (stopped or done), the old model is disposed after it, the new one answers', async () => {
    const old = await services.engine();
    const before = liveWorkerCount();
    const { conversationId } = await service.openConversation({ videoId, from: 0, to: 2 });
    const controller = new AbortController();
    let switching: Promise<unknown> | null = null;
    const events = [];
    for await (const e of service.ask(
      { conversationId, question: 'What color is the circle?' },
      controller.signal,
    )) {
      events.push(e);
      switching ??= service.selectModel({ dir: otherPack });
    }
    expect(['cancelled', 'done']).toContain(events.at(-1)!.type);
    await switching;
    expect(old.workerRunning).toBe(false);
    expect(services.isCurrent(old)).toBe(false);
    expect(liveWorkerCount()).toBe(before);

    const next = await service.openConversation({ videoId, from: 0, to: 2 });
    const answer = await collect(
      service.ask(
        { conversationId: next.conversationId, question: 'What color is the circle?' },
        controller.signal,
      ),
    );
    expect(answer.at(-1)).toMatchObject({ type: 'done', text: 'red' });
  });

  it('during a batch: selecting a model is refused while it runs; a pack switch waits for the batch, which completes', async () => {
    const old = await services.engine();
    const { batchId } = await service.startBatch({ folder, recursive: false, prompts: [], segmentSec: null });
    await expect(service.selectModel({ dir: builtinPackDir() })).rejects.toMatchObject({ code: 'USAGE' });
    let ended = '';
    let holding = () => {};
    const modelInUse = new Promise<void>((resolve) => (holding = resolve));
    const watching = (async () => {
      for await (const e of service.batchEvents({ batchId }, new AbortController().signal)) {
        // a clip being worked on: the batch holds its model lease
        if (e.type === 'clip' && e.clip.status.state !== 'queued') holding();
        if (e.type === 'end') ended = e.state;
      }
    })();
    await modelInUse;
    await services.setPackDir(builtinPackDir());
    // the switch resolved only once the batch had given the model back: every clip answered, on the old model
    expect(old.workerRunning).toBe(false);
    const atSwitch = await service.batchResults({ batchId });
    expect(atSwitch.results).toHaveLength(2);
    expect(atSwitch.results.every((r) => r.error === null)).toBe(true);
    await watching;
    expect(ended).toBe('done');
    const results = await service.batchResults({ batchId });
    expect(JSON.stringify(results)).not.toContain('MODEL_RUNTIME');
    // and the next model loads and serves
    const next = await service.openConversation({ videoId, from: 0, to: 2 });
    const answer = await collect(
      service.ask(
        { conversationId: next.conversationId, question: 'What color is the circle?' },
        new AbortController().signal,
      ),
    );
    expect(answer.at(-1)).toMatchObject({ type: 'done', text: 'red' });
    expect(liveWorkerCount()).toBe(1);
  });
});
