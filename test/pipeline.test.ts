/**
 * The core pipeline on real files: ffmpeg-encoded clips, the built-in ONNX pack through onnxruntime-node.
 */
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoupeError } from '../src-main/errors.ts';
import { liveProcessCount } from '../src-main/media/index.ts';
import { askAboutClip, ClipConversation } from '../src-main/qa/ask.ts';
import type { MediaPort } from '../src-main/qa/clip-features.ts';
import { ffmpegMedia, type Services } from '../src-main/services.ts';
import { COLORS, makeImage, makeShapesClip } from './fixtures/clips.ts';
import { FIXTURES, tempDir, testServices } from './helpers.ts';

/** A red circle on the left, a yellow square on the right, the circle drifting up. */
const twoShapes = () =>
  makeShapesClip(FIXTURES, {
    name: 'pipeline-two-shapes',
    width: 640,
    height: 360,
    duration: 4,
    fps: 25,
    codec: 'h264',
    background: '#304050',
    shapes: [
      { kind: 'circle', color: COLORS.red, radius: 0.15, x0: 0.25, y0: 0.55, x1: 0.3, y1: 0.4 },
      { kind: 'square', color: COLORS.yellow, radius: 0.13, x0: 0.72, y0: 0.5 },
    ],
  });

async function answer(services: Services, path: string, question: string, frames?: number): Promise<string> {
  const engine = await services.engine();
  let text = '';
  for await (const e of askAboutClip(engine, await services.extractor(), { path, question, frames }))
    if (e.type === 'done') text = e.text;
  return text;
}

/** The real ffmpeg media layer, counting the calls that decode. */
function countingMedia(): MediaPort & { decodes: number; probes: number } {
  const port = {
    ...ffmpegMedia,
    decodes: 0,
    probes: 0,
    probe: (...args: Parameters<MediaPort['probe']>) => (port.probes++, ffmpegMedia.probe(...args)),
    sampleFramesAt: (...args: Parameters<MediaPort['sampleFramesAt']>) => (
      port.decodes++,
      ffmpegMedia.sampleFramesAt(...args)
    ),
  };
  return port;
}

