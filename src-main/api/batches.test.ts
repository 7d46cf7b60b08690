/** Batches through the service: run, quit mid-way, reopen (interrupted), resume from the results file. */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../test/helpers.ts';
import { Services } from '../services.ts';
import type { BatchEvent } from './contract.ts';
import { idFor, LoupeService } from './service.ts';

async function finished(service: LoupeService, batchId: string): Promise<string> {
  const controller = new AbortController();
  let state = '';
  for await (const e of service.batchEvents({ batchId }, controller.signal))
    if (e.type === 'end') state = e.state;
  return state;
}

/** Read a batch's events (its snapshot first) until one shows `what`; the batch ending first fails. */
async function untilEvent(
  service: LoupeService,
  batchId: string,
  seen: (e: BatchEvent) => boolean,
  what: string,
): Promise<void> {
  const controller = new AbortController();
  try {
    for await (const e of service.batchEvents({ batchId }, controller.signal)) {
      if (seen(e)) return;
      if (e.type === 'end') throw new Error(`The batch ended (${e.state}) before ${what}.`);
    }
    throw new Error(`The batch's events stopped before ${what}.`);
  } finally {
    controller.abort();
  }
}

describe('batches started from the app', () => {
  let dir: string;
  let folder: string;
  const open = async () => {
    const services = new Services({ dataDir: path.join(dir, 'data'), threads: 2 });
    return { services, service: await LoupeService.create(services, { mediaUrl: (id) => `/media/${id}` }) };
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-batches-'));
    folder = path.join(dir, 'clips');
    await mkdir(folder);
    for (const [name, color] of [
      ['one.mp4', 'red'],
      ['two.mp4', 'blue'],
    ] as const)
      execFileSync('ffmpeg', [
        '-v',
        'error',
        '-f',
        'lavfi',
        '-i',
        `color=c=${color}:s=160x96:r=8:d=3`,
        '-c:v',
        'libx264',
        '-preset',
        'ultrafast',
        '-threads',
        '1',
        path.join(folder, name),
      ]);
  });

  afterAll(async () => {
    const { rm } = await import('node:fs/promises');
    await rm(dir, { recursive: true, force: true });
  });

  it('is listed as interrupted after Loupe quits mid-batch, and resumes from its results file', async () => {
    const first = await open();
    const lease = first.services.gate.interactive(); // keeps the batch waiting at its first step
    const { batchId } = await first.service.startBatch({
      folder,
      recursive: false,
      prompts: [],
      segmentSec: 1.5,
    });
    // quit once the batch has reached its first step and waits there for the model
    await untilEvent(
      first.service,
      batchId,
      (e) =>
        (e.type === 'snapshot' && e.batch.overall.yielding) || (e.type === 'overall' && e.overall.yielding),
      'it waited for the model',
    );
    first.service.dispose(); // quit
    lease.release();
    expect(await finished(first.service, batchId)).toBe('interrupted');
    await first.services.dispose();

    const second = await open();
    const [listed] = (await second.service.listBatches()).batches;
    expect(listed).toMatchObject({
      id: batchId,
      state: 'interrupted',
      prompts: ['Summarize the video.'],
      segmentSec: 1.5,
    });
    // A finished clip goes into the library only once the batch has settled how it ended: the library is up to
    // date at 'end' only because the batch waits for it before saying so.
    const addPaths = second.service.addPaths;
    second.service.addPaths = async (input) => {
      await until(
        async () =>
          (await second.service.listBatches()).batches.some((b) => b.id === batchId && b.state === 'done'),
        'the batch to be done',
      );
      return addPaths(input);
    };
    await second.service.resumeBatch({ batchId });
    expect(await finished(second.service, batchId)).toBe('done');
    const { batch, results } = await second.service.batchResults({ batchId });
    expect(batch.clips.map((c) => [c.relPath, c.status.state])).toEqual([
      ['one.mp4', 'done'],
      ['two.mp4', 'done'],
    ]);
    expect(results).toHaveLength(2);
    expect(results[0]!.segments.map((s) => [s.from, s.to])).toEqual([
      [0, 1.5],
      [1.5, 3],
    ]);
    // Finished clips are in the library, with their summary for the player, by the time the batch has ended.
    const videoId = idFor(path.join(folder, 'one.mp4'));
    expect((await second.service.listVideos()).videos.map((v) => v.id)).toContain(videoId);
    expect((await second.service.videoSummaries({ videoId })).results[0]!.answer).toMatch(/\w/);
    const csv = await second.service.exportBatch({ batchId, format: 'csv' });
    expect(csv).toMatchObject({
      mimeType: 'text/csv',
      fileName: expect.stringMatching(/^loupe-clips-.*\.csv$/),
    });
    expect(csv.text.split('\r\n').filter(Boolean)).toHaveLength(1 + 2 + 4); // header, 2 clips, 4 segment rows
    second.service.dispose();
    await second.services.dispose();
  }, 120_000);

  it('reads a batch left "running" by a crash as interrupted, and refuses a second batch while one runs', async () => {
    const { service, services } = await open();
    const { id: batchId } = (await service.listBatches()).batches[0]!;
    const metaFile = path.join(dir, 'data', 'batches', `${batchId}.json`);
    const meta = JSON.parse(await readFile(metaFile, 'utf8')) as { state: string };
    await writeFile(metaFile, JSON.stringify({ ...meta, state: 'running' }));
    const again = await open();
    expect((await again.service.listBatches()).batches[0]!.state).toBe('interrupted');
    const lease = services.gate.interactive();
    const started = await service.startBatch({
      folder,
      recursive: false,
      prompts: ['Is it red?'],
      segmentSec: null,
    });
    await expect(
      service.startBatch({ folder, recursive: false, prompts: [], segmentSec: null }),
    ).rejects.toMatchObject({ code: 'USAGE' });
    await expect(service.selectModel({ dir: path.join(dir, 'elsewhere') })).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
    });
    await service.cancelBatch(started);
    lease.release();
    expect(await finished(service, started.batchId)).toBe('cancelled');
    service.dispose();
    await services.dispose();
    await again.services.dispose();
  }, 120_000);
});
