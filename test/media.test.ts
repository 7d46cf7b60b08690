/** The media layer against real ffmpeg on real generated files (see test/fixtures/clips.ts). */
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LoupeError } from '../src-main/errors.ts';
import {
  clampRange,
  ffmpegHasFilter,
  formatTime,
  frameTimes,
  hashSampledBytes,
  liveProcessCount,
  parseTime,
  probe,
  resetBinariesCache,
  resolveBinaries,
  runProcess,
  sampleFrames,
  sampleFramesAt,
  setHardwareDecoding,
  hardwareDecoding,
  splitJpegs,
  thumbnails,
  type SampledFrame,
} from '../src-main/media/index.ts';
import * as clips from './fixtures/clips.ts';
import { until } from './helpers.ts';

const { COLORS } = clips;
const DIR = fileURLToPath(new URL('./.fixtures/', import.meta.url));
const SIZE = 96;
// CLIP's normalization: the letterbox defaults to round(mean × 255) = [123, 117, 104].
const MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
const STD = [0.26862954, 0.26130258, 0.27577711] as const;
const PAD = [123, 117, 104];
const fmt = { size: SIZE, mean: MEAN, std: STD };

const rgbOf = (hex: string) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
const px = (frame: SampledFrame, x: number, y: number) => {
  const i = (Math.round(y) * SIZE + Math.round(x)) * 3;
  return [frame.rgb[i]!, frame.rgb[i + 1]!, frame.rgb[i + 2]!];
};
const near = (actual: number[], expected: number[], tolerance: number) =>
  actual.every((v, i) => Math.abs(v - expected[i]!) <= tolerance);
function expectColor(actual: number[], expected: number[] | string, tolerance = 12) {
  const want = typeof expected === 'string' ? rgbOf(expected) : expected;
  expect(near(actual, want, tolerance), `got [${actual}], expected [${want}] ±${tolerance}`).toBe(true);
}
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(LoupeError);
    return (error as LoupeError).code;
  }
  throw new Error('expected a rejection');
}

/** 320×180, 8 s, 10 fps: a red circle crossing from x=0.2 to x=0.8; a yellow square shows from 4 s. */
const MOVING = {
  name: 'moving.mp4',
  width: 320,
  height: 180,
  duration: 8,
  fps: 10,
  codec: 'h264',
  gop: 20,
  background: COLORS.black,
  shapes: [
    { kind: 'circle', color: COLORS.red, radius: 0.15, x0: 0.2, y0: 0.5, x1: 0.8, y1: 0.5 },
    { kind: 'square', color: COLORS.yellow, radius: 0.1, x0: 0.85, y0: 0.2, appearAt: 4 },
  ],
} satisfies clips.ShapesClipSpec;
/** Where the circle's centre is at time t, in a 96×96 letterboxed frame (96×54 content, 21 rows of padding). */
const circleAt = (t: number) => [(0.2 + (0.6 * t) / 8) * 320 * 0.3, 21 + 90 * 0.3];

const files: Record<string, string> = {};
beforeAll(async () => {
  await mkdir(DIR, { recursive: true });
  const simple = (name: string, codec: clips.Codec, extra: Partial<clips.ShapesClipSpec> = {}) =>
    clips.makeShapesClip(DIR, {
      name,
      width: 160,
      height: 90,
      duration: 1,
      fps: 10,
      codec,
      background: COLORS.orange,
      shapes: [{ kind: 'square', color: COLORS.purple, radius: 0.2, x0: 0.5, y0: 0.5 }],
      ...extra,
    });
  // Two at a time: the machine is small and busy.
  const makers: Array<[string, () => Promise<string>]> = [
    ['moving', () => clips.makeShapesClip(DIR, MOVING)],
    ['long', () => clips.makeTestPattern(DIR, { name: 'long-2min.mp4', duration: 120, gop: 50 })],
    ['withAudio', () => clips.makeTestPattern(DIR, { name: 'pattern-audio.mp4', audio: true })],
    ['vp9', () => simple('flat-vp9', 'vp9')],
    ['hevc', () => simple('flat-hevc', 'hevc')],
    ['prores', () => simple('flat-prores', 'prores')],
    ['fullRange', () => simple('flat-full-range', 'h264', { fullRange: true, background: COLORS.white })],
    ['rotated', () => clips.makeRotated(DIR)],
    ['anamorphic', () => clips.makeAnamorphic(DIR)],
    ['offset', () => clips.makeOffsetStart(DIR, 5)],
    ['vfr', () => clips.makeVfr(DIR)],
    ['tenBit', () => clips.makeTenBitBt2020(DIR)],
    ['pq', () => clips.makeTenBitBt2020(DIR, true)],
    ['audioOnly', () => clips.makeAudioOnly(DIR)],
    ['empty', () => clips.makeEmptyVideo(DIR)],
    ['truncated', () => clips.makeCorrupt(DIR, 'truncated')],
    ['garbled', () => clips.makeCorrupt(DIR, 'garbled')],
    ['truncatedIndexed', () => clips.makeCorrupt(DIR, 'truncated-indexed')],
    ['notAVideo', () => clips.makeNotAVideo(DIR)],
    ...(['png', 'jpg', 'webp'] as const).map((ext): [string, () => Promise<string>] => [
      ext,
      () =>
        clips.makeImage(DIR, {
          name: `still.${ext}`,
          shapes: [{ kind: 'circle', color: COLORS.blue, radius: 0.2, x0: 0.5, y0: 0.5 }],
        }),
    ]),
  ];
  for (let i = 0; i < makers.length; i += 2) {
    await Promise.all(makers.slice(i, i + 2).map(async ([key, make]) => (files[key] = await make())));
  }
});

