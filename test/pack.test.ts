/** Model-pack validation names exactly what is wrong; the CLI maps errors to exit codes. */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, liveWorkerCount } from '../src-main/model/engine.ts';
import { DEFAULT_PREPROCESS, loadPack } from '../src-main/model/pack.ts';
import { builtinPackDir } from '../src-main/paths.ts';
import { makeShapesClip, COLORS } from './fixtures/clips.ts';
import { FIXTURES, tempDir } from './helpers.ts';

describe('model pack validation', () => {
  let work: string;
  beforeAll(async () => {
    work = await tempDir('loupe-pack-');
  });
  afterAll(() => rm(work, { recursive: true, force: true }));

  const copyPack = async (name: string) => {
    const dir = path.join(work, name);
    await cp(builtinPackDir(), dir, { recursive: true });
    return dir;
  };

  it('loads the built-in pack and checks every hash', async () => {
    const pack = await loadPack(builtinPackDir(), { verifyHashes: true });
    expect(pack.manifest.vision.connector).toBe('dci');
    expect(pack.manifest.vision.tokensPerFrame * 2).toBe(pack.manifest.vision.tokensPerImage);
  });

  it('names a missing folder', async () => {
    await expect(loadPack(path.join(work, 'nowhere'))).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' });
  });

  it('names a missing file', async () => {
    const dir = await copyPack('missing');
    await rm(path.join(dir, 'embed_tokens.onnx'));
    await expect(loadPack(dir)).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining('missing embed_tokens.onnx'),
    });
  });

  it('names a file whose hash does not match', async () => {
    const dir = await copyPack('tampered');
    const file = path.join(dir, 'tokenizer.json');
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('"<s>"', '"<S>"'));
    await expect(loadPack(dir)).rejects.toMatchObject({
      message: expect.stringMatching(/tokenizer\.json .*(hash|bytes)/),
    });
  });

  it('names the first wrong manifest field', async () => {
    const dir = await copyPack('bad-manifest');
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    manifest.vision.imageSize = -3;
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
    await expect(loadPack(dir)).rejects.toMatchObject({
      message: expect.stringContaining('vision.imageSize'),
    });
  });

  it('reads a manifest without vision.preprocess as expand2square + Pillow bicubic, and a stated one as stated', async () => {
    const builtin = await loadPack(builtinPackDir());
    expect(builtin.manifest.vision.preprocess).toEqual(DEFAULT_PREPROCESS);
    const dir = await copyPack('preprocess');
    const file = path.join(dir, 'manifest.json');
    const manifest = JSON.parse(await readFile(file, 'utf8'));
    const lanczos = {
      pad: 'expand2square',
      resize: { kernel: 'lanczos', antialias: true },
      rescale: 1 / 255,
    };
    await writeFile(
      file,
      JSON.stringify({ ...manifest, vision: { ...manifest.vision, preprocess: lanczos } }),
    );
    await expect(loadPack(dir)).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining('vision.resample: resample names another kernel'),
    });
    const stated = { ...manifest.vision, resample: 'lanczos', preprocess: lanczos };
    await writeFile(file, JSON.stringify({ ...manifest, vision: stated }));
    expect((await loadPack(dir)).manifest.vision.preprocess).toEqual(lanczos);
    const nearest = { ...lanczos, resize: { kernel: 'nearest', antialias: false } };
    await writeFile(file, JSON.stringify({ ...manifest, vision: { ...stated, preprocess: nearest } }));
    await expect(loadPack(dir)).rejects.toMatchObject({
      message: expect.stringContaining('vision.preprocess.resize.kernel'),
    });
  });

  it('names a graph input that is not where the manifest says', async () => {
    const dir = await copyPack('swapped');
    // The embedding graph in the decoder's place: valid ONNX, wrong inputs.
    await cp(path.join(dir, 'embed_tokens.onnx'), path.join(dir, 'decoder_model_merged.onnx'));
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    manifest.files['decoder_model_merged.onnx'] = manifest.files['embed_tokens.onnx'];
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
    await expect(Engine.load(dir, { provider: 'cpu' })).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining('decoder graph lacks input "inputs_embeds"'),
    });
  });

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a manifest being broken on purpose
  type Manifest = Record<string, any>;

  /** A pack copy whose manifest was edited (and whose hashes were kept true to its files). */
  const fuzzedPack = async (name: string, edit: (m: Manifest, dir: string) => Promise<void> | void) => {
    const dir = await copyPack(name);
    const file = path.join(dir, 'manifest.json');
    const manifest = JSON.parse(await readFile(file, 'utf8'));
    await edit(manifest, dir);
    for (const f of Object.keys(manifest.files)) {
      const bytes = await readFile(path.join(dir, f));
      manifest.files[f] = { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
    }
    await writeFile(file, JSON.stringify(manifest));
    return dir;
  };

  it.each([
    ['a wrong vocabulary', (m: Manifest) => void (m.decoder.vocabSize += 7), 'decoder.vocabSize'],
    ['a wrong hidden size', (m: Manifest) => void (m.decoder.hiddenSize *= 2), 'decoder.hiddenSize'],
    [
      'a wrong KV head count',
      (m: Manifest) => void (m.decoder.numKeyValueHeads += 1),
      'decoder.numKeyValueHeads',
    ],
    ['a wrong head size', (m: Manifest) => void (m.decoder.headDim /= 2), 'decoder.headDim'],
    ['a wrong image size', (m: Manifest) => void (m.vision.imageSize += 16), 'vision.imageSize'],
    [
      'a wrong token count',
      (m: Manifest) => void ((m.vision.tokensPerImage *= 2), (m.vision.tokensPerFrame *= 2)),
      'vision.tokensPerImage',
    ],
  ])('refuses a manifest with %s before any native read, naming the field', async (_, edit, field) => {
    const dir = await fuzzedPack(`fuzz-${field}`, edit);
    await expect(Engine.load(dir, { provider: 'cpu' })).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining(field),
    });
  });

  it('refuses a truncated graph and a graph of another kind with typed errors, and leaves no worker', async () => {
    const truncated = await fuzzedPack('fuzz-truncated', async (_, dir) => {
      const f = path.join(dir, 'decoder_model_merged.onnx');
      const bytes = await readFile(f);
      await writeFile(f, bytes.subarray(0, Math.floor(bytes.length / 3)));
    });
    await expect(Engine.load(truncated, { provider: 'cpu' })).rejects.toMatchObject({
      code: 'MODEL_INVALID',
    });
    // the vision encoder in the embedding's place: valid ONNX of another graph, refused by its inputs
    const swapped = await fuzzedPack('fuzz-swapped', (_, dir) =>
      cp(path.join(dir, 'vision_encoder.onnx'), path.join(dir, 'embed_tokens.onnx')),
    );
    await expect(Engine.load(swapped, { provider: 'cpu' })).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining('embed graph lacks input "input_ids"'),
    });
    expect(liveWorkerCount()).toBe(0);
  });
});

