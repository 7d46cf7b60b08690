/**
 * The spatial half of a frame's preparation for the vision tower, as the released checkpoints' reference does it
 * (LLaVA's `expand2square`, then the transformers image processor): pad the full-resolution RGB frame to a
 * square at its own resolution, resize that square with Pillow's resampling (the same coefficients, the same
 * 22-bit fixed point and the same 8-bit rounding after each pass), then rescale and normalize. Pure: no ffmpeg.
 * What each pack asks for is stated in its manifest (docs/model-pack.md#preprocessing).
 */
import { LoupeError } from '../errors.ts';

export type Rgb = readonly number[];

/** An 8-bit RGB picture, rows top to bottom, HWC. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Pillow's resampling filters (`Image.Resampling`), by the names the manifest uses. */
export type ResizeKernel = 'bicubic' | 'bilinear' | 'lanczos' | 'box' | 'hamming';

export interface ResizeSpec {
  kernel: ResizeKernel;
  /** Keys' cubic coefficient for `bicubic`: Pillow (and so transformers) use -0.5. */
  a?: number;
  /** Widen the kernel by the scale factor when shrinking, as Pillow does (false: a fixed-width kernel). */
  antialias: boolean;
}

export interface PixelSpec {
  /** Side of the model's square input. */
  size: number;
  /** 0..1 units: pixels = (x × rescale - mean) / std. */
  mean: Rgb;
  std: Rgb;
  /** 0..255: the square's fill (`expand2square`'s background). */
  pad: Rgb;
  resize: ResizeSpec;
  /** The processor's rescale factor; 1/255 for every released tower. */
  rescale?: number;
}

/** The picture on a square canvas of its longer side, at offset ⌊(long − short)/2⌋ as `expand2square` pastes it. */
export function squareGeometry(width: number, height: number): { side: number; x: number; y: number } {
  const side = Math.max(width, height);
  return { side, x: (side - width) >> 1, y: (side - height) >> 1 };
}

const SUPPORT: Record<ResizeKernel, number> = { box: 0.5, bilinear: 1, hamming: 1, bicubic: 2, lanczos: 3 };

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function filterOf(spec: ResizeSpec): (x: number) => number {
  switch (spec.kernel) {
    case 'box':
      return (x) => (x > -0.5 && x <= 0.5 ? 1 : 0);
    case 'bilinear':
      return (x) => {
        const ax = Math.abs(x);
        return ax < 1 ? 1 - ax : 0;
      };
    case 'hamming':
      return (x) => {
        const ax = Math.abs(x);
        if (ax === 0) return 1;
        if (ax >= 1) return 0;
        const px = ax * Math.PI;
        return (Math.sin(px) / px) * (0.54 + 0.46 * Math.cos(px));
      };
    case 'lanczos':
      return (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);
    case 'bicubic': {
      const a = spec.a ?? -0.5;
      return (x) => {
        const ax = Math.abs(x);
        if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
        if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
        return 0;
      };
    }
  }
}

/** Pillow's fixed point: 32 bits less 8 for the sample and 2 for headroom. */
const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  /** Taps per output sample (the widest kernel). */
  ksize: number;
  /** Per output sample: first input index and tap count. */
  bounds: Int32Array;
  /** Fixed-point weights, ksize per output sample. */
  kk: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc, for a whole-image box. */
