import { describe, expect, it } from 'vitest';
import type { StreamMessage } from '../../../src-main/api/contract.ts';
import { ApiError, messagesToIterable, unwrap } from './client.ts';
import { httpClient, parseSse } from './http-client.ts';

const sse = (...messages: StreamMessage[]) => messages.map((m) => `data: ${JSON.stringify(m)}\n\n`).join('');

/** A fetch stand-in that answers from a table and records the requests. */
function fakeFetch(answer: (url: string, init: RequestInit) => Response) {
  const requests: { url: string; init: RequestInit }[] = [];
  const fn = async (input: string | URL | Request, init: RequestInit = {}) => {
    requests.push({ url: String(input), init });
    return answer(String(input), init);
  };
  return { fetch: fn as typeof fetch, requests };
}

describe('Server-Sent Events parsing', () => {
  it('returns complete events and keeps the unfinished rest', () => {
    const text = sse({ kind: 'event', event: { type: 'token', text: 're' } }) + 'data: {"kind":"e';
    const { messages, rest } = parseSse(text);
    expect(messages).toEqual([{ kind: 'event', event: { type: 'token', text: 're' } }]);
    expect(rest).toBe('data: {"kind":"e');
  });

  it('turns a damaged message into an error message rather than dropping it', () => {
    expect(parseSse('data: {oops\n\n').messages[0]).toMatchObject({
      kind: 'error',
      error: { code: 'INTERNAL' },
    });
  });
});

describe('envelopes', () => {
  it('unwraps values and rebuilds errors', () => {
    expect(unwrap({ ok: true, value: 3 })).toBe(3);
    expect(() =>
      unwrap({ ok: false, error: { code: 'NOT_FOUND', message: 'gone', details: { id: 1 } } }),
    ).toThrow(expect.objectContaining({ code: 'NOT_FOUND', message: 'gone', details: { id: 1 } }));
    expect(() => unwrap('<html>')).toThrow(ApiError);
  });
});

describe('pushed messages as an async iterator', () => {
  it('yields events in order and ends at the end message', async () => {
    const it = messagesToIterable<number>((push) => {
      queueMicrotask(() => {
        push({ kind: 'event', event: 1 });
        push({ kind: 'event', event: 2 });
        push({ kind: 'end' });
      });
      return () => {};
    });
    const seen: number[] = [];
    for await (const n of it) seen.push(n);
    expect(seen).toEqual([1, 2]);
  });

  it('stops the source when the consumer leaves early', async () => {
    let stopped = 0;
    const it = messagesToIterable<number>((push) => {
      push({ kind: 'event', event: 1 });
      push({ kind: 'event', event: 2 });
      return () => stopped++;
    });
    for await (const n of it) if (n === 1) break;
    expect(stopped).toBe(1);
  });

  it('reports an aborted signal as CANCELLED', async () => {
    const controller = new AbortController();
    const it = messagesToIterable<number>(() => () => {}, controller.signal);
    const reading = (async () => {
      for await (const _ of it) void _;
    })();
    controller.abort();
    await expect(reading).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});

describe('HTTP client', () => {
  it('POSTs JSON calls with the token header and unwraps the answer', async () => {
    const f = fakeFetch(() => Response.json({ ok: true, value: { videos: [] } }));
    const client = httpClient({ fetch: f.fetch, base: 'http://127.0.0.1:9', token: 't0k' });
    expect(await client.call('listVideos', {})).toEqual({ videos: [] });
    expect(f.requests[0]!.url).toBe('http://127.0.0.1:9/api/call/listVideos');
    expect(f.requests[0]!.init).toMatchObject({ method: 'POST', body: '{}' });
    expect((f.requests[0]!.init.headers as Record<string, string>)['X-Loupe-Token']).toBe('t0k');
  });

  it('turns refusals and lost connections into ApiErrors', async () => {
    const refused = httpClient({
      fetch: fakeFetch(() => new Response('Forbidden: other origin', { status: 403 })).fetch,
    });
    await expect(refused.call('listVideos', {})).rejects.toMatchObject({
      code: 'UNAUTHORIZED',
      message: 'Forbidden: other origin',
    });
    const offline = httpClient({
      fetch: (async () => Promise.reject(new TypeError('fetch failed'))) as typeof fetch,
    });
    await expect(offline.call('listVideos', {})).rejects.toMatchObject({ code: 'OFFLINE' });
  });

  it('reads a stream split across arbitrary chunks', async () => {
    const body = sse(
      { kind: 'event', event: { type: 'token', text: 'bl' } },
      { kind: 'event', event: { type: 'token', text: 'ue' } },
      { kind: 'end' },
    );
    const chunks = [body.slice(0, 7), body.slice(7, 50), body.slice(50)];
    const f = fakeFetch(
      () =>
        new Response(
          new ReadableStream({
            start: (c) => (chunks.forEach((x) => c.enqueue(new TextEncoder().encode(x))), c.close()),
          }),
          {
            headers: { 'Content-Type': 'text/event-stream' },
          },
        ),
    );
    const tokens: string[] = [];
    for await (const e of httpClient({ fetch: f.fetch }).stream('ask', {
      conversationId: 'c',
      question: 'q',
    }))
      if (e.type === 'token') tokens.push(e.text);
    expect(tokens.join('')).toBe('blue');
  });

  it('rethrows a stream’s error message', async () => {
    const f = fakeFetch(
      () =>
        new Response(
          sse({ kind: 'error', error: { code: 'CONTEXT_OVERFLOW', message: 'too many frames' } }),
          { headers: { 'Content-Type': 'text/event-stream' } },
        ),
    );
    const reading = (async () => {
      for await (const _ of httpClient({ fetch: f.fetch }).stream('ask', {
        conversationId: 'c',
        question: 'q',
      }))
        void _;
    })();
    await expect(reading).rejects.toMatchObject({ code: 'CONTEXT_OVERFLOW', message: 'too many frames' });
  });
});
