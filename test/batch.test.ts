/**
 * Batch summarizing on real files: ffmpeg-generated clips (good ones, a damaged one, a text file named .mp4,
 * a video without a video extension), the built-in pack, the real journal, and the CLI killed mid-batch.
 * Answers are only checked to be non-empty: the model is still training.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  discoverInputs,
  isForward,
  mergeFiles,
  readJournal,
  recordKey,
  selectShard,
  summarize,
  CSV_COLUMNS,
  ModelGate,
  PauseSwitch,
  type BatchEvent,
  type ClipStatus,
  type ResultRecord,
  type SummarizeEvent,
  type SummarizeOptions,
} from '../src-main/jobs/index.ts';
import { liveProcessCount } from '../src-main/media/index.ts';
import type { Services } from '../src-main/services.ts';
import { COLORS, makeCorrupt, makeNotAVideo, makeShapesClip, type Shape } from './fixtures/clips.ts';
import { FIXTURES, runCli, tempDir, testServices, until } from './helpers.ts';

const DIR = path.join(FIXTURES, 'batch');
const INPUT = path.join(DIR, 'input');
const PALETTE = [COLORS.red, COLORS.blue, COLORS.yellow, COLORS.green, COLORS.purple, COLORS.orange];
const KINDS: Shape['kind'][] = ['circle', 'square', 'triangle'];

/** Small 1 s clips of one shape each, numbered. */
function shapesClip(dir: string, name: string, i: number, duration = 1): Promise<string> {
  return makeShapesClip(dir, {
    name,
    width: 160,
    height: 90,
    duration,
    fps: 10,
    codec: 'h264',
    background: COLORS.black,
    shapes: [
      {
        kind: KINDS[i % 3]!,
        color: PALETTE[i % PALETTE.length]!,
        radius: 0.2,
        x0: 0.4,
        y0: 0.5,
        x1: 0.6,
        y1: 0.5,
      },
    ],
  });
}

/** input/: 6 good clips, one in a subfolder, one video named .dat, a damaged MP4, a text file named .mp4, notes. */
async function makeInput(): Promise<{ good: string[]; bad: string[] }> {
  const good: string[] = [];
  for (let i = 0; i < 5; i++) good.push(await shapesClip(INPUT, `clip-${i}.mp4`, i));
  good.push(await shapesClip(path.join(INPUT, 'sub'), 'deep.mp4', 5));
  good.push(await shapesClip(INPUT, 'mystery.dat', 6)); // no video extension: ffprobe recognises it
  const bad = [await makeCorrupt(INPUT, 'truncated'), await makeNotAVideo(INPUT)];
  if (!existsSync(path.join(INPUT, 'notes.txt')))
    await writeFile(path.join(INPUT, 'notes.txt'), 'not a clip\n');
  return { good, bad };
}

async function collect(
  events: AsyncIterable<SummarizeEvent>,
  each?: (e: SummarizeEvent) => void,
): Promise<SummarizeEvent[]> {
  const out: SummarizeEvent[] = [];
  for await (const event of events) {
    out.push(event);
    each?.(event);
  }
  return out;
}

/** Every clip's statuses move forward only, and the overall count never drops. */
function expectMonotone(events: readonly SummarizeEvent[]): void {
  const last = new Map<number, ClipStatus>();
  let done = 0;
  for (const e of events) {
    if (e.type === 'clip') {
      const prev = last.get(e.index) ?? { state: 'queued' };
      expect(
        isForward(prev, e.status),
        `${e.relPath}: ${JSON.stringify(prev)} → ${JSON.stringify(e.status)}`,
      ).toBe(true);
      last.set(e.index, e.status);
    } else if (e.type === 'overall') {
      expect(e.done).toBeGreaterThanOrEqual(done);
      expect(e.done).toBeLessThanOrEqual(e.total);
      done = e.done;
    }
  }
}

const records = (events: readonly SummarizeEvent[]) =>
  events
    .filter((e): e is Extract<BatchEvent, { type: 'record' }> => e.type === 'record')
    .map((e) => e.record);

