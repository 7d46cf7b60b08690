import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COLORS, makeShapesClip } from '../../test/fixtures/clips.ts';
import { probe } from '../media/index.ts';
import { ProxyMaker, proxyReason, type ProxyProgress } from './proxy.ts';

describe('playable copies for codecs Chromium cannot play', () => {
  let dir: string;
  beforeAll(async () => (dir = await mkdtemp(path.join(os.tmpdir(), 'loupe-proxy-'))));
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const spec = {
    width: 320,
    height: 180,
    duration: 2,
    fps: 10,
    background: COLORS.white,
    shapes: [{ kind: 'circle' as const, color: COLORS.red, radius: 0.2, x0: 0.5, y0: 0.5 }],
  };

  it('plays H.264 directly', async () => {
    const h264 = await makeShapesClip(dir, { ...spec, name: 'a.mp4', codec: 'h264' });
    expect(proxyReason(await probe(h264))).toBeNull();
  });

  it('converts HEVC to a seekable H.264 copy, with progress that never goes backwards, once', async () => {
    const hevc = await makeShapesClip(dir, { ...spec, name: 'b.mp4', codec: 'hevc' });
    const info = await probe(hevc);
    expect(proxyReason(info)).toMatch(/HEVC/);
    const maker = new ProxyMaker(path.join(dir, 'proxies'));
    const events: ProxyProgress[] = [];
    for await (const e of maker.ensure(info)) events.push(e);
    const last = events.at(-1)!;
    expect(last.type).toBe('ready');
    const fractions = events.flatMap((e) => (e.type === 'converting' ? [e.fraction] : []));
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    const copy = await probe((last as { file: string }).file);
    expect(copy).toMatchObject({ codec: 'h264', pixFmt: 'yuv420p' });
    expect(copy.durationSec).toBeCloseTo(info.durationSec, 0);
    // A second request finds the finished copy at once.
    const again: ProxyProgress[] = [];
    for await (const e of maker.ensure(info)) again.push(e);
    expect(again).toEqual([last]);
    await maker.clear();
    expect(maker.existing(info)).toBeNull();
  });
});
