import { copyFile, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COLORS, makeShapesClip } from '../../test/fixtures/clips.ts';
import { Services } from '../services.ts';
import { send, type Reply } from './http.fixture.ts';
import { startWebServer, type WebServer } from './http.ts';
import { idFor, LoupeService } from './service.ts';

describe('web mode HTTP transport', () => {
  let dir: string;
  let web: WebServer;
  let service: LoupeService;
  let clip: string;
  let videoId: string;
  const auth = () => ({ 'X-Loupe-Token': web.token });
  const json = () => ({ ...auth(), 'Content-Type': 'application/json' });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-http-'));
    clip = await makeShapesClip(path.join(dir, 'clips'), {
      name: 'dot.mp4',
      width: 160,
      height: 90,
      duration: 1,
      fps: 10,
      codec: 'h264',
      background: COLORS.white,
      shapes: [{ kind: 'circle', color: COLORS.red, radius: 0.2, x0: 0.5, y0: 0.5 }],
    });
    const services = new Services({ dataDir: path.join(dir, 'data'), featureCache: false });
    service = await LoupeService.create(services, { mediaUrl: (id) => `/media/${id}` });
    videoId = (await service.addPaths({ paths: [clip], recursive: false })).added[0]!.id;
    web = await startWebServer({
      api: service,
      mediaFile: (id, proxy) => service.mediaFile(id, proxy),
      rendererDir: path.join(dir, 'no-renderer'),
    });
  });

  afterAll(async () => {
    await web?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('listens on 127.0.0.1 only', () => {
    expect(web.server.address()).toMatchObject({ address: '127.0.0.1' });
    expect(web.url).toBe(`http://127.0.0.1:${web.port}/`);
  });

  describe('access token', () => {
    it('refuses requests without the token', async () => {
      expect((await send(web, '/')).status).toBe(401);
      expect(
        (
          await send(web, '/api/call/listVideos', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: '{}',
          })
        ).status,
      ).toBe(401);
      expect((await send(web, `/media/${videoId}`)).status).toBe(401);
    });

    it('refuses a wrong token', async () => {
      expect((await send(web, '/?token=nope')).status).toBe(401);
      expect(
        (await send(web, '/', { headers: { 'X-Loupe-Token': 'x'.repeat(web.token.length) } })).status,
      ).toBe(401);
    });

    it('trades the token in the printed URL for a strict cookie and drops it from the address', async () => {
      const first = await send(web, `/?token=${web.token}`);
      expect(first.status).toBe(303);
      expect(first.headers.location).toBe('/');
      const cookie = String(first.headers['set-cookie']);
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Strict/);
      const next = await send(web, '/', { headers: { Cookie: cookie.split(';')[0]! } });
      expect(next.status).toBe(503); // authorized; this test server has no built renderer
      expect(next.body.toString()).toMatch(/npm run build/);
    });
  });

  describe('Host and Origin checks', () => {
    it('refuses other hosts (DNS rebinding) even with the token', async () => {
      const reply = await send(web, '/api/call/listVideos', {
        method: 'POST',
        headers: { ...json(), Host: `evil.example:${web.port}` },
        body: '{}',
      });
      expect(reply.status).toBe(403);
    });

    it('refuses other origins even with the token', async () => {
      for (const origin of ['http://evil.example', `http://127.0.0.1:${web.port + 1}`, 'null']) {
        const reply = await send(web, '/api/call/listVideos', {
          method: 'POST',
          headers: { ...json(), Origin: origin },
          body: '{}',
        });
        expect(reply.status, origin).toBe(403);
      }
    });

    it('accepts its own origin under either loopback name', async () => {
      const own = await send(web, '/api/call/listVideos', {
        method: 'POST',
        headers: { ...json(), Origin: `http://127.0.0.1:${web.port}` },
        body: '{}',
      });
      expect(own.status).toBe(200);
      const local = await send(web, '/api/call/listVideos', {
        method: 'POST',
        headers: { ...json(), Host: `localhost:${web.port}`, Origin: `http://localhost:${web.port}` },
        body: '{}',
      });
      expect(local.status).toBe(200);
    });
  });

  it('sends a strict Content-Security-Policy with every answer', async () => {
    const reply = await send(web, '/', { headers: auth() });
    const csp = String(reply.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/unsafe|https?:/);
    expect(reply.headers['x-content-type-options']).toBe('nosniff');
  });

  describe('API calls', () => {
    it('answers a call with its value', async () => {
      const reply = await send(web, '/api/call/listVideos', { method: 'POST', headers: json(), body: '{}' });
      const body = JSON.parse(reply.body.toString());
      expect(body.ok).toBe(true);
      expect(body.value.videos[0]).toMatchObject({ id: videoId, name: 'dot.mp4', error: null });
    });

    it('answers a payload that breaks the contract with a typed BAD_REQUEST error', async () => {
      const reply = await send(web, '/api/call/addPaths', {
        method: 'POST',
        headers: json(),
        body: JSON.stringify({ paths: [42] }),
      });
      expect(reply.status).toBe(400);
      const body = JSON.parse(reply.body.toString());
      expect(body).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
      expect(body.error.message).toMatch(/paths\.0/);
    });

    it('rejects unknown methods, extra fields, bad JSON and non-JSON bodies', async () => {
      const unknown = await send(web, '/api/call/formatDisk', {
        method: 'POST',
        headers: json(),
        body: '{}',
      });
      expect(JSON.parse(unknown.body.toString()).error.code).toBe('BAD_REQUEST');
      const extra = await send(web, '/api/call/listVideos', {
        method: 'POST',
        headers: json(),
        body: '{"x":1}',
      });
      expect(JSON.parse(extra.body.toString()).error.code).toBe('BAD_REQUEST');
      const broken = await send(web, '/api/call/listVideos', { method: 'POST', headers: json(), body: '{' });
      expect(broken.status).toBe(400);
      const form = await send(web, '/api/call/listVideos', {
        method: 'POST',
        headers: { ...auth(), 'Content-Type': 'text/plain' },
        body: '{}',
      });
      expect(form.status).toBe(415);
    });
  });

  describe('streams (Server-Sent Events)', () => {
    const events = (reply: Reply) =>
      reply.body
        .toString()
        .split('\n\n')
        .filter(Boolean)
        .map((block) => JSON.parse(block.replace(/^data: /, '')));

    it('streams events then an end message', async () => {
      const reply = await send(web, '/api/stream/playback', {
        method: 'POST',
        headers: json(),
        body: JSON.stringify({ videoId }),
      });
      expect(reply.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(events(reply)).toEqual([
        { kind: 'event', event: { type: 'ready', url: `/media/${videoId}`, proxy: false } },
        { kind: 'end' },
      ]);
    });

    it('ends a failing stream with its error as data', async () => {
      const reply = await send(web, '/api/stream/ask', {
        method: 'POST',
        headers: json(),
        body: JSON.stringify({ conversationId: 'gone', question: 'hi' }),
      });
      expect(events(reply)).toEqual([
        { kind: 'error', error: expect.objectContaining({ code: 'NOT_FOUND' }) },
      ]);
    });
  });

  describe('media with range requests', () => {
    it('serves a byte range as 206 Partial Content', async () => {
      const whole = await readFile(clip);
      const reply = await send(web, `/media/${videoId}`, { headers: { ...auth(), Range: 'bytes=10-19' } });
      expect(reply.status).toBe(206);
      expect(reply.headers['content-range']).toBe(`bytes 10-19/${whole.length}`);
      expect(reply.headers['accept-ranges']).toBe('bytes');
      expect(reply.headers['content-type']).toBe('video/mp4');
      expect(reply.body).toEqual(whole.subarray(10, 20));
    });

    it('serves suffix and open-ended ranges', async () => {
      const whole = await readFile(clip);
      const suffix = await send(web, `/media/${videoId}`, { headers: { ...auth(), Range: 'bytes=-16' } });
      expect(suffix.body).toEqual(whole.subarray(whole.length - 16));
      const open = await send(web, `/media/${videoId}`, {
        headers: { ...auth(), Range: `bytes=${whole.length - 5}-` },
      });
      expect(open.body).toEqual(whole.subarray(whole.length - 5));
    });

    it('answers 416 to a range outside the file and 200 without a range', async () => {
      const whole = await readFile(clip);
      const outside = await send(web, `/media/${videoId}`, {
        headers: { ...auth(), Range: `bytes=${whole.length + 10}-` },
      });
      expect(outside.status).toBe(416);
      expect(outside.headers['content-range']).toBe(`bytes */${whole.length}`);
      const all = await send(web, `/media/${videoId}`, { headers: auth() });
      expect(all.status).toBe(200);
      expect(all.body.length).toBe(whole.length);
    });

    it('serves only library videos', async () => {
      expect((await send(web, '/media/unknown', { headers: auth() })).status).toBe(404);
      expect((await send(web, '/media/..%2F..%2Fetc%2Fpasswd', { headers: auth() })).status).toBe(404);
      expect((await send(web, '/media/../../etc/passwd', { headers: auth() })).status).toBe(404);
      expect((await send(web, `/media/${videoId}/..%2F..%2Flibrary.json`, { headers: auth() })).status).toBe(
        404,
      );
    });

    it('answers a malformed percent-escape with 400, not 500', async () => {
      for (const route of ['/media/%E0%A4%A', '/media/%zz', '/assets/%', '/%C0%80'])
        expect((await send(web, route, { headers: auth() })).status, route).toBe(400);
    });

    it('does not add (or serve) a file that is not a video', async () => {
      const secret = path.join(dir, 'secret.txt');
      await writeFile(secret, 'password=hunter2\n'.repeat(100));
      const asVideo = path.join(dir, 'clips', 'secret.mp4');
      await symlink(secret, asVideo);
      const { added, skipped } = await service.addPaths({ paths: [secret, asVideo], recursive: false });
      expect(added).toEqual([]);
      expect(skipped.map((s) => s.path)).toEqual([secret, asVideo]);
      for (const file of [secret, asVideo])
        expect((await send(web, `/media/${idFor(file)}`, { headers: auth() })).status).toBe(404);
    });

    it('refuses a library entry whose file became something else (a symlink out of the library)', async () => {
      const secret = path.join(dir, 'secret-2.txt');
      await writeFile(secret, 'token=abc\n'.repeat(100));
      const victim = path.join(dir, 'clips', 'swapped.mp4');
      await copyFile(clip, victim);
      const id = (await service.addPaths({ paths: [victim], recursive: false })).added[0]!.id;
      expect((await send(web, `/media/${id}`, { headers: auth() })).status).toBe(200);
      await rm(victim);
      await symlink(secret, victim);
      const reply = await send(web, `/media/${id}`, { headers: auth() });
      expect(reply.status).toBe(404);
      expect(reply.body.toString()).not.toContain('token=');
      // A forged library entry (error: null, pointing at a non-video) is refused the same way.
      const forged = { ...(await service.listVideos()).videos[0]!, id: 'f0f0f0f0f0f0f0f0', path: secret };
      await service.store.update((d) => void d.videos.push({ ...forged, error: null }));
      expect((await send(web, '/media/f0f0f0f0f0f0f0f0', { headers: auth() })).status).toBe(404);
    });
  });
});
