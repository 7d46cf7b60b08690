/**
 * Model packs: a folder with manifest.json, three ONNX graphs and the tokenizer (docs/model-pack.md).
 * A pack is data: everything the engine needs to know (image size, normalization, tokens per frame,
 * KV-cache layout, context length, chat template, stop tokens) is read from the manifest.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { LoupeError } from '../errors.ts';

export const PACK_FILES = {
  vision: 'vision_encoder.onnx',
  embed: 'embed_tokens.onnx',
  decoder: 'decoder_model_merged.onnx',
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
} as const;

const rgb = z.tuple([z.number(), z.number(), z.number()]);

/**
 * How a decoded frame becomes the tower's input (docs/model-pack.md#preprocessing): pad to a square at the
 * frame's own resolution (`expand2square`, filled with padColor), resize that square to imageSize with the named
 * Pillow kernel, then x × rescale, minus mean, over std.
 */
export const PreprocessSchema = z.object({
  pad: z.literal('expand2square'),
  resize: z.object({
    kernel: z.enum(['bicubic', 'bilinear', 'lanczos', 'box', 'hamming']),
    /** Keys' cubic coefficient (bicubic only); Pillow's is -0.5. */
    a: z.number().optional(),
    /** Widen the kernel by the scale factor when shrinking, as Pillow does. */
    antialias: z.boolean(),
  }),
  rescale: z.number().positive(),
});
export type Preprocess = z.infer<typeof PreprocessSchema>;

/**
 * What a manifest without `vision.preprocess` means: what the built-in model was trained and evaluated with
 * (models/loupe_dc/shapes.py `letterbox`) and what the CLIP/SigLIP processors do: expand2square, Pillow's
 * bicubic (a = -0.5, antialiased), 1/255.
 */
export const DEFAULT_PREPROCESS: Preprocess = {
  pad: 'expand2square',
  resize: { kernel: 'bicubic', a: -0.5, antialias: true },
  rescale: 1 / 255,
};

export const ManifestSchema = z.object({
  format: z.literal('loupe-model-pack'),
  formatVersion: z.literal(1),
  name: z.string().min(1),
  version: z.string().min(1),
  license: z.string(),
  description: z.string().default(''),
  /** What the model can see, said plainly in the UI (null for general-purpose models). */
  domain: z.string().nullable().default(null),
  precision: z.enum(['fp32', 'fp16', 'int4']),
  vision: z
    .object({
      tower: z.enum(['clip', 'siglip']),
      imageSize: z.number().int().positive(),
      mean: rgb,
      std: rgb,
      padColor: rgb,
      /** The resize kernel's name (format 1's original field); vision.preprocess says it in full. */
      resample: z.string(),
      preprocess: PreprocessSchema.default(DEFAULT_PREPROCESS),
      connector: z.enum(['none', 'sti', 'sci', 'dci']),
      connectorLayers: z.unknown().optional(),
      tokensPerImage: z.number().int().positive(),
      tokensPerFrame: z.number().int().positive(),
      temporalPooling: z.literal('max2'),
    })
    .refine((v) => v.resample === v.preprocess.resize.kernel, {
      message:
        'resample names another kernel than preprocess.resize.kernel (state vision.preprocess in full)',
      path: ['resample'],
    }),
  decoder: z.object({
    hiddenSize: z.number().int().positive(),
    numLayers: z.number().int().positive(),
    numKeyValueHeads: z.number().int().positive(),
    headDim: z.number().int().positive(),
    vocabSize: z.number().int().positive(),
    contextLength: z.number().int().positive(),
    usesPositionIds: z.boolean(),
    /**
     * What the KV cache stores (docs/model-pack.md#kv-cache): float32, or int8 with per-channel or per-tensor
     * scales that live in the decoder graph (GroupQueryAttention's k_scale/v_scale, from a calibration pass,
     * `python -m loupe_dc.kv_quant`). The decoder's past and present tensors must be of this type.
     */
    kvCache: z
      .object({
        dtype: z.enum(['float32', 'int8']),
        quantization: z.enum(['per-channel', 'per-tensor']).optional(),
        calibration: z.unknown().optional(),
      })
      .refine((c) => (c.dtype === 'int8') === (c.quantization !== undefined), {
        message: 'an int8 cache states its quantization (per-channel or per-tensor), a float32 one none',
        path: ['quantization'],
      })
      .default({ dtype: 'float32' }),
  }),
  prompt: z.object({
    chatTemplate: z.string().min(1),
    imageToken: z.string().min(1),
    bosToken: z.string().nullable(),
    eosToken: z.string(),
    eosTokenIds: z.array(z.number().int()).min(1),
    addBos: z.boolean(),
    systemPrompt: z.string().optional(),
  }),
  defaults: z.object({ frames: z.number().int().positive(), maxNewTokens: z.number().int().positive() }),
  files: z.record(
    z.string(),
    z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int() }),
  ),
});

