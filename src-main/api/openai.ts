/**
 * The OpenAI-compatible transport: `GET /v1/models` and `POST /v1/chat/completions` (plain JSON, or streamed as
 * Server-Sent Events in OpenAI's chunk format ending with `[DONE]`), mapped onto the API's `chat` stream and
 * `listModels` call, so other tools (chat front-ends, scripts, the official `openai` clients) can use Loupe as
 * their local video model. It sits beside the HTTP and IPC transports and reaches the engine only through the
 * same service (contract.ts), behind the same Host, Origin and token checks (http.ts), the token taken as
 * `Authorization: Bearer …`.
 *
 * Content parts: `text`; `image_url` and `video_url` with a data URL or a `file://` URL (a library video or a file
 * under an allowed folder). A `video_url` may name Loupe's clip fields: `from`, `to` (seconds), `frames`,
 * `sampling` (`exact`, `fast`, `auto`). Honoured: `max_tokens` (`max_completion_tokens`), `temperature`,
 * `top_p`, `stop`, `seed`, `stream` (`stream_options.include_usage`); other fields are ignored, as
 * OpenAI-compatible servers do. Errors are OpenAI's `{error: {message, type, param, code}}` with 4xx statuses.
 */
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { LoupeError, type SerializedError } from '../errors.ts';
import {
  MAX_DATA_URL_CHARS,
  parseStreamInput,
  type ChatEvent,
  type ChatPart,
  type LoupeApi,
  type ParsedStreamInput,
} from './contract.ts';

/** A body may carry one data URL of up to 32 MiB of media (base64) and the conversation's text. */
export const OPENAI_MAX_BODY = MAX_DATA_URL_CHARS + 2 * 1024 * 1024;

type OpenAiErrorType =
  'invalid_request_error' | 'authentication_error' | 'permission_error' | 'not_found_error' | 'server_error';

export interface OpenAiError {
  error: { message: string; type: OpenAiErrorType; param: string | null; code: string | null };
}

/** Status, OpenAI error type and code for each Loupe error code (others: 500 server_error). */
const ERRORS: Record<string, [number, OpenAiErrorType, string]> = {
  BAD_REQUEST: [400, 'invalid_request_error', 'invalid_request'],
  USAGE: [400, 'invalid_request_error', 'invalid_request'],
  CONTEXT_OVERFLOW: [400, 'invalid_request_error', 'context_length_exceeded'],
  FORBIDDEN: [403, 'permission_error', 'file_not_allowed'],
  FILE_NOT_FOUND: [404, 'not_found_error', 'file_not_found'],
  MODEL_NOT_FOUND: [404, 'not_found_error', 'model_not_found'],
  NOT_FOUND: [404, 'not_found_error', 'not_found'],
  NOT_A_VIDEO: [400, 'invalid_request_error', 'unreadable_media'],
  NO_VIDEO_STREAM: [400, 'invalid_request_error', 'unreadable_media'],
  CORRUPT_MEDIA: [400, 'invalid_request_error', 'unreadable_media'],
  ZERO_DURATION: [400, 'invalid_request_error', 'unreadable_media'],
  UNSUPPORTED_MEDIA: [400, 'invalid_request_error', 'unreadable_media'],
  RANGE_OUTSIDE: [400, 'invalid_request_error', 'clip_out_of_range'],
  FFMPEG_FAILED: [400, 'invalid_request_error', 'unreadable_media'],
  CANCELLED: [499, 'invalid_request_error', 'cancelled'],
};

function describe(error: SerializedError): { status: number; body: OpenAiError } {
  const [status, type, code] = ERRORS[error.code] ?? [500, 'server_error', error.code.toLowerCase()];
  return { status, body: openAiError(type, error.message, code) };
}

export function openAiError(type: OpenAiErrorType, message: string, code: string | null = null): OpenAiError {
  return { error: { message, type, param: null, code } };
}

// ─── The request, as OpenAI's clients send it (lenient: unknown fields are ignored) ─────────────────

const UrlSchema = z.union([z.string(), z.object({ url: z.string() }).passthrough()]);
const PartSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text'), text: z.string() }).passthrough(),
  z.object({ type: z.literal('image_url'), image_url: UrlSchema }).passthrough(),
  z
    .object({
      type: z.literal('video_url'),
      video_url: z.union([
        z.string(),
        z
          .object({
            url: z.string(),
            from: z.number().optional(),
            to: z.number().optional(),
            frames: z.number().optional(),
            sampling: z.string().optional(),
          })
          .passthrough(),
      ]),
    })
    .passthrough(),
]);
const MessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant']),
    content: z.union([z.string(), z.array(PartSchema), z.null()]),
  })
  .passthrough();
