/**
 * `npm run bench:real -- --size 7b|8b [--json]`: a release-shaped Dense Connector checkpoint (random weights in
 * the exact shapes of DenseConnector-v1.5-7B or -8B, `loupe_dc.release_shapes`) converted tensor by tensor to an
 * int4 pack (`loupe_dc.stream_convert`), given an int8 KV cache (`loupe_dc.kv_quant`), then asked about 8 frames.
 *
 * Prepared once under `<bench cache>/size-<size>/` (checkpoint ~14-16 GB, pack ~4-5 GB); the conversion's wall
 * time and peak memory are measured when it runs and kept beside the pack (`convert.json`). Random weights answer
 * nonsense; what they cost in time and memory is the real thing.
 *
 * Keys: convert_s, convert_peak_rss_mb, kv_calibrate_s, kv_calibrate_peak_rss_mb, pack_mb, vision_ms_per_frame,
 * context_tokens, prefill_tok_s, decode_tok_s, ttft_ms, peak_rss_mb (the engine worker's).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine } from '../src-main/model/engine.ts';
import { ROOT } from '../test/helpers.ts';
import { peakRssMb, workerPid } from './procs.ts';
import { CACHE, cached, exec, folderBytes, note, repoPython } from './real-setup.ts';

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

export async function prepareSize(size: string): Promise<{ pack: string; conversion: Conversion }> {
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
  const record = path.join(root, 'convert.json');
  const int4 = path.join(root, 'pack-int4');
  const pack = await cached(
    `the ${size} int4 pack, converted tensor by tensor, then its int8 KV cache`,
    path.join(root, 'pack'),
    async (tmp) => {
      const convert = await measured('stream-convert', python, [
        '-m',
        'loupe_dc.stream_convert',
        '--checkpoint',
        path.join(source, 'checkpoint'),
        '--vision-tower',
        path.join(source, 'tower'),
        '--out',
        int4,
        '--name',
        `random-${size}`,
      ]);
      const kv = await measured('kv-quant', python, [
        '-m',
        'loupe_dc.kv_quant',
        '--pack',
        int4,
        '--out',
        tmp,
      ]);
      const conversion: Conversion = {
        convert_s: convert.s,
        convert_peak_rss_mb: convert.mb,
        kv_calibrate_s: kv.s,
        kv_calibrate_peak_rss_mb: kv.mb,
      };
      fs.writeFileSync(record, `${JSON.stringify(conversion, null, 2)}\n`);
      fs.rmSync(int4, { recursive: true, force: true });
    },
    () => {},
  );
  return { pack, conversion: JSON.parse(fs.readFileSync(record, 'utf8')) as Conversion };
}

/** One 8-frame ask on the pack: the vision encoder per frame, prefill, decode, first token, the worker's peak. */
export async function measureSize(
  pack: string,
  threads: number,
  newTokens: number,
): Promise<Record<string, number>> {
  const engine = await Engine.load(pack, { provider: 'cpu', threads });
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
