/**
 * The multimodal engine as the app sees it: a loaded pack that encodes frames and runs conversations. All
 * ONNX Runtime work happens in a worker process (engine-worker.ts), because onnxruntime-node's `run()` blocks
 * the thread that calls it (a 384 ms vision run froze a 5 ms timer for 387 ms). This side keeps the manifest
 * and tokenizer, sends typed messages (worker-protocol.ts) and turns the answers back into promises and
 * async streams. Stop is a message the worker reads between prefill chunks and tokens.
 *
 * A worker that dies (a crash in native code, out of memory, killed) fails what was running with a typed
 * MODEL_RUNTIME error; the next call starts a fresh worker, and a conversation whose cache died with it is
 * rebuilt there from its turns.
 */
import type { ModelConversation, ModelEngine } from './model-engine.ts';
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LoupeError, cancelled } from '../errors.ts';
import { PushQueue } from '../push-queue.ts';
import type { ProviderReport } from './ort.ts';
import { loadPack, type Manifest, type Pack } from './pack.ts';
import { PromptBuilder, type ChatMessage } from './prompt.ts';
import { tensor, type Tokens2D } from './tensor.ts';
import type { AnswerEvent, EngineOptions, GenerateOptions, KvCacheReport, VisualInput } from './types.ts';
import type { FromWorker, ToWorker, WorkerChannel, WorkerResult, WorkerStats } from './worker-protocol.ts';

export type { AnswerEvent, AnswerTimings, EngineOptions, GenerateOptions, VisualInput } from './types.ts';
export type { WorkerStats } from './worker-protocol.ts';
export type { ModelConversation, ModelEngine } from './model-engine.ts';

/** How the engine worker process is started: a Node child process by default; Electron installs its utility process. */
export type WorkerSpawner = (entry: { file: string; execArgv: string[] }) => WorkerChannel;

let spawner: WorkerSpawner = nodeChild;

/** Electron's main process calls this once (child_process.fork needs the RunAsNode fuse, a utility process not). */
export function setWorkerSpawner(spawn: WorkerSpawner): void {
  spawner = spawn;
}

/** The worker's entry: the TypeScript source through tsx when running from source, else the bundled file. */
function workerEntry(): { file: string; execArgv: string[] } {
  const here = import.meta.url;
  if (!here.endsWith('.ts'))
    return { file: fileURLToPath(new URL('./engine-worker.js', here)), execArgv: [] };
  const tsx = pathToFileURL(createRequire(here).resolve('tsx')).href;
  return { file: fileURLToPath(new URL('./engine-worker.ts', here)), execArgv: ['--import', tsx] };
}

/**
 * The worker runs a few nice levels below the app, as a browser's renderer yields to its UI: on a busy machine
 * the web server, IPC and Stop are scheduled before the model's threads.
 */
export function lowerPriority(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    os.setPriority(pid, Math.min(19, os.getPriority() + WORKER_NICENESS));
  } catch {
    // not permitted here: same priority as the app
  }
}

const WORKER_NICENESS = 4;

