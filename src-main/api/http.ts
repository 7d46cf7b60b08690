/**
 * Web mode: the API and the built renderer over node:http, for a browser on the same machine.
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
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { CONTENT_SECURITY_POLICY } from '../csp.ts';
import { LoupeError } from '../errors.ts';
import { log } from '../log.ts';
import { fileReply } from '../playback/range.ts';
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

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

const STATUS_FOR: Partial<Record<string, number>> = {
  BAD_REQUEST: 400,
  USAGE: 400,
  NOT_FOUND: 404,
  INTERNAL: 500,
};

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

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const allowedHosts = [`127.0.0.1:${port}`, `localhost:${port}`];
    // 1. Host: refuse anything but this server's own names (a rebound DNS name reaches us with its own Host).
    if (!allowedHosts.includes(req.headers.host ?? ''))
      return plain(res, 403, 'Forbidden: unexpected Host header.');
    // 2. Origin: pages from anywhere else may not talk to Loupe.
    const origin = req.headers.origin;
    if (origin !== undefined && !allowedHosts.some((h) => origin === `http://${h}`))
      return plain(res, 403, 'Forbidden: requests from other origins are refused.');
    if (req.headers['sec-fetch-site'] === 'cross-site')
      return plain(res, 403, 'Forbidden: cross-site request.');

    const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
    // 3. Token: from the printed URL once (then a cookie), or a header.
    const fromQuery = url.searchParams.get('token');
    if (fromQuery !== null && req.method === 'GET') {
      if (!tokenMatches(fromQuery))
        return plain(res, 401, 'This link’s access token is wrong or from an earlier run of Loupe.');
      res.setHeader('Set-Cookie', `${cookieName()}=${token}; HttpOnly; SameSite=Strict; Path=/`);
      url.searchParams.delete('token');
      res.writeHead(303, { Location: url.pathname + url.search });
      return res.end();
    }
    const header = req.headers[TOKEN_HEADER];
    const cookie = parseCookies(req.headers.cookie)[cookieName()];
    if (!tokenMatches(typeof header === 'string' ? header : cookie))
      return plain(
        res,
        401,
        'Open Loupe with the link it printed when it started: it carries the access token.',
      );

    // 4. Routes.
    const route = url.pathname;
    if (route.startsWith('/api/')) {
      if (req.method !== 'POST') return plain(res, 405, 'Use POST.');
      if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
        return plain(res, 415, 'Send JSON.');
      const [, , kind, method = ''] = route.split('/');
      const body = await readJson(req);
      if (!body.ok) return json(res, 400, body);
      if (kind === 'call') {
        const answer = await dispatchCall(options.api, method, body.value);
        return json(res, answer.ok ? 200 : (STATUS_FOR[answer.error.code] ?? 422), answer);
      }
      if (kind === 'stream')
        return sse(req, res, (signal, send) => dispatchStream(options.api, method, body.value, signal, send));
      return plain(res, 404, 'No such API route.');
    }
    if (route.startsWith('/media/')) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'Use GET.');
      const videoId = decodePath(route.slice('/media/'.length));
      if (videoId === null) return plain(res, 400, 'Malformed percent-escape in the URL.');
      let reply;
      try {
        const file = await options.mediaFile(videoId, url.searchParams.get('v') === 'proxy');
        reply = await fileReply(file, req.headers.range, req.method === 'HEAD');
      } catch (error) {
        const err = LoupeError.from(error);
        return plain(res, err.code === 'NOT_FOUND' || err.code === 'INTERNAL' ? 404 : 400, err.message);
      }
      res.writeHead(reply.status, reply.headers);
      if (!reply.body) return res.end();
      reply.body.pipe(res);
      res.on('close', () => reply.body?.destroy());
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'Use GET.');
    return serveStatic(res, options.rendererDir, route === '/' ? '/index.html' : route);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log.error('web request failed', error, { method: req.method, route: req.url?.split('?')[0] });
      if (!res.headersSent) plain(res, 500, LoupeError.from(error).message);
      else res.destroy();
    });
  });
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

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(text + '\n');
}

function json(res: ServerResponse, status: number, value: Envelope<unknown>): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(value));
}

/** Answer as Server-Sent Events: one `data:` line of JSON per StreamMessage; a closed connection aborts the stream. */
async function sse(
  req: IncomingMessage,
  res: ServerResponse,
  run: (signal: AbortSignal, send: (m: StreamMessage) => void) => Promise<void>,
): Promise<void> {
  const controller = new AbortController();
  res.on('close', () => controller.abort());
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    Connection: 'keep-alive',
  });
  res.flushHeaders();
  req.socket.setNoDelay(true);
  await run(controller.signal, (message) => {
    if (!res.writableEnded) res.write(`data: ${JSON.stringify(message)}\n\n`);
  });
  res.end();
}

async function readJson(req: IncomingMessage): Promise<Envelope<unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY)
      return { ok: false, error: { code: 'BAD_REQUEST', message: 'The request is too large.' } };
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return { ok: true, value: text ? JSON.parse(text) : {} };
  } catch {
    return { ok: false, error: { code: 'BAD_REQUEST', message: 'The request body is not valid JSON.' } };
  }
}

/** A URL path segment decoded, or null for a malformed percent-escape (a 400, not a 500). */
function decodePath(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0) out[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return out;
}

async function serveStatic(res: ServerResponse, root: string, route: string): Promise<void> {
  const base = path.resolve(root);
  const decoded = decodePath(route);
  if (decoded === null) return plain(res, 400, 'Malformed percent-escape in the URL.');
  const file = path.resolve(base, '.' + decoded);
  if (!file.startsWith(base + path.sep)) return plain(res, 404, 'Not found.');
  const info = await stat(file).catch(() => null);
  if (!info?.isFile()) {
    if (route === '/index.html')
      return plain(res, 503, `The app's pages are not built yet: run \`npm run build\` (looked in ${base}).`);
    return plain(res, 404, 'Not found.');
  }
  const type = STATIC_TYPES[path.extname(file)] ?? 'application/octet-stream';
  const cache = route.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-store';
  res.writeHead(200, { 'Content-Type': type, 'Cache-Control': cache });
  res.end(await readFile(file));
}