export type Manifest = z.infer<typeof ManifestSchema>;

/** What media/ needs to prepare frames for this pack (its FrameFormat, without the call's own options). */
export function frameFormat(vision: Manifest['vision']) {
  const { resize, rescale } = vision.preprocess;
  return {
    size: vision.imageSize,
    mean: vision.mean,
    std: vision.std,
    pad: vision.padColor,
    resize,
    rescale,
  };
}

export interface Pack {
  dir: string;
  manifest: Manifest;
  /** Stable identity of what the vision graph computes, for cache keys. */
  visionId: string;
  file(name: keyof typeof PACK_FILES): string;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface LoadPackOptions {
  /** Check every file's sha256 (always done for files under `hashLimitBytes`). */
  verifyHashes?: boolean;
  hashLimitBytes?: number;
}

/** Read and validate a pack; every problem is named precisely (file, field, expected vs found). */
export async function loadPack(dir: string, options: LoadPackOptions = {}): Promise<Pack> {
  const manifestPath = path.join(dir, 'manifest.json');
  let raw: string;
  try {
    raw = await readFile(manifestPath, 'utf8');
  } catch {
    throw new LoupeError('MODEL_NOT_FOUND', `No model pack at ${dir}: manifest.json is missing.`, { dir });
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new LoupeError('MODEL_INVALID', `${manifestPath} is not valid JSON: ${(e as Error).message}`, {
      dir,
    });
  }
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LoupeError(
      'MODEL_INVALID',
      `${manifestPath}: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
      { dir, issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) },
    );
  }
  const manifest = parsed.data;
  const limit = options.hashLimitBytes ?? 256 * 1024 * 1024;
  for (const required of Object.values(PACK_FILES)) {
    if (!manifest.files[required])
      throw new LoupeError('MODEL_INVALID', `${manifestPath} does not list ${required}.`, { dir });
  }
  for (const [name, entry] of Object.entries(manifest.files)) {
    const file = path.join(dir, name);
    const info = await stat(file).catch(() => null);
    if (!info)
      throw new LoupeError('MODEL_INVALID', `Model pack ${dir} is missing ${name}.`, { dir, file: name });
    if (info.size !== entry.bytes)
      throw new LoupeError(
        'MODEL_INVALID',
        `${name} in ${dir} has ${info.size} bytes, the manifest says ${entry.bytes}: the file is damaged or was replaced.`,
        { dir, file: name },
      );
    if (options.verifyHashes || info.size <= limit) {
      const actual = await sha256File(file);
      if (actual !== entry.sha256)
        throw new LoupeError(
          'MODEL_INVALID',
          `${name} in ${dir} fails its hash check (sha256 ${actual.slice(0, 12)}…, expected ${entry.sha256.slice(0, 12)}…).`,
          { dir, file: name },
        );
    }
  }
  const visionHash = manifest.files[PACK_FILES.vision]!.sha256;
  return {
    dir,
    manifest,
    visionId: `${manifest.name}@${manifest.version}:${visionHash.slice(0, 16)}`,
    file: (name) => path.join(dir, PACK_FILES[name]),
  };
}
