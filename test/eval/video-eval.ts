/**
 * Zero-shot video QA on clips from a renderer other than the training one (ffmpeg's lavfi, see
 * test/fixtures/clips.ts), encoded at settings training never saw (H.264 and VP9, long GOPs, full range),
 * with shapes that move and shapes that appear part-way, decoded through the app's own path.
 *
 *   npx tsx test/eval/video-eval.ts [--pack DIR] [--n 60] [--seed 7] [--out DIR] [--frames 8]
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ClipConversation } from '../../src-main/qa/ask.ts';
import { seededRandom } from '../../src-main/model/sampler.ts';
import { Services } from '../../src-main/services.ts';
import { COLORS, makeLavfiClip, makeShapesClip, type Shape, type ShapesClipSpec } from '../fixtures/clips.ts';

export const HONEST = 'This built-in model only knows simple shapes and colors.';
type ColorName = keyof typeof COLORS;
const KINDS = ['circle', 'square', 'triangle'] as const;
const COLOR_NAMES = Object.keys(COLORS) as ColorName[];

export interface EvalItem {
  clip: string;
  question: string;
  expected: string;
  type: 'color' | 'shape' | 'count' | 'presence' | 'describe' | 'honest';
}

const rgb = (hex: string) =>
  [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];
const dist = (a: number[], b: number[]) => Math.hypot(a[0]! - b[0]!, a[1]! - b[1]!, a[2]! - b[2]!);

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)]!;
}
function shuffle<T>(rand: () => number, items: readonly T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** A random scene for clip `i`: 1–3 shapes of distinct kinds and colors, some moving, some appearing late. */
export function randomClipSpec(rand: () => number, i: number): { spec: ShapesClipSpec; colors: ColorName[] } {
  const [width, height] = pick(rand, [
    [320, 180],
    [480, 270],
    [640, 360],
    [360, 640],
    [400, 400],
    [426, 240],
  ] as const);
  const n = 1 + Math.floor(rand() * 3);
  const kinds = shuffle(rand, KINDS).slice(0, n);
  const colors = shuffle(rand, COLOR_NAMES).slice(0, n);
  let background = '#808080';
  for (let tries = 0; tries < 100; tries++) {
    const c = [0, 0, 0].map(() => Math.floor(rand() * 256));
    const nearest = COLOR_NAMES.reduce((best, name) =>
      dist(rgb(COLORS[name]), c) < dist(rgb(COLORS[best]), c) ? name : best,
    );
    if (colors.every((name) => dist(rgb(COLORS[name]), c) > 120 && nearest !== name)) {
      background = '#' + c.map((v) => v.toString(16).padStart(2, '0')).join('');
      break;
    }
  }
  const duration = 3 + Math.floor(rand() * 4);
  const short = Math.min(width, height);
  const shapes: Shape[] = [];
  for (let k = 0; k < n; k++) {
    for (let tries = 0; tries < 200; tries++) {
      const radius = 0.09 + rand() * 0.09;
      const rx = (radius * short) / width;
      const ry = (radius * short) / height;
      const x0 = rx + rand() * (1 - 2 * rx);
      const y0 = ry + rand() * (1 - 2 * ry);
      const moves = rand() < 0.5;
      const x1 = moves ? rx + rand() * (1 - 2 * rx) : x0;
      const y1 = moves ? ry + rand() * (1 - 2 * ry) : y0;
      const clear = shapes.every((s) =>
        [0, 0.25, 0.5, 0.75, 1].every((t) => {
          const ax = (x0 + (x1 - x0) * t) * width;
          const ay = (y0 + (y1 - y0) * t) * height;
          const bx = (s.x0 + ((s.x1 ?? s.x0) - s.x0) * t) * width;
          const by = (s.y0 + ((s.y1 ?? s.y0) - s.y0) * t) * height;
          return Math.hypot(ax - bx, ay - by) > (radius + s.radius) * short * 1.2;
        }),
      );
      if (!clear) continue;
      const appearAt = k > 0 && rand() < 0.3 ? duration * (0.25 + rand() * 0.35) : undefined;
      shapes.push({ kind: kinds[k]!, color: COLORS[colors[k]!], radius, x0, y0, x1, y1, appearAt });
      break;
    }
  }
  const vp9 = rand() < 0.5;
  return {
    colors: colors.slice(0, shapes.length),
    spec: {
      name: `eval-${i}`,
      width,
      height,
      duration,
      fps: pick(rand, [24, 25, 30]),
      codec: vp9 ? 'vp9' : 'h264',
      background,
      shapes,
      gop: 250,
      fullRange: rand() < 0.5,
    },
  };
}

