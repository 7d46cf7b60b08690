/**
 * `loupe summarize` and `loupe merge`: thin wrappers over src-main/jobs. Results go to --out (or stdout);
 * progress goes to stderr: a redrawn bar on a terminal, one plain line per finished clip otherwise.
 */
import { MultiBar, type SingleBar } from 'cli-progress';
import { InvalidArgumentError, type Command } from 'commander';
import { LoupeError, cancelled } from '../errors.ts';
import { formatTime, parseTime } from '../media/frame-times.ts';
import type { ProviderRequest } from '../model/ort.ts';
import { parseFormat, type OutputFormat } from '../jobs/formats.ts';
import type { OverallProgress, Shard, SummarizeEvent } from '../jobs/index.ts';
import { parseShard } from '../jobs/shard.ts';

/** commander parsers: a LoupeError's message becomes commander's usage error. */
export const parser =
  <T>(parse: (text: string) => T) =>
  (value: string): T => {
    try {
      return parse(value);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
const positiveInt = parser((value) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error('must be a whole number ≥ 1');
  return n;
});
const nonNegativeInt = parser((value) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error('must be a whole number ≥ 0');
  return n;
});
const collect = (value: string, previous: string[] = []) => [...previous, value];
const PROVIDERS = ['auto', 'cpu', 'cuda', 'dml', 'coreml', 'webgpu'];

interface SummarizeCliOptions {
  prompt?: string[];
  segments?: number;
  frames?: number;
  exact?: boolean;
  out?: string;
  format?: OutputFormat;
  resume?: boolean;
  force?: boolean;
  shard?: Shard;
  recursive?: boolean;
  model?: string;
  provider: ProviderRequest;
  maxTokens?: number;
  cache: boolean;
  lookahead: number;
  progress?: boolean;
}

/** A batch that finished with failed clips: exit code 3, like other bad-input errors. */
class BatchHadFailures extends LoupeError {
  override get exitCode(): number {
    return 3;
  }
}

export function registerBatchCommands(program: Command): void {
  program
    .command('summarize')
    .description('answer prompts about every clip of folders or files, resumably (results as they complete)')
    .argument('<inputs...>', 'folders and/or video files')
    .option(
      '--prompt <text>',
      'a prompt for every clip; repeat for more (default: "Summarize the video.")',
      collect,
    )
    .option(
      '--segments <length>',
      'also answer the first prompt per segment of this length, e.g. 30s or 1:00',
      parser(parseTime),
    )
    .option('--frames <n>', 'frames per clip and per segment (default: the model pack’s)', positiveInt)
    .option('--exact', 'sample the frame shown at each segment middle (slower; default: nearby keyframes)')
    .option('--out <file>', 'results file, written as clips complete (default: stdout)')
    .option(
      '--format <format>',
      'jsonl | md | csv (default: from --out’s extension, else jsonl)',
      parser(parseFormat),
    )
    .option('--resume', 'continue the batch that --out holds (starts one if --out does not exist yet)')
    .option('--force', 'overwrite --out if it already holds results')
    .option(
      '--shard <K/N>',
      'only the K-th of N deterministic parts of the input (1 ≤ K ≤ N)',
      parser(parseShard),
    )
    .option('-r, --recursive', 'look into subfolders')
    .option('--model <dir>', 'model pack folder (default: the built-in pack)')
    .option('--provider <name>', `execution provider: ${PROVIDERS.join(' | ')}`, 'auto')
    .option('--max-tokens <n>', 'longest answer, in tokens', positiveInt)
    .option('--no-cache', 'do not use the frame-feature cache')
    .option('--lookahead <n>', 'clips decoded ahead of the one being answered (0 = none)', nonNegativeInt, 2)
    .option('--no-progress', 'no progress output on stderr')
    .action(async (inputs: string[], opts: SummarizeCliOptions) => {
      if (!PROVIDERS.includes(opts.provider))
        throw new LoupeError('USAGE', `--provider must be one of ${PROVIDERS.join(', ')}.`);
      // Loaded on use, so that parsing the command line stays quick.
      const [{ Services }, { summarize }] = await Promise.all([
        import('../services.ts'),
        import('../jobs/index.ts'),
      ]);
      const services = new Services({
        packDir: opts.model,
        provider: opts.provider,
        featureCache: opts.cache,
      });
      const controller = new AbortController();
      let interrupts = 0;
      const onSignal = (name: string) => {
        if (++interrupts > 1) process.exit(130); // a second Ctrl-C: stop now, the journal is safe anyway
        process.stderr.write(
          `\nloupe: ${name}: stopping after the current step; results so far are saved (continue with --resume).\n`,
        );
        controller.abort();
      };
      const onInt = () => onSignal('interrupted');
      const onTerm = () => onSignal('terminated');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      const view = opts.progress === false ? null : new ProgressView(process.stderr);
      let outcome: Extract<SummarizeEvent, { type: 'outcome' }> | undefined;
      try {
        const model = await services.engine();
        const extractor = await services.extractor();
        for await (const event of summarize(
          { model, extractor },
          {
            inputs,
            prompts: opts.prompt,
            segmentSec: opts.segments,
            frames: opts.frames,
            mode: opts.exact ? 'exact' : 'fast',
            maxNewTokens: opts.maxTokens,
            out: opts.out,
            format: opts.format,
            resume: opts.resume,
            force: opts.force,
            shard: opts.shard,
            recursive: opts.recursive,
            lookahead: opts.lookahead,
            signal: controller.signal,
          },
        )) {
          view?.show(event);
          if (event.type === 'outcome') outcome = event;
        }
      } finally {
        view?.end();
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        await services.dispose();
      }
      if (controller.signal.aborted || !outcome) throw cancelled();
      if (outcome.failures.length) {
        process.stderr.write(
          `\n${outcome.failures.length} clip${outcome.failures.length === 1 ? '' : 's'} failed:\n`,
        );
        for (const f of outcome.failures) process.stderr.write(`  ${f.relPath}: ${f.code}: ${f.message}\n`);
        throw new BatchHadFailures(
          'INTERNAL',
          `${outcome.failures.length} clip(s) failed; their errors are recorded${opts.out ? ` in ${opts.out}` : ''}.`,
          { failures: outcome.failures.length },
        );
      }
    });

  program
    .command('merge')
    .description('join shard outputs into one file (deduplicated by path and prompt, sorted)')
    .argument('<out>', 'merged file: .jsonl, .csv or .md (or --format)')
    .argument(
      '<inputs...>',
      'JSONL outputs of `loupe summarize` (or CSV/Markdown outputs with their journal beside them)',
    )
    .option('--format <format>', 'jsonl | md | csv (default: from <out>’s extension)', parser(parseFormat))
    .action(async (out: string, inputs: string[], opts: { format?: OutputFormat }) => {
      const { mergeFiles } = await import('../jobs/index.ts');
      const result = await mergeFiles(out, inputs, opts.format);
      for (const input of result.inputs)
        if (input.invalidLines || input.tornTail)
          process.stderr.write(
            `loupe: ${input.file}: ${input.invalidLines} invalid line(s)${input.tornTail ? ', a torn last line' : ''} skipped\n`,
          );
      process.stderr.write(
        `loupe: ${result.records.length} results from ${inputs.length} file(s) → ${out}` +
          `${result.duplicates ? ` (${result.duplicates} duplicate(s) dropped)` : ''}\n`,
      );
    });
}

