/**
 * Web mode: the API and the built renderer over HTTP (Hono on @hono/node-server), for a browser on the same
 * machine.
 *
 * - Listens on 127.0.0.1 only.
 * - Every request needs the per-run secret token: the printed URL carries it once (`/?token=…`), the
 *   server answers with an HttpOnly, SameSite=Strict cookie and a redirect that drops it from the address bar;
 *   scripts may send it as the `X-Loupe-Token` header instead.
 * - Host must be 127.0.0.1:<port> or localhost:<port> (DNS rebinding), Origin (when sent) this server's own:
 *   anything else is refused with 403.
 * - Calls are JSON POSTs to /api/call/<method>; streams are POSTs to /api/stream/<method> answered as
 *   Server-Sent Events; local videos are served from /media/<id> with range requests.
 * - A strict Content-Security-Policy: the page may load only from this server, and talk to nothing else.
 * - Bad input is a 4xx, never a 500: malformed percent-escapes (400), wrong methods (405), non-JSON (415).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createAdaptorServer, type HttpBindings } from '@hono/node-server';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { getCookie, setCookie } from 'hono/cookie';
import { streamSSE } from 'hono/streaming';
import { CONTENT_SECURITY_POLICY } from '../csp.ts';
import { LoupeError } from '../errors.ts';
import { log } from '../log.ts';
import { fileReply } from '../playback/range.ts';
import { addOpenAiRoutes, openAiError } from './openai.ts';
import {
  dispatchCall,
  dispatchStream,
  type Envelope,
  type LoupeApi,
  type StreamMessage,
} from './contract.ts';

export interface WebServerOptions {
  api: LoupeApi;
  /** The file behind /media/<id> (the original video or its playable copy). */
  mediaFile: (videoId: string, proxy: boolean) => Promise<string>;
  /** The built renderer (vite's output). */
  rendererDir: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Fixed token (tests); a random one otherwise. */
  token?: string;
}

export interface WebServer {
  url: string;
  /** The URL with the token: what the user opens. */
  openUrl: string;
  port: number;
  token: string;
  server: Server;
  close(): Promise<void>;
}

export const TOKEN_HEADER = 'x-loupe-token';
const MAX_BODY = 1024 * 1024;

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
};

const STATUS_FOR: Partial<Record<string, 400 | 404 | 500>> = {
  BAD_REQUEST: 400,
  USAGE: 400,
  NOT_FOUND: 404,
  INTERNAL: 500,
};

type Env = { Bindings: HttpBindings };