describe('frame times', () => {
  it('puts each frame in the middle of one of count equal segments', () => {
    expect(frameTimes(0, 10, 5)).toEqual([1, 3, 5, 7, 9]);
    expect(frameTimes(2, 4, 4)).toEqual([2.25, 2.75, 3.25, 3.75]);
  });

  it('returns one time per source frame when the range holds fewer frames than asked', () => {
    expect(frameTimes(0, 0.3, 8, 10)).toHaveLength(3);
    expect(frameTimes(0, 10, 8, 10)).toHaveLength(8);
    expect(frameTimes(5, 5.01, 8, 30)).toEqual([5.005]);
  });

  it('rejects a frame count that is not a positive integer', () => {
    expect(() => frameTimes(0, 1, 0)).toThrow(LoupeError);
    expect(() => frameTimes(0, 1, 2.5)).toThrow(LoupeError);
  });

  it('parses seconds and clock times, and formats times that parse back', () => {
    expect(parseTime('12.5')).toBe(12.5);
    expect(parseTime(' 7s ')).toBe(7);
    expect(parseTime('1:02')).toBe(62);
    expect(parseTime('01:02.250')).toBe(62.25);
    expect(parseTime('1:02:03.5')).toBe(3723.5);
    expect(parseTime('90:00')).toBe(5400);
    for (const bad of ['', 'abc', '-3', '1:2:3:4', '1:60', '1:60:00', '12.5.1', '1e3']) {
      expect(() => parseTime(bad), bad).toThrowError(expect.objectContaining({ code: 'USAGE' }));
    }
    expect(formatTime(62)).toBe('1:02');
    expect(formatTime(3723.25)).toBe('1:02:03.25');
    for (const t of [0, 0.5, 59.999, 61.2, 3599.5, 7384.125])
      expect(parseTime(formatTime(t))).toBeCloseTo(t, 3);
  });

  it('clamps a range to the video and rejects ranges outside it', () => {
    const info = { path: 'x.mp4', kind: 'video' as const, durationSec: 10 };
    expect(clampRange(info)).toEqual({ from: 0, to: 10 });
    expect(clampRange(info, 2, 10.3)).toEqual({ from: 2, to: 10 });
    for (const [from, to] of [
      [10, 12],
      [5, 2],
      [3, 3],
      [-1, 2],
      [0, 11],
    ]) {
      expect(() => clampRange(info, from, to), `${from}-${to}`).toThrowError(
        expect.objectContaining({ code: 'RANGE_OUTSIDE' }),
      );
    }
    expect(clampRange({ ...info, kind: 'image', durationSec: 0 })).toEqual({ from: 0, to: 0 });
  });
});

