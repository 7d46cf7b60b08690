/**
 * `npm run bench [-- --json]`: speed and memory of the core pipeline on this machine, with references
 * measured in the same run (whole-stream decoding, PyTorch, a minimal Python onnxruntime loop).
 * Medians of several runs. Not a test: it prints numbers, it does not judge them.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { sampleFrames, type FrameFormat } from '../src-main/media/index.ts';
import type { Engine } from '../src-main/model/engine.ts';
import { frameFormat } from '../src-main/model/pack.ts';
import { resolveBinaries } from '../src-main/media/binaries.ts';
import { hardwareDecoding, setHardwareDecoding } from '../src-main/media/grab.ts';
import { buildCli } from '../src-main/cli/build.ts';
import { askAboutClip } from '../src-main/qa/ask.ts';
import { benchBatch } from './batch.ts';
import { benchFind } from './find.ts';
import { median } from './stats.ts';
import { Services } from '../src-main/services.ts';
import { COLORS, ffmpeg, makeShapesClip } from '../test/fixtures/clips.ts';
import { CHECKPOINT, PYTHON, ROOT, tempDir } from '../test/helpers.ts';

const run = promisify(execFile);
const CACHE = path.join(ROOT, 'bench', '.cache');
const THREADS = 2;
const json = process.argv.includes('--json');
/** `--only sample,ask,cli`: just these sections (sample, model, ask, cli, refs, batch, find); default: all. */
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt > 0 ? new Set(process.argv[onlyAt + 1]?.split(',')) : null;
const want = (section: string) => !only || only.has(section);
const log = (msg: string) => (json ? process.stderr : process.stdout).write(msg + '\n');

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}
async function medianMs(runs: number, fn: () => Promise<unknown>): Promise<number> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) out.push(await timeIt(fn));
  return median(out);
}

/**
 * A 1080p H.264 test pattern of the given length (10 fps keeps generation quick; GOP 250 as cameras often use,
 * which at 10 fps is a keyframe every 25 s). `fps` 30 makes a camera-like clip: the same GOP is 8.3 s.
 */
async function longClip(minutes: number, fps = 10): Promise<string> {
  const file = path.join(CACHE, `testsrc2-1080p-${minutes}min${fps === 10 ? '' : `-${fps}fps`}.mp4`);
  if (!existsSync(file)) {
    log(`making ${path.basename(file)} (once)…`);
    await mkdir(CACHE, { recursive: true });
    await ffmpeg([
      '-f',
      'lavfi',
      '-i',
      `testsrc2=s=1920x1080:r=${fps}:d=${minutes * 60}`,
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-g',
      '250',
      '-pix_fmt',
      'yuv420p',
      '-f',
      'mp4',
      `${file}.${process.pid}.tmp`,
    ]);
    await run('mv', [`${file}.${process.pid}.tmp`, file]);
  }
  return file;
}

