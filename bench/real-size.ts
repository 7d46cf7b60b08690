/**
 * `npm run bench:real -- --size 7b|8b [--json]`: a release-shaped Dense Connector checkpoint (random weights in
 * the exact shapes of DenseConnector-v1.5-7B or -8B, `loupe_dc.release_shapes`) converted tensor by tensor to an
 * int4 pack (`loupe_dc.stream_convert`), given an int8 KV cache (`loupe_dc.kv_quant`), then asked about 8 frames.
 *
 * Prepared once under `<bench cache>/size-<size>/` (checkpoint ~14-16 GB, pack ~4-5 GB); the conversion's wall
 * time and peak memory are measured when it runs and kept beside the pack (`convert.json`). Random weights answer
 * nonsense; what they cost in time and memory is the real thing.
 *
 * llama.cpp runs beside it on the same weights: the checkpoint's language model through llama.cpp's own converter
 * (`convert_hf_to_gguf.py` from the llama-cpp-python source, `loupe_dc.llamacpp_gguf`), quantized to Q4_0 (4 bits,
 * blocks of 32, as the pack's MatMulNBits), given the same prompt length, new tokens and threads. Loupe and
 * llama.cpp take turns, `rounds` times; medians.
 *
 * Keys: convert_s, convert_peak_rss_mb, kv_calibrate_s, kv_calibrate_peak_rss_mb, pack_mb, vision_ms_per_frame,
 * context_tokens, prefill_tok_s, decode_tok_s, ttft_ms, peak_rss_mb (the engine worker's), and llama.cpp's
 * prefill_tok_s_llamacpp, decode_tok_s_llamacpp, ttft_ms_llamacpp, peak_rss_mb_llamacpp, gguf_mb.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine } from '../src-main/model/engine.ts';
import { ROOT } from '../test/helpers.ts';
import { peakRssMb, workerPid } from './procs.ts';
import {
  CACHE,
  cached,
  exec,
  folderBytes,
  llamaCppTools,
  note,
  pythonStdout,
  repoPython,
} from './real-setup.ts';
import { median } from './stats.ts';

const FRAMES = 8;

interface Conversion {
  convert_s: number;
  convert_peak_rss_mb: number;
  kv_calibrate_s: number;
  kv_calibrate_peak_rss_mb: number;
}

/** Runs a Python module and returns its wall time and peak memory (GNU time's maximum resident set). */
async function measured(log: string, python: string, args: string[]): Promise<{ s: number; mb: number }> {
  const file = path.join(CACHE, 'logs', `${log}.time`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const t0 = performance.now();
  // GNU time reports the module's own peak resident set (%M, KB), which nothing in-process can see whole
  const timed = fs.existsSync('/usr/bin/time');
  const [cmd, argv] = timed ? ['/usr/bin/time', ['-f', '%M', '-o', file, python, ...args]] : [python, args];
  await exec(log, cmd, argv, { cwd: path.join(ROOT, 'models') });
  const s = (performance.now() - t0) / 1000;
  const kb = timed ? Number(fs.readFileSync(file, 'utf8').trim().split('\n').at(-1)) : NaN;
  return { s: Number(s.toFixed(1)), mb: Math.round(kb / 1024) };
}

export interface SizePrepared {
  pack: string;
  conversion: Conversion;
  /** llama.cpp's Q4_0 GGUF of the same language model, and the Python that runs llama-cpp-python. */
  gguf: string;
  python: string;
  pythonPath: string;
}

export async function prepareSize(size: string): Promise<SizePrepared> {
  const python = await repoPython();
  const root = path.join(CACHE, `size-${size}`);
  const source = await cached(
    `a random ${size} checkpoint in the release's shapes (~15 GB, a few minutes, once)`,
    path.join(root, 'checkpoint'),
    (tmp) =>
      exec('release-shapes', python, ['-m', 'loupe_dc.release_shapes', '--size', size, '--out', tmp], {
        cwd: path.join(ROOT, 'models'),
      }),
    () => {},
  );
  const record = (step: string) => path.join(root, `${step}.json`);
  const int4 = await cached(
    `the ${size} int4 pack, converted tensor by tensor`,
    path.join(root, 'pack-int4'),
    async (tmp) => {
      const convert = await measured('stream-convert', python, [
        ...['-m', 'loupe_dc.stream_convert', '--checkpoint', path.join(source, 'checkpoint')],
        ...['--vision-tower', path.join(source, 'tower'), '--out', tmp, '--name', `random-${size}`],
      ]);
      const row = { convert_s: convert.s, convert_peak_rss_mb: convert.mb };
      fs.writeFileSync(record('convert'), `${JSON.stringify(row, null, 2)}\n`);
    },
    () => {},
  );
  // the reference venv's onnxruntime (1.32) runs the pack's 8-bit vision encoder; the repository's (1.20) cannot
  const tools = await llamaCppTools();
  const pack = await cached(
    `the ${size} pack with an int8 KV cache (calibrated)`,
    path.join(root, 'pack'),
    async (tmp) => {
      const kv = await measured('kv-quant', tools.python, [
        '-m',
        'loupe_dc.kv_quant',
        '--pack',
        int4,
        '--out',
        tmp,
      ]);
      const row = { kv_calibrate_s: kv.s, kv_calibrate_peak_rss_mb: kv.mb };
      fs.writeFileSync(record('kv-quant'), `${JSON.stringify(row, null, 2)}\n`);
    },
    () => {},
  );
  const gguf = await cached(
    `llama.cpp's Q4_0 GGUF of the ${size} language model (its own converter, then its quantizer)`,
    path.join(root, 'gguf'),
    (tmp) =>
      exec(
        'llamacpp-gguf',
        tools.python,
        [
          ...['-m', 'loupe_dc.llamacpp_gguf', '--checkpoint', path.join(source, 'checkpoint')],
          ...['--converter', tools.converter, '--out', path.join(tmp, 'model-Q4_0.gguf')],
        ],
        { cwd: path.join(ROOT, 'models'), env: { ...process.env, PYTHONPATH: tools.pythonPath } },
      ),
    () => {},
  );
  return {
    pack,
    conversion: {
      ...(JSON.parse(fs.readFileSync(record('convert'), 'utf8')) as Conversion),
      ...(JSON.parse(fs.readFileSync(record('kv-quant'), 'utf8')) as Conversion),
    },
    gguf: path.join(gguf, 'model-Q4_0.gguf'),
    python: tools.python,
    pythonPath: tools.pythonPath,
  };
}

/** llama.cpp on the GGUF: the same prompt length, new tokens and threads; a short warm-up, one measured run. */
export async function measureLlamaCpp(
  prepared: SizePrepared,
  contextTokens: number,
  threads: number,
  newTokens: number,
): Promise<Record<string, number>> {
  const stdout = await pythonStdout(
    'llama.cpp on the GGUF',
    prepared.python,
    [
      ...['-m', 'loupe_dc.bench_real', '--gguf', prepared.gguf, '--prompt-tokens', String(contextTokens)],
      ...['--new-tokens', String(newTokens), '--threads', String(threads), '--repeats', '1'],
      ...['--warmup-tokens', '16'],
    ],
    { env: { ...process.env, PYTHONPATH: prepared.pythonPath } },
  );
  const out = JSON.parse(stdout) as {
    llama_cpp: { prefill_tok_s: number; decode_tok_s: number; ttft_first_ms: number };
    peak_rss_mb: number;
  };
  return {
    prefill_tok_s_llamacpp: out.llama_cpp.prefill_tok_s,
    decode_tok_s_llamacpp: out.llama_cpp.decode_tok_s,
    ttft_ms_llamacpp: Math.round(out.llama_cpp.ttft_first_ms),
    peak_rss_mb_llamacpp: Math.round(out.peak_rss_mb),
  };
}

/** Rounds of the Loupe ask and llama.cpp, taking turns (this VM drifts by ±20% within minutes); medians. */
export async function measureSizeRounds(
  prepared: SizePrepared,
  threads: number,
  newTokens: number,
  rounds: number,
  prefillChunk?: number,
): Promise<Record<string, number>> {
  const rows: Record<string, number>[] = [];
  for (let r = 0; r < rounds; r++) {
    note(`round ${r + 1}/${rounds}: Loupe …`);
    const ours = await measureSize(prepared.pack, threads, newTokens, prefillChunk);
    note(`round ${r + 1}/${rounds}: llama.cpp (${ours.context_tokens} tokens) …`);
    const theirs = await measureLlamaCpp(prepared, ours.context_tokens!, threads, newTokens);
    rows.push({ ...ours, ...theirs });
  }
  const keys = Object.keys(rows[0]!);
  const out = Object.fromEntries(keys.map((k) => [k, median(rows.map((row) => row[k]!))]));
  return {
    ...out,
    prefill_vs_llamacpp: Number((out.prefill_tok_s! / out.prefill_tok_s_llamacpp!).toFixed(3)),
    decode_vs_llamacpp: Number((out.decode_tok_s! / out.decode_tok_s_llamacpp!).toFixed(3)),
    gguf_mb: Math.round(fs.statSync(prepared.gguf).size / 2 ** 20),
    rounds,
  };
}

/** One 8-frame ask on the pack: the vision encoder per frame, prefill, decode, first token, the worker's peak. */
export async function measureSize(
  pack: string,
  threads: number,
  newTokens: number,
  prefillChunk?: number,
): Promise<Record<string, number>> {
  const engine = await Engine.load(pack, { provider: 'cpu', threads, prefillChunk });
  try {
    const { imageSize } = engine.manifest.vision;
    const pixels = Array.from({ length: FRAMES }, (_, i) =>
      Float32Array.from({ length: 3 * imageSize ** 2 }, (_, j) => Math.sin(j * 0.001 + i)),
    );
    note(`encoding ${FRAMES} frames of ${imageSize} px …`);
    const t0 = performance.now();
    const frames = await engine.encodeImages(pixels);
    const visionMs = (performance.now() - t0) / FRAMES;
    note(`asking (${FRAMES} frames, ${newTokens} new tokens) …`);
    const conversation = engine.startConversation({ kind: 'frames', frames });
    const asked = performance.now();
    let ttft = NaN;
    let row: Record<string, number> = {};
    try {
      for await (const e of conversation.ask('Describe what happens in the video, step by step.', {
        maxNewTokens: newTokens,
        ignoreEos: true,
      })) {
        if (e.type === 'token' && Number.isNaN(ttft)) ttft = performance.now() - asked;
        if (e.type === 'done')
          row = {
            context_tokens: e.timings.prefillTokens,
            prefill_tok_s: (e.timings.prefillTokens * 1000) / e.timings.prefillMs,
            decode_tok_s: e.timings.decodeTokensPerSec,
          };
      }
    } finally {
      conversation.close();
    }
    const worker = workerPid();
    return {
      pack_mb: Math.round(folderBytes(pack) / 2 ** 20),
      vision_ms_per_frame: Math.round(visionMs),
      ...row,
      ttft_ms: Math.round(ttft),
      peak_rss_mb: worker ? Math.round(peakRssMb(worker)) : NaN,
      load_average_1m: Number(os.loadavg()[0]!.toFixed(2)),
    };
  } finally {
    await engine.dispose();
  }
}
