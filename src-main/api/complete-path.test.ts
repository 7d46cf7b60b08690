/**
 * completePath (the Add field's path completion in web mode) over the real HTTP transport: refused without the
 * token like every route; answers folders and video files only, for the folder and name part that was typed.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Services } from '../services.ts';
import { send } from './http.fixture.ts';
import { startWebServer, type WebServer } from './http.ts';
import { LoupeService } from './service.ts';

describe('completePath', () => {
  let dir: string;
  let clips: string;
  let web: WebServer;
  let service: LoupeService;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-complete-'));
    clips = path.join(dir, 'clips');
    await mkdir(path.join(clips, 'Holiday 2024'), { recursive: true });
    await mkdir(path.join(clips, 'harbour'), { recursive: true });
    await mkdir(path.join(clips, '.hidden-folder'), { recursive: true });
    for (const name of [
      'harbour-dawn.mp4',
      'HARBOUR-NIGHT.MOV',
      'harbour-notes.txt',
      'harbour.jpg',
      '.h.mp4',
    ])
      await writeFile(path.join(clips, name), 'x');
    await symlink(path.join(clips, 'harbour'), path.join(clips, 'harbour-link'));
    service = await LoupeService.create(
      new Services({ dataDir: path.join(dir, 'data'), featureCache: false }),
      { mediaUrl: (id) => `/media/${id}` },
    );
    web = await startWebServer({
      api: service,
      mediaFile: (id, proxy) => service.mediaFile(id, proxy),
      rendererDir: path.join(dir, 'no-renderer'),
    });
  });

  afterAll(async () => {
    await web?.close();
    service?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  const complete = async (prefix: string, headers: Record<string, string> = { 'X-Loupe-Token': web.token }) =>
    send(web, '/api/call/completePath', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify({ prefix }),
    });

  it('is refused without the token, or with a wrong one', async () => {
    for (const headers of [{}, { 'X-Loupe-Token': 'not-the-token' }] as Record<string, string>[]) {
      const reply = await complete(clips + path.sep, headers);
      expect(reply.status).toBe(401);
      expect(reply.body.toString()).not.toContain('harbour');
    }
  });

  it('lists folders (links to folders too) and video files, never other files or hidden entries', async () => {
    const reply = await complete(path.join(clips, 'h'));
    expect(reply.status).toBe(200);
    const { value } = JSON.parse(reply.body.toString()) as {
      value: { folder: string; entries: { path: string; name: string; kind: string }[]; truncated: boolean };
    };
    expect(value.folder).toBe(clips);
    expect(value.entries).toEqual([
      { path: path.join(clips, 'harbour') + path.sep, name: 'harbour', kind: 'folder' },
      { path: path.join(clips, 'harbour-link') + path.sep, name: 'harbour-link', kind: 'folder' },
      { path: path.join(clips, 'Holiday 2024') + path.sep, name: 'Holiday 2024', kind: 'folder' },
      { path: path.join(clips, 'harbour-dawn.mp4'), name: 'harbour-dawn.mp4', kind: 'video' },
      { path: path.join(clips, 'HARBOUR-NIGHT.MOV'), name: 'HARBOUR-NIGHT.MOV', kind: 'video' },
    ]);
    expect(value.truncated).toBe(false);
  });

  it('lists a folder’s content after its separator; hidden ones only when a dot is typed; a limit', async () => {
    const all = await service.completePath({ prefix: clips + path.sep, limit: 50 });
    expect(all.entries.map((e) => e.name)).not.toContain('.hidden-folder');
    const dotted = await service.completePath({ prefix: clips + path.sep + '.', limit: 50 });
    expect(dotted.entries.map((e) => e.name)).toEqual(['.hidden-folder', '.h.mp4']);
    const two = await service.completePath({ prefix: clips + path.sep, limit: 2 });
    expect(two).toMatchObject({ truncated: true, entries: [{ name: 'harbour' }, { name: 'harbour-link' }] });
  });

  it('answers nothing for a relative path or a folder that is not there', async () => {
    expect((await service.completePath({ prefix: 'clips/h', limit: 50 })).entries).toEqual([]);
    expect((await service.completePath({ prefix: path.join(dir, 'nope', 'x'), limit: 50 })).entries).toEqual(
      [],
    );
  });
});
