/**
 * The resampler against Pillow itself (the project's venv), byte for byte, for every kernel it offers and for
 * shrinking, enlarging, one-axis and odd sizes; expand2square's geometry; normalization.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  normalize,
  prepareFrame,
  resizeRgb,
  squareAndResize,
  squareGeometry,
  type ResizeKernel,
  type RgbImage,
} from './preprocess.ts';

const PYTHON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../.venv/bin/python');
const BICUBIC = { kernel: 'bicubic', a: -0.5, antialias: true } as const;

function noise(width: number, height: number, seed: number): RgbImage {
  let s = seed >>> 0;
  const data = Uint8Array.from({ length: width * height * 3 }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s >>> 24;
  });
  return { width, height, data };
}

/** Pillow's Image.resize of each case (expand2square first when `square`), as one base64 blob per case. */
function pillow(
  cases: { image: RgbImage; width: number; height: number; kernel: ResizeKernel; square?: number[] }[],
): Uint8Array[] {
  const script = `
import base64, json, sys
from PIL import Image
F = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
out = []
for c in json.load(sys.stdin):
    img = Image.frombytes("RGB", (c["w"], c["h"]), base64.b64decode(c["data"]))
    if c.get("square"):
        side = max(c["w"], c["h"])
        sq = Image.new("RGB", (side, side), tuple(c["square"]))
        sq.paste(img, ((side - c["w"]) // 2, (side - c["h"]) // 2))
        img = sq
    out.append(base64.b64encode(img.resize((c["ow"], c["oh"]), F[c["kernel"]]).tobytes()).decode())
print(json.dumps(out))
`;
  const input = cases.map((c) => ({
    w: c.image.width,
    h: c.image.height,
    data: Buffer.from(c.image.data).toString('base64'),
    ow: c.width,
    oh: c.height,
    kernel: c.kernel,
    square: c.square,
  }));
  const stdout = execFileSync(PYTHON, ['-c', script], { input: JSON.stringify(input), maxBuffer: 1 << 26 });
  return (JSON.parse(stdout.toString()) as string[]).map((b) => new Uint8Array(Buffer.from(b, 'base64')));
}

describe('preprocess', () => {
  it('resizes exactly as Pillow does, every kernel, both directions', () => {
    const kernels: ResizeKernel[] = ['bicubic', 'bilinear', 'lanczos', 'box', 'hamming'];
    const sizes: [number, number, number, number][] = [
      [200, 300, 84, 84], // shrink, portrait
      [173, 97, 84, 84], // odd, landscape
      [50, 30, 84, 84], // enlarge
      [120, 77, 120, 40], // vertical pass only
      [640, 360, 96, 54], // large factor
    ];
    const cases = kernels.flatMap((kernel, k) =>
      sizes.map(([w, h, width, height], i) => ({ image: noise(w, h, 10 * k + i), width, height, kernel })),
    );
    const squared = [
      {
        image: noise(200, 300, 99),
        width: 84,
        height: 84,
        kernel: 'bicubic' as const,
        square: [122, 116, 104],
      },
      {
        image: noise(301, 90, 98),
        width: 96,
        height: 96,
        kernel: 'bicubic' as const,
        square: [127, 127, 127],
      },
    ];
    const want = pillow([...cases, ...squared]);
    cases.forEach((c, i) => {
      const got = resizeRgb(c.image, c.width, c.height, { kernel: c.kernel, antialias: true });
      expect(
        Buffer.from(got.data).equals(Buffer.from(want[i]!)),
        `${c.kernel} ${c.image.width}×${c.image.height}`,
      ).toBe(true);
    });
    squared.forEach((c, i) => {
      const got = squareAndResize(c.image, c.width, c.square, BICUBIC);
      expect(Buffer.from(got.data).equals(Buffer.from(want[cases.length + i]!))).toBe(true);
    });
  });

  it('places the picture as expand2square does, at the source resolution', () => {
    expect(squareGeometry(200, 300)).toEqual({ side: 300, x: 50, y: 0 });
    expect(squareGeometry(301, 90)).toEqual({ side: 301, x: 0, y: 105 });
    expect(squareGeometry(64, 64)).toEqual({ side: 64, x: 0, y: 0 });
    // 200×300 → 84: the picture covers 56 of 84 columns starting at 14 (50/300 × 84), with no rounding of its own.
    const white = { width: 200, height: 300, data: new Uint8Array(200 * 300 * 3).fill(255) };
    const out = squareAndResize(white, 84, [0, 0, 0], BICUBIC).data;
    const column = (x: number) => out[(42 * 84 + x) * 3]!;
    expect([column(11), column(16), column(67), column(72)]).toEqual([0, 255, 255, 0]);
  });

  it('keeps a same-size picture as it is and normalizes to CHW floats', () => {
    const image = noise(5, 5, 1);
    expect(resizeRgb(image, 5, 5, BICUBIC).data).toEqual(image.data);
    const { rgb, pixels } = prepareFrame(image, {
      size: 5,
      mean: [0.5, 0.4, 0.3],
      std: [0.2, 0.3, 0.4],
      pad: [0, 0, 0],
      resize: BICUBIC,
    });
    expect(rgb).toEqual(image.data);
    expect(pixels[25 + 7]).toBeCloseTo((image.data[7 * 3 + 1]! / 255 - 0.4) / 0.3, 6);
    expect(normalize(new Uint8Array([255, 0, 51]), [0, 0, 0], [1, 1, 1], 1 / 255)).toEqual(
      new Float32Array([1, 0, 0.2]),
    );
  });
});
