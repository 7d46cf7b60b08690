/**
 * Frame preparation off the reading thread: one worker thread (prepare-worker.ts) pads, resizes and normalizes
 * frames while this thread keeps reading ffmpeg's pipe. Without it, a dense scan's resize (≈ 9 ms a 640×360
 * frame) blocked the read, ffmpeg blocked on its full pipe, and decoding and preparing took turns instead of
 * running side by side (a 10-minute scan's decode pass took 14.5 s instead of 7.6 s).
 *
 * The thread starts on first use and holds the process open only while frames are in flight. Where no worker
 * thread can start, frames are prepared here, as before.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { LoupeError } from '../errors.ts';
import type { PrepareReply, PrepareRequest } from './prepare-worker.ts';
import { prepareFrame, type PixelSpec, type RgbImage } from './preprocess.ts';

interface Waiting {
  resolve: (pixels: Float32Array<ArrayBuffer>) => void;
  reject: (error: Error) => void;
}

let worker: Worker | null = null;
let unavailable = false;
const waiting = new Map<number, Waiting>();
let nextId = 1;

/**
 * The thread: the bundled file beside this code, or, when running from source, a small script that registers
 * tsx in the thread and imports the TypeScript source (a thread does not take `--import tsx`).
 */
function newWorker(): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(fileURLToPath(new URL('./prepare-worker.js', here)));
  // tsx's ESM API (require.resolve would give its CommonJS variant)
  const tsxDir = path.dirname(createRequire(here).resolve('tsx/package.json'));
  const api = pathToFileURL(path.join(tsxDir, 'dist', 'esm', 'api', 'index.mjs')).href;
  const source = new URL('./prepare-worker.ts', here).href;
  return new Worker(
    `import(${JSON.stringify(api)}).then((tsx) => tsx.register()).then(() => import(${JSON.stringify(source)}));`,
    { eval: true },
  );
}

function failAll(error: Error): void {
  for (const w of waiting.values()) w.reject(error);
  waiting.clear();
}

function start(): Worker | null {
  if (worker || unavailable) return worker;
  try {
    const started = newWorker();
    started.on('message', (reply: PrepareReply) => {
      const w = waiting.get(reply.id);
      if (!w) return;
      waiting.delete(reply.id);
      if (waiting.size === 0) started.unref();
      if ('error' in reply) w.reject(new LoupeError('INTERNAL', `Preparing a frame failed: ${reply.error}`));
      else w.resolve(reply.pixels);
    });
    const gone = (why: string) => {
      if (worker === started) worker = null;
      failAll(new LoupeError('INTERNAL', `The frame preparation thread stopped (${why}).`));
    };
    started.on('error', (e: Error) => gone(e.message));
    started.on('exit', (code: number) => gone(`exit code ${code}`));
    started.unref();
    worker = started;
  } catch {
    unavailable = true; // e.g. a runtime without worker threads: frames are prepared on this thread
  }
  return worker;
}

/** `prepareFrame(image, spec).pixels`, computed on the preparation thread (the image's bytes are copied there). */
export function preparePixels(image: RgbImage, spec: PixelSpec): Promise<Float32Array<ArrayBuffer>> {
  const thread = start();
  if (!thread) return Promise.resolve(prepareFrame(image, spec).pixels);
  const id = nextId++;
  const data = new Uint8Array(image.data); // a copy of its own, handed over without another copy
  return new Promise<Float32Array<ArrayBuffer>>((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    thread.ref();
    const request: PrepareRequest = { id, width: image.width, height: image.height, data, spec };
    thread.postMessage(request, [data.buffer]);
  });
}

/** End the preparation thread (frames in flight fail); the next frame starts a new one. */
export async function closePreparePool(): Promise<void> {
  const running = worker;
  worker = null;
  if (!running) return;
  failAll(new LoupeError('CANCELLED', 'Frame preparation was stopped.'));
  await running.terminate();
}
