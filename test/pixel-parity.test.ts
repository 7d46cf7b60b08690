/**
 * Pixel parity from files: real PNG/JPEG stills and ffmpeg-encoded clips (portrait, landscape, odd sizes,
 * full range, rotated) go through Loupe's media path (sampleFramesAt, as the app calls it, with each pack's
 * stated preprocessing) and through the released checkpoints' own preparation (models/loupe_dc/pixel_reference.py:
 * LLaVA's expand2square + the tower's transformers image processor, stills opened with Pillow). Pixel tensors must
 * agree within 0.02 (normalized units) for both towers; then each tiny official-layout checkpoint (both towers ×
 * DCI/SCI/STI) answers from Loupe's pixels what transformers answers from the reference's: last-position logits
 * within 1e-3 and the very same greedy ids. Video frames reach the reference as Loupe decoded them (full
 * resolution, rotation and colour applied): that part is media.test.ts's business, not the reference's.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFramesAt, frameTimes, probe, sampleFramesAt } from '../src-main/media/index.ts';
import { Engine } from '../src-main/model/engine.ts';
import { frameFormat, loadPack, type Manifest } from '../src-main/model/pack.ts';
import { ffmpeg } from './fixtures/clips.ts';
import { tempDir } from './helpers.ts';
import {
  engineOutcome,
  fixtureRoot,
  maxAbsDiff,
  python,
  pytorchReference,
  readFixtures,
  referenceJob,
  type Fixture,
  type Outcome,
  type Reference,
  type ReferenceJob,
} from './official-harness.ts';

const w = (options: string) => options.split(' ');
const src = (size: string, d = 1) => w(`-f lavfi -i testsrc2=s=${size}:r=10:d=${d}`);
/** name → ffmpeg arguments before the output (testsrc2: bars, gradients, text, a moving clock). */
const STILLS: Record<string, string[]> = {
  'portrait.png': [...src('200x300'), ...w('-frames:v 1 -pix_fmt rgb24 -c:v png -f image2')],
  'landscape.jpg': [...src('640x360'), ...w('-frames:v 1 -pix_fmt yuvj420p -q:v 3 -f image2')],
  'odd.png': [...src('173x97'), ...w('-frames:v 1 -pix_fmt rgb24 -c:v png -f image2')],
  'small.jpg': [...src('52x30'), ...w('-frames:v 1 -pix_fmt yuvj422p -q:v 2 -f image2')],
  'square.png': [...src('84x84'), ...w('-frames:v 1 -pix_fmt rgb24 -c:v png -f image2')],
};
const H264 = w('-c:v libx264 -preset ultrafast -crf 18 -g 5');
const CLIPS: Record<string, string[]> = {
  'landscape.mp4': [...src('320x180'), ...H264, ...w('-pix_fmt yuv420p -colorspace bt709 -color_range tv')],
  'portrait.mp4': [...src('180x320'), ...H264, ...w('-pix_fmt yuv420p')],
  'odd.webm': [...src('161x93'), ...w('-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -crf 20 -b:v 0')],
  'full-range.mp4': [
    ...src('256x144'),
    ...H264,
    ...w('-vf scale=out_range=pc,format=yuvj420p -colorspace bt709 -color_range pc'),
  ],
  'rotated.mp4': [], // landscape.mp4 stream-copied with a 90° display rotation (portrait when shown)
};

interface PixelJob {
  tower: string;
  out: string;
  image?: string;
  rgb?: string;
  width?: number;
  height?: number;
}

