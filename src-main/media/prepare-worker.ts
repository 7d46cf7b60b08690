/**
 * The thread that prepares decoded frames for the model (pad, Pillow-exact resize, normalize: preprocess.ts),
 * so that the thread reading ffmpeg's output never stops reading for a resize: a frame larger than the pipe's
 * buffer is written only while it is read, and a resize on the reading thread would stall the decoder.
 * prepare-pool.ts starts it; each message is one frame, answered with its pixels (transferred, not copied).
 */
import { parentPort } from 'node:worker_threads';
import { prepareFrame, type PixelSpec } from './preprocess.ts';

export interface PrepareRequest {
  id: number;
  width: number;
  height: number;
  data: Uint8Array;
  spec: PixelSpec;
}

export type PrepareReply = { id: number; pixels: Float32Array<ArrayBuffer> } | { id: number; error: string };

if (!parentPort) throw new Error('prepare-worker.ts runs as a worker thread (see prepare-pool.ts)');
const port = parentPort;
port.on('message', (m: PrepareRequest) => {
  try {
    const { pixels } = prepareFrame({ width: m.width, height: m.height, data: m.data }, m.spec);
    port.postMessage({ id: m.id, pixels } satisfies PrepareReply, [pixels.buffer]);
  } catch (error) {
    port.postMessage({
      id: m.id,
      error: error instanceof Error ? error.message : String(error),
    } satisfies PrepareReply);
  }
});