describe('binaries and processes', () => {
  it('finds ffmpeg and ffprobe, says where from, and knows the build’s filters', async () => {
    const { ffmpeg, ffprobe } = await resolveBinaries();
    expect(['env', 'ffmpeg-static', 'path']).toContain(ffmpeg.source);
    expect(ffmpeg.version).toMatch(/\d/);
    expect(ffprobe.path).toBeTruthy();
    expect(await ffmpegHasFilter('showinfo')).toBe(true);
    expect(await ffmpegHasFilter('no_such_filter')).toBe(false);
  });

  it('explains how to install ffmpeg when none can be run', async () => {
    const saved = { ...process.env };
    try {
      Object.assign(process.env, {
        FFMPEG_PATH: '/nonexistent/ffmpeg',
        FFPROBE_PATH: '/nonexistent/ffprobe',
        PATH: '/nonexistent',
      });
      resetBinariesCache();
      const error = await resolveBinaries().catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'FFMPEG_NOT_FOUND' });
      expect((error as Error).message).toMatch(/FFMPEG_PATH/);
    } finally {
      process.env = saved;
      resetBinariesCache();
    }
  });

  it('turns failures, timeouts and aborts of a child into typed errors and leaves no child behind', async () => {
    expect(await codeOf(runProcess('sh', ['-c', 'echo boom >&2; exit 3']))).toBe('FFMPEG_FAILED');
    const timedOut = await runProcess('sleep', ['5'], { timeoutMs: 100 }).catch((e: LoupeError) => e);
    expect(timedOut).toMatchObject({ code: 'FFMPEG_FAILED', details: { timedOut: true } });
    const controller = new AbortController();
    const sleeping = runProcess('sleep', ['5'], { signal: controller.signal });
    await until(() => liveProcessCount() > 0, 'the child to start'); // aborted while it runs
    controller.abort();
    expect(await codeOf(sleeping)).toBe('CANCELLED');
    expect(await codeOf(runProcess('/nonexistent/ffmpeg', []))).toBe('FFMPEG_NOT_FOUND');
    expect(liveProcessCount()).toBe(0);
    const { stdout } = await runProcess('printf', ['\\001\\002\\377']);
    expect([...stdout]).toEqual([1, 2, 255]);
  });
});

describe('probe', () => {
  it('reports duration, frame rate, size, codec, color and audio of a video', async () => {
    const info = await probe(files.moving!);
    expect(info).toMatchObject({
      kind: 'video',
      container: 'mov',
      width: 320,
      height: 180,
      displayWidth: 320,
      displayHeight: 180,
      rotation: 0,
      codec: 'h264',
      pixFmt: 'yuv420p',
      bitDepth: 8,
      colorSpace: 'bt709',
      colorRange: 'limited',
      isHdr: false,
      hasAudio: false,
      frameCount: 80,
      startTimeSec: 0,
      videoStartSec: 0,
      streamIndex: 0,
    });
    expect(info.durationSec).toBeCloseTo(8, 2);
    expect(info.fps).toBeCloseTo(10, 5);
    expect(info.sizeBytes).toBeGreaterThan(0);
    expect((await probe(files.withAudio!)).hasAudio).toBe(true);
  });

  it('reads other codecs, full range and 10-bit BT.2020 (SDR and PQ)', async () => {
    expect((await probe(files.vp9!)).codec).toBe('vp9');
    expect((await probe(files.hevc!)).codec).toBe('hevc');
    expect(await probe(files.prores!)).toMatchObject({ codec: 'prores', bitDepth: 10 });
    expect((await probe(files.fullRange!)).colorRange).toBe('full');
    expect(await probe(files.tenBit!)).toMatchObject({ bitDepth: 10, colorSpace: 'bt2020nc', isHdr: false });
    expect(await probe(files.pq!)).toMatchObject({ colorTransfer: 'smpte2084', isHdr: true });
  });

  it('reports rotation, the display size after rotation and sample aspect ratio, and start_time', async () => {
    const rotated = await probe(files.rotated!);
    expect([90, 270]).toContain(rotated.rotation);
    expect(rotated).toMatchObject({ width: 320, height: 180, displayWidth: 180, displayHeight: 320 });
    expect(await probe(files.anamorphic!)).toMatchObject({
      width: 240,
      height: 180,
      displayWidth: 320,
      displayHeight: 180,
    });
    const offset = await probe(files.offset!);
    expect(offset.startTimeSec).toBeCloseTo(5, 3);
    expect(offset.durationSec).toBeCloseTo(3, 2);
  });

  it('classifies png, jpeg and webp stills as images', async () => {
    for (const key of ['png', 'jpg', 'webp']) {
      expect(await probe(files[key]!), key).toMatchObject({
        kind: 'image',
        width: 160,
        height: 120,
        durationSec: 0,
      });
    }
  });

  it('gives each unusable file its own error code', async () => {
    expect(await codeOf(probe(join(DIR, 'no-such-file.mp4')))).toBe('FILE_NOT_FOUND');
    expect(await codeOf(probe(DIR))).toBe('NOT_A_VIDEO');
    const notAVideo = await probe(files.notAVideo!).catch((e: LoupeError) => e);
    expect(notAVideo).toMatchObject({ code: 'NOT_A_VIDEO' });
    expect((notAVideo as Error).message).toContain('is not a video or image Loupe can read');
    expect(await codeOf(probe(files.audioOnly!))).toBe('NO_VIDEO_STREAM');
    expect(await codeOf(probe(files.empty!))).toBe('ZERO_DURATION');
    expect(await codeOf(probe(files.truncated!))).toBe('CORRUPT_MEDIA');
    expect(await codeOf(probe(files.garbled!))).toBe('CORRUPT_MEDIA');
    expect(liveProcessCount()).toBe(0);
  });
});

