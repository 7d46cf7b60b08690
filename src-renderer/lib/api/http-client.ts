/** The API over web mode's HTTP: JSON POSTs for calls, Server-Sent Events (read from a POST) for streams. */
import type { StreamMessage } from '../../../src-main/api/contract.ts';
import { ApiError, messagesToIterable, unwrap, type ApiClient } from './client.ts';

export interface HttpClientOptions {
  /** Origin of the server ('' = the page's own). */
  base?: string;
  fetch?: typeof fetch;
  /** Sent as X-Loupe-Token (scripts and tests; the browser page relies on its cookie). */
  token?: string;
}

/** Split Server-Sent Events text into the JSON messages of its complete `data:` events; `rest` is unfinished. */
export function parseSse(text: string): { messages: StreamMessage[]; rest: string } {
  const messages: StreamMessage[] = [];
  const blocks = text.split(/\r?\n\r?\n/);
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    const data = block
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''))
      .join('\n');
    if (!data) continue;
    try {
      messages.push(JSON.parse(data) as StreamMessage);
    } catch {
      messages.push({
        kind: 'error',
        error: { code: 'INTERNAL', message: 'Loupe sent a damaged stream message.' },
      });
    }
  }
  return { messages, rest };
}

export function httpClient(options: HttpClientOptions = {}): ApiClient {
  const base = options.base ?? '';
  const doFetch = options.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (options.token) headers['X-Loupe-Token'] = options.token;

  const failure = async (res: Response) => {
    if ((res.headers.get('content-type') ?? '').startsWith('application/json'))
      return unwrap(await res.json());
    const text = (await res.text()).trim();
    if (res.status === 401 || res.status === 403)
      return new ApiError('UNAUTHORIZED', text || 'Loupe refused the request.');
    return new ApiError('INTERNAL', text || `Loupe answered ${res.status}.`);
  };

  return {
    async call(method, input) {
      let res: Response;
      try {
        res = await doFetch(`${base}/api/call/${method}`, {
          method: 'POST',
          headers,
          body: JSON.stringify(input),
          credentials: 'same-origin',
        });
      } catch {
        throw new ApiError('OFFLINE', 'Loupe is not reachable: is it still running?');
      }
      if ((res.headers.get('content-type') ?? '').startsWith('application/json'))
        return unwrap(await res.json());
      throw await failure(res);
    },
    stream(method, input, signal) {
      return messagesToIterable((push) => {
        const controller = new AbortController();
        void (async () => {
          try {
            const res = await doFetch(`${base}/api/stream/${method}`, {
              method: 'POST',
              headers,
              body: JSON.stringify(input),
              credentials: 'same-origin',
              signal: controller.signal,
            });
            if (!res.ok || !res.body) throw await failure(res);
            const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
            let buffer = '';
            for (;;) {
              const { value, done } = await reader.read();
              if (done) break;
              const parsed = parseSse(buffer + value);
              buffer = parsed.rest;
              parsed.messages.forEach(push);
            }
            push({ kind: 'end' });
          } catch (error) {
            if (controller.signal.aborted) return;
            const e =
              error instanceof ApiError
                ? error
                : new ApiError('OFFLINE', 'The connection to Loupe was lost.');
            push({ kind: 'error', error: { code: e.code as never, message: e.message, details: e.details } });
          }
        })();
        return () => controller.abort();
      }, signal);
    },
  };
}
