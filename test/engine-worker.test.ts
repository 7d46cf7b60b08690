/**
 * The engine runs ONNX Runtime in a worker thread: same logits and answers as the in-thread loop, Stop lands
 * mid-prefill and leaves the conversation as it was, a killed worker is a typed error and the next question
 * works, and the app thread (its web server) keeps answering requests during a long prefill.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve, type RunningWeb } from '../src-main/cli/serve.ts';
import { LoupeError } from '../src-main/errors.ts';
import { Engine, liveWorkerCount, type GenerateOptions } from '../src-main/model/engine.ts';
import { LocalEngine } from '../src-main/model/local-engine.ts';
import { builtinPackDir } from '../src-main/paths.ts';
import type { Tokens2D } from '../src-main/model/tensor.ts';
import { tempDir } from './helpers.ts';

const DIR = builtinPackDir();
const QUESTIONS = [
  'How many shapes are there?',
  'What color is the <image> triangle?',
  'Describe the video.',
];
const LONG_QUESTION =
  Array.from({ length: 60 }, (_, i) => ['red', 'square', 'and', 'the'][i % 4]).join(' ') + '?';

/** Deterministic pixels (the model's answers do not matter here, the numbers do). */
function pixels(count: number, size: number): Float32Array[] {
  let s = 7;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 3 - 1.5;
  return Array.from({ length: count }, () => Float32Array.from({ length: 3 * size * size }, next));
}

interface Turn {
  logits: Float32Array;
  ids: number[];
  text: string;
}

type Asker = {
  ask(q: string, o?: GenerateOptions): AsyncGenerator<import('../src-main/model/engine.ts').AnswerEvent>;
};

async function turn(conversation: Asker, question: string, options: GenerateOptions = {}): Promise<Turn> {
  const out: Turn = { logits: new Float32Array(0), ids: [], text: '' };
  for await (const e of conversation.ask(question, {
    maxNewTokens: 16,
    onPromptLogits: (l) => (out.logits = l),
    ...options,
  }))
    if (e.type === 'token') out.ids.push(e.tokenId);
    else out.text = e.text;
  return out;
}

const maxDiff = (a: Float32Array, b: Float32Array) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

async function expectCode(promise: Promise<unknown>, code: string): Promise<LoupeError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LoupeError);
  expect((error as LoupeError).code).toBe(code);
  return error as LoupeError;
}

describe('the engine worker', () => {
  let engine: Engine;
  let frames: Tokens2D[];
  beforeAll(async () => {
    // small prefill chunks: a prefill is many decoder runs, so Stop and a kill land inside one
    engine = await Engine.load(DIR, { provider: 'cpu', threads: 2, prefillChunk: 16 });
    frames = await engine.encodeImages(pixels(8, engine.manifest.vision.imageSize));
  });
  afterAll(() => engine?.dispose());

  it('gives the same logits and greedy answers as the in-thread loop (one prefill run) over three turns', async () => {
    const local = await LocalEngine.load(DIR, { provider: 'cpu', threads: 2, prefillChunk: 1 << 20 });
    try {
      const inThread = local.startConversation({ kind: 'frames', frames });
      const inWorker = engine.startConversation({ kind: 'frames', frames });
      for (const q of QUESTIONS) {
        const a = await turn(inThread, q);
        const b = await turn(inWorker, q);
        expect(maxDiff(a.logits, b.logits)).toBeLessThan(1e-4);
        expect(b.ids).toEqual(a.ids);
        expect(b.text).toBe(a.text);
      }
      expect(inWorker.cachedTokens).toBe(inThread.cachedTokens);
      expect(inWorker.messages).toEqual(inThread.messages);
    } finally {
      await local.dispose();
    }
  });

  it('takes a question containing the image token as text', async () => {
    const conversation = engine.startConversation({ kind: 'frames', frames });
    const plain = engine.prompt.encodePrompt([engine.prompt.firstUserMessage('Is it <image> red?')]);
    expect(plain.filter((s) => s.kind === 'image')).toHaveLength(1);
    const first = await turn(conversation, 'Is it <image> red?');
    // one visual prefix: 8 frames × tokensPerFrame, plus the text
    expect(conversation.cachedTokens).toBeLessThan(
      8 * engine.manifest.vision.tokensPerFrame + 64 + first.ids.length,
    );
    expect(engine.prompt.render(conversation.messages)).toContain('Is it <image> red?');
  });

  it('stops mid-prefill: the conversation keeps no turn and no cache of it, and answers the next question as if never asked', async () => {
    // a first question stopped in its prefill
    const fresh = engine.startConversation({ kind: 'frames', frames });
    const controller = new AbortController();
    let progressAtStop = 0;
    let total = 0;
    await expectCode(
      turn(fresh, QUESTIONS[0]!, {
        signal: controller.signal,
        onPrefillProgress: (done, all) => {
          total = all;
          if (!controller.signal.aborted) {
            progressAtStop = done;
            controller.abort();
          }
        },
      }),
      'CANCELLED',
    );
    expect(progressAtStop).toBeLessThan(total);
    expect(fresh.messages).toEqual([]);
    expect(fresh.cachedTokens).toBe(0);

    // a follow-up stopped in its prefill: the cache is cut back to the first turn
    const reference = engine.startConversation({ kind: 'frames', frames });
    const ref1 = await turn(reference, QUESTIONS[0]!);
    const ref2 = await turn(reference, QUESTIONS[1]!);
    const a1 = await turn(fresh, QUESTIONS[0]!);
    expect(a1.ids).toEqual(ref1.ids);
    const cached = fresh.cachedTokens;
    const stop = new AbortController();
    await expectCode(
      turn(fresh, LONG_QUESTION, { signal: stop.signal, onPrefillProgress: () => stop.abort() }),
      'CANCELLED',
    );
    expect(fresh.messages).toHaveLength(2);
    expect(fresh.cachedTokens).toBe(cached);
    const a2 = await turn(fresh, QUESTIONS[1]!);
    expect(maxDiff(a2.logits, ref2.logits)).toBeLessThan(1e-4);
    expect(a2.ids).toEqual(ref2.ids);
  });

  it('a killed worker fails the answer with a typed error; the next question starts a fresh worker and rebuilds the conversation', async () => {
    const reference = engine.startConversation({ kind: 'frames', frames });
    const ref1 = await turn(reference, QUESTIONS[0]!);
    const ref2 = await turn(reference, QUESTIONS[1]!);

    const conversation = engine.startConversation({ kind: 'frames', frames });
    await turn(conversation, QUESTIONS[0]!);
    const started = engine.workersStarted;
    const error = await expectCode(
      turn(conversation, LONG_QUESTION, { onPrefillProgress: () => void engine.killWorker() }),
      'MODEL_RUNTIME',
    );
    expect(error.message).toMatch(/worker stopped/);
    expect(engine.workerRunning).toBe(false);

    // the same conversation goes on in a new worker, its cache rebuilt from its turns
    const again = await turn(conversation, QUESTIONS[1]!);
    expect(engine.workersStarted).toBe(started + 1);
    expect(again.ids).toEqual(ref2.ids);
    expect(maxDiff(again.logits, ref2.logits)).toBeLessThan(1e-4);
    expect(conversation.messages.map((m) => m.content)).toEqual([
      QUESTIONS[0],
      ref1.text,
      QUESTIONS[1],
      ref2.text,
    ]);
    // and new work runs there too
    expect((await engine.encodeImages(pixels(1, engine.manifest.vision.imageSize)))[0]!.dims).toEqual(
      frames[0]!.dims,
    );
  });

  it('refuses work after dispose with a typed error, and a failed load leaves no worker behind', async () => {
    const before = liveWorkerCount();
    const other = await Engine.load(DIR, { provider: 'cpu', threads: 1 });
    expect(liveWorkerCount()).toBe(before + 1);
    await other.dispose();
    expect(other.workerRunning).toBe(false);
    expect(liveWorkerCount()).toBe(before);
    // a pack whose graphs do not load: a typed error, and its worker is gone
    await expectCode(Engine.load(DIR, { provider: 'cpu', threads: 0.5 }), 'MODEL_INVALID');
    expect(liveWorkerCount()).toBe(before);
    await expectCode(other.encodeImages(pixels(1, other.manifest.vision.imageSize)), 'MODEL_RUNTIME');
    await expectCode(
      turn(other.startConversation({ kind: 'frames', frames }), QUESTIONS[0]!),
      'MODEL_RUNTIME',
    );
  });
});