const RequestSchema = z
  .object({
    model: z.string().max(200).optional(),
    messages: z.array(MessageSchema).min(1),
    max_tokens: z.number().int().positive().nullable().optional(),
    max_completion_tokens: z.number().int().positive().nullable().optional(),
    temperature: z.number().nullable().optional(),
    top_p: z.number().nullable().optional(),
    seed: z.number().int().nullable().optional(),
    stop: z.union([z.string(), z.array(z.string()), z.null()]).optional(),
    stream: z.boolean().nullable().optional(),
    stream_options: z.object({ include_usage: z.boolean().optional() }).passthrough().nullable().optional(),
  })
  .passthrough();
type OpenAiRequest = z.infer<typeof RequestSchema>;

/** A content part's URL → a chat media source: `file://` to a path, `data:` as it is. */
function source(url: string): { path: string } | { dataUrl: string } {
  if (url.startsWith('data:')) return { dataUrl: url };
  if (url.startsWith('file:')) {
    try {
      return { path: fileURLToPath(url) };
    } catch {
      throw new LoupeError('BAD_REQUEST', `"${url.slice(0, 80)}" is not a valid file:// URL.`);
    }
  }
  throw new LoupeError(
    'BAD_REQUEST',
    'Media URLs must be data: or file:// URLs: Loupe never fetches anything from the network.',
  );
}

/** OpenAI's request → the contract's `chat` input (validated there too). */
export function toChatInput(request: OpenAiRequest): ParsedStreamInput<'chat'> {
  const messages = request.messages.map((m) => {
    const content = m.content ?? '';
    const parts: ChatPart[] = [];
    for (const part of typeof content === 'string' ? [{ type: 'text' as const, text: content }] : content) {
      if (part.type === 'text') parts.push({ type: 'text', text: part.text });
      else if (part.type === 'image_url') {
        const url = typeof part.image_url === 'string' ? part.image_url : part.image_url.url;
        parts.push({ type: 'image', source: source(url) });
      } else {
        const v = typeof part.video_url === 'string' ? { url: part.video_url } : part.video_url;
        parts.push({
          type: 'video',
          source: source(v.url),
          ...(v.from !== undefined && { from: v.from }),
          ...(v.to !== undefined && { to: v.to }),
          ...(v.frames !== undefined && { frames: v.frames }),
          ...(v.sampling !== undefined && { sampling: v.sampling as 'auto' }),
        });
      }
    }
    return { role: m.role === 'developer' ? ('system' as const) : m.role, parts };
  });
  const stop = request.stop == null ? [] : typeof request.stop === 'string' ? [request.stop] : request.stop;
  return parseStreamInput('chat', {
    ...(request.model !== undefined && { model: request.model }),
    messages,
    ...((request.max_completion_tokens ?? request.max_tokens) != null && {
      maxTokens: request.max_completion_tokens ?? request.max_tokens,
    }),
    ...(request.temperature != null && { temperature: request.temperature }),
    ...(request.top_p != null && { topP: request.top_p }),
    ...(request.seed != null && { seed: request.seed }),
    stop,
  });
}

const usageOf = (u: Extract<ChatEvent, { type: 'done' }>['usage']) => ({
  prompt_tokens: u.promptTokens,
  completion_tokens: u.completionTokens,
  total_tokens: u.promptTokens + u.completionTokens,
  prompt_tokens_details: { cached_tokens: u.cachedTokens },
});

/** Add the routes to the web server's app (after its Host, Origin and token checks). */
type Env = { Bindings: HttpBindings };