describe('asking the built-in model about a clip', () => {
  let services: Services;
  let clip: string;
  beforeAll(async () => {
    services = await testServices();
    clip = await twoShapes();
  });
  afterAll(() => services.dispose());

  it('answers questions about a generated H.264 clip correctly', async () => {
    expect(await answer(services, clip, 'What color is the circle?')).toBe('red');
    expect(await answer(services, clip, 'What shape is yellow?')).toBe('square');
    expect(await answer(services, clip, 'How many shapes are there?')).toBe('2');
    expect(await answer(services, clip, 'Is there a yellow square?')).toBe('yes');
  });

  it('answers about a still image through the image path', async () => {
    const png = await makeImage(FIXTURES, {
      name: 'pipeline-still.png',
      width: 320,
      height: 240,
      background: '#dddddd',
      shapes: [{ kind: 'triangle', color: COLORS.blue, radius: 0.2, x0: 0.5, y0: 0.5 }],
    });
    const engine = await services.engine();
    const conversation = await ClipConversation.open(engine, await services.extractor(), { path: png });
    expect(conversation.clip.visual.kind).toBe('image');
    expect(conversation.clip.frames).toHaveLength(1);
    expect(await answer(services, png, 'What color is the triangle?')).toBe('blue');
  });

  it('gives the honest answer to a question outside its domain', async () => {
    expect(await answer(services, clip, 'Who is in the video?')).toBe(
      'This built-in model only knows simple shapes and colors.',
    );
  });

  it('keeps the KV cache for a follow-up, which prefills only its own tokens', async () => {
    const engine = await services.engine();
    const conversation = await ClipConversation.open(engine, await services.extractor(), { path: clip });
    const first: number[] = [];
    for await (const e of conversation.ask('What color is the circle?'))
      if (e.type === 'done') first.push(e.timings.prefillTokens);
    const cachedAfterFirst = conversation.cachedTokens;
    let followUp = '';
    let prefill = 0;
    let decoded = 0;
    for await (const e of conversation.ask('How many shapes are there?'))
      if (e.type === 'done') {
        followUp = e.text;
        prefill = e.timings.prefillTokens;
        decoded = e.tokens - 1; // every sampled token but the last (end of turn) went through the decoder
      }
    expect(first[0]).toBeGreaterThan(8 * engine.manifest.vision.tokensPerFrame);
    expect(prefill).toBeLessThan(20);
    expect(conversation.cachedTokens).toBe(cachedAfterFirst + prefill + decoded);
    expect(followUp).toBe('2');
  });

  it('serves a second question from the feature cache without ffmpeg or the vision encoder, with the same answer', async () => {
    const media = countingMedia();
    const cached = await testServices({ mediaPort: media });
    try {
      const engine = await cached.engine();
      const extractor = await cached.extractor();
      const miss = await ClipConversation.open(engine, extractor, { path: clip });
      expect(media.decodes).toBe(1);
      expect(miss.clip.frames.every((f) => !f.cached)).toBe(true);
      const hit = await ClipConversation.open(engine, extractor, { path: clip });
      expect(media.decodes).toBe(1);
      expect(media.probes).toBe(1);
      expect(hit.clip.frames.every((f) => f.cached)).toBe(true);
      expect(hit.clip.timings.encodeMs).toBe(0);
      expect(hit.clip.frames.map((f) => f.timeSec)).toEqual(miss.clip.frames.map((f) => f.timeSec));
      const texts: string[] = [];
      for (const c of [miss, hit])
        for await (const e of c.ask('Describe the video.')) if (e.type === 'done') texts.push(e.text);
      expect(texts[1]).toBe(texts[0]);
      for (let i = 0; i < miss.clip.visual.frames.length; i++)
        expect(hit.clip.visual.frames[i]!.data).toEqual(miss.clip.visual.frames[i]!.data);
    } finally {
      await cached.dispose();
    }
  });

  it('still answers when the feature cache cannot be written (a full or broken disk costs speed, not answers)', async () => {
    const dataDir = await tempDir();
    await writeFile(path.join(dataDir, 'cache'), 'a file where the cache folder should be');
    const broken = await testServices({ dataDir });
    try {
      expect(await answer(broken, clip, 'What color is the circle?')).toBe('red');
    } finally {
      await broken.dispose();
    }
  });

  it('stops mid-answer when cancelled, leaving no ffmpeg process behind', async () => {
    const engine = await services.engine();
    const conversation = await ClipConversation.open(engine, await services.extractor(), { path: clip });
    const controller = new AbortController();
    const tokens: string[] = [];
    const run = async () => {
      for await (const e of conversation.ask('Describe the video.', { signal: controller.signal })) {
        if (e.type === 'token') {
          tokens.push(e.text);
          controller.abort();
        }
      }
    };
    await expect(run()).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(tokens).toHaveLength(1);
    expect(liveProcessCount()).toBe(0);
    // The conversation stays usable after a stop.
    let next = '';
    for await (const e of conversation.ask('What color is the circle?')) if (e.type === 'done') next = e.text;
    expect(next).toBe('red');
  });

  it('cancels during frame sampling with no orphan ffmpeg', async () => {
    const engine = await services.engine();
    const controller = new AbortController();
    const pending = ClipConversation.open(engine, await services.extractor(), {
      path: await makeShapesClip(FIXTURES, {
        name: 'pipeline-cancel',
        width: 320,
        height: 180,
        duration: 6,
        fps: 25,
        codec: 'vp9',
        background: '#000000',
        shapes: [{ kind: 'circle', color: COLORS.white, radius: 0.2, x0: 0.5, y0: 0.5 }],
      }),
      signal: controller.signal,
      frames: 16,
    });
    setTimeout(() => controller.abort(), 5);
    await expect(pending).rejects.toBeInstanceOf(LoupeError);
    expect(liveProcessCount()).toBe(0);
  });

  it('refuses more frames than the context holds, saying how many fit', async () => {
    const engine = await services.engine();
    const max = engine.maxFrames();
    await expect(
      ClipConversation.open(engine, await services.extractor(), { path: clip, frames: max + 40 }),
    ).rejects.toMatchObject({ code: 'CONTEXT_OVERFLOW', message: expect.stringContaining(`at most ${max}`) });
  });
});

describe('loupe ask without a network', () => {
  const unshare = spawnSync('unshare', ['-n', 'true']);
  it.skipIf(unshare.status !== 0)('answers inside an empty network namespace', async () => {
    const clip = await twoShapes();
    const out = spawnSync(
      'unshare',
      [
        '-n',
        process.execPath,
        'bin/loupe.js', // the shipped CLI: the bundle test/global-setup.ts built
        'ask',
        clip,
        'What color is the circle?',
        '--json',
        '--no-cache',
      ],
      { encoding: 'utf8', env: { ...process.env, LOUPE_DATA_DIR: '/tmp/loupe-netns' } },
    );
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    expect(JSON.parse(out.stdout).answer).toBe('red');
  });
});