export async function startWebServer(options: WebServerOptions): Promise<WebServer> {
  const token = options.token ?? randomBytes(24).toString('base64url');
  const tokenBytes = Buffer.from(token);
  let port = 0;
  const cookieName = () => `loupe_token_${port}`; // cookies ignore ports: one name per server
  const tokenMatches = (candidate: string | undefined | null): boolean => {
    if (!candidate) return false;
    const given = Buffer.from(candidate);
    return given.length === tokenBytes.length && timingSafeEqual(given, tokenBytes);
  };
  const plain = (c: Context<Env>, status: number, text: string) =>
    c.body(text + '\n', status as 200, { 'Content-Type': 'text/plain; charset=utf-8' });
  const json = (c: Context<Env>, status: number, value: Envelope<unknown>) =>
    c.body(JSON.stringify(value), status as 200, {
      'Content-Type': 'application/json; charset=utf-8',
      'Cache-Control': 'no-store',
    });

  const app = new Hono<Env>();

  // 0. Every answer carries the security headers.
  app.use('*', async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
  });

  // 1–3. Host, Origin, then the token (from the printed URL once, then a cookie; or a header; or, for the
  //      OpenAI-compatible routes, `Authorization: Bearer <token>`). Refusals of /v1 are OpenAI error objects.
  app.use('*', async (c, next) => {
    const openai = c.req.path.startsWith('/v1/');
    const refuse = (status: number, text: string) =>
      openai
        ? c.body(
            JSON.stringify(
              openAiError(
                status === 401 ? 'authentication_error' : 'permission_error',
                text,
                status === 401 ? 'invalid_api_key' : 'forbidden',
              ),
            ),
            status as 200,
            { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' },
          )
        : plain(c, status, text);
    const allowedHosts = [`127.0.0.1:${port}`, `localhost:${port}`];
    // A rebound DNS name reaches us with its own Host.
    if (!allowedHosts.includes(c.req.header('host') ?? ''))
      return refuse(403, 'Forbidden: unexpected Host header.');
    const origin = c.req.header('origin');
    if (origin !== undefined && !allowedHosts.some((h) => origin === `http://${h}`))
      return refuse(403, 'Forbidden: requests from other origins are refused.');
    if (c.req.header('sec-fetch-site') === 'cross-site') return refuse(403, 'Forbidden: cross-site request.');
    if (openai) {
      const bearer = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1]?.trim();
      if (!tokenMatches(bearer ?? c.req.header(TOKEN_HEADER)))
        return refuse(
          401,
          'Send the token `loupe serve --openai` printed as the API key (Authorization: Bearer <token>).',
        );
      return next();
    }

    const url = new URL(c.req.url);
    const fromQuery = url.searchParams.get('token');
    if (fromQuery !== null && c.req.method === 'GET') {
      if (!tokenMatches(fromQuery))
        return plain(c, 401, 'This link’s access token is wrong or from an earlier run of Loupe.');
      setCookie(c, cookieName(), token, { httpOnly: true, sameSite: 'Strict', path: '/' });
      url.searchParams.delete('token');
      return c.redirect(url.pathname + url.search, 303);
    }
    if (!tokenMatches(c.req.header(TOKEN_HEADER) ?? getCookie(c, cookieName())))
      return plain(
        c,
        401,
        'Open Loupe with the link it printed when it started: it carries the access token.',
      );
    // A path that is not valid percent-encoding names nothing: 400 rather than guess.
    if (decodePath(url.pathname) === null) return plain(c, 400, 'Malformed percent-escape in the URL.');
    return next();
  });

  // 4. The API: JSON POSTs; calls answer with an envelope, streams with Server-Sent Events.
  app.use('/api/*', async (c, next) => {
    if (c.req.method !== 'POST') return plain(c, 405, 'Use POST.');
    if (!(c.req.header('content-type') ?? '').startsWith('application/json'))
      return plain(c, 415, 'Send JSON.');
    return next();
  });
  const readJson = bodyLimit({
    maxSize: MAX_BODY,
    onError: (c) => json(c, 400, badRequest('The request is too large.')),
  });
  app.post('/api/call/:method', readJson, async (c) => {
    const body = parseJson(await c.req.text());
    if (!body.ok) return json(c, 400, body);
    const answer = await dispatchCall(options.api, c.req.param('method'), body.value);
    return json(c, answer.ok ? 200 : (STATUS_FOR[answer.error.code] ?? 422), answer);
  });
  app.post('/api/stream/:method', readJson, async (c) => {
    const body = parseJson(await c.req.text());
    if (!body.ok) return json(c, 400, body);
    c.env.incoming.socket.setNoDelay(true);
    c.header('Cache-Control', 'no-store');
    const method = c.req.param('method');
    return streamSSE(c, async (stream) => {
      const controller = new AbortController();
      stream.onAbort(() => controller.abort()); // a closed connection stops the stream
      let sent = Promise.resolve();
      const send = (message: StreamMessage) => {
        sent = sent.then(() =>
          stream.aborted ? undefined : stream.writeSSE({ data: JSON.stringify(message) }),
        );
      };
      await dispatchStream(options.api, method, body.value, controller.signal, send);
      await sent;
    });
  });
  app.all('/api/*', (c) => plain(c, 404, 'No such API route.'));

  // 4b. The OpenAI-compatible routes (openai.ts): /v1/models, /v1/chat/completions.
  addOpenAiRoutes(app, options.api);

  // 5. Local videos, with range requests.
  app.on(['GET', 'HEAD'], '/media/:id', async (c) => {
    let reply;
    try {
      const file = await options.mediaFile(c.req.param('id'), c.req.query('v') === 'proxy');
      reply = await fileReply(file, c.req.header('range'), c.req.method === 'HEAD');
    } catch (error) {
      const err = LoupeError.from(error);
      return plain(c, err.code === 'NOT_FOUND' || err.code === 'INTERNAL' ? 404 : 400, err.message);
    }
    const body = reply.body ? (Readable.toWeb(reply.body) as unknown as ReadableStream<Uint8Array>) : null;
    return new Response(body, { status: reply.status, headers: reply.headers });
  });
  app.all('/media/*', (c) =>
    c.req.method === 'GET' || c.req.method === 'HEAD'
      ? plain(c, 404, 'This video is not in the library (any more).')
      : plain(c, 405, 'Use GET.'),
  );

  // 6. The built renderer.
  const pages = path.resolve(options.rendererDir);
  app.use('*', async (c, next) =>
    c.req.method === 'GET' || c.req.method === 'HEAD' ? next() : plain(c, 405, 'Use GET.'),
  );
  app.use(
    '*',
    serveStatic({
      root: pages,
      onFound: (_path, c) => {
        c.header(
          'Cache-Control',
          c.req.path.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-store',
        );
      },
    }),
  );
  app.notFound((c) =>
    (c.req.path === '/' || c.req.path === '/index.html') && !existsSync(path.join(pages, 'index.html'))
      ? plain(c, 503, `The app's pages are not built yet: run \`npm run build\` (looked in ${pages}).`)
      : plain(c, 404, 'Not found.'),
  );
  app.onError((error, c) => {
    log.error('web request failed', error, { method: c.req.method, route: c.req.path });
    return plain(c, 500, LoupeError.from(error).message);
  });

  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}/`;
  return {
    url,
    openUrl: `${url}?token=${token}`,
    port,
    token,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function badRequest(message: string): Envelope<unknown> {
  return { ok: false, error: { code: 'BAD_REQUEST', message } };
}

function parseJson(text: string): Envelope<unknown> {
  try {
    return { ok: true, value: text ? JSON.parse(text) : {} };
  } catch {
    return badRequest('The request body is not valid JSON.');
  }
}

/** A URL path decoded, or null for a malformed percent-escape. */
function decodePath(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}