function nodeChild({ file, execArgv }: { file: string; execArgv: string[] }): WorkerChannel {
  const child = fork(file, [], {
    execArgv,
    serialization: 'advanced', // structured clone: typed arrays cross as they are
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  lowerPriority(child.pid);
  return {
    pid: child.pid,
    send: (message) => {
      if (child.connected) child.send(message);
    },
    onMessage: (listener) => child.on('message', (m) => listener(m as FromWorker)),
    onExit: (listener) => {
      child.on('error', (e) => listener(e.message));
      child.on('exit', (code, signal) => listener(signal ? `killed by ${signal}` : `exit code ${code}`));
    },
    kill: () => child.kill('SIGKILL'),
  };
}

let liveWorkers = 0;

/** Worker processes alive now, across engines (tests check that none leak). */
export function liveWorkerCount(): number {
  return liveWorkers;
}

interface Pending {
  resolve: (value: WorkerResult) => void;
  reject: (error: LoupeError) => void;
  /** An ask's stream: events, prompt logits and progress go here. */
  onMessage?: (message: FromWorker) => void;
}

/** One worker process and what is waiting on it. */
class WorkerLink {
  readonly channel = spawner(workerEntry());
  private readonly exited: Promise<void>;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  dead: LoupeError | null = null;
  /** Conversations open in this worker: where their turns go after each ask. */
  readonly conversations = new Map<number, (messages: ChatMessage[], cachedTokens: number) => void>();

  constructor() {
    liveWorkers++;
    this.channel.onMessage((message) => {
      if (message.type === 'history')
        return this.conversations.get(message.conversation)?.(message.messages, message.cachedTokens);
      const p = this.pending.get(message.id);
      if (!p) return;
      if (message.type === 'result') {
        this.pending.delete(message.id);
        p.resolve(message.value);
      } else if (message.type === 'error') {
        this.pending.delete(message.id);
        p.reject(LoupeError.fromJSON(message.error));
      } else p.onMessage?.(message);
    });
    const die = (why: string, details: Record<string, unknown>) => {
      if (this.dead) return;
      this.dead = new LoupeError(
        'MODEL_RUNTIME',
        `The model's worker stopped (${why}). The next question starts it again.`,
        { worker: 'exited', ...details },
      );
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
    };
    let exit: () => void;
    this.exited = new Promise<void>((resolve) => (exit = resolve));
    let gone = false;
    this.channel.onExit((why) => {
      die(why, { why });
      if (!gone) liveWorkers--;
      gone = true;
      exit();
    });
  }

  post(message: ToWorker): void {
    if (this.dead) throw this.dead;
    this.channel.send(message);
  }

  /** End the process (at once) and wait until it has gone. */
  async kill(): Promise<void> {
    this.channel.kill();
    await this.exited;
  }

  /** Send a request and wait for its result; `onMessage` receives an ask's stream. */
  request(
    make: (id: number) => ToWorker,
    onMessage?: Pending['onMessage'],
  ): { id: number; done: Promise<WorkerResult> } {
    const id = this.nextId++;
    const done = new Promise<WorkerResult>((resolve, reject) => {
      if (this.dead) return reject(this.dead);
      this.pending.set(id, { resolve, reject, onMessage });
      this.channel.send(make(id));
    });
    return { id, done };
  }

  /** Stop request `id` when `signal` fires; returns the unsubscribe. */
  stopOn(id: number, signal: AbortSignal | undefined): () => void {
    const onAbort = () => !this.dead && this.channel.send({ type: 'stop', id });
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    return () => signal?.removeEventListener('abort', onAbort);
  }
}

export class Engine implements ModelEngine {
  private link: WorkerLink | null = null;
  private starting: Promise<WorkerLink> | null = null;
  private disposed = false;
  private nextConversation = 1;
  /** Workers started so far (1 after load; more after crashes). */
  workersStarted = 0;

  private constructor(
    readonly pack: Pack,
    readonly prompt: PromptBuilder,
    private readonly options: EngineOptions,
    public provider: ProviderReport,
    /** Where conversations keep their KV cache in the worker (native memory, or JavaScript as a fallback). */
    public kvCache: KvCacheReport,
    first: WorkerLink,
  ) {
    this.link = first;
    this.workersStarted = 1;
  }

  /** Load a pack: hashes and tokenizer here, the graphs in a fresh worker. A failed load leaves no worker. */
  static async load(dir: string, options: EngineOptions = {}): Promise<Engine> {
    const pack = await loadPack(dir);
    const [prompt, started] = await Promise.allSettled([
      PromptBuilder.load(pack),
      Engine.startWorker(pack.dir, options),
    ]);
    if (prompt.status === 'rejected') {
      if (started.status === 'fulfilled') await started.value.link.kill();
      throw prompt.reason;
    }
    if (started.status === 'rejected') throw started.reason;
    const { provider, kvCache, link } = started.value;
    return new Engine(pack, prompt.value, options, provider, kvCache, link);
  }

  private static async startWorker(
    dir: string,
    options: EngineOptions,
  ): Promise<{ link: WorkerLink; provider: ProviderReport; kvCache: KvCacheReport }> {
    const link = new WorkerLink();
    try {
      const result = await link.request((id) => ({ type: 'load', id, dir, options })).done;
      if (result.kind !== 'loaded')
        throw new LoupeError('INTERNAL', `worker answered ${result.kind} to load`);
      return { link, provider: result.provider, kvCache: result.kvCache };
    } catch (error) {
      await link.kill();
      throw error;
    }
  }

  get manifest(): Manifest {
    return this.pack.manifest;
  }

  /** The live worker, started again if the last one died. */
  private async worker(): Promise<WorkerLink> {
    if (this.disposed)
      throw new LoupeError('MODEL_RUNTIME', 'This model was closed (another model was selected).');
    if (this.link && !this.link.dead) return this.link;
    this.starting ??= Engine.startWorker(this.pack.dir, this.options).then(
      ({ link, provider, kvCache }) => {
        this.link = link;
        this.provider = provider;
        this.kvCache = kvCache;
        this.workersStarted++;
        this.starting = null;
        return link;
      },
      (error: unknown) => {
        this.starting = null;
        throw error;
      },
    );
    return this.starting;
  }

  /** What the running worker holds (open conversations, live KV caches, RSS); null when none is running. */
  async workerStats(): Promise<WorkerStats | null> {
    const link = this.link;
    if (!link || link.dead) return null;
    const result = await link.request((id) => ({ type: 'stats', id })).done;
    if (result.kind !== 'stats') throw new LoupeError('INTERNAL', `worker answered ${result.kind} to stats`);
    return result.stats;
  }

  /** Whether a worker is running now (false after a crash, until the next call starts one). */
  get workerRunning(): boolean {
    return Boolean(this.link && !this.link.dead);
  }

  /**
   * Kill the worker process (SIGKILL), as a crash would: what runs fails with a typed error, the next call
   * starts a fresh worker. For a worker stuck in native code (and for tests of the recovery).
   */
  async killWorker(): Promise<void> {
    await this.link?.kill();
  }

  /** Frames that fit the context beside a question and an answer of `maxNewTokens`. */
  maxFrames(maxNewTokens = this.manifest.defaults.maxNewTokens, textBudget = 96): number {
    const { contextLength } = this.manifest.decoder;
    return Math.floor((contextLength - maxNewTokens - textBudget) / this.manifest.vision.tokensPerFrame);
  }

  /** (N, 3, S, S) normalized pixels -> N frames of (tokensPerImage, hidden), encoded in the worker. */
  async encodeImages(pixels: readonly Float32Array[], signal?: AbortSignal): Promise<Tokens2D[]> {
    if (signal?.aborted) throw cancelled();
    const link = await this.worker();
    const { id, done } = link.request((id) => ({ type: 'encode', id, pixels: [...pixels] }));
    const unsubscribe = link.stopOn(id, signal);
    try {
      const result = await done;
      if (result.kind !== 'encoded')
        throw new LoupeError('INTERNAL', `worker answered ${result.kind} to encode`);
      return result.frames.map((f) => tensor(f.data, f.dims as [number, number]));
    } finally {
      unsubscribe();
    }
  }

  /**
   * The logits after `question`'s first-turn prompt about each visual input: what a fresh conversation's
   * `onPromptLogits` gives, computed in batched decoder runs in the worker, opening no conversation and keeping
   * no cache (moment search scores its instants this way). Stop (`signal`) lands between runs.
   */
  async promptLogits(
    visuals: readonly VisualInput[],
    question: string,
    signal?: AbortSignal,
  ): Promise<Float32Array[]> {
    if (signal?.aborted) throw cancelled();
    if (!visuals.length) return [];
    const link = await this.worker();
    const { id, done } = link.request((id) => ({
      type: 'promptLogits',
      id,
      visuals: [...visuals],
      question,
    }));
    const unsubscribe = link.stopOn(id, signal);
    try {
      const result = await done;
      if (result.kind !== 'logits')
        throw new LoupeError('INTERNAL', `worker answered ${result.kind} to promptLogits`);
      return result.logits;
    } finally {
      unsubscribe();
    }
  }

  /** A conversation about `visual`; `history` (earlier turns) is prefilled with its first question. */
  startConversation(visual: VisualInput, history: readonly ChatMessage[] = []): Conversation {
    const conversation = new Conversation(this, this.nextConversation++, visual);
    conversation.messages = history.map((m) => ({ ...m }));
    return conversation;
  }

  /** @internal Conversation's way to the worker. */
  async link_(): Promise<WorkerLink> {
    return this.worker();
  }

  /** Release the sessions and end the worker. Idempotent; later calls fail with a typed error. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const link = this.link ?? (await this.starting?.catch(() => null));
    this.link = null;
    if (!link) return;
    if (!link.dead) {
      await link.request((id) => ({ type: 'dispose', id })).done.catch(() => undefined);
    }
    await link.kill();
  }
}

let leaked = 0;

/** Conversations garbage-collected without close() since the process started (a leak detector; tests read it). */
export function leakedConversationCount(): number {
  return leaked;
}

/**
 * A leak detector, not the way caches are freed: whoever opens a conversation closes it (`close()`, or
 * `await using`). One that is garbage-collected open is reported, and its worker cache freed then.
 */
const closeWhenCollected = new FinalizationRegistry<{ link: WorkerLink; conversation: number }>(
  ({ link, conversation }) => {
    leaked++;
    process.emitWarning(
      `A model conversation was garbage-collected without close(): its KV cache was held until then.`,
      { code: 'LOUPE_CONVERSATION_LEAK' },
    );
    link.conversations.delete(conversation);
    if (!link.dead) link.post({ type: 'close', conversation });
  },
);

/**
 * One conversation about one visual input; its KV cache lives in the worker. Its turns are mirrored here, so
 * a conversation whose worker died is opened again in the next one and its cache rebuilt from them.
 */
export class Conversation implements ModelConversation {
  messages: ChatMessage[] = [];
  private openIn: WorkerLink | null = null;
  private busy = false;
  private cached = 0;
  /** close() was called during an ask: the cache goes when that ask ends. */
  private closing = false;

  constructor(
    private readonly engine: Engine,
    private readonly id: number,
    private readonly visual: VisualInput,
  ) {}

  /** Tokens in the worker's cache after the last answer (0 before the first). */
  get cachedTokens(): number {
    return this.cached;
  }

  private async open(): Promise<WorkerLink> {
    const link = await this.engine.link_();
    if (this.openIn !== link) {
      link.post({ type: 'open', conversation: this.id, visual: this.visual, history: this.messages });
      link.conversations.set(this.id, (messages, cachedTokens) => {
        this.messages = messages;
        this.cached = cachedTokens;
      });
      closeWhenCollected.register(this, { link, conversation: this.id }, this);
      this.openIn = link;
    }
    return link;
  }

  /**
   * Free the cache in the worker (a later ask rebuilds it from the turns). During an ask, when that ask ends;
   * idempotent.
   */
  close(): void {
    if (this.busy) {
      this.closing = true;
      return;
    }
    const link = this.openIn;
    if (!link) return;
    this.openIn = null;
    closeWhenCollected.unregister(this);
    link.conversations.delete(this.id);
    if (!link.dead) link.post({ type: 'close', conversation: this.id });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /**
   * Ask a question; yields answer tokens as they decode, then a `done` event. A consumer that leaves early
   * (break, return, a throw) without aborting stops the worker's turn here, so the conversation stays usable.
   */
  async *ask(question: string, options: GenerateOptions = {}): AsyncGenerator<AnswerEvent> {
    if (this.busy)
      throw new LoupeError('USAGE', 'This conversation is still answering; wait or stop it first.');
    this.busy = true;
    let unsubscribe = () => {};
    /** The running request, until it has ended (answered, failed or stopped). */
    let running: { link: WorkerLink; id: number; done: Promise<WorkerResult> } | null = null;
    try {
      if (options.signal?.aborted) throw cancelled();
      const link = await this.open();
      const queue = new PushQueue<FromWorker>();
      let failure: LoupeError | null = null;
      const { id, done } = link.request(
        (id) => ({
          type: 'ask',
          id,
          conversation: this.id,
          question,
          options: {
            maxNewTokens: options.maxNewTokens,
            temperature: options.temperature,
            topP: options.topP,
            seed: options.seed,
            ignoreEos: options.ignoreEos,
            promptLogits: Boolean(options.onPromptLogits),
            prefillProgress: Boolean(options.onPrefillProgress),
          },
        }),
        (message) => queue.push(message),
      );
      unsubscribe = link.stopOn(id, options.signal);
      running = { link, id, done };
      done.catch((error: LoupeError) => void (failure = error)).finally(() => queue.close());
      let taken = 0;
      for (;;) {
        const next = await queue.shift();
        if (options.signal?.aborted) {
          // tokens decoded ahead are dropped; wait for the worker to end the turn, so the next ask finds it free
          await done.catch(() => undefined);
          throw cancelled();
        }
        if (next.done) {
          running = null;
          if (failure) throw failure as LoupeError;
          return;
        }
        const message = next.value;
        if (message.type === 'promptLogits') options.onPromptLogits?.(message.logits);
        else if (message.type === 'progress') options.onPrefillProgress?.(message.done, message.total);
        else if (message.type === 'event') {
          yield message.event;
          if (!link.dead) link.post({ type: 'taken', id, taken: ++taken });
        }
      }
    } finally {
      unsubscribe();
      if (running) {
        // left before the turn ended: stop it, and wait until the worker is done with it (it would otherwise
        // wait for its reader forever, and every later ask would find the conversation busy)
        const { link, id, done } = running;
        if (!link.dead) link.channel.send({ type: 'stop', id });
        await done.catch(() => undefined);
      }
      this.busy = false;
      if (this.closing) {
        this.closing = false;
        this.close();
      }
    }
  }
}
