/** Test helper: one raw HTTP request to web mode, so Host, Origin and the path can be anything (fetch would not allow it). */
import { request } from 'node:http';
import type { WebServer } from './http.ts';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export function send(
  web: Pick<WebServer, 'port'>,
  route: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: Reply['headers'] = {};
    const req = request(
      {
        host: '127.0.0.1',
        port: web.port,
        path: route,
        agent: false, // a fresh connection each time: one request's fate never spills into the next
        method: init.method ?? 'GET',
        headers: { Host: `127.0.0.1:${web.port}`, ...init.headers },
      },
      (res) => {
        status = res.statusCode!;
        headers = res.headers;
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status, headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    // A client that gives up (a long stream): what arrived so far is the reply.
    if (init.timeoutMs)
      req.setTimeout(init.timeoutMs, () => {
        req.destroy();
        if (status) resolve({ status, headers, body: Buffer.concat(chunks) });
        else reject(new Error(`no answer to ${init.method ?? 'GET'} ${route} in ${init.timeoutMs} ms`));
      });
    req.on('error', (error) =>
      status ? resolve({ status, headers, body: Buffer.concat(chunks) }) : reject(error),
    );
    req.end(init.body);
  });
}