async function main(): Promise<void> {
  const services = new Services({
    dataDir: await tempDir('loupe-bench-'),
    featureCache: false,
    threads: THREADS,
  });
  const engine = await services.engine();
  const extractor = await services.extractor();
  const v = engine.manifest.vision;
  const format = frameFormat(v);
  const results: Record<string, number> = {};

  // 1. Sampling cost must not grow with the video's length (input seeking).
  if (want('sample')) await benchSampling(format, results);

  // 2. The model on a 30-second 640×360 clip.
  const clip = await makeShapesClip(path.join(CACHE, 'clips'), {
    name: 'ask-30s',
    width: 640,
    height: 360,
    duration: 30,
    fps: 25,
    codec: 'h264',
    background: '#2a3a4a',
    shapes: [
      { kind: 'circle', color: COLORS.red, radius: 0.14, x0: 0.2, y0: 0.5, x1: 0.4, y1: 0.3 },
      { kind: 'square', color: COLORS.yellow, radius: 0.12, x0: 0.75, y0: 0.5 },
    ],
  });
  let promptTokens = 0;
  if (want('model')) promptTokens = await benchModel(engine, clip, format, results);

  // 3. A whole ask: probe, sample 8 frames, encode, prefill, answer (cold feature cache, model loaded).
  if (want('ask'))
    results.ask_ms_8_frames = await medianMs(5, async () => {
      for await (const e of askAboutClip(engine, extractor, {
        path: clip,
        question: 'What color is the circle?',
      }))
        void e;
    });

  // 3b. The whole CLI process: `loupe ask` on the same clip with the feature cache off (cold), in one data folder
  // whose ffmpeg capabilities cache the first run (not counted) writes, as on a user's machine.
  if (want('cli')) {
    await buildCli(ROOT);
    const cliData = await tempDir('loupe-bench-cli-');
    const cliAsk = () =>
      run(
        process.execPath,
        [
          path.join(ROOT, 'bin', 'loupe.js'),
          'ask',
          clip,
          'What color is the circle?',
          '--json',
          '--no-cache',
        ],
        { env: { ...process.env, LOUPE_DATA_DIR: cliData } },
      );
    await cliAsk();
    results.cli_ask_wall_ms = await medianMs(5, cliAsk);
    results.node_start_ms = await medianMs(5, () => run(process.execPath, ['-e', '0']));
  }

  // 4. References in the same run, same threads: PyTorch, and a minimal Python onnxruntime loop.
  if (want('refs') && existsSync(PYTHON) && existsSync(CHECKPOINT)) {
    const { stdout } = await run(
      PYTHON,
      [
        '-m',
        'loupe_dc.bench_decode',
        '--checkpoint',
        CHECKPOINT,
        '--pack',
        engine.pack.dir,
        '--prompt-tokens',
        String(promptTokens),
        '--new-tokens',
        '64',
        '--threads',
        String(THREADS),
        '--repeats',
        '5',
      ],
      { cwd: path.join(ROOT, 'models'), env: { ...process.env, PYTHONWARNINGS: 'ignore' } },
    );
    Object.assign(results, JSON.parse(stdout));
  } else if (want('refs')) log('(Python references skipped: run scripts/setup-dev.sh)');
  await services.dispose();

  // 5. Batch throughput: the pipelined batch vs a naive decode-then-infer loop, 20 short clips, cold caches.
  if (want('batch')) Object.assign(results, await benchBatch());

  // 6. Moment search: a 10-min 640×360 video at 0.5 s steps, cold and with the features cached.
  if (want('find')) Object.assign(results, await benchFind());
  results.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  report(results, engine, promptTokens);
}

/** Section 1: 8 frames of the 1- and 10-minute 1080p clips, exact and fast. */
async function benchSampling(format: FrameFormat, results: Record<string, number>): Promise<void> {
  const oneMin = await longClip(1);
  const tenMin = await longClip(10);
  // Exact (the frame shown at each segment middle) and fast (the keyframe nearest it inside the segment).
  // Software decoding here; the hardware figure follows where a GPU device exists.
  const hardware = hardwareDecoding();
  setHardwareDecoding('off');
  const exact = { count: 8, ...format, mode: 'exact' as const };
  const fast = { count: 8, ...format, mode: 'fast' as const };
  results.sample_ms_1min = await medianMs(5, () => sampleFrames(oneMin, exact));
  results.sample_ms_10min = await medianMs(5, () => sampleFrames(tenMin, exact));
  results.sample_ms_1min_fast = await medianMs(5, () => sampleFrames(oneMin, fast));
  results.sample_ms_10min_fast = await medianMs(5, () => sampleFrames(tenMin, fast));
  results.sample_fast_keyframes_1min = (await sampleFrames(oneMin, fast)).filter(
    (f, i, all) => all.findIndex((g) => g.timeSec === f.timeSec) === i,
  ).length;
  // A camera-like clip (30 fps, a keyframe every 8.3 s): every 7.5 s segment holds one.
  const camera = await longClip(1, 30);
  results.sample_ms_1min_30fps = await medianMs(5, () => sampleFrames(camera, exact));
  results.sample_ms_1min_30fps_fast = await medianMs(5, () => sampleFrames(camera, fast));
  setHardwareDecoding('auto');
  if (hardware) results.sample_ms_1min_hwaccel = await medianMs(5, () => sampleFrames(oneMin, exact));
  const { ffmpeg: bin } = await resolveBinaries();
  results.full_decode_ms_10min = await medianMs(1, () =>
    run(bin.path, ['-v', 'error', '-threads', String(THREADS), '-i', tenMin, '-f', 'null', '-']),
  );
}

