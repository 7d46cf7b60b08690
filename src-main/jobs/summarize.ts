/**
 * A whole batch from folders to a results file: discover → shard → open the output (resuming its journal)
 * → run → close. The CLI's `loupe summarize` and the app's batch view are both thin consumers of this
 * event stream.
 */
import path from 'node:path';
import { discoverInputs, type DiscoverOptions, type Discovery } from './discover.ts';
import type { OutputFormat } from './export.ts';
import { BatchOutput, journalPathFor } from './output.ts';
import type { BatchEvent } from './progress.ts';
import { runBatch, checkSpec, type BatchExtractor, type BatchModel, type RunBatchOptions } from './runner.ts';
import { selectShard, type Shard } from './shard.ts';

export interface SummarizeOptions extends Omit<RunBatchOptions, 'previous' | 'onRecord'> {
  /** Folders and files. */
  inputs: readonly string[];
  recursive?: boolean;
  shard?: Shard;
  /** Results file; none: stream to `stdout`. */
  out?: string;
  format?: OutputFormat;
  resume?: boolean;
  force?: boolean;
  stdout?: NodeJS.WritableStream;
  recognise?: DiscoverOptions['recognise'];
  /** What the caller already discovered from `inputs` (the app lists a batch's clips before it runs): not redone. */
  discovered?: Discovery;
}

export interface BatchPlan {
  type: 'plan';
  root: string;
  /** Clips in this shard (all of them without --shard). */
  total: number;
  /** Clips found before sharding. */
  discovered: number;
  /** Files looked at and left out as not videos. */
  ignored: number;
  /** (clip, prompt) results already in the journal. */
  resumed: number;
  out?: string;
  journal?: string;
  /** The journal ended in a torn line (cut off and redone), or had invalid lines (redone). */
  recovered: { tornTail: boolean; invalidLines: number[] };
}

/** The results of a finished (or cancelled) batch, for exit codes and summaries. */
export interface BatchOutcome {
  type: 'outcome';
  complete: boolean;
  records: number;
  failures: { relPath: string; code: string; message: string }[];
}

export type SummarizeEvent = BatchPlan | BatchEvent | BatchOutcome;

export async function* summarize(
  deps: { model: BatchModel; extractor: BatchExtractor },
  options: SummarizeOptions,
): AsyncGenerator<SummarizeEvent> {
  checkSpec(deps.model, options); // bad --frames or prompts fail before anything is touched
  const journal = options.out ? journalPathFor(options.out, options.format) : undefined;
  const exclude = [options.out, journal].filter((p): p is string => !!p).map((p) => path.resolve(p));
  const found =
    options.discovered ??
    (await discoverInputs(options.inputs, {
      recursive: options.recursive,
      recognise: options.recognise,
      exclude,
      signal: options.signal,
    }));
  const items = selectShard(found.items, options.shard);
  const output = await BatchOutput.open(options);
  let complete = false;
  const failures = new Map<string, BatchOutcome['failures'][number]>();
  try {
    yield {
      type: 'plan',
      root: found.root,
      total: items.length,
      discovered: found.items.length,
      ignored: found.ignored.length,
      resumed: output.previous.length,
      out: options.out,
      journal,
      recovered: output.recovered,
    };
    let finished = 0;
    for await (const event of runBatch(deps, items, {
      ...options,
      previous: output.previous,
      onRecord: (record) => output.write(record),
    })) {
      if (event.type === 'clip' && (event.status.state === 'done' || event.status.state === 'failed'))
        finished++;
      if (event.type === 'clip' && event.status.state === 'failed')
        failures.set(event.relPath, {
          relPath: event.relPath,
          code: event.status.error.code,
          message: event.status.error.message,
        });
      yield event;
    }
    complete = finished === items.length;
  } finally {
    await output.close(complete);
  }
  yield { type: 'outcome', complete, records: output.all().length, failures: [...failures.values()] };
}