describe('sampleFrames', () => {
  it('a hardware decoder that cannot start fails over to software for that input and decoder only', async () => {
    const software = await sampleFrames(files.moving!, { ...fmt, count: 2 });
    // CUDA by name: ffmpeg has the method but this machine has no device, so every hardware run fails for real
    setHardwareDecoding('cuda');
    try {
      const info = await probe(files.moving!);
      expect(hardwareDecoding(info)).toBe(true);
      const frames = await sampleFrames(files.moving!, { ...fmt, count: 2 });
      expect(frames.map((f) => Buffer.from(f.pixels.buffer))).toEqual(
        software.map((f) => Buffer.from(f.pixels.buffer)),
      );
      expect(hardwareDecoding(info)).toBe(false); // this input and decoder: software from now on
      expect(hardwareDecoding({ ...info, path: files.offset! })).toBe(true); // another file still tries
      expect(hardwareDecoding({ ...info, codec: 'hevc' })).toBe(true); // and so does another decoder
      expect(liveProcessCount()).toBe(0);
    } finally {
      setHardwareDecoding('auto');
    }
  });

  it('samples the frames nearest the segment midpoints, with the content shown at those times', async () => {
    const frames = await sampleFrames(files.moving!, { ...fmt, count: 8 });
    expect(frames).toHaveLength(8);
    frames.forEach((frame, i) => {
      expect(frame.requestedSec).toBeCloseTo(i + 0.5, 6);
      expect(Math.abs(frame.timeSec - frame.requestedSec)).toBeLessThanOrEqual(0.05 + 1e-6);
      const [x, y] = circleAt(frame.timeSec);
      expectColor(px(frame, x!, y!), COLORS.red, 20);
      expectColor(px(frame, 82, 32), frame.timeSec >= 4 ? COLORS.yellow : COLORS.black, 20);
      expect(frame.pixels).toHaveLength(3 * SIZE * SIZE);
      expect(frame.rgb).toHaveLength(SIZE * SIZE * 3);
    });
  });

  it('pads to a square with the mean color and normalizes to CHW floats', async () => {
    const [frame] = await sampleFrames(files.moving!, { ...fmt, count: 1 });
    // 320×180 on a 320² square at row 70, resized to 96: content spans rows 21–75, and the antialiased
    // bicubic kernel (±6.7 source rows) reaches two output rows past each edge.
    for (const [x, y] of [
      [0, 0],
      [95, 18],
      [50, 77],
      [95, 95],
    ])
      expect(px(frame!, x!, y!)).toEqual(PAD);
    expectColor(px(frame!, 2, 22), COLORS.black, 6);
    const plane = SIZE * SIZE;
    for (const p of [0, 30 * SIZE + 48, plane - 1]) {
      for (let c = 0; c < 3; c++) {
        expect(frame!.pixels[c * plane + p]).toBeCloseTo(
          (frame!.rgb[p * 3 + c]! / 255 - MEAN[c]!) / STD[c]!,
          5,
        );
      }
    }
    expect(Math.abs(frame!.pixels[0]!)).toBeLessThan(0.02); // padding is ~0 after normalization
    const [custom] = await sampleFrames(files.moving!, { ...fmt, count: 1, pad: [255, 0, 255] });
    expect(px(custom!, 0, 0)).toEqual([255, 0, 255]);
  });

  it('samples a sub-range, and no more frames than the range holds', async () => {
    const frames = await sampleFrames(files.moving!, { ...fmt, from: 2, to: 3, count: 4 });
    expect(frames.map((f) => f.timeSec)).toEqual([2.1, 2.4, 2.6, 2.9].map((t) => expect.closeTo(t, 3)));
    const short = await sampleFrames(files.moving!, { ...fmt, from: 2, to: 2.3, count: 8 });
    expect(short.map((f) => f.timeSec)).toEqual([2.0, 2.1, 2.2].map((t) => expect.closeTo(t, 3)));
  });

  it('reports times on the player clock for a file whose timestamps start at 5 s', async () => {
    const frames = await sampleFrames(files.offset!, { ...fmt, count: 3 });
    expect(frames.map((f) => f.timeSec)).toEqual([0.5, 1.5, 2.5].map((t) => expect.closeTo(t, 3)));
    // The square appears 1.5 s into the clip: after the first sample, not before.
    const centre = (f: SampledFrame) => px(f, 48, 48);
    expectColor(centre(frames[0]!), COLORS.blue);
    expectColor(centre(frames[2]!), COLORS.yellow);
  });

  it('reports the real time of the frame a player shows in a variable-frame-rate gap', async () => {
    const frames = await sampleFramesAt(files.vfr!, [0.5, 1.5, 3], fmt);
    expect(frames.map((f) => f.timeSec)).toEqual([0.5, 0.9, 3].map((t) => expect.closeTo(t, 3)));
    expect(frames[1]!.requestedSec).toBe(1.5);
  });

  it('applies the display rotation: a portrait frame, turned the way the rotation says', async () => {
    const info = await probe(files.rotated!);
    const [frame] = await sampleFrames(files.rotated!, { ...fmt, count: 1, info });
    // 180×320 → 54×96 content with 21 columns of padding on each side.
    expect(px(frame!, 5, 48)).toEqual(PAD);
    expect(px(frame!, 90, 48)).toEqual(PAD);
    expectColor(px(frame!, 48, 2), COLORS.black, 6);
    // The red square sits at the stored frame's top-left: after a clockwise quarter turn it is top-right,
    // after a counter-clockwise one (rotation 270) bottom-left.
    const [red, black] =
      info.rotation === 90
        ? [
            [61.5, 14.4],
            [34.5, 81.6],
          ]
        : [
            [34.5, 81.6],
            [61.5, 14.4],
          ];
    expectColor(px(frame!, red[0]!, red[1]!), COLORS.red, 20);
    expectColor(px(frame!, black[0]!, black[1]!), COLORS.black, 10);
  });

  it('honors a non-square sample aspect ratio', async () => {
    const [frame] = await sampleFrames(files.anamorphic!, { ...fmt, count: 1 });
    expect(px(frame!, 48, 15)).toEqual(PAD); // 320×180 shown → 96×54: rows 0–20 are padding
    expectColor(px(frame!, 1, 48), COLORS.green, 12);
    expectColor(px(frame!, 48, 48), COLORS.yellow, 12);
  });

  it('returns exactly one frame at time 0 for a still image', async () => {
    for (const key of ['png', 'jpg', 'webp']) {
      const frames = await sampleFrames(files[key]!, { ...fmt, count: 8 });
      expect(frames, key).toHaveLength(1);
      expect(frames[0]!.timeSec).toBe(0);
      expectColor(px(frames[0]!, 48, 48), COLORS.blue, 14);
      expectColor(px(frames[0]!, 3, 20), COLORS.white, 14);
      expect(px(frames[0]!, 48, 5)).toEqual(PAD); // 160×120 → 96×72: rows 0–11 are padding
    }
  });

  it('converts colors with each stream’s matrix and range, across codecs and bit depths', async () => {
    for (const key of ['vp9', 'hevc', 'prores']) {
      const [frame] = await sampleFrames(files[key]!, { ...fmt, count: 1 });
      expectColor(px(frame!, 48, 48), COLORS.purple);
      expectColor(px(frame!, 3, 30), COLORS.orange);
    }
    const [full] = await sampleFrames(files.fullRange!, { ...fmt, count: 1 });
    expectColor(px(full!, 48, 48), COLORS.purple, 8);
    expectColor(px(full!, 3, 30), COLORS.white, 6);
    const [tenBit] = await sampleFrames(files.tenBit!, { ...fmt, count: 1 });
    expectColor(px(tenBit!, 48, 48), COLORS.blue, 8);
    expectColor(px(tenBit!, 3, 30), COLORS.white, 6);
  });

  it('tone-maps PQ video to a plausible SDR frame', async () => {
    const [frame] = await sampleFrames(files.pq!, { ...fmt, count: 1 });
    expect(px(frame!, 0, 0)).toEqual(PAD);
    expect(frame!.pixels.every(Number.isFinite)).toBe(true);
    const [r, g, b] = px(frame!, 48, 48);
    expect(b!).toBeGreaterThan(Math.max(r!, g!)); // still blue
  });

  it('samples 8 frames from a 2-minute video', async () => {
    const frames = await sampleFrames(files.long!, { ...fmt, count: 8 });
    frames.forEach((frame, i) =>
      expect(Math.abs(frame.timeSec - (i + 0.5) * 15)).toBeLessThanOrEqual(0.05 + 1e-6),
    );
  });

  it('rejects unusable files and ranges with typed errors and leaves no ffmpeg behind', async () => {
    const opts = { ...fmt, count: 4 };
    expect(await codeOf(sampleFrames(join(DIR, 'missing.mp4'), opts))).toBe('FILE_NOT_FOUND');
    expect(await codeOf(sampleFrames(files.notAVideo!, opts))).toBe('NOT_A_VIDEO');
    expect(await codeOf(sampleFrames(files.audioOnly!, opts))).toBe('NO_VIDEO_STREAM');
    expect(await codeOf(sampleFrames(files.empty!, opts))).toBe('ZERO_DURATION');
    expect(await codeOf(sampleFrames(files.truncated!, opts))).toBe('CORRUPT_MEDIA');
    // Its index is intact, so only decoding the missing second half shows the damage.
    expect((await probe(files.truncatedIndexed!)).durationSec).toBeCloseTo(3, 1);
    expect(await codeOf(sampleFrames(files.truncatedIndexed!, opts))).toBe('CORRUPT_MEDIA');
    expect(await codeOf(sampleFrames(files.moving!, { ...opts, from: 9, to: 12 }))).toBe('RANGE_OUTSIDE');
    expect(await codeOf(sampleFrames(files.moving!, { ...opts, from: 5, to: 2 }))).toBe('RANGE_OUTSIDE');
    expect(await codeOf(sampleFramesAt(files.moving!, [3, 20], fmt))).toBe('RANGE_OUTSIDE');
    expect(liveProcessCount()).toBe(0);
  });

  it('rejects with CANCELLED when aborted mid-sampling and kills its ffmpeg', async () => {
    const info = await probe(files.long!);
    const controller = new AbortController();
    const sampling = sampleFrames(files.long!, { ...fmt, count: 32, info, signal: controller.signal });
    await until(() => liveProcessCount() > 0, 'ffmpeg to start');
    controller.abort();
    expect(await codeOf(sampling)).toBe('CANCELLED');
    expect(liveProcessCount()).toBe(0);
    expect(
      await codeOf(sampleFrames(files.long!, { ...fmt, count: 2, info, signal: AbortSignal.abort() })),
    ).toBe('CANCELLED');
  });
});