describe('the app thread during a long prefill', () => {
  let running: RunningWeb;
  beforeAll(async () => {
    running = await serve({ dataDir: await tempDir(), threads: 2, log: null, featureCache: false });
  });
  afterAll(() => running?.close());

  it('the web server answers requests while a prefill of 2,000 tokens runs in the worker', async () => {
    const engine = await running.services.engine();
    const count = engine.maxFrames(16);
    const frames = await engine.encodeImages(pixels(count, engine.manifest.vision.imageSize));
    const { web } = running;
    const call = async () => {
      const res = await fetch(`${web.url}api/call/listVideos`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Loupe-Token': web.token },
        body: '{}',
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    };
    await call(); // a first request opens the connection and warms the route up
    // What happened, in order: the prefill's progress reports and the requests answered. No clocks here: how long
    // the app thread may stall during a prefill is measured by the bench (`npm run bench`: "app thread: largest
    // 10-ms timer gap during a …-token prefill", event_loop_max_stall_ms).
    const log: ('progress' | 'answered')[] = [];
    let prefillTokens = 0;
    let prefillDone = false;
    let ended = false; // the turn is over, whatever happened (a failure must not leave the loop below spinning)
    const conversation = engine.startConversation({ kind: 'frames', frames });
    const answering = (async () => {
      try {
        for await (const e of conversation.ask(
          `Describe the video: ${'the shapes, their colors and where they move, '.repeat(6)}`,
          {
            maxNewTokens: 4,
            onPrefillProgress: (done, total) => {
              log.push('progress');
              prefillDone = done === total;
            },
          },
        ))
          if (e.type === 'done') prefillTokens = e.timings.prefillTokens;
      } finally {
        ended = true;
      }
    })();
    while (!prefillDone && !ended) {
      await call();
      if (!prefillDone) log.push('answered');
    }
    await answering;
    expect(prefillTokens).toBeGreaterThanOrEqual(2000);
    // Requests were answered while the prefill was under way, and while one decoder run was going: several between
    // two of its progress reports (one per chunk of about 100 ms). An engine on this thread would hold every
    // request for a whole decoder run, so at most one would get through between two reports.
    const gaps = log
      .join(' ')
      .split('progress')
      .slice(1, -1) // from the first report to the last
      .map((gap) => gap.split('answered').length - 1);
    expect(gaps.length).toBeGreaterThan(0);
    expect(gaps.reduce((a, b) => a + b, 0)).toBeGreaterThan(3);
    expect(Math.max(...gaps)).toBeGreaterThanOrEqual(2);
  });
});
