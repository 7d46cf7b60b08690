/**
 * The native KV cache (kv-native.ts) against the JavaScript one (kv-cache.ts), which it replaces where it can
 * run: the same logits and greedy answers on the built-in pack over three turns (chained layout), and on a
 * GroupQueryAttention graph laid out as onnxruntime-genai's builder lays out decoders (shared layout: one
 * buffer bound as past and present, growing past its first capacity), chunked prefills, rollback and release.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoupeError } from '../src-main/errors.ts';
import {
  JsKvCache,
  jsPromptBatch,
  liveKvCaches,
  type DecoderShape,
  type KvCache,
} from '../src-main/model/kv-cache.ts';
import { NativeDecoder, usesGroupQueryAttention } from '../src-main/model/kv-native.ts';
import type { NativeKvCache } from '../src-main/model/kv-native.ts';
import { LocalEngine } from '../src-main/model/local-engine.ts';
import { Session } from '../src-main/model/ort.ts';
import type { ModelEngine } from '../src-main/model/model-engine.ts';
import type { AnswerEvent, VisualInput } from '../src-main/model/types.ts';
import { OrtNative } from '../src-main/model/ort-native.ts';
import { builtinPackDir } from '../src-main/paths.ts';
import { FIXTURES, PYTHON, ROOT } from './helpers.ts';

const run = promisify(execFile);
const QUESTIONS = ['How many shapes are there?', 'What color is the circle?', 'Describe the video.'];

function pixels(count: number, size: number): Float32Array[] {
  let s = 11;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 3 - 1.5;
  return Array.from({ length: count }, () => Float32Array.from({ length: 3 * size * size }, next));
}

/** Deterministic embeddings for `count` tokens of `hidden` values. */
function embeddings(count: number, hidden: number, seed: number): Float32Array {
  return Float32Array.from({ length: count * hidden }, (_, i) => Math.sin(i * 0.37 + seed) * 0.8);
}

it('loads the C API of onnxruntime-node’s own library', () => {
  expect(OrtNative.availability()).toEqual({ ok: true });
  expect(OrtNative.get().version).toMatch(/^1\.\d+\.\d+$/);
});

