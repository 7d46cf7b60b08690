/**
 * What the converter tests share: model fixtures cached by their tools' sources, deterministic pixels, one
 * engine run of a first question (prompt, ids, first logits, greedy answer), the PyTorch reference
 * (models/loupe_dc/official_reference.py, transformers' own classes) and the comparison figures.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Engine } from '../src-main/model/engine.ts';
import { FIXTURES, PYTHON, ROOT } from './helpers.ts';

const run = promisify(execFile);
export const MODELS = path.join(ROOT, 'models');

/** Runs the project's Python model tooling (models/loupe_dc) and returns its stdout. */
export async function python(args: string[]): Promise<string> {
  const { stdout } = await run(PYTHON, args, {
    cwd: MODELS,
    maxBuffer: 1 << 26,
    env: { ...process.env, PYTHONWARNINGS: 'ignore' },
  });
  return stdout;
}

/**
 * A fixture folder under test/.fixtures/<kind>/<hash of the tools' sources>: built once by `build` (into a
 * temporary folder renamed into place, so an interrupted build leaves nothing half made, and two test files
 * building it at once both end with the one finished copy) and reused while
 * those sources are unchanged. `marker` is the file whose presence means the fixture is complete.
 */
export async function cachedModelFixture(
  kind: string,
  sources: string[],
  marker: string,
  build: (dir: string) => Promise<void>,
): Promise<string> {
  const hash = createHash('sha256');
  for (const f of sources) hash.update(await readFile(path.join(MODELS, 'loupe_dc', f)));
  const root = path.join(FIXTURES, kind, hash.digest('hex').slice(0, 16));
  const done = () => existsSync(path.join(root, marker));
  await mkdir(path.dirname(root), { recursive: true });
  // Test files run in parallel workers: one builds, the others wait for it (a lock left by a dead process is
  // taken over).
  const lock = `${root}.lock`;
  let locked = false;
  while (!done() && !locked) {
    try {
      await mkdir(lock);
      locked = true;
    } catch {
      const owner = Number(await readFile(path.join(lock, 'pid'), 'utf8').catch(() => '0'));
      if (owner && !isAlive(owner)) await rm(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 1000));
    }
  }
  if (!locked) return root;
  try {
    await writeFile(path.join(lock, 'pid'), String(process.pid));
    if (done()) return root; // finished by another worker just before the lock was free
    const building = `${root}.tmp-${process.pid}`;
    await rm(building, { recursive: true, force: true });
    await build(building);
    await rename(building, root);
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
  return root;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
/** The tools whose sources key the tiny official-layout fixtures (models/loupe_dc/tiny.py builds them). */
const OFFICIAL_SOURCES = ['tiny.py', 'official.py', 'convert.py', 'modeling.py', 'templates.py'];

export interface Fixture {
  name: string;
  tower: 'clip' | 'siglip';
  connector: string;
  convMode: 'vicuna_v1' | 'llama_3';
  precisions: ('fp32' | 'fp16' | 'int4')[];
}

/** The tiny official-layout checkpoints (both towers × DCI/SCI/STI), each with its converted packs. */
export const fixtureRoot = () =>
  cachedModelFixture('official', OFFICIAL_SOURCES, 'fixtures.json', async (dir) => {
    await python(['-m', 'loupe_dc.tiny', 'fixtures', '--out', dir]);
  });

export const readFixtures = async (root: string) =>
  JSON.parse(await readFile(path.join(root, 'fixtures.json'), 'utf8')) as Fixture[];

export const QUESTION = { image: 'What is in the image?', frames: 'Describe the video.' };
export const MAX_NEW = 16;

export interface Reference {
  prompt: string;
  follow_up_prompt: string;
  input_ids: number[];
  logits: number[];
  answer_ids: number[];
  answer: string;
}
export interface Outcome {
  prompt: string;
  followUp: string;
  ids: number[];
  logits: Float32Array<ArrayBufferLike>;
  answer: string;
  answerTokens: number;
  /** Every generated id but the end-of-turn token, from the token events. */
  answerIds: number[];
  /** The reference's greedy token ids decoded by the pack's tokenizer (the engine's own decode). */
  decode: (ids: number[]) => string;
}

/** Deterministic normalized pixels (count, 3, S, S) in [-1.5, 1.5]. */
export function pixels(count: number, size: number, seed: number): Float32Array[] {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 3 - 1.5;
  return Array.from({ length: count }, () => Float32Array.from({ length: 3 * size * size }, next));
}

export async function engineOutcome(
  engine: Engine,
  frames: Float32Array[],
  kind: 'image' | 'frames',
): Promise<Outcome> {
  const p = engine.prompt;
  const question = QUESTION[kind];
  const first = p.firstUserMessage(question);
  const prompt = p.render([first]);
  const followUp = p.render([
    first,
    { role: 'assistant', content: 'A cat.' },
    { role: 'user', content: 'And its color?' },
  ]);
  const ids = p.encodePrompt([first]).flatMap((s) => (s.kind === 'image' ? [-200] : s.ids));
  const conversation = engine.startConversation({ kind, frames: await engine.encodeImages(frames) });
  let logits: Float32Array<ArrayBufferLike> = new Float32Array(0);
  let answer = '';
  let answerTokens = 0;
  const answerIds: number[] = [];
  for await (const e of conversation.ask(question, {
    onPromptLogits: (l) => (logits = l),
    maxNewTokens: MAX_NEW,
  })) {
    if (e.type === 'token') answerIds.push(e.tokenId);
    if (e.type === 'done') {
      answer = e.text;
      answerTokens = e.stopped === 'eos' ? e.tokens - 1 : e.tokens;
    }
  }
  return {
    prompt,
    followUp,
    ids,
    logits,
    answer,
    answerTokens,
    answerIds,
    decode: (ids) => p.decode(ids).trim(),
  };
}

export const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
export const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
};
export const std = (a: ArrayLike<number>) => {
  let m = 0,
    v = 0;
  for (let i = 0; i < a.length; i++) m += a[i]! / a.length;
  for (let i = 0; i < a.length; i++) v += (a[i]! - m) ** 2 / a.length;
  return Math.sqrt(v);
};
export const argmax = (a: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
};

