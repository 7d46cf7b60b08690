/**
 * The exported pack through onnxruntime-node agrees with the PyTorch checkpoint it was converted from
 * (models/loupe_dc/reference.py, Hugging Face transformers' own CLIP and Llama classes): same prompt
 * token ids, fp32 logits within 1e-3, same greedy answer — on a still image and on an 8-frame clip.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleFrames } from '../src-main/media/index.ts';
import { Engine } from '../src-main/model/engine.ts';
import { frameFormat } from '../src-main/model/pack.ts';
import type { Services } from '../src-main/services.ts';
import { COLORS, makeShapesClip } from './fixtures/clips.ts';
import { CHECKPOINT, FIXTURES, PYTHON, ROOT, tempDir, testServices } from './helpers.ts';

const run = promisify(execFile);
const checkpoint = process.env.LOUPE_CHECKPOINT ?? CHECKPOINT;

interface Reference {
  input_ids: number[];
  logits: number[];
  answer_ids: number[];
  answer: string;
  prompt: string;
}

async function reference(pixels: Float32Array[], question: string, frames: boolean): Promise<Reference> {
  const dir = await tempDir('loupe-parity-');
  const file = path.join(dir, 'pixels.f32');
  const all = new Float32Array(pixels.reduce((n, p) => n + p.length, 0));
  pixels.reduce((at, p) => (all.set(p, at), at + p.length), 0);
  await writeFile(file, Buffer.from(all.buffer));
  const args = [
    '-m',
    'loupe_dc.reference',
    '--checkpoint',
    checkpoint,
    '--pixels',
    file,
    '--count',
    String(pixels.length),
    '--question',
    question,
  ];
  const { stdout } = await run(PYTHON, frames ? [...args, '--frames'] : args, {
    cwd: path.join(ROOT, 'models'),
    maxBuffer: 1 << 26,
    env: { ...process.env, PYTHONWARNINGS: 'ignore' },
  });
  return JSON.parse(stdout) as Reference;
}

describe('parity: ONNX pack in onnxruntime-node vs the PyTorch checkpoint', () => {
  let services: Services;
  let engine: Engine;
  let clip: string;
  beforeAll(async () => {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run scripts/setup-dev.sh`);
    services = await testServices({ provider: 'cpu' });
    engine = await services.engine();
    clip = await makeShapesClip(FIXTURES, {
      name: 'parity',
      width: 480,
      height: 270,
      duration: 3,
      fps: 25,
      codec: 'h264',
      background: '#e0e0e0',
      shapes: [
        { kind: 'triangle', color: COLORS.green, radius: 0.16, x0: 0.3, y0: 0.5, x1: 0.5, y1: 0.4 },
        { kind: 'circle', color: COLORS.purple, radius: 0.12, x0: 0.8, y0: 0.6, appearAt: 1 },
      ],
    });
  });
  afterAll(() => services?.dispose());

  const compare = async (count: number, question: string) => {
    const sampled = await sampleFrames(clip, { count, ...frameFormat(engine.manifest.vision) });
    const pixels = sampled.map((f) => f.pixels);
    const kind = count === 1 ? 'image' : 'frames';
    const ref = await reference(pixels, question, kind === 'frames');

    const segments = engine.prompt.encodePrompt([engine.prompt.firstUserMessage(question)]);
    const ids = segments.flatMap((s) => (s.kind === 'image' ? [-200] : s.ids));
    expect(ids).toEqual(ref.input_ids);

    const conversation = engine.startConversation({ kind, frames: await engine.encodeImages(pixels) });
    let logits: Float32Array = new Float32Array(0);
    let answer = '';
    for await (const e of conversation.ask(question, {
      onPromptLogits: (l) => (logits = l),
      maxNewTokens: 32,
    })) {
      if (e.type === 'done') answer = e.text;
    }
    let maxDiff = 0;
    ref.logits.forEach((x, i) => (maxDiff = Math.max(maxDiff, Math.abs(x - logits[i]!))));
    expect(logits.length).toBe(ref.logits.length);
    expect(maxDiff).toBeLessThanOrEqual(1e-3);
    expect(answer).toBe(ref.answer);
    return { maxDiff, answer };
  };

  it('agrees on a still image (all tokens)', async () => {
    await compare(1, 'Describe the image.');
  });

  it('agrees on an 8-frame clip (pooled by 2, frames concatenated)', async () => {
    await compare(8, 'How many shapes are there?');
  });

  it('gives the same logits and answers when the KV cache is kept in JavaScript, written into preallocated buffers', async () => {
    // The engine keeps the cache in native memory by default; the JS fallback binds its outputs only above a
    // size the built-in model's cache never reaches: force both, and ask follow-ups so the buffers swap and
    // grow across turns.
    const bound = await Engine.load(engine.pack.dir, {
      provider: 'cpu',
      bindCacheFromBytes: 0,
      kvCache: 'js',
    });
    expect(engine.kvCache.used).toBe('native-chained');
    expect(bound.kvCache.used).toBe('js');
    try {
      const sampled = await sampleFrames(clip, { count: 8, ...frameFormat(engine.manifest.vision) });
      const questions = ['How many shapes are there?', 'What color is the triangle?', 'Describe the video.'];
      const run = async (e: Engine) => {
        const conversation = e.startConversation({
          kind: 'frames',
          frames: await e.encodeImages(sampled.map((f) => f.pixels)),
        });
        const out: { logits: Float32Array; answer: string }[] = [];
        for (const q of questions) {
          let logits: Float32Array = new Float32Array(0);
          for await (const ev of conversation.ask(q, {
            onPromptLogits: (l) => (logits = l),
            maxNewTokens: 24,
          }))
            if (ev.type === 'done') out.push({ logits, answer: ev.text });
        }
        return out;
      };
      const [plain, withBinding] = [await run(engine), await run(bound)];
      expect(withBinding.map((t) => t.answer)).toEqual(plain.map((t) => t.answer));
      withBinding.forEach((t, i) => expect(Array.from(t.logits)).toEqual(Array.from(plain[i]!.logits)));
    } finally {
      await bound.dispose();
    }
  });
});
