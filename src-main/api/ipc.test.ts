import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COLORS, makeShapesClip } from '../../test/fixtures/clips.ts';
import { until } from '../../test/helpers.ts';
import { ipcClient } from '../../src-renderer/lib/api/ipc-client.ts';
import { Services } from '../services.ts';
import type { LoupeApi, PlaybackEvent } from './contract.ts';
import { CHANNELS, ipcBridge, type IpcRendererPort } from './ipc-bridge.ts';
import { serveIpc, type IpcEventLike, type IpcMainPort, type SenderPort } from './ipc.ts';
import { LoupeService } from './service.ts';

type Listener = (event: IpcEventLike, ...args: unknown[]) => unknown;

/**
 * An in-process stand-in for Electron's IPC: one main side, one window. Payloads are structured-cloned as
 * Electron does, so nothing passes by reference.
 */
function standInIpc(pageUrl = 'loupe://app/index.html') {
  const handlers = new Map<string, Listener>();
  const mainListeners = new Map<string, Set<Listener>>();
  const pageListeners = new Map<string, Set<(event: unknown, ...args: unknown[]) => void>>();
  const onDestroyed = new Set<() => void>();
  let destroyed = false;
  const sender: SenderPort = {
    id: 7,
    send: (channel, ...args) => pageListeners.get(channel)?.forEach((l) => l({}, ...structuredClone(args))),
    isDestroyed: () => destroyed,
    once: (_event, listener) => onDestroyed.add(listener),
  };
  const event = (): IpcEventLike => ({ sender, senderFrame: { url: pageUrl } });
  const main: IpcMainPort = {
    handle: (channel, listener) => void handlers.set(channel, listener as Listener),
    on: (channel, listener) =>
      mainListeners.set(channel, (mainListeners.get(channel) ?? new Set()).add(listener as Listener)),
    removeHandler: (channel) => void handlers.delete(channel),
    removeAllListeners: (channel) => mainListeners.delete(channel),
  };
  const renderer: IpcRendererPort = {
    invoke: async (channel, ...args) => {
      const handler = handlers.get(channel);
      if (!handler) throw new Error(`No handler registered for '${channel}'`);
      return structuredClone(await handler(event(), ...structuredClone(args)));
    },
    send: (channel, ...args) =>
      mainListeners.get(channel)?.forEach((l) => l(event(), ...structuredClone(args))),
    on: (channel, listener) =>
      pageListeners.set(channel, (pageListeners.get(channel) ?? new Set()).add(listener)),
  };
  const closeWindow = () => {
    destroyed = true;
    onDestroyed.forEach((l) => l());
  };
  return { main, renderer, closeWindow, destroyedListeners: () => onDestroyed.size };
}