function coefficients(inSize: number, outSize: number, spec: ResizeSpec): Coefficients {
  const filter = filterOf(spec);
  const scale = inSize / outSize;
  const filterscale = spec.antialias ? Math.max(scale, 1) : 1;
  const support = SUPPORT[spec.kernel] * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      kk[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * 2 ** PRECISION_BITS : 0.5 + w * 2 ** PRECISION_BITS);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

const clip8 = (ss: number) => {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

/** One row of 3-channel samples through horizontal coefficients. */
function resampleRow(
  src: Uint8Array,
  srcOffset: number,
  c: Coefficients,
  out: Uint8Array,
  outOffset: number,
) {
  const { ksize, bounds, kk } = c;
  const n = bounds.length >> 1;
  for (let xx = 0; xx < n; xx++) {
    const xmin = bounds[xx * 2]!;
    const xmax = bounds[xx * 2 + 1]!;
    const kBase = xx * ksize;
    let s0 = HALF;
    let s1 = HALF;
    let s2 = HALF;
    let p = srcOffset + xmin * 3;
    for (let x = 0; x < xmax; x++, p += 3) {
      const w = kk[kBase + x]!;
      s0 += src[p]! * w;
      s1 += src[p + 1]! * w;
      s2 += src[p + 2]! * w;
    }
    const o = outOffset + xx * 3;
    out[o] = clip8(s0);
    out[o + 1] = clip8(s1);
    out[o + 2] = clip8(s2);
  }
}

/**
 * Pillow's `Image.resize((width, height), filter)` of an RGB picture, bit for bit: horizontal pass (only over
 * the rows the vertical pass reads) into 8 bits, then the vertical pass; a pass whose size does not change is
 * skipped, as Pillow skips it. `source` may be given as a row function so that callers can pad on the fly; a
 * row function returning the same array for several rows (a constant fill) has that row computed once.
 */
export function resizeRgb(
  source: RgbImage | { width: number; height: number; row: (y: number) => Uint8Array },
  width: number,
  height: number,
  spec: ResizeSpec,
): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new LoupeError('USAGE', `Cannot resize to ${width}×${height}.`);
  const row =
    'row' in source
      ? source.row
      : (y: number) => source.data.subarray(y * source.width * 3, (y + 1) * source.width * 3);
  const inW = source.width;
  const inH = source.height;
  const needHorizontal = width !== inW;
  const needVertical = height !== inH;
  if (!needHorizontal && !needVertical) {
    const data = new Uint8Array(inW * inH * 3);
    for (let y = 0; y < inH; y++) data.set(row(y), y * inW * 3);
    return { width, height, data };
  }
  const vert = coefficients(inH, height, spec);
  // Rows of the source the vertical pass reads: [first, last).
  const first = needVertical ? vert.bounds[0]! : 0;
  const last = needVertical ? vert.bounds[(height - 1) * 2]! + vert.bounds[(height - 1) * 2 + 1]! : inH;
  let tempW = inW;
  let temp: Uint8Array;
  if (needHorizontal) {
    const horiz = coefficients(inW, width, spec);
    tempW = width;
    temp = new Uint8Array(width * (last - first) * 3);
    let lastInput: Uint8Array | null = null;
    let lastOutput = -1;
    for (let y = first; y < last; y++) {
      const input = row(y);
      const at = (y - first) * width * 3;
      if (input === lastInput) temp.copyWithin(at, lastOutput, lastOutput + width * 3);
      else resampleRow(input, 0, horiz, temp, at);
      lastInput = input;
      lastOutput = at;
    }
  } else {
    temp = new Uint8Array(inW * (last - first) * 3);
    for (let y = first; y < last; y++) temp.set(row(y), (y - first) * inW * 3);
  }
  if (!needVertical) return { width, height, data: temp };
  const out = new Uint8Array(tempW * height * 3);
  const { ksize, bounds, kk } = vert;
  const stride = tempW * 3;
  for (let yy = 0; yy < height; yy++) {
    const ymin = bounds[yy * 2]! - first;
    const ymax = bounds[yy * 2 + 1]!;
    const kBase = yy * ksize;
    const o = yy * stride;
    for (let i = 0; i < stride; i++) {
      let s = HALF;
      let p = ymin * stride + i;
      for (let y = 0; y < ymax; y++, p += stride) s += temp[p]! * kk[kBase + y]!;
      out[o + i] = clip8(s);
    }
  }
  return { width: tempW, height, data: out };
}

/** `expand2square` followed by the processor's resize to size × size, without building the padded square. */
export function squareAndResize(image: RgbImage, size: number, pad: Rgb, resize: ResizeSpec): RgbImage {
  const { side, x, y } = squareGeometry(image.width, image.height);
  const fill = new Uint8Array(side * 3);
  const color = pad.map((c) => Math.min(255, Math.max(0, Math.round(c))));
  for (let i = 0; i < side; i++) fill.set(color, i * 3);
  const line = x > 0 ? fill.slice() : null;
  const row = (r: number): Uint8Array => {
    if (r < y || r >= y + image.height) return fill;
    const src = image.data.subarray((r - y) * image.width * 3, (r - y + 1) * image.width * 3);
    if (!line) return src;
    line.set(src, x * 3);
    return line.subarray(0); // a fresh view each row: the same pixels are never taken for a repeated fill
  };
  return resizeRgb({ width: side, height: side, row }, size, size, resize);
}

/** HWC bytes → CHW floats, (x × rescale − mean) / std. */
export function normalize(
  rgb: Uint8Array,
  mean: Rgb,
  std: Rgb,
  rescale = 1 / 255,
): Float32Array<ArrayBuffer> {
  const plane = rgb.length / 3;
  const out = new Float32Array(rgb.length);
  for (let c = 0; c < 3; c++) {
    const scale = rescale / std[c]!;
    const offset = mean[c]! / std[c]!;
    for (let p = 0; p < plane; p++) out[c * plane + p] = rgb[p * 3 + c]! * scale - offset;
  }
  return out;
}

/** A decoded frame as the model takes it: `rgb` size × size × 3 (HWC) and `pixels` 3 × size × size (CHW). */
export function prepareFrame(
  image: RgbImage,
  spec: PixelSpec,
): { rgb: Uint8Array<ArrayBuffer>; pixels: Float32Array<ArrayBuffer> } {
  const resized = squareAndResize(image, spec.size, spec.pad, spec.resize);
  const rgb = new Uint8Array(resized.data);
  return { rgb, pixels: normalize(rgb, spec.mean, spec.std, spec.rescale) };
}
