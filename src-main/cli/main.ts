#!/usr/bin/env node
/**
 * `loupe`: the command line. Thin wrappers over the same services the app uses.
 * Exit codes: 0 ok, 2 usage, 3 bad input (media), 4 model error, 1 anything else.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { LoupeError } from '../errors.ts';
import { formatTime, parseTime } from '../media/frame-times.ts';
import type { ProviderRequest } from '../model/ort.ts';
import { resourcesRoot } from '../paths.ts';
import { registerFindCommand } from './find.ts';
import { registerModelImportCommand } from './models-import.ts';
import { registerBatchCommands } from './summarize.ts';

const time = (value: string) => {
  try {
    return parseTime(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};
const positiveInt = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number ≥ 1');
  return n;
};
const number = (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('must be a number');
  return n;
};
const PROVIDERS = ['auto', 'cpu', 'cuda', 'dml', 'coreml', 'webgpu'];
const provider = (value: string) => {
  if (!PROVIDERS.includes(value)) throw new InvalidArgumentError(`one of ${PROVIDERS.join(', ')}`);
  return value as ProviderRequest;
};

interface AskOptions {
  from?: number;
  to?: number;
  frames?: number;
  exact?: boolean;
  model?: string;
  json?: boolean;
  provider: ProviderRequest;
  maxTokens?: number;
  temperature: number;
  topP: number;
  cache: boolean;
}

/** Loupe's version, from its package.json. */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(resourcesRoot(), 'package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function buildProgram(): Command {
  const program = new Command()
    .name('loupe')
    .version(packageVersion(), '-V, --version', 'print the version')
    .description('Ask questions about your videos, entirely on your own machine.')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('ask')
    .description('ask a question about a video (or a still image) and stream the answer')
    .argument('<video>', 'video or image file')
    .argument('<question>', 'the question, in quotes')
    .option('--from <time>', 'clip start: seconds or [hh:]mm:ss[.ms]', time)
    .option('--to <time>', 'clip end: seconds or [hh:]mm:ss[.ms]', time)
    .option('--frames <n>', 'frames sampled from the clip (default: the model pack’s, 8)', positiveInt)
    .option(
      '--exact',
      'the frame shown at each sample time, also for long clips (default: nearby keyframes for clips of 1 min or more)',
    )
    .option('--model <dir>', 'model pack folder (default: the built-in pack)')
    .option('--json', 'print one JSON object: answer, frames, provider, timings')
    .option('--provider <name>', `execution provider: ${PROVIDERS.join(' | ')}`, provider, 'auto')
    .option('--max-tokens <n>', 'longest answer, in tokens', positiveInt)
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', number, 0)
    .option('--top-p <p>', 'nucleus sampling mass', number, 0.9)
    .option('--no-cache', 'do not use the frame-feature cache')
    .action(async (video: string, question: string, opts: AskOptions) => {
      // Loaded on use, so that `loupe --help` or a usage error never loads the model runtime.
      const [{ Services }, { askAboutClip }, { ClipFeatureExtractor, whileLoading }, { loadPack }] =
        await Promise.all([
          import('../services.ts'),
          import('../qa/ask.ts'),
          import('../qa/clip-features.ts'),
          import('../model/pack.ts'),
        ]);
      const services = new Services({
        packDir: opts.model,
        provider: opts.provider,
        featureCache: opts.cache,
      });
      const controller = new AbortController();
      const onSignal = () => controller.abort();
      process.once('SIGINT', onSignal);
      const started = performance.now();
      try {
        // The model starts in its worker while ffmpeg decodes the frames: the pack's manifest (read without
        // hashing its files; the engine checks them) is all that choosing and decoding frames need.
        let loadMs = 0;
        const loading = services.engine().then((loaded) => {
          loadMs = performance.now() - started;
          return loaded;
        });
        loading.catch(() => undefined); // awaited below (a load that fails is reported there)
        const pack = await loadPack(services.packDir, { hashLimitBytes: 0 }).catch(async (error: unknown) => {
          await loading; // a pack that cannot load is reported as the engine reports it
          throw error;
        });
        const extractor = new ClipFeatureExtractor(
          whileLoading(pack, loading),
          services.media,
          services.cache,
        );
        let frames: { timeSec: number; cached: boolean }[] = [];
        let answer = '';
        for await (const event of askAboutClip(loading, extractor, {
          path: video,
          question,
          from: opts.from,
          to: opts.to,
          frames: opts.frames,
          mode: opts.exact ? 'exact' : 'auto',
          maxNewTokens: opts.maxTokens,
          temperature: opts.temperature,
          topP: opts.topP,
          signal: controller.signal,
        })) {
          if (event.type === 'frames') {
            frames = event.frames;
            if (!opts.json && process.stderr.isTTY)
              process.stderr.write(
                `frames at ${event.frames.map((f) => formatTime(f.timeSec)).join(', ')}${event.frames.every((f) => f.cached) ? ' (cached)' : ''}\n`,
              );
          } else if (event.type === 'token') {
            if (!opts.json) process.stdout.write(event.text);
          } else {
            answer = event.text;
            if (opts.json) {
              const engine = await loading;
              const totalMs = performance.now() - started;
              process.stdout.write(
                JSON.stringify({
                  answer,
                  frames: frames.map((f) => Number(f.timeSec.toFixed(3))),
                  cachedFrames: frames.filter((f) => f.cached).length,
                  model: `${engine.manifest.name}@${engine.manifest.version}`,
                  provider: engine.provider,
                  stopped: event.stopped,
                  timings: { loadMs, totalMs, ...event.timings },
                }) + '\n',
              );
            } else process.stdout.write('\n');
          }
        }
      } finally {
        process.off('SIGINT', onSignal);
        await services.dispose();
      }
    });

  program
    .command('probe')
    .description('show what Loupe sees in a media file')
    .argument('<video>')
    .option('--json', 'print JSON')
    .action(async (video: string, opts: { json?: boolean }) => {
      const { probe } = await import('../media/probe.ts');
      const info = await probe(video);
      if (opts.json) process.stdout.write(JSON.stringify(info, null, 2) + '\n');
      else
        for (const [k, v] of Object.entries(info))
          if (v !== undefined && v !== null) process.stdout.write(`${k.padEnd(14)} ${String(v)}\n`);
    });

  const models = program.command('models').description('model packs');
  models
    .command('list')
    .description('list the model packs Loupe knows')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const { listPacks } = await import('./models.ts');
      const packs = await listPacks();
      if (opts.json) process.stdout.write(JSON.stringify(packs, null, 2) + '\n');
      else
        for (const p of packs)
          process.stdout.write(
            `${p.builtin ? '*' : ' '} ${p.name}@${p.version || '?'}  ${p.precision || '?'}  ${(p.bytes / 1e6).toFixed(1)} MB  ${p.dir}${p.error ? `  (invalid: ${p.error.message})` : ''}\n`,
          );
    });
  models
    .command('verify')
    .description('check a pack: manifest, file sizes and hashes, graph inputs and outputs')
    .argument('[dir]', 'pack folder (default: the built-in pack)')
    .action(async (dir?: string) => {
      const { verifyPack } = await import('./models.ts');
      const report = await verifyPack(dir);
      process.stdout.write(
        `ok: ${report.name}@${report.version} (${report.files} files verified, provider ${report.provider})\n`,
      );
    });
  registerModelImportCommand(models);
  registerBatchCommands(program);
  registerFindCommand(program);

  program
    .command('serve')
    .description('web mode: serve the app on 127.0.0.1 and print the URL to open')
    .option('--port <n>', 'port (default: any free one)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535)
        throw new InvalidArgumentError('a port from 0 to 65535');
      return n;
    })
    .option('--model <dir>', 'model pack folder (default: the built-in pack)')
    .option('--openai', 'print the OpenAI-compatible API’s base URL and key (/v1/chat/completions)')
    .option(
      '--allow <dir>',
      'a folder whose files OpenAI clients may name as file:// URLs (repeatable)',
      (v: string, all: string[]) => [...all, path.resolve(v)],
      [] as string[],
    )
    .action(async (opts: { port?: number; model?: string; openai?: boolean; allow: string[] }) => {
      const [{ serveUntilInterrupted }, { ensurePages }, { rendererDir }] = await Promise.all([
        import('./serve.ts'),
        import('./pages.ts'),
        import('../paths.ts'),
      ]);
      // right after `npm install` the pages are not built yet: build them here rather than answer 503
      await ensurePages(rendererDir(), (line) => process.stderr.write(`${line}\n`));
      await serveUntilInterrupted({
        port: opts.port,
        packDir: opts.model,
        openai: opts.openai,
        allowedFolders: opts.allow,
      });
    });
  program
    .command('start')
    .description('open the desktop app (web mode where no Electron binary is installed)')
    .action(async () => {
      const { start } = await import('./start.ts');
      await start();
    });
  return program;
}

export async function main(argv = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const err = LoupeError.from(e);
    process.stderr.write(`loupe: ${err.message}\n`);
    return err.exitCode;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('cli/main.ts')) {
  main().then((code) => {
    process.exitCode = code;
  });
}