/**
 * A pause switch that knows which of its listeners are still subscribed. Every wait of a batch at a checkpoint
 * (for the model gate or for the pause) listens to the switch until it is let through, so a listener that came
 * after a mark and is still there is the batch waiting.
 */
class WatchedPause extends PauseSwitch {
  private subscribed = 0;
  private readonly live = new Set<number>();

  override onChange(listener: () => void): () => void {
    const id = this.subscribed++;
    this.live.add(id);
    const off = super.onChange(listener);
    return () => {
      this.live.delete(id);
      off();
    };
  }

  /** A mark to compare with later: the listeners that subscribe from now on. */
  mark(): number {
    return this.subscribed;
  }

  /** True while a listener subscribed since `mark` is still there: the batch waits at a checkpoint. */
  waitingSince(mark: number): boolean {
    return [...this.live].some((id) => id >= mark);
  }
}

describe('summarizing a folder of clips', () => {
  let services: Services;
  let run: (options: SummarizeOptions, each?: (e: SummarizeEvent) => void) => Promise<SummarizeEvent[]>;
  let all: string[];
  let bad: string[];
  let out: string;

  beforeAll(async () => {
    const made = await makeInput();
    all = [...made.good, ...made.bad].sort();
    bad = made.bad;
    services = await testServices();
    const model = await services.engine();
    const extractor = await services.extractor();
    run = (options, each) => collect(summarize({ model, extractor }, options), each);
    out = path.join(await tempDir('loupe-batch-'), 'results.jsonl');
  });
  afterAll(() => services?.dispose());

  it('answers every clip, records the failures with their errors and goes on', async () => {
    const events = await run({ inputs: [INPUT], recursive: true, out });
    const plan = events.find((e) => e.type === 'plan')!;
    expect(plan).toMatchObject({ total: all.length, ignored: 1 });
    const written = (await readJournal(out)).records;
    expect(written.map((r) => r.path).sort()).toEqual(all);
    expect(written).toEqual(records(events));
    for (const r of written) {
      if (bad.includes(r.path)) {
        expect(r.answer).toBeNull();
        expect(['CORRUPT_MEDIA', 'NOT_A_VIDEO']).toContain(r.error?.code);
      } else {
        expect(r.error).toBeNull();
        expect(typeof r.answer).toBe('string');
        expect(r.answer!.trim().length).toBeGreaterThan(0);
        expect(r.durationSec).toBeCloseTo(1, 1);
        expect(r.frames.length).toBeGreaterThan(0);
        expect(r.model).toMatch(/@/);
      }
    }
    expect(written.find((r) => r.relPath === 'sub/deep.mp4')).toBeDefined();
    const outcome = events.at(-1)!;
    expect(outcome).toMatchObject({ type: 'outcome', complete: true });
    expect((outcome as { failures: unknown[] }).failures).toHaveLength(2);
    expectMonotone(events);
    expect(liveProcessCount()).toBe(0);
  });

  it('exports CSV and Markdown that parse back to the same results', async () => {
    const written = (await readJournal(out)).records;
    const dir = path.dirname(out);
    await mergeFiles(path.join(dir, 'results.csv'), [out]);
    await mergeFiles(path.join(dir, 'results.md'), [out]);
    const [header, ...rows] = parseCsv(await readFile(path.join(dir, 'results.csv'), 'utf8'));
    expect(header).toEqual([...CSV_COLUMNS]);
    expect(rows).toHaveLength(written.length);
    const byPath = new Map(written.map((r) => [r.path, r]));
    for (const row of rows) {
      const r = byPath.get(row[0]!)!;
      expect(row[CSV_COLUMNS.indexOf('answer')]).toBe(r.answer ?? '');
      expect(row[CSV_COLUMNS.indexOf('error_code')]).toBe(r.error?.code ?? '');
    }
    const md = await readFile(path.join(dir, 'results.md'), 'utf8');
    expect(md.match(/^## `/gm)).toHaveLength(all.length);
    expect(md).toMatch(new RegExp(`${all.length} clips, ${all.length} answers, 2 failed`));
  });

  it('resumes from the journal without doing any clip twice', async () => {
    const events = await run({ inputs: [INPUT], recursive: true, out, resume: true });
    expect(records(events)).toHaveLength(0);
    expect(
      events.filter((e) => e.type === 'clip' && e.status.state === 'done' && e.status.resumed),
    ).toHaveLength(all.length - bad.length);
    await expect(run({ inputs: [INPUT], recursive: true, out })).rejects.toThrow(/--resume/);
  });

  it('splits the input into shards that cover it exactly once and merge back to the whole', async () => {
    const found = await discoverInputs([INPUT], { recursive: true });
    for (const count of [2, 3]) {
      const parts = Array.from({ length: count }, (_, k) =>
        selectShard(found.items, { index: k + 1, count }),
      );
      expect(
        parts
          .flat()
          .map((i) => i.path)
          .sort(),
      ).toEqual(all);
    }
    const dir = await tempDir('loupe-shards-');
    const shardOut = [path.join(dir, 'shard-1.csv'), path.join(dir, 'shard-2.jsonl')];
    for (const [k, file] of shardOut.entries())
      await run({
        inputs: [INPUT],
        recursive: true,
        out: file,
        shard: { index: k + 1, count: 2 },
        prompts: ['Summarize the video.', 'What shape is it?'],
      });
    const merged = await mergeFiles(path.join(dir, 'merged.jsonl'), shardOut);
    const keys = merged.records.map(recordKey);
    expect(new Set(keys).size).toBe(keys.length);
    expect(merged.records.length).toBe(all.length * 2);
    expect(merged.duplicates).toBe(0);
    expect(
      merged.records.filter((r) => r.promptIndex === 1 && !r.error).every((r) => !!r.answer?.trim()),
    ).toBe(true);
  });

  it('answers the first prompt per segment with the segment ranges', async () => {
    const clip = await shapesClip(path.join(DIR, 'segments'), 'three-seconds.mp4', 1, 3);
    const file = path.join(await tempDir('loupe-seg-'), 'seg.jsonl');
    const events = await run({
      inputs: [clip],
      out: file,
      segmentSec: 1,
      frames: 4,
      prompts: ['Summarize the video.', 'What color is it?'],
    });
    expectMonotone(events);
    const [first, second] = (await readJournal(file)).records;
    expect(first!.segments!.map((s) => [s.from, s.to])).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
    ]);
    for (const s of first!.segments!) {
      expect(s.error).toBeNull();
      expect(s.answer!.trim().length).toBeGreaterThan(0);
      expect(s.frames).toHaveLength(4);
      for (const t of s.frames) expect(t >= s.from && t <= s.to).toBe(true);
    }
    expect(second!.segments).toBeUndefined();
    // one conversation per prompt and per segment, each closed when answered
    const stats = await (await services.engine()).workerStats();
    expect(stats).toMatchObject({ openConversations: 0, liveKvCaches: 0 });
  });

  it('yields to an interactive question and to a pause, then carries on', async () => {
    const gate = new ModelGate();
    const pause = new WatchedPause();
    const file = path.join(await tempDir('loupe-pause-'), 'out.jsonl');
    let records = 0;
    /** Per hold: the records that arrived while it was held, and whether the batch was still waiting at its end. */
    const holds: { arrived: number; waiting: boolean }[] = [];
    const pending: Promise<void>[] = [];
    const flags = { yielding: false, paused: false };
    /**
     * Hold the batch with `take` (which returns the release) until the batch is seen waiting at a checkpoint, and
     * let it go then. With no lookahead the batch is one chain of steps, so that wait is the whole batch waiting:
     * nothing can arrive until the release. Only the step already under way when the hold began may still land.
     */
    const hold = (take: () => () => void) => {
      const mark = pause.mark();
      const before = records;
      const release = take();
      pending.push(
        (async () => {
          try {
            await until(() => pause.waitingSince(mark), 'the batch to wait at a checkpoint');
            await new Promise((resolve) => setImmediate(resolve)); // events already on their way reach us
            holds.push({ arrived: records - before, waiting: pause.waitingSince(mark) });
          } finally {
            release();
          }
        })(),
      );
    };
    await run({ inputs: [INPUT], recursive: true, out: file, gate, pause, lookahead: 0 }, (e) => {
      if (e.type === 'overall') {
        flags.yielding ||= e.yielding;
        flags.paused ||= e.paused;
      }
      if (e.type !== 'record') return;
      records++;
      if (records === 2) hold(() => gate.interactive().release);
      if (records === 4)
        hold(() => {
          pause.pause();
          return () => pause.resume();
        });
    });
    await Promise.all(pending);
    expect(flags).toEqual({ yielding: true, paused: true });
    expect(holds).toHaveLength(2);
    for (const { arrived, waiting } of holds) {
      expect(arrived).toBeLessThanOrEqual(1);
      expect(waiting).toBe(true);
    }
    expect((await readJournal(file)).records).toHaveLength(all.length);
  });

  it('cancels mid-batch leaving no ffmpeg running and only whole results', async () => {
    const cold = await testServices(); // an empty feature cache: every clip needs ffmpeg
    try {
      const model = await cold.engine();
      const extractor = await cold.extractor();
      const controller = new AbortController();
      const file = path.join(await tempDir('loupe-cancel-'), 'out.jsonl');
      // Cancel while ffmpeg is decoding a clip ahead of the one being answered.
      let childrenAtCancel = 0;
      let watch: NodeJS.Timeout | undefined;
      const started = performance.now();
      const events = await collect(
        summarize(
          { model, extractor },
          { inputs: [INPUT], recursive: true, out: file, signal: controller.signal },
        ),
        (e) => {
          if (watch || e.type !== 'clip' || e.index !== 1 || e.status.state !== 'running') return;
          watch = setInterval(() => {
            childrenAtCancel = liveProcessCount();
            if (childrenAtCancel > 0 || performance.now() - started > 60_000) {
              clearInterval(watch);
              controller.abort();
            }
          }, 2);
        },
      );
      clearInterval(watch);
      expect(childrenAtCancel).toBeGreaterThan(0);
      expect(liveProcessCount()).toBe(0);
      expectMonotone(events);
      const cancelledClips = events.filter((e) => e.type === 'clip' && e.status.state === 'cancelled');
      expect(cancelledClips.length).toBeGreaterThan(0);
      expect(events.at(-1)).toMatchObject({ type: 'outcome', complete: false });
      const kept = await readJournal(file);
      expect(kept.tornTail).toBe(false);
      expect(kept.records.length).toBeLessThan(all.length);
    } finally {
      await cold.dispose();
    }
  });
});

