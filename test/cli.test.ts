/** The shipped command line: bin/loupe.js runs the bundle in-process, and ffmpeg's capabilities are cached on disk. */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { COLORS, makeShapesClip } from './fixtures/clips.ts';
import { FIXTURES, ROOT, tempDir } from './helpers.ts';

const loupe = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [path.join(ROOT, 'bin', 'loupe.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });

describe('bin/loupe.js', () => {
  it('runs the bundle, which is newer than every source file', () => {
    const bundle = path.join(ROOT, 'dist-main', 'cli', 'main.js');
    const built = statSync(bundle).mtimeMs;
    const sources = readdirSync(path.join(ROOT, 'src-main'), { recursive: true }).map(String);
    for (const f of sources.filter((f) => f.endsWith('.ts')))
      expect(statSync(path.join(ROOT, 'src-main', f)).mtimeMs, f).toBeLessThanOrEqual(built);
    const version = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;
    const out = loupe(['--version']);
    expect(out.status).toBe(0);
    expect(out.stdout.trim()).toBe(version);
    expect(loupe(['ask']).status).toBe(2); // usage errors still exit 2
  });

  it('answers, and remembers what the ffmpeg binaries are for the next process', async () => {
    const clip = await makeShapesClip(path.join(FIXTURES, 'cli'), {
      name: 'red-circle',
      width: 160,
      height: 90,
      duration: 2,
      fps: 10,
      codec: 'h264',
      background: COLORS.black,
      shapes: [{ kind: 'circle', color: COLORS.red, radius: 0.2, x0: 0.5, y0: 0.5 }],
    });
    const data = await tempDir('loupe-cli-');
    const out = loupe(['ask', clip, 'What color is the circle?', '--json', '--no-cache'], {
      LOUPE_DATA_DIR: data,
    });
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    expect(JSON.parse(out.stdout).answer).toBe('red');
    const cache = JSON.parse(readFileSync(path.join(data, 'cache', 'media-binaries.json'), 'utf8'));
    expect(cache.binaries.ffmpeg.version).toMatch(/\d/);
    expect(cache.binaries.ffprobe.path).toBeTruthy();
  });
});
