/**
 * `loupe find <video|folder> "<query>"`: moment search (src-main/find/). For a video: the intervals (or, with
 * --json, one object with intervals, per-instant scores, frames, provider and timings). For a folder: one
 * record per clip, resumable with --out (.jsonl or .csv). Progress goes to stderr on a terminal.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { LoupeError } from '../errors.ts';
import type { FindResult, FindTokens } from '../find/scan.ts';
import { formatTime, parseTime } from '../media/frame-times.ts';
import type { ProviderRequest } from '../model/ort.ts';
import { parser as arg } from './summarize.ts';

interface FindCliOptions {
  from?: number;
  to?: number;
  step?: number;
  threshold?: number;
  full?: boolean;
  coarse?: number;
  tokens?: FindTokens;
  json?: boolean;
  out?: string;
  resume: boolean;
  recursive?: boolean;
  model?: string;
  provider: ProviderRequest;
  cache: boolean;
}

const positive = arg((value) => {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new Error('must be a number of seconds > 0');
  return n;
});
const fraction = arg((value) => {
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new Error('must be a number from 0 to 1');
  return n;
});

/** The --json object: exactly what the issue's contract names, plus the detail of where frames came from. */
export function findJson(result: FindResult, loadMs: number): Record<string, unknown> {
  return {
    query: result.query,
    question: result.question,
    range: result.range,
    step: result.step,
    threshold: result.threshold,
    scan: result.scan,
    tokens: result.tokens,
    intervals: result.intervals,
    scores: result.scores,
    frames: result.frames,
    scoredFrames: result.scoredFrames,
    cachedFrames: result.cachedFrames,
    decodedFrames: result.decodedFrames,
    encodedFrames: result.encodedFrames,
    provider: result.provider,
    timings: { loadMs, ...result.timings },
  };
}

export function registerFindCommand(program: Command): void {
  program
    .command('find')
    .description('find when something is on screen: scored instants merged into intervals')
    .argument('<input>', 'a video file, or a folder of clips')
    .argument('<query>', 'what to look for, in quotes (e.g. "red circle")')
    .option('--from <time>', 'start: seconds or [hh:]mm:ss[.ms]', arg(parseTime))
    .option('--to <time>', 'end: seconds or [hh:]mm:ss[.ms]', arg(parseTime))
    .option('--step <seconds>', 'seconds between scored instants (default 0.5)', positive)
    .option('--threshold <p>', 'score from which an instant shows the query (default 0.5)', fraction)
    .option('--full', 'score every instant (default: a coarse grid, refined where the threshold is crossed)')
    .option('--coarse <seconds>', "seconds between the coarse grid's instants (default 2)", positive)
    .option(
      '--tokens <kind>',
      "what the model sees of each instant: pooled (the video path's frame tokens, default) or image (every token)",
      arg((value) => {
        if (value !== 'image' && value !== 'pooled') throw new Error('must be image or pooled');
        return value;
      }),
    )
    .option('--json', 'a video: print one JSON object; a folder: one JSON line per clip')
    .option('--out <file>', 'a folder: write results to a .jsonl or .csv file, resumably')
    .option('--no-resume', 'a folder: start over instead of skipping clips already in --out')
    .option('-r, --recursive', 'a folder: include subfolders')
    .option('--model <dir>', 'model pack folder (default: the built-in pack)')
    .option('--provider <name>', 'execution provider', 'auto')
    .option('--no-cache', 'do not use the frame-feature cache')
    .action(async (input: string, query: string, opts: FindCliOptions) => {
      const isFolder = (await stat(input).catch(() => null))?.isDirectory() ?? false;
      // Loaded on use, as `loupe ask` does, so that `loupe --help` or a usage error never loads the model stack.
      const [{ Services }, { findInFolder, journalFor }, { findMoments }, { discoverInputs }] =
        await Promise.all([
          import('../services.ts'),
          import('../find/folder.ts'),
          import('../find/scan.ts'),
          import('../jobs/discover.ts'),
        ]);
      const services = new Services({
        packDir: opts.model,
        provider: opts.provider,
        featureCache: opts.cache,
      });
      const controller = new AbortController();
      const onSignal = () => controller.abort();
      process.once('SIGINT', onSignal);
      const tty = process.stderr.isTTY && !opts.json;
      const started = performance.now();
      try {
        const engine = await services.engine();
        const loadMs = performance.now() - started;
        const request = {
          query,
          from: opts.from,
          to: opts.to,
          step: opts.step,
          threshold: opts.threshold,
          full: opts.full,
          coarseStep: opts.coarse,
          tokens: opts.tokens,
        };
        if (isFolder) {
          const out = opts.out ? path.resolve(opts.out) : undefined;
          const { items } = await discoverInputs([input], {
            recursive: opts.recursive,
            exclude: out ? [out, journalFor(out)] : [],
            signal: controller.signal,
          });
          if (!out) {
            // No output file: one JSON line per clip on stdout, not resumable.
            for (const item of items) {
              for await (const event of findMoments(engine, services.denseMedia, services.cache, {
                ...request,
                path: item.path,
                signal: controller.signal,
              }))
                if (event.type === 'done')
                  process.stdout.write(
                    JSON.stringify({
                      file: item.relPath,
                      found: event.result.intervals.length > 0,
                      intervals: event.result.intervals,
                    }) + '\n',
                  );
            }
            return;
          }
          const summary = await findInFolder(engine, services.denseMedia, services.cache, items, {
            ...request,
            out,
            resume: opts.resume,
            signal: controller.signal,
            onClip: ({ record, done, total, skipped }) => {
              const what = record.error
                ? `failed: ${record.error.message}`
                : record.found
                  ? record.intervals.map((i) => `${formatTime(i.from)}–${formatTime(i.to)}`).join(', ')
                  : 'not found';
              if (opts.json) process.stdout.write(JSON.stringify(record) + '\n');
              else
                process.stderr.write(
                  `[${done}/${total}] ${record.relPath}: ${what}${skipped ? ' (done before)' : ''}\n`,
                );
            },
          });
          if (!opts.json)
            process.stderr.write(
              `${summary.found} of ${summary.records.length} clips show "${query}"` +
                `${summary.failed ? `, ${summary.failed} failed` : ''}${summary.skipped ? `, ${summary.skipped} done before` : ''}; results in ${out}\n`,
            );
          if (summary.failed)
            throw new LoupeError(
              'FFMPEG_FAILED',
              `${summary.failed} clip(s) could not be searched (see ${out}).`,
            );
          return;
        }
        for await (const event of findMoments(engine, services.denseMedia, services.cache, {
          ...request,
          path: input,
          signal: controller.signal,
        })) {
          if (event.type === 'progress' && tty)
            process.stderr.write(`\rscanning ${event.done}/${event.total}`);
          if (event.type !== 'done') continue;
          if (tty) process.stderr.write('\n');
          const { result } = event;
          if (opts.json) process.stdout.write(JSON.stringify(findJson(result, loadMs)) + '\n');
          else if (!result.intervals.length) process.stdout.write(`"${query}" was not found.\n`);
          else
            for (const i of result.intervals)
              process.stdout.write(
                `${formatTime(i.from)}–${formatTime(i.to)}  score ${i.score.toFixed(2)}\n`,
              );
        }
      } finally {
        process.off('SIGINT', onSignal);
        await services.dispose();
      }
    });
}