/** A 1 s clip of a red circle, enough for the CLI to probe and open. */
const smallClip = () =>
  makeShapesClip(FIXTURES, {
    name: 'cli-small',
    width: 160,
    height: 90,
    duration: 1,
    fps: 10,
    codec: 'h264',
    background: '#000000',
    shapes: [{ kind: 'circle', color: COLORS.red, radius: 0.2, x0: 0.5, y0: 0.5 }],
  });

describe('loupe CLI exit codes', () => {
  const loupe = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src-main/cli/main.ts', ...args], {
      encoding: 'utf8',
      env: { ...process.env, LOUPE_DATA_DIR: '/tmp/loupe-cli-test' },
    });

  it('exits 2 on a usage error', () => {
    const out = loupe('ask', 'clip.mp4');
    expect(out.status).toBe(2);
    expect(out.stderr).toContain("missing required argument 'question'");
  });

  it('exits 2 on a malformed time', () => {
    expect(loupe('ask', 'clip.mp4', 'q?', '--from', '1:99').status).toBe(2);
  });

  it('exits 3 with one clear line for a missing video', () => {
    const out = loupe('ask', '/nonexistent/clip.mp4', 'What color is the circle?');
    expect(out.status).toBe(3);
    expect(out.stderr.trim().split('\n')).toHaveLength(1);
    expect(out.stderr).toContain('/nonexistent/clip.mp4');
  });

  it('exits 4 for a model folder that is not a pack', async () => {
    const clip = await smallClip();
    const out = loupe('ask', clip, 'What color is the circle?', '--model', '/tmp');
    expect(out.status).toBe(4);
    expect(out.stderr).toContain('manifest.json is missing');
  });

  it('probes a video as JSON', async () => {
    const clip = await smallClip();
    const out = loupe('probe', clip, '--json');
    expect(out.status).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ width: 160, height: 90, codec: 'h264' });
  });

  it('verifies the built-in pack', () => {
    const out = loupe('models', 'verify');
    expect(out.stderr).toBe('');
    expect(out.stdout).toMatch(/^ok: builtin-shapes@/);
  });
});