describe('thumbnails and hashing', () => {
  it('returns N valid JPEGs along the whole video', async () => {
    const thumbs = await thumbnails(files.moving!, { count: 6, width: 160 });
    expect(thumbs).toHaveLength(6);
    thumbs.forEach((thumb, i) => {
      expect(thumb.timeSec).toBeCloseTo(((i + 0.5) * 8) / 6, 1);
      expect([...thumb.jpeg.subarray(0, 2)]).toEqual([0xff, 0xd8]);
      expect([...thumb.jpeg.subarray(-2)]).toEqual([0xff, 0xd9]);
    });
    const out = join(DIR, 'thumb-check.jpg');
    await writeFile(out, thumbs[0]!.jpeg);
    expect(await probe(out)).toMatchObject({ kind: 'image', width: 160, height: 90 });
    const [portrait] = await thumbnails(files.rotated!, { count: 1, width: 90 });
    await writeFile(out, portrait!.jpeg);
    expect(await probe(out)).toMatchObject({ width: 90, height: 160 });
  });

  it('splits a stream of concatenated JPEGs', async () => {
    const a = await thumbnails(files.png!, { count: 3, width: 64 });
    expect(a).toHaveLength(1);
    const two = Buffer.concat([a[0]!.jpeg, a[0]!.jpeg]);
    expect(splitJpegs(two).map((j) => j.length)).toEqual([a[0]!.jpeg.length, a[0]!.jpeg.length]);
    expect(splitJpegs(two.subarray(0, two.length - 10))).toHaveLength(1);
  });

  it('hashes a file’s size and sampled bytes into a stable cache key', async () => {
    const first = await hashSampledBytes(files.long!);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(await hashSampledBytes(files.long!)).toBe(first);
    expect(await hashSampledBytes(files.moving!)).not.toBe(first);
    expect(await codeOf(hashSampledBytes(join(DIR, 'missing.mp4')))).toBe('FILE_NOT_FOUND');
  });
});
