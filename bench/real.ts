/**
 * `npm run bench:real [-- --json]`: a real model (SmolLM2-135M-Instruct, int4) through Loupe against
 * onnxruntime-genai on the model builder's files and llama.cpp on the GGUF, at an 8-frame-sized context
 * (≥ 2,048 tokens), the same greedy token count, the same threads, in one run. The first run prepares what it
 * compares, cached outside the repository (bench/real-setup.ts: ~15 min and ~6 GB once; seconds afterwards).
 *
 * Bring your own files instead with `--pack DIR` (repeatable; the first is the headline), `--genai DIR`,
 * `--gguf FILE`, and `--python PY` for a Python that has onnxruntime-genai and llama-cpp-python; with any of
 * these only what is named is measured. `--both-packs` also measures the int4 pack of our own exporter (the
 * headline is the pack with the model builder's decoder). `--prepare` prepares and prints the paths only.
 * Not in CI. Prints a table, or JSON with --json.
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../src-main/model/engine.ts';
import type { Conversation } from '../src-main/model/engine.ts';
import type { AnswerTimings } from '../src-main/model/types.ts';
import { CACHE, prepare, pythonStdout, SetupError } from './real-setup.ts';
import { peakRssMb, workerPid } from './procs.ts';
import { formatTable, median } from './stats.ts';

const { values: opts } = parseArgs({
  options: {
    pack: { type: 'string', multiple: true },
    genai: { type: 'string' },
    gguf: { type: 'string' },
    python: { type: 'string' },
    threads: { type: 'string', default: '2' },
    'context-tokens': { type: 'string', default: '2080' },
    'new-tokens': { type: 'string', default: '128' },
    repeats: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    prepare: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'both-packs': { type: 'boolean', default: false },
    'no-quality': { type: 'boolean', default: false },
    size: { type: 'string' }, // 7b | 8b | 13b: a release-shaped random checkpoint (bench/real-size.ts)
    'prefill-chunk': { type: 'string' }, // the engine's default sizes chunks by time
  },
});
const THREADS = Number(opts.threads);
const CONTEXT = Number(opts['context-tokens']);
const NEW = Number(opts['new-tokens']);
const REPEATS = Number(opts.repeats);
/**
 * Rounds of Loupe, onnxruntime-genai and llama.cpp one after another (REPEATS measured runs each per round),
 * medians over all of them: this VM drifts by ±20% within minutes, so the runtimes take turns instead of
 * each being measured in one block.
 */
const ROUNDS = Number(opts.rounds);
const FRAMES = 8;
const FOLLOW_UP = 'And what happens after that?';

interface Row {
  context_tokens: number;
  prefill_tok_s: number;
  decode_tok_s: number;
  ttft_first_ms: number;
  ttft_followup_ms: number;
  peak_rss_mb: number;
  version?: string;
}

const note = (line: string) => process.stderr.write(`bench:real: ${line}\n`);

/** A question long enough that the whole prompt (visual tokens + template + text) is about CONTEXT tokens. */
function questionOf(engine: Engine, visualTokens: number): string {
  const words = 'the river town woke slowly on market days and the baker carried bread to the square'.split(
    ' ',
  );
  let text = '';
  for (let i = 0; ; i++) {
    const next = `${text}${words[i % words.length]} `;
    const ids = engine.prompt
      .encodePrompt([engine.prompt.firstUserMessage(next)])
      .reduce((n, s) => n + (s.kind === 'image' ? visualTokens : s.ids.length), 0);
    if (ids > CONTEXT) return text;
    text = next;
  }
}

/** One turn: time to the first token event as the caller sees it, and the engine's own timings. */
async function turn(conversation: Conversation, question: string, maxNewTokens: number) {
  const t0 = performance.now();
  let ttft = NaN;
  let timings: AnswerTimings | undefined;
  for await (const e of conversation.ask(question, { maxNewTokens, ignoreEos: true })) {
    if (e.type === 'token' && Number.isNaN(ttft)) ttft = performance.now() - t0;
    if (e.type === 'done') timings = e.timings;
  }
  if (!timings) throw new Error('the answer ended without timings');
  return { ttft, timings };
}