describe('pixel parity from files with the released checkpoints’ preprocessing', () => {
  let work: string;
  let root: string;
  let fixtures: Fixture[];
  const files: Record<string, string> = {};
  /** `${tower}/${file}/${frame}` → [Loupe's pixels, the reference's] */
  const pixelPairs = new Map<string, [Float32Array, Float32Array]>();
  const outcomes = new Map<string, { got: Outcome; ref: Reference }>();
  const measured: string[] = [];

  /** Loupe's pixel tensors for `times` of `file`, and the jobs that make the reference's. */
  async function prepare(tower: string, manifest: Manifest, file: string, times: number[], tag: string) {
    const info = await probe(file);
    const loupe = await sampleFramesAt(file, times, { ...frameFormat(manifest.vision), info });
    const jobs: PixelJob[] = [];
    if (info.kind === 'image') {
      jobs.push({ tower, out: path.join(work, `${tag}-0.f32`), image: file });
    } else {
      const decoded = await decodeFramesAt(file, times, { info });
      for (const [i, d] of decoded.entries()) {
        const rgb = path.join(work, `${tag}-${i}.rgb`);
        await writeFile(rgb, d.image.data);
        const { width, height } = d.image;
        jobs.push({ tower, out: path.join(work, `${tag}-${i}.f32`), rgb, width, height });
      }
    }
    return { loupe: loupe.map((f) => f.pixels), jobs };
  }

  async function referencePixels(jobs: PixelJob[]): Promise<Float32Array[]> {
    const jobsFile = path.join(work, `pixel-jobs-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(jobsFile, JSON.stringify(jobs));
    await python(['-m', 'loupe_dc.pixel_reference', jobsFile]);
    return Promise.all(jobs.map(async (j) => new Float32Array((await readFile(j.out)).buffer.slice(0))));
  }

  beforeAll(async () => {
    const t0 = performance.now();
    work = await tempDir('loupe-pixel-parity-');
    for (const [name, args] of Object.entries({ ...STILLS, ...CLIPS })) {
      files[name] = path.join(work, name);
      if (name === 'rotated.mp4')
        await ffmpeg(['-i', files['landscape.mp4']!, ...w('-c copy -metadata:s:v:0 rotate=90'), files[name]]);
      else await ffmpeg([...args, files[name]]);
    }
    root = await fixtureRoot();
    fixtures = await readFixtures(root);
    const t1 = performance.now();

    // 1. Pixel tensors, per tower, for every file (two frames of each clip).
    const pairs: { key: string; loupe: Float32Array; job: PixelJob }[] = [];
    for (const tower of ['siglip', 'clip'] as const) {
      const f = fixtures.find((x) => x.tower === tower)!;
      const manifest = (await loadPack(path.join(root, f.name, 'pack-fp32'))).manifest;
      const towerDir = path.join(root, f.name, 'tower');
      for (const name of Object.keys(files)) {
        const times = name in STILLS ? [0] : [0.15, 0.75];
        const { loupe, jobs } = await prepare(towerDir, manifest, files[name]!, times, `${tower}-${name}`);
        jobs.forEach((job, i) => pairs.push({ key: `${tower}/${name}/${i}`, loupe: loupe[i]!, job }));
      }
    }

    // 2. Logits: each checkpoint answers about one still and eight frames of one clip.
    const stills = Object.keys(STILLS);
    const clips = Object.keys(CLIPS);
    const runs: { key: string; engine: Outcome; loupe: Float32Array[]; jobs: PixelJob[] }[] = [];
    for (const [i, f] of fixtures.entries()) {
      const pack = path.join(root, f.name, 'pack-fp32');
      const engine = await Engine.load(pack, { provider: 'cpu', threads: 1 });
      try {
        const towerDir = path.join(root, f.name, 'tower');
        const clip = files[clips[i % clips.length]!]!;
        const info = await probe(clip);
        const times = frameTimes(0, info.durationSec, 8, info.fps);
        for (const [kind, file, at] of [
          ['image', files[stills[i % stills.length]!]!, [0]],
          ['frames', clip, times],
        ] as const) {
          const { loupe, jobs } = await prepare(
            towerDir,
            engine.manifest,
            file,
            [...at],
            `${f.name}-${kind}`,
          );
          const key = `${f.name}/${kind} (${path.basename(file)})`;
          runs.push({ key, engine: await engineOutcome(engine, loupe, kind), loupe, jobs });
        }
      } finally {
        await engine.dispose();
      }
    }
    // One Python process prepares every reference tensor, one more answers.
    const t2 = performance.now();
    const refPixels = await referencePixels([...pairs.map((p) => p.job), ...runs.flatMap((r) => r.jobs)]);
    pairs.forEach((p, i) => pixelPairs.set(p.key, [p.loupe, refPixels[i]!]));
    const jobs: ReferenceJob[] = [];
    let at = pairs.length;
    for (const r of runs) {
      const f = fixtures.find((x) => r.key.startsWith(`${x.name}/`))!;
      const frames = refPixels.slice(at, (at += r.jobs.length));
      for (const [k, p] of frames.entries())
        measured.push(`${r.key} frame ${k}: pixels max |Δ| ${maxAbsDiff(p, r.loupe[k]!).toExponential(2)}`);
      jobs.push(
        await referenceJob(work, f.name, frames, r.key.includes('/frames') ? 'frames' : 'image', {
          checkpoint: path.join(root, f.name, 'checkpoint'),
          tower: path.join(root, f.name, 'tower'),
          convMode: f.convMode,
        }),
      );
    }
    const t3 = performance.now();
    (await pytorchReference(work, jobs)).forEach((ref, i) =>
      outcomes.set(runs[i]!.key, { got: runs[i]!.engine, ref }),
    );
    const s = (a: number, b: number) => `${((b - a) / 1000).toFixed(1)} s`;
    measured.push(
      `setup: media files + fixtures ${s(t0, t1)}, Loupe pixels + engine ${s(t1, t2)}, reference pixels ${s(t2, t3)}, reference answers ${s(t3, performance.now())}`,
    );
  }, 300_000);

  afterAll(async () => {
    if (measured.length) console.log(measured.join('\n'));
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('gives the reference processor’s pixel tensors within 0.02 for every still and frame, both towers', () => {
    expect(pixelPairs.size).toBe(2 * (Object.keys(STILLS).length + 2 * Object.keys(CLIPS).length));
    let worst = 0;
    for (const [key, [loupe, ref]] of pixelPairs) {
      expect(loupe.length, key).toBe(ref.length);
      const diff = maxAbsDiff(loupe, ref);
      worst = Math.max(worst, diff);
      measured.push(`${key}: pixels max |Δ| ${diff.toExponential(2)}`);
      expect(diff, key).toBeLessThanOrEqual(0.02);
    }
    measured.push(`worst pixel difference over ${pixelPairs.size} tensors: ${worst.toExponential(2)}`);
  });

  it('answers from files as transformers does from the reference’s pixels: logits ≤ 1e-3, same greedy ids', () => {
    expect(new Set(fixtures.map((f) => `${f.tower}-${f.connector}`)).size).toBe(6);
    expect(outcomes.size).toBe(2 * fixtures.length);
    for (const [key, { got, ref }] of outcomes) {
      expect(got.ids, key).toEqual(ref.input_ids);
      const diff = maxAbsDiff(got.logits, ref.logits);
      measured.push(`${key}: max |Δlogit| ${diff.toExponential(2)}, ${ref.answer_ids.length} greedy ids`);
      expect(diff, key).toBeLessThanOrEqual(1e-3);
      expect(got.answerIds, key).toEqual(ref.answer_ids);
    }
  });
});
