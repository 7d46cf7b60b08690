/**
 * The OpenAI-compatible API (`loupe serve --openai`), driven by the official `openai` npm client on real clips
 * and the built-in model: video questions streamed and not, a follow-up that reuses the model's cache, a clip
 * range, an image, every bad input with its OpenAI-style error, refusals without the token or from a foreign
 * Origin, and random requests on the new routes (no 5xx, no crash).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send } from '../src-main/api/http.fixture.ts';
import { serve, type RunningWeb } from '../src-main/cli/serve.ts';
import { runProcess } from '../src-main/media/process.ts';
import { resolveBinaries } from '../src-main/media/binaries.ts';
import { liveWorkerCount } from '../src-main/model/engine.ts';
import { COLORS, makeShapesClip } from './fixtures/clips.ts';
import { tempDir } from './helpers.ts';

type Params = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;

/** A video part with Loupe's clip fields (not in OpenAI's types, passed through by the client). */
const video = (file: string, clip: Record<string, unknown> = {}) =>
  ({
    type: 'video_url',
    video_url: { url: pathToFileURL(file).href, ...clip },
  }) as unknown as OpenAI.Chat.ChatCompletionContentPart;

describe('the OpenAI-compatible API', () => {
  let running: RunningWeb;
  let client: OpenAI;
  let allowed: string;
  let clip: string;
  let image: string;
  let outside: string;
  const lines: string[] = [];

  const ask = (content: OpenAI.Chat.ChatCompletionContentPart[], extra: Partial<Params> = {}): Params => ({
    model: 'builtin-shapes',
    messages: [{ role: 'user', content }],
    max_tokens: 24,
    temperature: 0,
    ...extra,
  });

  beforeAll(async () => {
    const dir = await tempDir('loupe-openai-');
    allowed = path.join(dir, 'allowed');
    await mkdir(allowed);
    // a yellow circle throughout, a red square from 4 s (as the app's sample clip)
    clip = await makeShapesClip(allowed, {
      name: 'shapes.mp4',
      width: 320,
      height: 180,
      duration: 8,
      fps: 10,
      codec: 'h264',
      background: COLORS.blue,
      shapes: [
        { kind: 'circle', color: COLORS.yellow, radius: 0.16, x0: 0.25, y0: 0.5 },
        { kind: 'square', color: COLORS.red, radius: 0.16, x0: 0.75, y0: 0.5, appearAt: 4 },
      ],
    });
    image = path.join(allowed, 'still.png');
    const { ffmpeg } = await resolveBinaries();
    await runProcess(ffmpeg.path, ['-v', 'error', '-y', '-ss', '6', '-i', clip, '-frames:v', '1', image]);
    outside = path.join(dir, 'outside.mp4'); // never created: a refusal must not even look
    await writeFile(path.join(allowed, 'broken.mp4'), Buffer.alloc(4096, 7));
    running = await serve({
      dataDir: path.join(dir, 'data'),
      threads: 2,
      featureCache: false,
      openai: true,
      allowedFolders: [allowed],
      log: (line) => lines.push(line),
    });
    client = new OpenAI({ baseURL: `${running.web.url}v1`, apiKey: running.web.token, maxRetries: 0 });
  }, 120_000);
  afterAll(async () => {
    await running?.close();
    expect(liveWorkerCount()).toBe(0);
  });

  it('prints its base URL and key, and lists the installed packs, the one in use first', async () => {
    expect(lines.join('\n')).toContain(`base URL ${running.web.url}v1  API key ${running.web.token}`);
    const models = await client.models.list();
    expect(models.data[0]).toMatchObject({ id: 'builtin-shapes', object: 'model' });
  });

  it('answers a video question the same streamed and not, with usage', async () => {
    const request = ask([video(clip), { type: 'text', text: 'How many shapes are there?' }]);
    const whole = await client.chat.completions.create(request);
    expect(whole.object).toBe('chat.completion');
    expect(whole.choices[0]!.finish_reason).toBe('stop');
    const answer = whole.choices[0]!.message.content!;
    expect(answer).toBe('2');
    expect(whole.usage!.prompt_tokens).toBeGreaterThan(8 * 32); // 8 frames of 32 tokens, and the question
    expect(whole.usage!.completion_tokens).toBeGreaterThan(0);

    const stream = await client.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? '';
        finish = choice.finish_reason ?? finish;
      }
    }
    expect(text.trim()).toBe(answer);
    expect(finish).toBe('stop');
    expect(usage!.completion_tokens).toBe(whole.usage!.completion_tokens);
  });

  it('a follow-up that continues an earlier request reuses the model cache (reported in usage)', async () => {
    const first = ask([video(clip), { type: 'text', text: 'What color is the circle?' }]);
    const one = await client.chat.completions.create(first);
    const reply = one.choices[0]!.message.content!;
    expect(one.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
    const two = await client.chat.completions.create({
      ...first,
      messages: [
        ...first.messages,
        { role: 'assistant', content: reply },
        { role: 'user', content: 'What shape is red?' },
      ],
    });
    const cached = two.usage!.prompt_tokens_details!.cached_tokens!;
    expect(cached).toBeGreaterThanOrEqual(one.usage!.prompt_tokens);
    expect(two.usage!.prompt_tokens - cached).toBeLessThan(40); // only the new question (and the turn markers)
    // the same conversation sent fresh (another answer in the middle): no reuse, the whole prompt again
    const fresh = await client.chat.completions.create({
      ...first,
      messages: [
        ...first.messages,
        { role: 'assistant', content: `${reply} indeed` },
        { role: 'user', content: 'What shape is red?' },
      ],
    });
    expect(fresh.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
  });

  it('asks about a clip range with a frame count, and about an image (file and data URL)', async () => {
    const early = await client.chat.completions.create(
      ask([video(clip, { from: 0, to: 3, frames: 4 }), { type: 'text', text: 'How many shapes are there?' }]),
    );
    expect(early.choices[0]!.message.content).toBe('1'); // the square appears at 4 s
    expect(early.usage!.prompt_tokens).toBeLessThan(4 * 32 + 40);
    const png = await readFile(image);
    for (const url of [pathToFileURL(image).href, `data:image/png;base64,${png.toString('base64')}`]) {
      const answer = await client.chat.completions.create(
        ask([
          { type: 'image_url', image_url: { url } },
          { type: 'text', text: 'How many shapes are there?' },
        ]),
      );
      expect(answer.choices[0]!.message.content).toBe('2');
    }
  });

  it('honours max_tokens and stop', async () => {
    const describe = [video(clip), { type: 'text' as const, text: 'Describe the video.' }];
    const short = await client.chat.completions.create(ask(describe, { max_tokens: 2 }));
    expect(short.choices[0]!.finish_reason).toBe('length');
    expect(short.usage!.completion_tokens).toBe(2);
    const whole = (await client.chat.completions.create(ask(describe))).choices[0]!.message.content!;
    const cut = whole.split(' ')[2]!; // stop at the third word: the answer is what came before it
    const stopped = await client.chat.completions.create(ask(describe, { stop: [cut] }));
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(whole.startsWith(stopped.choices[0]!.message.content!)).toBe(true);
    expect(stopped.choices[0]!.message.content).not.toContain(cut);
  });

  const expectError = async (request: Promise<unknown>, status: number, code: string) => {
    const error = await request.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(status);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe(code);
    return error as InstanceType<typeof OpenAI.APIError>;
  };

  it('answers bad input with OpenAI error objects and 4xx codes', async () => {
    const question = { type: 'text' as const, text: 'How many shapes are there?' };
    await expectError(
      client.chat.completions.create(ask([video(clip), question], { model: 'gpt-4o' })),
      404,
      'model_not_found',
    );
    const long = await expectError(
      client.chat.completions.create(ask([video(clip, { frames: 64 }), question])),
      400,
      'context_length_exceeded',
    );
    expect(long.message).toMatch(/at most \d+/);
    await expectError(
      client.chat.completions.create(ask([video(path.join(allowed, 'broken.mp4')), question])),
      400,
      'unreadable_media',
    );
    await expectError(
      client.chat.completions.create(ask([video(outside), question])),
      403,
      'file_not_allowed',
    );
    await expectError(
      client.chat.completions.create(ask([video('/etc/passwd'), question])),
      403,
      'file_not_allowed',
    );
    await expectError(client.chat.completions.create(ask([question])), 400, 'invalid_request');
    await expectError(
      client.chat.completions.create(
        ask([{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }, question]),
      ),
      400,
      'invalid_request',
    );
    await expectError(
      client.chat.completions.create(ask([video(clip, { from: 30, to: 40 }), question])),
      400,
      'clip_out_of_range',
    );
    const huge = `data:video/mp4;base64,${'A'.repeat(45 * 1024 * 1024)}`;
    await expectError(
      client.chat.completions.create(ask([{ type: 'image_url', image_url: { url: huge } }, question])),
      413,
      'request_too_large',
    );
    const malformed = await send(running.web, '/v1/chat/completions', {
      method: 'POST',
      headers: { Authorization: `Bearer ${running.web.token}`, 'Content-Type': 'application/json' },
      body: '{"messages": [',
    });
    expect(malformed.status).toBe(400);
    expect(JSON.parse(malformed.body.toString()).error).toMatchObject({ type: 'invalid_request_error' });
  });

  it('refuses a request without the token, with a wrong one, or from a foreign Origin', async () => {
    const wrong = new OpenAI({ baseURL: `${running.web.url}v1`, apiKey: 'not-the-token', maxRetries: 0 });
    await expectError(wrong.models.list(), 401, 'invalid_api_key');
    const none = await send(running.web, '/v1/models');
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body.toString()).error.type).toBe('authentication_error');
    const foreign = await send(running.web, '/v1/models', {
      headers: { Authorization: `Bearer ${running.web.token}`, Origin: 'http://evil.example' },
    });
    expect(foreign.status).toBe(403);
    const rebound = await send(running.web, '/v1/models', {
      headers: { Authorization: `Bearer ${running.web.token}`, Host: 'evil.example' },
    });
    expect(rebound.status).toBe(403);
  });

  it('survives random requests on its routes: no 5xx, no crash', async () => {
    const auth = { Authorization: `Bearer ${running.web.token}`, 'Content-Type': 'application/json' };
    const url = fc.oneof(
      fc.constant(pathToFileURL(clip).href),
      fc.constant(pathToFileURL(outside).href),
      fc.constant('data:image/png;base64,AAAA'),
      fc.constant('data:video/mp4;base64,'),
      fc.string(),
    );
    const part = fc.oneof(
      fc.record({ type: fc.constant('text'), text: fc.string() }),
      fc.record({ type: fc.constant('image_url'), image_url: fc.oneof(fc.record({ url }), url) }),
      fc.record({
        type: fc.constant('video_url'),
        video_url: fc.record(
          {
            url,
            from: fc.double(),
            to: fc.double(),
            frames: fc.integer({ min: -3, max: 100 }),
            sampling: fc.string(),
          },
          { requiredKeys: ['url'] },
        ),
      }),
      fc.anything(),
    );
    const message = fc.record(
      {
        role: fc.oneof(fc.constantFrom('user', 'assistant', 'system', 'developer'), fc.string()),
        content: fc.oneof(fc.string(), fc.array(part, { maxLength: 3 }), fc.anything()),
      },
      { requiredKeys: [] },
    );
    const body = fc.oneof(
      fc
        .record(
          {
            model: fc.oneof(fc.constant('builtin-shapes'), fc.string()),
            messages: fc.array(message, { maxLength: 4 }),
            max_tokens: fc.oneof(fc.integer({ min: -5, max: 3 }), fc.anything()),
            temperature: fc.oneof(fc.double(), fc.anything()),
            stop: fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 6 })),
            stream: fc.boolean(),
            seed: fc.anything(),
          },
          { requiredKeys: ['messages'] },
        )
        .map((v) => JSON.stringify(v)),
      fc.string(),
      fc.json(),
    );
    await fc.assert(
      fc.asyncProperty(
        body,
        fc.constantFrom('/v1/chat/completions', '/v1/models', '/v1/completions', '/v1/chat/completions/x'),
        fc.constantFrom('POST', 'GET', 'PUT'),
        async (text, route, method) => {
          const reply = await send(running.web, route, {
            method,
            headers: auth,
            body: method === 'GET' ? undefined : text,
            timeoutMs: 60_000,
          });
          expect(reply.status).toBeLessThan(500);
        },
      ),
      { numRuns: 60, seed: 20261207 },
    );
    // and it still answers
    const ok = await client.chat.completions.create(
      ask([video(clip), { type: 'text', text: 'How many shapes are there?' }]),
    );
    expect(ok.choices[0]!.message.content).toBe('2');
  }, 300_000);
});
