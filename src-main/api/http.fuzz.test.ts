/**
 * Property-based fuzzing of web mode (fast-check, bounded): random and malformed requests on every route
 * (each call and stream of the contract, /media/, static files, the token exchange). Whatever comes in, the
 * server answers with a status below 500, never crashes, leaves no unhandled rejection, and the library file
 * still loads afterwards. Inputs are drawn partly at random and partly near the contract (its field names,
 * with ids and paths from this test's library), so that the validation *and* the code behind it are reached.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { COLORS, makeShapesClip } from '../../test/fixtures/clips.ts';
import { LibraryStore } from '../library/store.ts';
import { Services } from '../services.ts';
import { calls, streams } from './contract.ts';
import { send } from './http.fixture.ts';
import { startWebServer, type WebServer } from './http.ts';
import { LoupeService } from './service.ts';

const RUNS = 120;

describe('web mode under random and malformed requests', () => {
  let dir: string;
  let web: WebServer;
  let service: LoupeService;
  let videoId: string;
  let clipsDir: string;
  const problems: unknown[] = [];
  const onProblem = (error: unknown) => problems.push(error);

  beforeAll(async () => {
    process.on('unhandledRejection', onProblem);
    process.on('uncaughtException', onProblem);
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-fuzz-'));
    clipsDir = path.join(dir, 'clips');
    const clip = await makeShapesClip(clipsDir, {
      name: 'dot.mp4',
      width: 96,
      height: 64,
      duration: 1,
      fps: 5,
      codec: 'h264',
      background: COLORS.white,
      shapes: [{ kind: 'circle', color: COLORS.red, radius: 0.2, x0: 0.5, y0: 0.5 }],
    });
    const pages = path.join(dir, 'renderer');
    await mkdir(path.join(pages, 'assets'), { recursive: true });
    await writeFile(path.join(pages, 'index.html'), '<!doctype html><title>Loupe</title>');
    await writeFile(path.join(pages, 'assets', 'app.js'), 'export {};');
    const services = new Services({ dataDir: path.join(dir, 'data'), featureCache: false, threads: 1 });
    service = await LoupeService.create(services, { mediaUrl: (id) => `/media/${id}` });
    videoId = (await service.addPaths({ paths: [clip], recursive: false })).added[0]!.id;
    web = await startWebServer({
      api: service,
      mediaFile: (id, proxy) => service.mediaFile(id, proxy),
      rendererDir: pages,
    });
  });

  afterAll(async () => {
    process.off('unhandledRejection', onProblem);
    process.off('uncaughtException', onProblem);
    service?.dispose();
    await web?.close();
    await service?.services.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it(`answers ${RUNS * 2} random requests without a 5xx, a crash or an unhandled rejection`, async () => {
    // Built here, once beforeAll has made the library they draw ids and paths from.
    /** Values a field might get: the right kind, the wrong kind, edge cases, this library's ids and paths. */
    const fieldValue = () =>
      fc.oneof(
        fc.constantFrom(
          videoId,
          'f'.repeat(16),
          '',
          '../../etc/passwd',
          '%00',
          clipsDir,
          path.join(clipsDir, 'dot.mp4'),
          path.join(dir, 'nothing-here'),
          'x'.repeat(5000),
          'csv',
          'md',
        ),
        fc.string({ maxLength: 12 }).map((s) => path.join(dir, s)), // never outside this test's folder
        fc.integer(),
        fc.double({ noNaN: true }),
        fc.constantFrom(0, -1, 1e308, 0.5, 120, 121, 64),
        fc.boolean(),
        fc.constant(null),
        fc.array(fc.oneof(fc.constant(videoId), fc.integer({ min: -5, max: 5 }), fc.constant(clipsDir)), {
          maxLength: 4,
        }),
        fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 2 }),
      );

    /** A payload for `schema`: its own field names with field values, plus sometimes an extra field; or any JSON. */
    const payloadFor = (schema: z.ZodType) => {
      const keys = Object.keys((schema as unknown as { shape?: object }).shape ?? {});
      const near = fc
        .tuple(
          fc
            .subarray(keys)
            .chain((chosen) =>
              fc.tuple(...chosen.map(() => fieldValue())).map((values) => [chosen, values] as const),
            ),
          fc.option(fc.tuple(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 })), { freq: 4 }),
        )
        .map(([[chosen, values], extra]) => {
          const body: Record<string, unknown> = {};
          chosen.forEach((k, i) => (body[k] = values[i]));
          if (extra) body[extra[0]] = extra[1];
          return JSON.stringify(body);
        });
      return fc.oneof(
        { arbitrary: near, weight: 4 },
        { arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)), weight: 1 },
        { arbitrary: fc.string({ maxLength: 40 }), weight: 1 }, // mostly not JSON at all
      );
    };

    const apiRequest = fc.oneof(
      ...Object.entries(calls).map(([method, { input }]) =>
        payloadFor(input).map((body) => ({ route: `/api/call/${method}`, body })),
      ),
      ...Object.entries(streams).map(([method, { input }]) =>
        payloadFor(input).map((body) => ({ route: `/api/stream/${method}`, body })),
      ),
      fc
        .tuple(fc.constantFrom('call', 'stream', 'other', ''), fc.string({ maxLength: 12 }))
        .map(([kind, method]) => ({ route: `/api/${kind}/${encodeURIComponent(method)}`, body: '{}' })),
    );

    /** Paths with random (often malformed) percent-escapes. */
    const escapes = fc
      .array(
        fc.oneof(
          fc.constantFrom('%', '%2', '%zz', '%E0%A4%A', '%C0%80', '%00', '%2e%2e%2f', '..', '/', '?', '#'),
          fc.string({ maxLength: 3 }).map(encodeURIComponent),
        ),
        { maxLength: 5 },
      )
      .map((parts) => parts.join(''));

    const otherRequest = fc.oneof(
      fc
        .tuple(fc.constantFrom(videoId, 'nope', ''), escapes, fc.option(fc.constantFrom('?v=proxy', '?v=x')))
        .map(([id, tail, query]) => ({ route: `/media/${id}${tail}${query ?? ''}`, body: undefined })),
      fc
        .tuple(fc.constantFrom('/', '/index.html', '/assets/app.js', '/assets/', '/x'), escapes)
        .map(([base, tail]) => ({ route: base + tail, body: undefined })),
      escapes.map((token) => ({ route: `/?token=${token}`, body: undefined })),
    );

    /** Mostly well-formed envelopes (so the contract and the service are reached), sometimes not. */
    const usually = <T>(good: T, bad: fc.Arbitrary<T>) =>
      fc.oneof({ arbitrary: fc.constant(good), weight: 6 }, { arbitrary: bad, weight: 1 });
    const envelope = fc.record({
      method: usually('POST', fc.constantFrom('GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS')),
      token: usually(true, fc.constant(false)),
      contentType: usually(
        'application/json',
        fc.constantFrom('application/json; charset=utf-8', 'text/plain', 'multipart/form-data', ''),
      ),
      range: fc.oneof(
        fc.constantFrom(
          '',
          'bytes=0-10',
          'bytes=-5',
          'bytes=5-',
          'bytes=10-0',
          'bytes=0-1,4-5',
          'bytes=x',
          'items=0-1',
        ),
        fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => `bytes=${a}-${b}`),
      ),
      cookie: fc.constantFrom('', 'a=b', '=', ';;', 'loupe_token_1=%zz'),
    });

    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          apiRequest.map((r) => ({ ...r, api: true })),
          otherRequest.map((r) => ({ ...r, api: false })),
        ),
        envelope,
        async (request, extra) => {
          const method = request.api || extra.method !== 'POST' ? extra.method : 'GET';
          const withToken = extra.token;
          const reply = await send(web, request.route, {
            method,
            headers: {
              ...(withToken ? { 'X-Loupe-Token': web.token } : {}),
              ...(extra.contentType ? { 'Content-Type': extra.contentType } : {}),
              ...(extra.range ? { Range: extra.range } : {}),
              ...(extra.cookie ? { Cookie: extra.cookie } : {}),
            },
            ...(method === 'GET' || method === 'HEAD' ? {} : { body: request.body ?? '' }),
            // A stream that goes on (a running batch) is dropped by the client; a call gets its answer.
            timeoutMs: request.route.startsWith('/api/stream/') ? 3_000 : 60_000,
          });
          statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
          expect(reply.status, `${method} ${request.route} ${request.body ?? ''}`).toBeLessThan(500);
        },
      ),
      { numRuns: RUNS * 2 },
    );
    // The generators reach past authentication and validation into the service.
    expect(statuses.get(200) ?? 0).toBeGreaterThanOrEqual(5); // about 17 in 240 on average
    expect(statuses.get(400) ?? 0).toBeGreaterThan(10);
    expect(problems).toEqual([]);
    // Still serving, and the library on disk still loads as it is.
    const list = await send(web, '/api/call/listVideos', {
      method: 'POST',
      headers: { 'X-Loupe-Token': web.token, 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(list.status).toBe(200);
    const reopened = await LibraryStore.open(path.join(dir, 'data'));
    expect(reopened.recoveredFrom).toBeNull();
    expect(reopened.data.version).toBe(service.store.data.version);
  }, 300_000);
});