/** Section 2: the vision encoder, prefill, decode and time to first token, and the app thread meanwhile. */
async function benchModel(
  engine: Engine,
  clip: string,
  format: FrameFormat,
  results: Record<string, number>,
): Promise<number> {
  const sampled = await sampleFrames(clip, { count: 8, ...format });
  results.vision_ms_per_frame =
    (await medianMs(7, () => engine.encodeImages(sampled.map((f) => f.pixels)))) / 8;
  const frames = await engine.encodeImages(sampled.map((f) => f.pixels));

  const prefill: number[] = [];
  const decode: number[] = [];
  const ttftFirst: number[] = [];
  const ttftFollow: number[] = [];
  let promptTokens = 0;
  for (let i = 0; i < 7; i++) {
    const conversation = engine.startConversation({ kind: 'frames', frames });
    for await (const e of conversation.ask('Describe the video.', { maxNewTokens: 64, ignoreEos: true }))
      if (e.type === 'done') {
        prefill.push((e.timings.prefillTokens * 1000) / e.timings.prefillMs);
        decode.push(e.timings.decodeTokensPerSec);
        ttftFirst.push(e.timings.firstTokenMs);
        promptTokens = e.timings.prefillTokens;
      }
    for await (const e of conversation.ask('What color is the circle?', { maxNewTokens: 8 }))
      if (e.type === 'done') ttftFollow.push(e.timings.firstTokenMs);
  }
  results.prefill_tok_s = median(prefill);
  results.decode_tok_s = median(decode);
  results.ttft_first_ms = median(ttftFirst);
  results.ttft_followup_ms = median(ttftFollow);

  // 2b. The app thread during a long prefill (frames repeated to fill the context, a long question): the largest
  //     gap of a 10 ms timer, and Stop pressed mid-prefill until the stream has ended.
  const longFrames = Array.from({ length: engine.maxFrames(8) }, (_, i) => frames[i % frames.length]!);
  const longQuestion = `Describe the video: ${'the shapes, their colors and where they move, '.repeat(6)}`;
  const stalls: number[] = [];
  const stops: number[] = [];
  let longPrompt = 0;
  for (let i = 0; i < 5; i++) {
    const conversation = engine.startConversation({ kind: 'frames', frames: longFrames });
    const controller = new AbortController();
    let last = performance.now();
    let stall = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      stall = Math.max(stall, now - last);
      last = now;
    }, 10);
    let pressed = 0;
    const stopAt = i < 3 ? Infinity : 0.3; // three full prefills for the stall, two stopped for Stop
    try {
      for await (const e of conversation.ask(longQuestion, {
        maxNewTokens: 4,
        signal: controller.signal,
        onPrefillProgress: (done, total) => {
          longPrompt = total;
          if (!pressed && done >= stopAt * total) {
            pressed = performance.now();
            controller.abort();
          }
        },
      }))
        void e;
    } catch (error) {
      if (!pressed) throw error;
      stops.push(performance.now() - pressed);
    } finally {
      clearInterval(timer);
    }
    if (i < 3) stalls.push(stall);
  }
  results.event_loop_max_stall_ms = median(stalls);
  results.stop_ms = median(stops);
  results.stall_prompt_tokens = longPrompt;
  return promptTokens;
}