describe('the API over IPC (in-process stand-in)', () => {
  let dir: string;
  let service: LoupeService;
  let videoId: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-ipc-'));
    const clip = await makeShapesClip(path.join(dir, 'clips'), {
      name: 'dot.mp4',
      width: 160,
      height: 90,
      duration: 1,
      fps: 10,
      codec: 'h264',
      background: COLORS.white,
      shapes: [{ kind: 'circle', color: COLORS.blue, radius: 0.2, x0: 0.5, y0: 0.5 }],
    });
    service = await LoupeService.create(
      new Services({ dataDir: path.join(dir, 'data'), featureCache: false }),
      {
        mediaUrl: (id) => `loupe-media://media/${id}`,
      },
    );
    videoId = (await service.addPaths({ paths: [clip], recursive: false })).added[0]!.id;
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('answers calls through the preload bridge and the renderer client', async () => {
    const ipc = standInIpc();
    serveIpc(service, ipc.main);
    const client = ipcClient(ipcBridge(ipc.renderer));
    const { videos } = await client.call('listVideos', {});
    expect(videos.map((v) => v.name)).toEqual(['dot.mp4']);
    expect(await client.call('setSettings', { temperature: 0.5 })).toMatchObject({ temperature: 0.5 });
  });

  it('rebuilds errors as typed ApiErrors on the renderer side', async () => {
    const ipc = standInIpc();
    serveIpc(service, ipc.main);
    const client = ipcClient(ipcBridge(ipc.renderer));
    await expect(client.call('removeVideo', { videoId: 'nope' })).rejects.toMatchObject({
      name: 'ApiError',
      code: 'NOT_FOUND',
    });
    // A payload the types would not allow still reaches main, and main refuses it.
    await expect(client.call('setSettings', { temperature: 9 })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
    });
  });

  it('refuses malformed envelopes and pages that are not the app', async () => {
    const ipc = standInIpc();
    serveIpc(service, ipc.main, (e) => Boolean(e.senderFrame?.url.startsWith('loupe://app/')));
    expect(await ipc.renderer.invoke(CHANNELS.call, 'listVideos')).toMatchObject({
      ok: false,
      error: { code: 'BAD_REQUEST' },
    });
    const stranger = standInIpc('https://evil.example/');
    serveIpc(service, stranger.main, (e) => Boolean(e.senderFrame?.url.startsWith('loupe://app/')));
    await expect(ipcClient(ipcBridge(stranger.renderer)).call('listVideos', {})).rejects.toMatchObject({
      code: 'BAD_REQUEST',
    });
  });

  it('streams events and errors', async () => {
    const ipc = standInIpc();
    serveIpc(service, ipc.main);
    const client = ipcClient(ipcBridge(ipc.renderer));
    const events: PlaybackEvent[] = [];
    for await (const e of client.stream('playback', { videoId })) events.push(e);
    expect(events).toEqual([{ type: 'ready', url: `loupe-media://media/${videoId}`, proxy: false }]);
    const ask = async () => {
      for await (const _ of client.stream('ask', { conversationId: 'gone', question: 'What color?' })) void _;
    };
    await expect(ask()).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  /** An API whose playback stream waits until it is aborted, reporting how it ended. */
  function endlessPlayback(ended: (reason: string) => void): LoupeApi {
    const api = Object.create(service) as LoupeService;
    api.playback = async function* (_input, signal) {
      yield { type: 'converting', fraction: 0.1, reason: 'test' };
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      ended('aborted');
    };
    return api;
  }

  it('stops the stream in main when the renderer stops reading', async () => {
    const ipc = standInIpc();
    let ended = '';
    serveIpc(
      endlessPlayback((r) => (ended = r)),
      ipc.main,
    );
    const client = ipcClient(ipcBridge(ipc.renderer));
    const controller = new AbortController();
    const seen: PlaybackEvent[] = [];
    const reading = (async () => {
      for await (const e of client.stream('playback', { videoId }, controller.signal)) {
        seen.push(e);
        controller.abort();
      }
    })();
    await expect(reading).rejects.toMatchObject({ code: 'CANCELLED' });
    await until(() => ended !== '', 'the stream in main to end');
    expect(seen).toHaveLength(1);
    expect(ended).toBe('aborted');
  });

  it('stops a window’s streams when the window closes', async () => {
    const ipc = standInIpc();
    let ended = '';
    serveIpc(
      endlessPlayback((r) => (ended = r)),
      ipc.main,
    );
    const bridge = ipcBridge(ipc.renderer);
    let received = 0;
    bridge.stream('playback', { videoId }, () => received++);
    await until(() => received > 0, 'the stream’s first event'); // it runs in main
    ipc.closeWindow();
    await until(() => ended !== '', 'the stream in main to end');
    expect(ended).toBe('aborted');
  });

  it('adds one destroyed listener per window however many streams it runs', async () => {
    const ipc = standInIpc();
    serveIpc(service, ipc.main);
    const client = ipcClient(ipcBridge(ipc.renderer));
    for (let i = 0; i < 20; i++) for await (const _ of client.stream('playback', { videoId })) void _;
    expect(ipc.destroyedListeners()).toBe(1);
  });

  it('refuses a stream whose id is already running instead of orphaning the first', async () => {
    const ipc = standInIpc();
    const ends: string[] = [];
    serveIpc(
      endlessPlayback((r) => ends.push(r)),
      ipc.main,
    );
    const messages: unknown[] = [];
    ipc.renderer.on(CHANNELS.streamMessage, (_e, payload) => messages.push(payload));
    const start = { streamId: 'same', method: 'playback', input: { videoId } };
    ipc.renderer.send(CHANNELS.streamStart, start);
    await until(() => messages.length > 0, 'the first stream’s first event');
    ipc.renderer.send(CHANNELS.streamStart, start);
    await until(() => messages.length > 1, 'an answer to the second start');
    expect(messages.at(-1)).toMatchObject({
      streamId: 'same',
      message: {
        kind: 'error',
        error: { code: 'BAD_REQUEST', message: expect.stringMatching(/already in use/) },
      },
    });
    ipc.renderer.send(CHANNELS.streamCancel, { streamId: 'same' }); // the first one can still be stopped
    await until(() => ends.length > 0, 'the first stream in main to end');
    expect(ends).toEqual(['aborted']);
  });
});