export function questionsFor(
  rand: () => number,
  spec: ShapesClipSpec,
  colors: ColorName[],
): Omit<EvalItem, 'clip'>[] {
  const shapes = spec.shapes.map((s, k) => ({
    kind: s.kind,
    color: colors[k]!,
    meanX: (s.x0 + (s.x1 ?? s.x0)) / 2,
  }));
  const s = pick(rand, shapes);
  const absentColor = pick(
    rand,
    COLOR_NAMES.filter((c) => !colors.includes(c)),
  );
  const ordered = [...shapes].sort((a, b) => a.meanX - b.meanX);
  const parts = ordered.map((o) => `${/^[aeiou]/.test(o.color) ? 'an' : 'a'} ${o.color} ${o.kind}`);
  const sentence = parts.length === 1 ? parts[0]! : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}`;
  return [
    { question: `What color is the ${s.kind}?`, expected: s.color, type: 'color' },
    { question: `What shape is ${s.color}?`, expected: s.kind, type: 'shape' },
    { question: 'How many shapes are there?', expected: String(shapes.length), type: 'count' },
    rand() < 0.5
      ? { question: `Is there a ${s.color} ${s.kind}?`, expected: 'yes', type: 'presence' }
      : { question: `Is there a ${absentColor} ${s.kind}?`, expected: 'no', type: 'presence' },
    {
      question: 'Describe the video.',
      expected: sentence[0]!.toUpperCase() + sentence.slice(1) + '.',
      type: 'describe',
    },
  ];
}

/** Clips with none of the domain's shapes: every question must get the honest answer. */
async function makeOffDomainClips(dir: string, count: number): Promise<string[]> {
  const sources = [
    'sierpinski=s=320x180:type=carpet:r=25',
    'color=c=0x406080:s=320x180:r=25,noise=alls=60:allf=t',
    'cellauto=s=320x180:rule=110:r=25',
    'testsrc2=s=320x180:r=25',
    'smptehdbars=s=320x180:r=25',
  ];
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      makeLavfiClip(dir, { name: `offdomain-${i}.mp4`, source: sources[i % sources.length]!, duration: 3 }),
    ),
  );
}

export interface EvalResult {
  byType: Record<string, { correct: number; total: number }>;
  failures: { item: EvalItem; got: string }[];
}

export async function runVideoEval(opts: {
  services: Services;
  n: number;
  seed: number;
  dir: string;
  frames?: number;
  offDomain?: number;
}): Promise<EvalResult> {
  const rand = seededRandom(opts.seed);
  await mkdir(opts.dir, { recursive: true });
  const items: EvalItem[] = [];
  for (let i = 0; i < opts.n; i++) {
    const { spec, colors } = randomClipSpec(rand, opts.seed * 1000 + i);
    const clip = await makeShapesClip(opts.dir, spec);
    for (const q of questionsFor(rand, spec, colors)) items.push({ ...q, clip });
  }
  for (const clip of await makeOffDomainClips(
    opts.dir,
    opts.offDomain ?? Math.max(2, Math.round(opts.n / 5)),
  )) {
    items.push({
      clip,
      question: pick(rand, [
        'What color is the circle?',
        'How many shapes are there?',
        'Describe the video.',
        'Is there a red square?',
      ]),
      expected: HONEST,
      type: 'honest',
    });
  }
  const engine = await opts.services.engine();
  const extractor = await opts.services.extractor();
  const result: EvalResult = { byType: {}, failures: [] };
  for (const item of items) {
    const conversation = await ClipConversation.open(engine, extractor, {
      path: item.clip,
      frames: opts.frames,
    });
    let got = '';
    try {
      for await (const e of conversation.ask(item.question)) if (e.type === 'done') got = e.text;
    } finally {
      conversation.close();
    }
    const row = (result.byType[item.type] ??= { correct: 0, total: 0 });
    row.total++;
    if (got.trim().toLowerCase() === item.expected.toLowerCase()) row.correct++;
    else result.failures.push({ item, got });
  }
  return result;
}

export function formatTable(result: EvalResult): string {
  const rows = Object.entries(result.byType).sort();
  const total = rows.reduce((a, [, r]) => ({ c: a.c + r.correct, t: a.t + r.total }), { c: 0, t: 0 });
  return [
    '| question type | correct | n | accuracy |',
    '|---|---|---|---|',
    ...rows.map(
      ([k, r]) => `| ${k} | ${r.correct} | ${r.total} | ${((100 * r.correct) / r.total).toFixed(1)}% |`,
    ),
    `| **overall** | ${total.c} | ${total.t} | **${((100 * total.c) / total.t).toFixed(1)}%** |`,
  ].join('\n');
}

async function cli(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (name: string, fallback: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1]! : fallback;
  };
  const services = new Services({
    packDir: args.includes('--pack') ? arg('pack', '') : undefined,
    featureCache: false,
    dataDir: path.join(os.tmpdir(), 'loupe-eval'),
  });
  const seed = Number(arg('seed', '7'));
  const result = await runVideoEval({
    services,
    n: Number(arg('n', '60')),
    seed,
    frames: Number(arg('frames', '8')),
    dir: arg('out', path.join(os.tmpdir(), `loupe-eval-clips-${seed}`)),
  });
  console.log(formatTable(result));
  if (args.includes('--failures'))
    for (const f of result.failures)
      console.log(
        `${path.basename(f.item.clip)}  ${f.item.question}  expected "${f.item.expected}" got "${f.got}"`,
      );
  await services.dispose();
}

if (process.argv[1]?.endsWith('video-eval.ts')) await cli();
