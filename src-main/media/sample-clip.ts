/**
 * The app's sample clip, drawn with ffmpeg's lavfi filters (nothing is downloaded): a yellow circle crossing a
 * blue background, joined after 4 s by a red square, in the flat-shape world the built-in model knows.
 */
import { rename, rm } from 'node:fs/promises';
import { resolveBinaries } from './binaries.ts';
import { runProcess } from './process.ts';

/** Write the 10 s sample clip to `file` (atomically: a temporary file, then a rename). */
export async function makeSampleClip(file: string): Promise<void> {
  const { ffmpeg } = await resolveBinaries();
  const [w, h, fps, d, r] = [640, 360, 15, 10, 60];
  const disc = `color=c=0xf0d728:s=${2 * r}x${2 * r}:r=${fps}:d=${d},format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='255*lte(hypot(X-${r}+0.5,Y-${r}+0.5),${r})'[disc]`;
  const graph = [
    `color=c=0x2346d7:s=${w}x${h}:r=${fps}:d=${d}[bg]`,
    disc,
    `[bg][disc]overlay=x='40+(${w}-${2 * r}-80)*t/${d}':y=${h / 2 - r}:eval=frame[a]`,
    `[a]drawbox=x=${w - 200}:y=40:w=110:h=110:color=0xd72323:t=fill:enable='gte(t,4)',format=yuv420p[v]`,
  ].join(';');
  const tmp = `${file}.${process.pid}.tmp.mp4`;
  try {
    // prettier-ignore
    await runProcess(ffmpeg.path, [
      '-nostdin', '-hide_banner', '-loglevel', 'error', '-y', '-filter_complex', graph, '-map', '[v]',
      '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '20', '-g', String(fps), '-threads', '2',
      '-movflags', '+faststart', '-f', 'mp4', tmp,
    ], { timeoutMs: 120_000 });
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}