describe('on the built-in pack (chained layout)', () => {
  let native: LocalEngine;
  let js: LocalEngine;
  beforeAll(async () => {
    native = await LocalEngine.load(builtinPackDir(), { provider: 'cpu', threads: 2, prefillChunk: 48 });
    js = await LocalEngine.load(builtinPackDir(), {
      provider: 'cpu',
      threads: 2,
      prefillChunk: 48,
      kvCache: 'js',
    });
  });
  afterAll(async () => {
    await native?.dispose();
    await js?.dispose();
  });

  it('is chosen by default, and the JS cache only when asked for', () => {
    expect(native.kvCache).toEqual({ used: 'native-chained' });
    expect(js.kvCache.used).toBe('js');
  });

  it('gives the same logits and greedy answers as the JS cache over three turns', async () => {
    const frames = await native.encodeImages(pixels(8, native.manifest.vision.imageSize));
    const a = native.startConversation({ kind: 'frames', frames });
    const b = js.startConversation({ kind: 'frames', frames });
    for (const q of QUESTIONS) {
      const turn = async (c: typeof a) => {
        let logits: Float32Array = new Float32Array(0);
        let text = '';
        for await (const e of c.ask(q, { maxNewTokens: 24, onPromptLogits: (l) => (logits = l) }))
          if (e.type === 'done') text = e.text;
        return { logits, text };
      };
      const [x, y] = [await turn(a), await turn(b)];
      expect(Array.from(x.logits)).toEqual(Array.from(y.logits));
      expect(x.text).toBe(y.text);
    }
    expect(a.cachedTokens).toBe(b.cachedTokens);
    a.close();
    b.close();
  });

  it('scores prompts side by side (promptLogits) as a fresh conversation scores each, natively and in JS', async () => {
    const frames = await native.encodeImages(pixels(5, native.manifest.vision.imageSize));
    // mixed lengths: five stills and one 2-frame clip (another prompt length, its own run)
    const visuals: VisualInput[] = [
      ...frames.map((f): VisualInput => ({ kind: 'image', frames: [f] })),
      { kind: 'frames', frames: frames.slice(0, 2) },
    ];
    const question = 'Is there a red circle?';
    for (const engine of [native, js]) {
      const batched = await engine.promptLogits(visuals, question);
      expect(batched).toHaveLength(visuals.length);
      for (const [i, visual] of visuals.entries()) {
        const c = engine.startConversation(visual);
        let logits: Float32Array = new Float32Array(0);
        try {
          for await (const e of c.ask(question, { maxNewTokens: 1, onPromptLogits: (l) => (logits = l) }))
            void e;
        } finally {
          c.close();
        }
        expect(batched[i]).toHaveLength(engine.manifest.decoder.vocabSize);
        let worst = 0;
        for (let v = 0; v < logits.length; v++)
          worst = Math.max(worst, Math.abs(logits[v]! - batched[i]![v]!));
        expect(worst).toBeLessThan(1e-3); // batched matrix products round differently, nothing more
      }
    }
    expect(liveKvCaches()).toBe(0); // nothing was kept
  });

  it('is a ModelEngine: a conversation closed during its answer frees its cache when the answer ends', async () => {
    const engine: ModelEngine = native; // the worker's LocalEngine and the app's Engine share one interface
    const live = liveKvCaches();
    const frames = await engine.encodeImages(pixels(1, engine.manifest.vision.imageSize));
    const c = engine.startConversation({ kind: 'image', frames });
    const events = c.ask('Describe the picture.', { maxNewTokens: 6, ignoreEos: true });
    expect((await events.next()).done).toBe(false);
    c.close();
    expect(liveKvCaches()).toBe(live + 1); // still answering: the cache stays until the answer ends
    let last: AnswerEvent | undefined;
    for await (const e of events) last = e;
    expect(last?.type).toBe('done');
    expect(liveKvCaches()).toBe(live);
  });

  it('a released conversation refuses to run with a typed error', async () => {
    const c = native.startConversation({
      kind: 'image',
      frames: await native.encodeImages(pixels(1, native.manifest.vision.imageSize)),
    });
    c.close();
    const error = await (async () => {
      for await (const e of c.ask('Hello?')) void e;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LoupeError);
    expect((error as LoupeError).code).toBe('MODEL_RUNTIME');
  });
});

/**
 * The GQA fixture graph (models/loupe_dc/gqa_fixture.py), built once per version of its maker; `int8`: the same
 * graph with an int8 KV cache, its scales calibrated on synthetic embeddings (models/loupe_dc/kv_quant.py).
 */
async function gqaGraph(int8 = false): Promise<{ file: string; shape: DecoderShape }> {
  const models = path.join(ROOT, 'models');
  const makers = ['gqa_fixture.py', ...(int8 ? ['kv_quant.py'] : [])];
  const hash = createHash('sha256');
  for (const maker of makers) hash.update(await readFile(path.join(models, 'loupe_dc', maker)));
  const key = hash.digest('hex').slice(0, 12);
  const dir = path.join(FIXTURES, 'gqa');
  const file = path.join(dir, `decoder-${key}.onnx`);
  await mkdir(dir, { recursive: true });
  const fp32 = path.join(dir, `decoder-fp32-${key}.onnx`);
  const { stdout } = await run(PYTHON, ['-m', 'loupe_dc.gqa_fixture', '--out', int8 ? fp32 : file], {
    cwd: models,
  });
  const shape = JSON.parse(stdout) as DecoderShape;
  if (int8) {
    await run(
      PYTHON,
      ['-m', 'loupe_dc.kv_quant', '--decoder', fp32, '--out', file, '--synthetic', '--shape', stdout],
      { cwd: models },
    );
    shape.kvDtype = 'int8';
  }
  expect(existsSync(file)).toBe(true);
  return { file, shape };
}

describe('on a GroupQueryAttention graph (shared layout)', () => {
  let file: string;
  let shape: DecoderShape;
  let decoder: NativeDecoder;
  let session: Session;
  beforeAll(async () => {
    ({ file, shape } = await gqaGraph());
    decoder = await NativeDecoder.load(file, shape, 4096, 2);
    session = await Session.create('decoder', file, 'cpu', { threads: 2, spinning: false });
  }, 300_000);
  afterAll(async () => {
    decoder?.release();
    await session?.release();
  });

  const jsCache = () => new JsKvCache(session, shape, 1 << 30);
  /** Prefill chunks, decode steps, a chunk that outgrows the first 256-token buffer, more steps. */
  const SCHEDULE = [100, 50, 1, 1, 200, 1, 1, 64, 1];

  it('is recognized, and binds one buffer as past and present', async () => {
    expect(await usesGroupQueryAttention(file)).toBe(true);
    expect(decoder.layout).toBe('shared');
    expect(await usesGroupQueryAttention(path.join(builtinPackDir(), 'decoder_model_merged.onnx'))).toBe(
      false,
    );
  });

  it('gives the same logits as the JS cache through chunked prefills, decode steps and growth', async () => {
    const a: KvCache = decoder.newCache();
    const b = jsCache();
    for (const [i, n] of SCHEDULE.entries()) {
      const input = embeddings(n, shape.hiddenSize, i);
      expect(Array.from(await a.step(input, n))).toEqual(Array.from(await b.step(input, n)));
    }
    expect(a.length).toBe(SCHEDULE.reduce((x, y) => x + y, 0));
    expect(a.length).toBeGreaterThan(256);
    a.release();
  });

  it('runs a prompt from an empty cache (no buffer bound) as a cache of its own runs it', async () => {
    // this graph fixes its batch at 1 (the engine then runs one row at a time); the built-in pack batches
    expect(decoder.inputInfo.get('inputs_embeds')?.dims[0]).toBe(1);
    const length = 40;
    const row = embeddings(length, shape.hiddenSize, 20);
    const input = { embeds: row, batch: 1, length };
    const cache = decoder.newCache();
    const want = await cache.step(row, length);
    cache.release();
    for (const got of [decoder.promptBatch(input), await jsPromptBatch(session, shape, input)]) {
      let worst = 0;
      for (let v = 0; v < want.length; v++) worst = Math.max(worst, Math.abs(want[v]! - got[v]!));
      expect(worst).toBeLessThan(1e-4);
    }
    expect(() => decoder.promptBatch({ embeds: row.subarray(1), batch: 1, length })).toThrow(LoupeError);
  });

  /** Two caches that have run the same `count` tokens. */
  const twins = async (count: number, seed: number): Promise<[KvCache, KvCache]> => {
    const pair: [KvCache, KvCache] = [decoder.newCache(), decoder.newCache()];
    const first = embeddings(count, shape.hiddenSize, seed);
    for (const c of pair) await c.step(first, count);
    return pair;
  };

  it('Stop ends a prefill run part-way (ORT terminate), and the cache answers on as if it never ran', async () => {
    const [reference, cache] = await twins(50, 3);
    const stop = new AbortController();
    // 3,000 tokens in one run: dispatched to koffi's thread when step returns, ended by the terminate flag
    const long = cache.step(embeddings(3000, shape.hiddenSize, 4), 3000, stop.signal);
    stop.abort();
    const error = await long.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LoupeError);
    expect((error as LoupeError).code).toBe('CANCELLED');
    expect(cache.length).toBe(50);
    const next = embeddings(20, shape.hiddenSize, 5);
    expect(Array.from(await cache.step(next, 20))).toEqual(Array.from(await reference.step(next, 20)));
    cache.release();
    reference.release();
  });

  it('sizes a shared cache once for the turn it is told to expect, and grows past it when it must', async () => {
    const told = decoder.newCache() as NativeKvCache;
    const doubling = decoder.newCache() as NativeKvCache;
    told.expect(300 + 1); // a 300-token prompt and one new token
    expect(told.capacity).toBe(301);
    for (const [i, n] of [300, 1, 1].entries()) {
      const input = embeddings(n, shape.hiddenSize, 40 + i);
      expect(Array.from(await told.step(input, n))).toEqual(Array.from(await doubling.step(input, n)));
    }
    expect(doubling.capacity).toBe(512); // 256, doubled once
    expect(told.capacity).toBeGreaterThanOrEqual(302); // one token past what it was told: grown, by doubling
    expect(told.length).toBe(302);
    told.release();
    doubling.release();
  });

  it('rolls a stopped prefill back: what follows is as if it never ran', async () => {
    const [reference, cache] = await twins(120, 1);
    cache.checkpoint();
    // a prefill of two chunks that is abandoned, the second past the first buffer's capacity
    await cache.step(embeddings(100, shape.hiddenSize, 9), 100);
    await cache.step(embeddings(100, shape.hiddenSize, 10), 100);
    cache.rollback();
    expect(cache.length).toBe(120);
    const next = embeddings(30, shape.hiddenSize, 2);
    expect(Array.from(await cache.step(next, 30))).toEqual(Array.from(await reference.step(next, 30)));
    cache.release();
    reference.release();
  });
});

