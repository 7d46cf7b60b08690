/**
 * JPEG stills decoded by libjpeg-turbo's code (MozJPEG compiled to WebAssembly, @jsquash/jpeg) rather than by
 * ffmpeg: the reference opens stills with Pillow, i.e. libjpeg-turbo, whose chroma upsampling ("fancy", centred)
 * and YCbCr conversion ffmpeg's mjpeg decoder + swscale do not reproduce (up to 55 levels apart at colour edges,
 * 12 after resizing to 84 px; docs/model-pack.md#preprocessing). Same pixels as Pillow, bit for bit.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { RgbImage } from './preprocess.ts';

interface DecodedRgba {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}
type Decode = (data: ArrayBuffer) => Promise<DecodedRgba>;

let decoder: Promise<Decode> | null = null;

function loadDecoder(): Promise<Decode> {
  decoder ??= (async () => {
    const mod = await import('@jsquash/jpeg/decode.js');
    const wasm = createRequire(import.meta.url).resolve('@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm');
    await mod.init(await WebAssembly.compile(await readFile(wasm)));
    return (data: ArrayBuffer) => mod.default(data) as Promise<DecodedRgba>;
  })();
  return decoder;
}

/**
 * The still at `path` as Pillow's `Image.open(path).convert("RGB")` gives it (no EXIF rotation, as there), or
 * null when this decoder cannot read it (CMYK, lossless or damaged JPEGs: ffmpeg then decodes it, or says why not).
 */
export async function decodeJpeg(path: string): Promise<RgbImage | null> {
  const file = await readFile(path);
  const decode = await loadDecoder();
  let rgba: DecodedRgba;
  try {
    rgba = await decode(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength));
  } catch {
    return null;
  }
  const { width, height } = rgba;
  const data = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; p < data.length; p += 3, q += 4) {
    data[p] = rgba.data[q]!;
    data[p + 1] = rgba.data[q + 1]!;
    data[p + 2] = rgba.data[q + 2]!;
  }
  return { width, height, data };
}