function report(results: Record<string, number>, engine: Engine, promptTokens: number): void {
  if (json) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    return;
  }
  const f = (n: number | undefined, digits = 0) => (n === undefined ? '—' : n.toFixed(digits));
  const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}×` : '—');
  const rows: [string, string, string][] = [
    ['sample 8 frames, 1-min 1080p H.264', `${f(results.sample_ms_1min)} ms`, 'exact'],
    [
      'sample 8 frames, 1-min, fast (keyframes)',
      `${f(results.sample_ms_1min_fast)} ms`,
      `target ≤ 400; ${results.sample_fast_keyframes_1min} distinct frames (GOP 25 s: most segments hold no keyframe, exact there)`,
    ],
    [
      'sample 8 frames, 1-min 1080p at 30 fps (GOP 8.3 s), exact / fast',
      `${f(results.sample_ms_1min_30fps)} / ${f(results.sample_ms_1min_30fps_fast)} ms`,
      'a camera-like clip: every segment holds a keyframe',
    ],
    [
      'sample 8 frames, 10-min, fast (keyframes)',
      `${f(results.sample_ms_10min_fast)} ms`,
      `target ≤ 400; ${ratio(results.sample_ms_10min_fast, results.sample_ms_1min_fast)} of 1-min (target ≤ 1.2×)`,
    ],
    [
      'sample 8 frames, 10-min 1080p H.264',
      `${f(results.sample_ms_10min)} ms`,
      `${ratio(results.sample_ms_10min, results.sample_ms_1min)} of 1-min (target ≤ 1.2×)`,
    ],
    [
      'decode the whole 10-min stream (reference)',
      `${f(results.full_decode_ms_10min)} ms`,
      `sampling is ${ratio(results.full_decode_ms_10min, results.sample_ms_10min)} faster`,
    ],
    ['vision encoder', `${f(results.vision_ms_per_frame, 2)} ms/frame`, ''],
    [`prefill (${promptTokens} tokens: 8 frames + prompt)`, `${f(results.prefill_tok_s)} tok/s`, ''],
    ['decode (Loupe, onnxruntime-node)', `${f(results.decode_tok_s)} tok/s`, ''],
    [
      'decode (Python onnxruntime loop, same graphs)',
      `${f(results.decode_tok_s_ort_python)} tok/s`,
      `Loupe = ${ratio(results.decode_tok_s, results.decode_tok_s_ort_python)} (target ≥ 0.9×)`,
    ],
    [
      'decode (PyTorch, same weights)',
      `${f(results.decode_tok_s_pytorch)} tok/s`,
      `Loupe = ${ratio(results.decode_tok_s, results.decode_tok_s_pytorch)}`,
    ],
    [
      `app thread: largest 10-ms timer gap during a ${f(results.stall_prompt_tokens)}-token prefill`,
      `${f(results.event_loop_max_stall_ms, 1)} ms`,
      'target ≤ 50 ms (the model runs in a worker thread)',
    ],
    ['Stop pressed mid-prefill, until the stream ended', `${f(results.stop_ms, 1)} ms`, 'target ≤ 250 ms'],
    ['time to first token, first question', `${f(results.ttft_first_ms, 1)} ms`, ''],
    [
      'time to first token, follow-up',
      `${f(results.ttft_followup_ms, 1)} ms`,
      `${((100 * results.ttft_followup_ms!) / results.ttft_first_ms!).toFixed(1)}% of first (target ≤ 10%)`,
    ],
    [
      'whole ask, 8 frames of a 30-s 640×360 clip',
      `${f(results.ask_ms_8_frames)} ms`,
      'cold feature cache, model loaded (target ≤ 300)',
    ],
    [
      'loupe ask, whole process, same clip',
      `${f(results.cli_ask_wall_ms)} ms`,
      `cold feature cache (target ≤ 1000); a bare \`node -e 0\` takes ${f(results.node_start_ms)} ms here`,
    ],
    [
      'batch: 20 short clips, pipelined',
      `${f(results.batch_clips_per_min, 1)} clips/min`,
      `${ratio(results.batch_clips_per_min, results.naive_clips_per_min)} the naive loop (target ≥ 1.5×)`,
    ],
    [
      'batch: naive loop (decode, then infer, per clip)',
      `${f(results.naive_clips_per_min, 1)} clips/min`,
      '',
    ],
    [
      'find: 10-min 640×360 at 0.5 s, cold (coarse to fine)',
      `${f(results.find_ms_10min)} ms`,
      `target ≤ 20000; ${f(results.find_scored_instants_10min)} of 1200 instants scored; one-pass decode of all 1200 alone ${f(results.find_decode_ms_10min)} ms`,
    ],
    [
      'find: another query, features cached',
      `${f(results.find_ms_10min_cached)} ms`,
      `target ≤ 3000; ${f(results.find_score_ms_per_instant, 2)} ms/instant scoring (batched)`,
    ],
    ['find: the same query again', `${f(results.find_ms_10min_repeat)} ms`, ''],
    [
      'find: main process peak RSS, cold scan',
      `${f(results.find_main_rss_mb)} MB`,
      `target ≤ 300; full grid ${f(results.find_main_rss_mb_full)} MB`,
    ],
    [
      'find: full grid, cold (reference)',
      `${f(results.find_ms_10min_full)} ms`,
      `intervals vs coarse to fine: IoU ${f(results.find_coarse_full_iou, 3)}`,
    ],
    [
      'find: worker RSS after 100 instants / at the end',
      `${f(results.find_worker_rss_mb_first100)} / ${f(results.find_worker_rss_mb_end)} MB`,
      `target: end within 10%; ${f(results.find_worker_live_caches_end)} live KV caches at the end`,
    ],
    ['peak RSS', `${f(results.peak_rss_mb)} MB`, ''],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  log(
    `Loupe bench — ${engine.manifest.name}@${engine.manifest.version}, ${engine.provider.used}, ${THREADS} threads, medians\n`,
  );
  for (const [a, b, c] of rows) log(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
}

await main();