/** Loupe on a pack: REPEATS conversations after a warm-up, each an 8-frame prompt, NEW tokens, a follow-up. */
async function loupe(dir: string): Promise<Row & { name: string; niceness: number }> {
  const prefillChunk = opts['prefill-chunk'] ? Number(opts['prefill-chunk']) : undefined;
  const engine = await Engine.load(dir, { provider: 'cpu', threads: THREADS, prefillChunk });
  try {
    const { imageSize } = engine.manifest.vision;
    const pixels = Array.from({ length: FRAMES }, (_, i) =>
      new Float32Array(3 * imageSize ** 2).fill(i / FRAMES),
    );
    const frames = await engine.encodeImages(pixels);
    const visual = frames.length * engine.manifest.vision.tokensPerFrame;
    const question = questionOf(engine, visual);
    const runs: Omit<Row, 'peak_rss_mb'>[] = [];
    for (let r = 0; r < REPEATS + 1; r++) {
      const conversation = engine.startConversation({ kind: 'frames', frames });
      const first = await turn(conversation, question, NEW);
      const followUp = await turn(conversation, FOLLOW_UP, 1);
      if (r === 0) continue; // the first conversation warms the sessions up
      runs.push({
        context_tokens: first.timings.prefillTokens,
        prefill_tok_s: (first.timings.prefillTokens * 1000) / first.timings.prefillMs,
        decode_tok_s: first.timings.decodeTokensPerSec,
        ttft_first_ms: first.ttft,
        ttft_followup_ms: followUp.ttft,
      });
      note(`  run ${r}: decode ${runs.at(-1)!.decode_tok_s.toFixed(1)} tok/s`);
    }
    const pid = workerPid();
    return {
      name: engine.manifest.name,
      ...medians(runs),
      peak_rss_mb: pid ? peakRssMb(pid) : NaN,
      niceness: pid ? os.getPriority(pid) : os.getPriority(),
    };
  } finally {
    await engine.dispose();
  }
}

/** A row's numbers only (medians are taken of them). */
function pick(row: Row): Record<(typeof METRICS)[number] | 'context_tokens', number> {
  return Object.fromEntries(
    (['context_tokens', ...METRICS] as const).map((k) => [k, row[k] as number]),
  ) as Record<(typeof METRICS)[number] | 'context_tokens', number>;
}

function medians<T extends object>(runs: T[]): T {
  const keys = Object.keys(runs[0]!) as (keyof T)[];
  return Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r[k] as number))])) as T;
}

/** A reference runtime in its own Python process (so that its peak RSS is its own), at Loupe's niceness. */
async function reference(
  python: string,
  pythonPath: string,
  flag: '--genai' | '--gguf',
  file: string,
  contextTokens: number,
  niceness: number,
): Promise<Row> {
  const args = ['-m', 'loupe_dc.bench_real', flag, path.resolve(file), '--threads', String(THREADS)];
  args.push(
    '--repeats',
    String(REPEATS),
    '--prompt-tokens',
    String(contextTokens),
    '--new-tokens',
    String(NEW),
  );
  const env = { ...process.env, PYTHONPATH: [pythonPath, process.env.PYTHONPATH].filter(Boolean).join(':') };
  // the engine's worker runs a few nice levels down: the reference runs at its niceness
  const stdout = await pythonStdout(`the ${flag.slice(2)} reference`, python, args, { env, niceness });
  const { peak_rss_mb, ...runtimes } = JSON.parse(stdout) as Record<
    string,
    Omit<Row, 'context_tokens' | 'peak_rss_mb'>
  > & { peak_rss_mb: number };
  const speed = Object.values(runtimes)[0]!;
  return { ...speed, context_tokens: contextTokens, peak_rss_mb };
}

interface QualityRow {
  precision: string;
  perplexity: number;
  next_token_agreement: number;
  mean_common_greedy_prefix: number;
}

/**
 * What the int8 cache costs in quality, against the fp32 cache on the same int4 weights: perplexity on a fixed
 * text and next-token agreement under teacher forcing on the fp32 cache's greedy answers (`loupe_dc.smollm2
 * eval`, the packs' own graphs in the reference venv's onnxruntime, which runs the builder's graphs).
 */
async function quality(
  python: string,
  checkpoint: string,
  int8: string,
  fp32: string,
): Promise<QualityRow[]> {
  note('measuring the int8 cache against the fp32 cache (perplexity, agreement) …');
  const args = ['-m', 'loupe_dc.smollm2', 'eval', '--checkpoint', checkpoint, '--threads', String(THREADS)];
  args.push('--pack', `fp32kv=${fp32}`, '--pack', `int8kv=${int8}`);
  const stdout = await pythonStdout('the quality measurement', python, args);
  return (JSON.parse(stdout) as { rows: QualityRow[] }).rows;
}