export function addOpenAiRoutes(app: Hono<Env>, api: LoupeApi): void {
  const reply = (c: Context<Env>, status: number, body: unknown) =>
    c.body(JSON.stringify(body), status as 200, {
      'Content-Type': 'application/json; charset=utf-8',
      'Cache-Control': 'no-store',
    });
  const fail = (c: Context<Env>, error: unknown) => {
    const { status, body } = describe(LoupeError.from(error).toJSON());
    return reply(c, status, body);
  };

  app.get('/v1/models', async (c) => {
    try {
      const { packs } = await api.listModels({});
      const created = Math.floor(Date.now() / 1000);
      const ids = new Set<string>();
      const data = [];
      // the model in use first: the one chat completions answer with; packs that cannot load are left out
      for (const pack of [...packs].sort((a, b) => Number(b.active) - Number(a.active)))
        if (!pack.error && !ids.has(pack.name)) {
          ids.add(pack.name);
          data.push({
            id: pack.name,
            object: 'model',
            created,
            owned_by: 'loupe',
            loupe: { version: pack.version, active: pack.active, domain: pack.domain },
          });
        }
      return reply(c, 200, { object: 'list', data });
    } catch (error) {
      return fail(c, error);
    }
  });

  app.post(
    '/v1/chat/completions',
    bodyLimit({
      maxSize: OPENAI_MAX_BODY,
      onError: (c) =>
        reply(
          c,
          413,
          openAiError(
            'invalid_request_error',
            'The request is too large (media over 32 MiB?).',
            'request_too_large',
          ),
        ),
    }),
    async (c) => {
      if (!(c.req.header('content-type') ?? '').startsWith('application/json'))
        return reply(
          c,
          415,
          openAiError('invalid_request_error', 'Send JSON (Content-Type: application/json).'),
        );
      let request: OpenAiRequest;
      let input: ParsedStreamInput<'chat'>;
      try {
        let raw: unknown;
        try {
          raw = JSON.parse(await c.req.text());
        } catch {
          throw new LoupeError('BAD_REQUEST', 'The request body is not valid JSON.');
        }
        const parsed = RequestSchema.safeParse(raw);
        if (!parsed.success) {
          const issue = parsed.error.issues[0]!;
          throw new LoupeError(
            'BAD_REQUEST',
            `Invalid request: ${issue.path.join('.') || '(body)'}: ${issue.message}`,
          );
        }
        request = parsed.data;
        input = toChatInput(request);
      } catch (error) {
        return fail(c, error);
      }
      const id = `chatcmpl-${randomUUID().replaceAll('-', '')}`;
      const created = Math.floor(Date.now() / 1000);
      const controller = new AbortController();
      // a client that hangs up stops the answer (after a finished reply this does nothing)
      c.env.outgoing.once('close', () => controller.abort());

      if (!request.stream) {
        try {
          let done: Extract<ChatEvent, { type: 'done' }> | null = null;
          for await (const event of api.chat(input, controller.signal))
            if (event.type === 'done') done = event;
          if (!done) throw new LoupeError('INTERNAL', 'The answer ended without a result.');
          return reply(c, 200, {
            id,
            object: 'chat.completion',
            created,
            model: done.model,
            choices: [
              {
                index: 0,
                message: { role: 'assistant', content: done.text, refusal: null },
                logprobs: null,
                finish_reason: done.finishReason,
              },
            ],
            usage: usageOf(done.usage),
          });
        } catch (error) {
          return fail(c, error);
        }
      }

      // Streaming: the first event decides the status: a request that fails before any token is a plain
      // 4xx error object, as OpenAI answers; a failure after that is an error chunk in the stream.
      const events = api.chat(input, controller.signal)[Symbol.asyncIterator]();
      let first: IteratorResult<ChatEvent>;
      try {
        first = await events.next();
      } catch (error) {
        return fail(c, error);
      }
      const includeUsage = Boolean(request.stream_options?.include_usage);
      c.header('Cache-Control', 'no-store');
      return streamSSE(c, async (stream) => {
        stream.onAbort(() => controller.abort());
        let model =
          input.model ??
          (await api.modelInfo({}).then(
            (m) => m.name,
            () => 'loupe',
          ));
        const chunk = (delta: object, finish: string | null, extra: object = {}) =>
          stream.writeSSE({
            data: JSON.stringify({
              id,
              object: 'chat.completion.chunk',
              created,
              model,
              choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
              ...extra,
            }),
          });
        try {
          let roleSent = false;
          for (let next = first; !next.done; next = await events.next()) {
            const event = next.value;
            if (event.type === 'done') model = event.model;
            if (!roleSent) {
              await chunk({ role: 'assistant', content: '' }, null);
              roleSent = true;
            }
            if (event.type === 'token') await chunk({ content: event.text }, null);
            else {
              await chunk({}, event.finishReason);
              if (includeUsage)
                await stream.writeSSE({
                  data: JSON.stringify({
                    id,
                    object: 'chat.completion.chunk',
                    created,
                    model,
                    choices: [],
                    usage: usageOf(event.usage),
                  }),
                });
            }
          }
        } catch (error) {
          if (!stream.aborted)
            await stream.writeSSE({ data: JSON.stringify(describe(LoupeError.from(error).toJSON()).body) });
        }
        if (!stream.aborted) await stream.writeSSE({ data: '[DONE]' });
      });
    },
  );
  app.all('/v1/*', (c) =>
    reply(
      c,
      404,
      openAiError('not_found_error', `No such route: ${c.req.method} ${c.req.path}.`, 'unknown_route'),
    ),
  );
}
