/**
 * The shared fixture makers are safe when several test files make the same fixture at once, and a fixture made
 * from another spec is rebuilt rather than reused.
 */
import { execFile } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { COLORS, makeShapesClip, smallClip } from './fixtures/clips.ts';
import { tempDir } from './helpers.ts';

const run = promisify(execFile);

async function frameCount(file: string): Promise<number> {
  const { stdout } = await run('ffprobe', [
    ...['-v', 'error', '-count_frames', '-select_streams', 'v:0'],
    ...['-show_entries', 'stream=nb_read_frames,width', '-of', 'csv=p=0', file],
  ]);
  return Number(stdout.trim().split(',')[1]);
}

describe('fixture makers', () => {
  const spec = smallClip('same.mp4', {
    shapes: [{ kind: 'circle', color: COLORS.red, radius: 0.2, x0: 0.5, y0: 0.5 }],
  });

  it('makes one complete file when many callers make the same fixture at once', async () => {
    const dir = await tempDir('loupe-fixtures-');
    const paths = await Promise.all(Array.from({ length: 6 }, () => makeShapesClip(dir, spec)));
    expect(new Set(paths).size).toBe(1);
    expect(await frameCount(paths[0]!)).toBe(10);
    // Nothing half-made is left behind: the clip and its key, no temporary files.
    expect((await readdir(dir)).sort()).toEqual(['.same.mp4.key', 'same.mp4']);
  });

  it('rebuilds a fixture whose spec changed under the same name, and reuses an unchanged one', async () => {
    const dir = await tempDir('loupe-fixtures-');
    const first = await makeShapesClip(dir, spec);
    const made = (await stat(first)).mtimeMs;
    await makeShapesClip(dir, spec);
    expect((await stat(first)).mtimeMs).toBe(made);
    await makeShapesClip(dir, { ...spec, duration: 2 });
    expect(await frameCount(first)).toBe(20);
  });
});
