/**
 * `npm run bench:real -- --pack DIR [--pack DIR …] [--genai DIR] [--gguf FILE] [--python PY]`: prefill and
 * decode speed of a real model through Loupe (onnxruntime-node), against onnxruntime-genai on the model
 * builder's files and llama.cpp on the GGUF, same prompt length, same greedy token count, same threads, one
 * run. The references need a separate Python venv with onnxruntime-genai and llama-cpp-python
 * (docs/real-models.md); Loupe itself needs neither. Not in CI. Prints a table (or JSON with --json).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { Engine } from '../src-main/model/engine.ts';
import { ROOT } from '../test/helpers.ts';
import { formatTable, median } from './stats.ts';

const run = promisify(execFile);
const { values: opts } = parseArgs({
  options: {
    pack: { type: 'string', multiple: true },
    genai: { type: 'string' },
    gguf: { type: 'string' },
    python: { type: 'string', default: 'python3' },
    threads: { type: 'string', default: '2' },
    'prompt-tokens': { type: 'string', default: '512' },
    'new-tokens': { type: 'string', default: '128' },
    repeats: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const THREADS = Number(opts.threads);
const PROMPT = Number(opts['prompt-tokens']);
const NEW = Number(opts['new-tokens']);
const REPEATS = Number(opts.repeats);

interface Speed {
  prefill_tok_s: number;
  decode_tok_s: number;
  prompt_tokens: number;
}

/** A question long enough that the whole prompt (visual tokens + template + text) is about PROMPT tokens. */
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
    if (ids > PROMPT) return text;
    text = next;
  }
}

async function loupe(dir: string): Promise<Speed & { name: string }> {
  const engine = await Engine.load(dir, { provider: 'cpu', threads: THREADS });
  try {
    const frames = await engine.encodeImages([new Float32Array(3 * engine.manifest.vision.imageSize ** 2)]);
    const question = questionOf(engine, frames[0]!.dims[0]);
    const prefill: number[] = [];
    const decode: number[] = [];
    let promptTokens = 0;
    for (let r = 0; r < REPEATS + 1; r++) {
      const conversation = engine.startConversation({ kind: 'image', frames });
      for await (const e of conversation.ask(question, { maxNewTokens: NEW, ignoreEos: true }))
        if (e.type === 'done' && r > 0) {
          // the first run warms the sessions up
          prefill.push((e.timings.prefillTokens * 1000) / e.timings.prefillMs);
          decode.push(e.timings.decodeTokensPerSec);
          promptTokens = e.timings.prefillTokens;
        }
    }
    return {
      name: engine.manifest.name,
      prefill_tok_s: median(prefill),
      decode_tok_s: median(decode),
      prompt_tokens: promptTokens,
    };
  } finally {
    await engine.dispose();
  }
}

async function references(promptTokens: number): Promise<Record<string, Speed>> {
  if (!opts.genai && !opts.gguf) return {};
  const args = ['-m', 'loupe_dc.bench_real', '--threads', String(THREADS), '--repeats', String(REPEATS)];
  args.push('--prompt-tokens', String(promptTokens), '--new-tokens', String(NEW));
  if (opts.genai) args.push('--genai', path.resolve(opts.genai));
  if (opts.gguf) args.push('--gguf', path.resolve(opts.gguf));
  const { stdout } = await run(opts.python!, args, { cwd: path.join(ROOT, 'models'), maxBuffer: 1 << 24 });
  const out = JSON.parse(stdout) as Record<string, Omit<Speed, 'prompt_tokens'> & { version: string }>;
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { ...v, prompt_tokens: promptTokens }]));
}

async function main(): Promise<void> {
  const results: Record<string, Speed> = {};
  for (const dir of opts.pack ?? []) {
    const { name, ...speed } = await loupe(dir);
    results[`Loupe (onnxruntime-node) · ${name}`] = speed;
  }
  const promptTokens = Object.values(results)[0]?.prompt_tokens ?? PROMPT;
  for (const [name, speed] of Object.entries(await references(promptTokens)))
    results[
      name === 'llama_cpp' ? 'llama.cpp (llama-cpp-python) · GGUF' : 'onnxruntime-genai · builder int4'
    ] = speed;
  if (opts.json) {
    console.log(JSON.stringify({ threads: THREADS, new_tokens: NEW, results }, null, 2));
    return;
  }
  const fmt = (n: number) => n.toFixed(0);
  console.log(
    `Real-model speed — ${THREADS} threads, prompt ${promptTokens} tokens, ${NEW} greedy tokens, medians of ${REPEATS}\n`,
  );
  console.log(
    formatTable([
      ['runtime · model', 'prefill tok/s', 'decode tok/s'],
      ...Object.entries(results).map(([k, v]) => [k, fmt(v.prefill_tok_s), fmt(v.decode_tok_s)]),
    ]),
  );
}

await main();
