/**
 * The API over Electron IPC. Main registers three typed channels (see CHANNELS); every payload is checked
 * (envelope here, method input and output in contract.ts) and a bad one is answered with BAD_REQUEST.
 * Written against small ports rather than Electron itself, so tests run it through an in-process stand-in.
 */
import { z } from 'zod';
import { LoupeError } from '../errors.ts';
import { dispatchCall, dispatchStream, type LoupeApi, type StreamMessage } from './contract.ts';
import { CHANNELS, type StreamEnvelope } from './ipc-bridge.ts';

/** The sending renderer, as Electron's IpcMainEvent.sender is to us. */
export interface SenderPort {
  id: number;
  send(channel: string, ...args: unknown[]): void;
  isDestroyed(): boolean;
  once(event: 'destroyed', listener: () => void): unknown;
}

export interface IpcEventLike {
  sender: SenderPort;
  /** Electron: the frame that sent it; checked by `isTrusted`. */
  senderFrame?: { url: string } | null;
}

export interface IpcMainPort {
  handle(channel: string, listener: (event: IpcEventLike, ...args: unknown[]) => Promise<unknown>): void;
  on(channel: string, listener: (event: IpcEventLike, ...args: unknown[]) => void): unknown;
  removeHandler(channel: string): void;
  removeAllListeners(channel: string): unknown;
}

const CallRequestSchema = z.strictObject({ method: z.string().max(100), input: z.unknown() });
const StreamStartSchema = z.strictObject({
  streamId: z.string().min(1).max(100),
  method: z.string().max(100),
  input: z.unknown(),
});
const StreamCancelSchema = z.strictObject({ streamId: z.string().min(1).max(100) });

function refusal(message: string): { ok: false; error: ReturnType<LoupeError['toJSON']> } {
  return { ok: false, error: new LoupeError('BAD_REQUEST', message).toJSON() };
}

/**
 * Serve `api` on `ipc`. `isTrusted` (Electron: the sender frame is the app's own page) guards every message.
 * Returns a function that unregisters the channels and stops running streams.
 */
export function serveIpc(
  api: LoupeApi,
  ipc: IpcMainPort,
  isTrusted: (event: IpcEventLike) => boolean = () => true,
): () => void {
  const running = new Map<string, AbortController>(); // key: `${sender.id}:${streamId}`

  ipc.handle(CHANNELS.call, async (event, payload) => {
    if (!isTrusted(event)) return refusal('This page may not use Loupe’s API.');
    const request = CallRequestSchema.safeParse(payload);
    if (!request.success) return refusal('Malformed call: expected {method, input}.');
    return dispatchCall(api, request.data.method, request.data.input);
  });

  ipc.on(CHANNELS.streamStart, (event, payload) => {
    const reply = (streamId: string, message: StreamMessage) => {
      if (!event.sender.isDestroyed())
        event.sender.send(CHANNELS.streamMessage, { streamId, message } satisfies StreamEnvelope);
    };
    const start = StreamStartSchema.safeParse(payload);
    const streamId = start.success
      ? start.data.streamId
      : String((payload as { streamId?: unknown })?.streamId ?? '');
    if (!isTrusted(event))
      return reply(streamId, { kind: 'error', error: refusal('This page may not use Loupe’s API.').error });
    if (!start.success)
      return reply(streamId, {
        kind: 'error',
        error: refusal('Malformed stream request: expected {streamId, method, input}.').error,
      });
    const key = `${event.sender.id}:${streamId}`;
    // A second stream under a running one's id would orphan the first (it could never be cancelled): refuse it.
    if (running.has(key))
      return reply(streamId, {
        kind: 'error',
        error: refusal(`Stream id "${streamId}" is already in use by a running stream.`).error,
      });
    const controller = new AbortController();
    running.set(key, controller);
    watchSender(event.sender);
    void dispatchStream(api, start.data.method, start.data.input, controller.signal, (m) =>
      reply(streamId, m),
    ).finally(() => running.delete(key));
  });

  /** One `destroyed` listener per window (not one per stream): a closed window stops all its streams. */
  const watched = new Set<number>();
  function watchSender(sender: SenderPort): void {
    if (watched.has(sender.id)) return;
    watched.add(sender.id);
    sender.once('destroyed', () => {
      watched.delete(sender.id);
      for (const [key, controller] of running) if (key.startsWith(`${sender.id}:`)) controller.abort();
    });
  }

  ipc.on(CHANNELS.streamCancel, (event, payload) => {
    const cancel = StreamCancelSchema.safeParse(payload);
    if (cancel.success && isTrusted(event))
      running.get(`${event.sender.id}:${cancel.data.streamId}`)?.abort();
  });

  return () => {
    ipc.removeHandler(CHANNELS.call);
    ipc.removeAllListeners(CHANNELS.streamStart);
    ipc.removeAllListeners(CHANNELS.streamCancel);
    for (const c of running.values()) c.abort();
  };
}
