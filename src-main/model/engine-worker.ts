/**
 * The engine worker: the one process that runs ONNX Runtime. It owns the sessions and every conversation's KV
 * cache, and answers the app's typed messages (worker-protocol.ts). A run blocks this process, never the
 * app's main thread: the web server, IPC, streamed tokens and Stop stay responsive during a long prefill. A
 * separate process, not a thread, so that a crash in native code (or a kill) ends only this process: ending a
 * worker *thread* inside a run aborts the whole app (onnxruntime-node throws through N-API, measured).
 *
 * It runs as a Node child process (IPC with structured clone) or as an Electron utility process.
 */
import { LoupeError } from '../errors.ts';
import { liveKvCaches } from './kv-cache.ts';
import { LocalEngine, type LocalConversation } from './local-engine.ts';
import { loadPack } from './pack.ts';
import { ASK_WINDOW, type FromWorker, type ToWorker, type WorkerResult } from './worker-protocol.ts';

/** Electron's utility process gives `process.parentPort`; a Node child has `process.send`. */
interface ParentPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (event: { data: unknown }) => void): void;
}
const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;
if (!parentPort && !process.send) throw new Error('engine-worker.ts runs as a child process (see engine.ts)');
const send = (message: FromWorker) => (parentPort ? parentPort.postMessage(message) : process.send!(message));
const onMessage = (listener: (message: ToWorker) => void) =>
  parentPort
    ? parentPort.on('message', (e) => listener(e.data as ToWorker))
    : process.on('message', (m) => listener(m as ToWorker));
process.on('disconnect', () => process.exit(0)); // the app is gone

let engine: LocalEngine | null = null;
const conversations = new Map<number, LocalConversation>();
/** Per running ask: how many events the app has read, and who waits for it to read more. */
const readers = new Map<number, { taken: number; wake: (() => void) | null }>();
/** Requests running, each with the controller a Stop message aborts. */
const active = new Map<number, AbortController>();
const signal = (id: number): AbortSignal | undefined => active.get(id)?.signal;

/** Between decoder runs the engine yields to this process's event loop, so a Stop message gets through. */
const yieldToMessages = () => new Promise<void>((resolve) => setImmediate(resolve));

function loaded(): LocalEngine {
  if (!engine) throw new LoupeError('MODEL_RUNTIME', 'The model is not loaded in its worker.');
  return engine;
}

async function handle(message: ToWorker): Promise<WorkerResult | undefined> {
  switch (message.type) {
    case 'load': {
      // the app has checked the pack's hashes already
      const pack = await loadPack(message.dir, { hashLimitBytes: 0 });
      engine = await LocalEngine.load(message.dir, message.options, pack, { between: yieldToMessages });
      return { kind: 'loaded', provider: engine.provider, kvCache: engine.kvCache };
    }
    case 'encode': {
      const frames = await loaded().encodeImages(message.pixels, signal(message.id));
      return { kind: 'encoded', frames: frames.map((f) => ({ data: f.data, dims: [f.dims[0], f.dims[1]] })) };
    }
    case 'promptLogits': {
      const logits = await loaded().promptLogits(message.visuals, message.question, signal(message.id));
      return { kind: 'logits', logits };
    }
    case 'open':
      conversations.get(message.conversation)?.close(); // opened again: the old cache goes
      conversations.set(message.conversation, loaded().startConversation(message.visual, message.history));
      return undefined;
    case 'close':
      conversations.get(message.conversation)?.close();
      conversations.delete(message.conversation);
      return undefined;
    case 'stop':
      active.get(message.id)?.abort();
      readers.get(message.id)?.wake?.();
      return undefined;
    case 'taken': {
      const reader = readers.get(message.id);
      if (reader) {
        reader.taken = message.taken;
        reader.wake?.();
      }
      return undefined;
    }
    case 'ask':
      await ask(message);
      return { kind: 'answered' };
    case 'stats':
      return {
        kind: 'stats',
        stats: {
          openConversations: conversations.size,
          liveKvCaches: liveKvCaches(),
          rssBytes: process.memoryUsage.rss(),
        },
      };
    case 'dispose':
      conversations.forEach((c) => c.close());
      conversations.clear();
      await engine?.dispose();
      engine = null;
      return { kind: 'disposed' };
  }
}

async function ask(message: Extract<ToWorker, { type: 'ask' }>): Promise<void> {
  const conversation = conversations.get(message.conversation);
  if (!conversation)
    throw new LoupeError('NOT_FOUND', 'This conversation is not open in the model worker.', {
      conversation: message.conversation,
    });
  const { id, options } = message;
  const reader = { taken: 0, wake: null as (() => void) | null };
  readers.set(id, reader);
  let sent = 0;
  try {
    const stop = signal(id);
    const events = conversation.ask(message.question, {
      ...options,
      signal: stop,
      onPromptLogits: options.promptLogits
        ? (logits) => send({ type: 'promptLogits', id, logits })
        : undefined,
      onPrefillProgress: options.prefillProgress
        ? (done, total) => send({ type: 'progress', id, done, total })
        : undefined,
    });
    for await (const event of events) {
      if (event.type === 'done') sendHistory(message.conversation, conversation);
      send({ type: 'event', id, event });
      sent++;
      while (sent - reader.taken > ASK_WINDOW && !stop?.aborted)
        await new Promise<void>((resolve) => (reader.wake = resolve));
      reader.wake = null;
    }
  } finally {
    readers.delete(id);
    sendHistory(message.conversation, conversation);
  }
}

function sendHistory(id: number, conversation: LocalConversation): void {
  send({
    type: 'history',
    conversation: id,
    messages: conversation.messages,
    cachedTokens: conversation.cachedTokens,
  });
}

onMessage((message) => {
  const id = 'id' in message && message.type !== 'taken' && message.type !== 'stop' ? message.id : null;
  if (id !== null) active.set(id, new AbortController());
  handle(message)
    .then(
      (value) => {
        if (id !== null && value) send({ type: 'result', id, value });
      },
      (error: unknown) => {
        if (id !== null) send({ type: 'error', id, error: LoupeError.from(error).toJSON() });
      },
    )
    .finally(() => {
      if (id !== null) active.delete(id);
    });
});