const cli = runCli;

describe('the summarize command', () => {
  it('survives SIGKILL mid-batch: --resume finishes with every clip exactly once', async () => {
    const { good, bad } = await makeInput();
    const expected = [...good, ...bad].sort();
    const dir = await tempDir('loupe-kill-');
    await mkdir(path.join(dir, 'data'));
    const out = path.join(dir, 'results.jsonl');
    const env = { LOUPE_DATA_DIR: path.join(dir, 'data') };
    const args = ['summarize', INPUT, '--recursive', '--out', out, '--frames', '4'];

    const killed = await cli(args, env, (child) => {
      const poll = setInterval(async () => {
        const text = await readFile(out, 'utf8').catch(() => '');
        if (text.includes('\n')) {
          clearInterval(poll);
          child.kill('SIGKILL');
        }
      }, 20);
      child.on('close', () => clearInterval(poll));
    });
    expect(killed.signal).toBe('SIGKILL');
    const before = (await readJournal(out)).records;
    expect(before.length).toBeGreaterThan(0);
    expect(before.length).toBeLessThan(expected.length);

    const resumed = await cli([...args, '--resume'], env);
    expect(resumed.code, resumed.stderr).toBe(3); // two clips failed
    expect(resumed.stderr).toMatch(/2 clips failed/);
    expect(resumed.stderr).toContain('not-a-video.mp4: NOT_A_VIDEO');
    const after = await readJournal(out);
    expect(after.invalidLines).toEqual([]);
    expect(after.records.slice(0, before.length)).toEqual(before);
    const keys = after.records.map(recordKey);
    expect(new Set(keys).size).toBe(keys.length);
    expect(after.records.map((r: ResultRecord) => r.path).sort()).toEqual(expected);
    for (const r of after.records) if (!r.error) expect(r.answer!.trim().length).toBeGreaterThan(0);
  }, 300_000);
});