const METRICS = [
  'prefill_tok_s',
  'decode_tok_s',
  'ttft_first_ms',
  'ttft_followup_ms',
  'peak_rss_mb',
] as const;

/** `--size`: the release-shaped checkpoint, converted and asked about 8 frames (bench/real-size.ts). */
async function sizeRun(size: string): Promise<string[]> {
  const { prepareSize, measureSizeRounds } = await import('./real-size.ts');
  const prepared = await prepareSize(size);
  const { conversion } = prepared;
  if (opts.prepare) {
    console.log(`pack-${size}\t${prepared.pack}\ngguf-${size}\t${prepared.gguf}`);
    return [];
  }
  const newTokens = opts['new-tokens'] === '128' ? 32 : NEW; // decode of a 7B model on a laptop CPU is slow
  const rounds = opts.rounds === '3' ? 1 : ROUNDS; // one round of a 7B model takes ~15 min here
  const chunk = opts['prefill-chunk'] ? Number(opts['prefill-chunk']) : undefined;
  const measured = await measureSizeRounds(prepared, THREADS, newTokens, rounds, chunk);
  const result = {
    date: new Date().toISOString(),
    size,
    threads: THREADS,
    new_tokens: newTokens,
    ...(chunk ? { prefill_chunk: chunk } : {}),
    ...conversion,
    ...measured,
  };
  if (opts.json) console.log(JSON.stringify(result, null, 2));
  else
    console.log(formatTable([['key', 'value'], ...Object.entries(result).map(([k, v]) => [k, String(v)])]));
  return [];
}