export interface ReferenceJob {
  checkpoint: string;
  tower: string;
  convMode: string;
  pixels: string;
  count: number;
  frames: boolean;
  question: string;
  maxNewTokens: number;
}

/** Writes the frames for a reference job and returns the job. */
export async function referenceJob(
  work: string,
  id: string,
  frames: Float32Array[],
  kind: 'image' | 'frames',
  model: { checkpoint: string; tower: string; convMode: string },
): Promise<ReferenceJob> {
  const file = path.join(work, `${id}-${kind}.f32`);
  const all = new Float32Array(frames.length * frames[0]!.length);
  frames.forEach((p, i) => all.set(p, i * p.length));
  await writeFile(file, Buffer.from(all.buffer));
  return {
    ...model,
    pixels: file,
    count: frames.length,
    frames: kind === 'frames',
    question: QUESTION[kind],
    maxNewTokens: MAX_NEW,
  };
}

/** Runs the jobs through transformers (one Python process) and returns one reference per job. */
export async function pytorchReference(work: string, jobs: ReferenceJob[]): Promise<Reference[]> {
  const jobsFile = path.join(work, 'jobs.json');
  await writeFile(jobsFile, JSON.stringify(jobs));
  return JSON.parse(await python(['-m', 'loupe_dc.official_reference', jobsFile])) as Reference[];
}

/** Greedy tokens in common: the longest reference prefix whose text starts the pack's answer. */
export function greedyTokensInCommon(got: Outcome, ref: Reference): number {
  if (argmax(got.logits) !== argmax(ref.logits)) return 0;
  let same = 0;
  while (
    same < ref.answer_ids.length &&
    got.answer.startsWith(got.decode(ref.answer_ids.slice(0, same + 1)).replace(/\uFFFD+$/, ''))
  )
    same++;
  return same;
}