describe('the JS cache with preallocated present buffers', () => {
  it('rolls back to a checkpoint its ping-pong buffers would otherwise overwrite', async () => {
    const { file, shape } = await gqaGraph();
    const session = await Session.create('decoder', file, 'cpu', { threads: 1, spinning: false });
    try {
      const bound = new JsKvCache(session, shape, 0);
      const plain = new JsKvCache(session, shape, 1 << 30);
      // 40 tokens, then two steps: the buffers have grown by doubling, and the one holding the checkpoint has
      // room for the tokens two steps later
      for (const [i, n] of [40, 1, 1].entries()) {
        const input = embeddings(n, shape.hiddenSize, i);
        await bound.step(input, n);
        await plain.step(input, n);
      }
      bound.checkpoint();
      for (let i = 0; i < 3; i++) await bound.step(embeddings(1, shape.hiddenSize, 20 + i), 1);
      bound.rollback();
      const next = embeddings(5, shape.hiddenSize, 4);
      expect(Array.from(await bound.step(next, 5))).toEqual(Array.from(await plain.step(next, 5)));
    } finally {
      await session.release();
    }
  }, 300_000);
});

describe('an int8 KV cache (GroupQueryAttention with calibrated per-channel scales)', () => {
  let fp32: { file: string; shape: DecoderShape };
  let int8: { file: string; shape: DecoderShape };
  let fp32Decoder: NativeDecoder;
  let int8Decoder: NativeDecoder;
  let int8Session: Session;
  beforeAll(async () => {
    [fp32, int8] = [await gqaGraph(), await gqaGraph(true)];
    fp32Decoder = await NativeDecoder.load(fp32.file, fp32.shape, 4096, 2);
    int8Decoder = await NativeDecoder.load(int8.file, int8.shape, 4096, 2);
    int8Session = await Session.create('decoder', int8.file, 'cpu', { threads: 2, spinning: false });
  }, 300_000);
  afterAll(async () => {
    fp32Decoder?.release();
    int8Decoder?.release();
    await int8Session?.release();
  });
  const SCHEDULE = [100, 50, 1, 1, 200, 1, 1, 64, 1];

  it('declares int8 caches, and the native and JS caches agree on it bit for bit, through growth', async () => {
    expect(int8Decoder.layout).toBe('shared');
    expect(int8Decoder.inputInfo.get('past_key_values.0.key')?.dtype).toBe('int8');
    expect(int8Decoder.outputInfo.get('present.1.value')?.dtype).toBe('int8');
    const a = int8Decoder.newCache();
    const b = new JsKvCache(int8Session, int8.shape, 0);
    for (const [i, n] of SCHEDULE.entries()) {
      const input = embeddings(n, int8.shape.hiddenSize, i);
      expect(Array.from(await a.step(input, n))).toEqual(Array.from(await b.step(input, n)));
    }
    expect(a.length).toBeGreaterThan(256); // grew twice past its first buffer, copying int8 rows natively
    a.release();
    b.release();
  });

  it('stays within 2% of the logit range of the fp32 cache, with the same top token at every step', async () => {
    const a = fp32Decoder.newCache();
    const b = int8Decoder.newCache();
    let worst = 0;
    for (const [i, n] of SCHEDULE.entries()) {
      const input = embeddings(n, fp32.shape.hiddenSize, i);
      const [x, y] = [await a.step(input, n), await b.step(input, n)];
      const range = Math.max(...x) - Math.min(...x);
      for (let v = 0; v < x.length; v++) worst = Math.max(worst, Math.abs(x[v]! - y[v]!) / range);
      expect(argmax(y)).toBe(argmax(x));
    }
    expect(worst).toBeGreaterThan(0); // the cache really is quantized
    expect(worst).toBeLessThan(0.02);
    a.release();
    b.release();
  });

  it('follows the fp32 cache’s greedy answers on the fixture prompts: the same token, or a near tie', async () => {
    // a token's embedding is a fixed function of its id, so the fixture decodes like a language model. The
    // fp32 cache decodes greedily; the int8 cache reads the same tokens (teacher forcing) and must pick the
    // same one at each step, unless fp32's top two were closer than the quantization error (a random
    // 2-layer graph has many near ties; a real model's agreement is measured in test:real and bench:real)
    const { hiddenSize } = fp32.shape;
    const embed = (token: number) => embeddings(1, hiddenSize, 1000 + token);
    let same = 0;
    let steps = 0;
    for (let prompt = 0; prompt < 4; prompt++) {
      const a = fp32Decoder.newCache();
      const b = int8Decoder.newCache();
      try {
        const length = 60 + 20 * prompt;
        const start = embeddings(length, hiddenSize, 50 + prompt);
        let [x, y] = [await a.step(start, length), await b.step(start, length)];
        for (let t = 0; t < 24; t++) {
          const want = argmax(x);
          const got = argmax(y);
          steps++;
          if (got === want) same++;
          else expect(x[want]! - x[got]!).toBeLessThan(0.02 * (Math.max(...x) - Math.min(...x)));
          [x, y] = [await a.step(embed(want), 1), await b.step(embed(want), 1)];
        }
      } finally {
        a.release();
        b.release();
      }
    }
    expect(same / steps).toBeGreaterThanOrEqual(0.9);
  });

  it('rolls a stopped prefill back to its checkpoint', async () => {
    const live = liveKvCaches();
    const cache = int8Decoder.newCache();
    const reference = int8Decoder.newCache();
    const first = embeddings(120, int8.shape.hiddenSize, 1);
    await cache.step(first, 120);
    await reference.step(first, 120);
    cache.checkpoint();
    await cache.step(embeddings(200, int8.shape.hiddenSize, 9), 200);
    cache.rollback();
    const next = embeddings(30, int8.shape.hiddenSize, 2);
    expect(Array.from(await cache.step(next, 30))).toEqual(Array.from(await reference.step(next, 30)));
    cache.release();
    reference.release();
    expect(liveKvCaches()).toBe(live); // both released
  });
});

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