/** Measures and prints; returns what failed (a reference runtime), one line each. */
async function main(): Promise<string[]> {
  if (opts.size) return sizeRun(opts.size);
  const own = Boolean(opts.pack?.length || opts.genai || opts.gguf);
  const announce = (what: string, target: string) => {
    if (opts.prepare) console.log(`${what}\t${target}`);
  };
  const ready =
    !own || opts.prepare
      ? await prepare({ inputs: true, llama: true }, announce)
      : (opts.genai || opts.gguf) && !opts.python
        ? await prepare(
            { inputs: false, llama: Boolean(opts.gguf), gguf: opts.gguf && path.resolve(opts.gguf) },
            announce,
          )
        : undefined;
  if (opts.prepare) return [];
  // the builder's decoder with an int8 cache (the headline) and with an fp32 one; --both-packs adds our exporter's
  const packs = own
    ? (opts.pack ?? []).map((dir, i) => ({
        label: path.basename(dir),
        dir,
        suffix: i ? `_pack${i + 1}` : '',
      }))
    : ready!.packs.slice(0, opts['both-packs'] ? undefined : 2);
  const genai = own ? opts.genai : ready!.genai;
  const gguf = own ? opts.gguf : ready!.gguf;
  const python = opts.python ?? ready?.python ?? 'python3';
  const pythonPath = opts.python ? '' : (ready?.pythonPath ?? '');

  const results: Record<string, Row> = {};
  let niceness = os.getPriority();
  let contextTokens = CONTEXT;
  const refs: { genai?: Row; llamacpp?: Row } = {};
  // a reference that fails is reported after the table, which keeps what was measured
  const failures: string[] = [];
  const measure = async (what: string, flag: '--genai' | '--gguf', file: string) => {
    note(`measuring ${what} on ${file} …`);
    try {
      return await reference(python, pythonPath, flag, file, contextTokens, niceness);
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
      return undefined;
    }
  };
  const rounds = new Map<string, Row[]>();
  /** Each Loupe row's JSON key suffix ('' for the headline). */
  const suffixes = new Map<string, string>();
  const keep = (key: string, row: Row | undefined) => {
    if (row) rounds.set(key, [...(rounds.get(key) ?? []), row]);
  };
  for (let round = 0; round < ROUNDS; round++) {
    note(`round ${round + 1} of ${ROUNDS}`);
    for (const { label, dir, suffix } of packs) {
      note(`measuring Loupe on ${dir} …`);
      const { name, niceness: n, ...row } = await loupe(dir);
      const key = `Loupe (onnxruntime-node) · ${name === 'checkpoint' ? '' : `${name}, `}${label}`;
      suffixes.set(key, suffix);
      keep(key, row);
      niceness = n;
      contextTokens = row.context_tokens;
    }
    if (genai && !failures.length) keep('genai', await measure('onnxruntime-genai', '--genai', genai));
    if (gguf && !failures.length) keep('llamacpp', await measure('llama.cpp', '--gguf', gguf));
  }
  const medianRow = (rows: Row[]): Row => ({ ...rows[0]!, ...medians(rows.map((r) => pick(r))) });
  for (const [key, rows] of rounds) {
    const row = medianRow(rows);
    if (key === 'genai') {
      refs.genai = row;
      results[`onnxruntime-genai ${row.version} · builder int4`] = row;
    } else if (key === 'llamacpp') {
      refs.llamacpp = row;
      results[`llama.cpp (llama-cpp-python ${row.version}) · ${path.basename(gguf!)}`] = row;
    } else results[key] = row;
  }

  const flat: Record<string, number> = {};
  const kvPair = !own && packs.length >= 2 ? [packs[0]!.dir, packs[1]!.dir] : undefined;
  if (kvPair && !opts['no-quality'])
    try {
      const rows = await quality(python, ready!.checkpoint, kvPair[0]!, kvPair[1]!);
      for (const row of rows) {
        const suffix = row.precision === 'int8kv' ? '' : '_fp32kv';
        flat[`perplexity${suffix}`] = row.perplexity;
        flat[`next_token_agreement${suffix}`] = row.next_token_agreement;
        flat[`common_greedy_prefix${suffix}`] = row.mean_common_greedy_prefix;
      }
      flat.perplexity_ratio_int8kv = Number((flat.perplexity! / flat.perplexity_fp32kv!).toFixed(4));
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
    }
  const load = os.loadavg().map((l) => Number(l.toFixed(2)));
  const rows: [string, Row | undefined][] = [
    ...[...suffixes].map(([key, suffix]): [string, Row | undefined] => [suffix, results[key]]),
    ['_genai', refs.genai],
    ['_llamacpp', refs.llamacpp],
  ];
  for (const [suffix, row] of rows) if (row) for (const k of METRICS) flat[`${k}${suffix}`] = row[k];
  if (opts.json) {
    const meta = {
      date: new Date().toISOString(),
      threads: THREADS,
      new_tokens: NEW,
      repeats: REPEATS,
      rounds: ROUNDS,
    };
    console.log(
      JSON.stringify(
        { ...meta, context_tokens: contextTokens, ...flat, load_average: load, results },
        null,
        2,
      ),
    );
    return failures;
  }
  const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '–');
  console.log(
    `Real-model speed — ${THREADS} threads, ${contextTokens} context tokens, ${NEW} greedy tokens, medians of ${ROUNDS} rounds × ${REPEATS} ` +
      `after a warm-up; load average ${load.join(' ')}; cache ${CACHE}\n`,
  );
  console.log(
    formatTable([
      [
        'runtime · model',
        'prefill tok/s',
        'decode tok/s',
        'TTFT first ms',
        'TTFT follow-up ms',
        'peak RSS MB',
      ],
      ...Object.entries(results).map(([k, v]) => [
        k,
        fmt(v.prefill_tok_s),
        fmt(v.decode_tok_s),
        fmt(v.ttft_first_ms),
        fmt(v.ttft_followup_ms),
        fmt(v.peak_rss_mb),
      ]),
    ]),
  );
  if ('perplexity' in flat)
    console.log(
      `\nint8 KV cache against fp32 (same int4 weights): perplexity ${flat.perplexity} vs ${flat.perplexity_fp32kv} ` +
        `(×${flat.perplexity_ratio_int8kv}), next-token agreement ${flat.next_token_agreement} ` +
        `(fp32 against itself, one pass vs steps: ${flat.next_token_agreement_fp32kv})`,
    );
  return failures;
}

try {
  for (const failure of await main()) {
    console.error(`bench:real: ${failure}`);
    process.exitCode = 1;
  }
} catch (error) {
  // a missing compiler, no network, a bad path: one line, not a stack trace (LOUPE_DEBUG=1 for the stack)
  if (process.env.LOUPE_DEBUG) console.error(error);
  const message = error instanceof Error ? error.message : String(error);
  console.error(
    `bench:real: ${error instanceof SetupError ? 'could not prepare ' : ''}${message.split('\n')[0]}`,
  );
  process.exitCode = 1;
}