/**
 * Progress on stderr: on a terminal a bar redrawn in place (cli-progress: throttled redraws, fitted to the
 * terminal's width, messages printed above it); plain lines otherwise.
 */
class ProgressView {
  private readonly bars: MultiBar | null;
  private bar: SingleBar | null = null;
  private last: OverallProgress | null = null;
  private current = '';

  constructor(private readonly stream: NodeJS.WriteStream) {
    const tty = !!stream.isTTY && process.env.TERM !== 'dumb';
    this.bars = tty
      ? new MultiBar({
          stream,
          format: '[{bar}] {value}/{total}{facts}',
          barsize: 20,
          barCompleteChar: '█',
          barIncompleteChar: '░',
          hideCursor: false,
          clearOnComplete: false,
          stopOnComplete: false,
          linewrap: false,
          fps: 10,
        })
      : null;
  }

  show(event: SummarizeEvent): void {
    if (event.type === 'plan') {
      const shard = event.total !== event.discovered ? ` (of ${event.discovered}) in this shard` : '';
      const parts = [`${event.total} clip${event.total === 1 ? '' : 's'}${shard} under ${event.root}`];
      if (event.resumed) parts.push(`${event.resumed} result(s) already in ${event.journal}`);
      if (event.ignored) parts.push(`${event.ignored} other file(s) ignored`);
      if (event.recovered.tornTail) parts.push('a torn last line was cut off');
      if (event.recovered.invalidLines.length)
        parts.push(`${event.recovered.invalidLines.length} invalid journal line(s) will be redone`);
      this.line(`loupe: ${parts.join('; ')}`);
    } else if (event.type === 'overall') {
      this.last = event;
      this.draw();
    } else if (event.type === 'clip') {
      const s = event.status;
      if (s.state === 'running') this.current = event.relPath;
      const n = this.last ? `${Math.min(this.last.total, this.last.done + 1)}/${this.last.total}` : '';
      if (s.state === 'failed')
        this.line(`loupe: [${n}] failed ${event.relPath}: ${s.error.code}: ${s.error.message}`);
      else if (s.state === 'done' && s.partial)
        this.line(
          `loupe: [${n}] partly failed ${event.relPath}: ${s.partial.failed} of ${s.partial.answers} answers could not be read (their errors are in the output)`,
        );
      else if (s.state === 'done' && !s.resumed && !this.bars)
        this.line(`loupe: [${n}] done ${event.relPath}`);
    }
  }

  end(): void {
    this.bars?.stop();
  }

  /** A full line (above the bar on a terminal). */
  private line(text: string): void {
    if (this.bars) this.bars.log(text + '\n');
    else this.stream.write(text + '\n');
  }

  private draw(): void {
    if (!this.bars || !this.last) return;
    const payload = { facts: progressFacts(this.last, this.current) };
    this.bar ??= this.bars.create(this.last.total, this.last.done, payload);
    this.bar.setTotal(this.last.total);
    this.bar.update(this.last.done, payload);
  }
}

/** What follows the bar's count: " · 2 failed · 5.1 clips/min · ETA 5:32 · clip.mp4". */
export function progressFacts(p: OverallProgress, current: string): string {
  const facts: string[] = [];
  if (p.failed) facts.push(`${p.failed} failed`);
  if (p.clipsPerMin) facts.push(`${p.clipsPerMin.toFixed(1)} clips/min`);
  if (p.etaSec !== null && p.done < p.total) facts.push(`ETA ${formatTime(Math.round(p.etaSec))}`);
  if (p.paused) facts.push('paused');
  else if (p.yielding) facts.push('waiting for a question in the app');
  if (current && p.done < p.total) facts.push(current);
  return facts.map((f) => ` · ${f}`).join('');
}
