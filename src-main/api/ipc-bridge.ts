/**
 * The renderer's end of the IPC transport, as preload exposes it (`window.loupe`). It imports types only,
 * so the sandboxed preload bundle stays tiny; main validates everything that arrives (ipc.ts).
 */
import type { CallName, Envelope, LoupeBridge, StreamMessage, StreamName } from './contract.ts';

/** The typed channels between renderer and main. */
export const CHANNELS = {
  /** invoke(call, {method, input}) → Envelope */
  call: 'loupe:call',
  /** send(streamStart, {streamId, method, input}); main answers with streamMessage events */
  streamStart: 'loupe:stream:start',
  /** send(streamCancel, {streamId}) */
  streamCancel: 'loupe:stream:cancel',
  /** main → renderer: {streamId, message} */
  streamMessage: 'loupe:stream:message',
  /** invoke(pickPaths, 'files' | 'folder') → string[] (Electron's open dialog; [] when cancelled) */
  pickPaths: 'loupe:pick-paths',
} as const;

export interface CallRequest {
  method: string;
  input: unknown;
}
export interface StreamStart {
  streamId: string;
  method: string;
  input: unknown;
}
export interface StreamEnvelope {
  streamId: string;
  message: StreamMessage;
}

/** What the bridge needs of Electron's ipcRenderer (a stand-in implements it in tests). */
export interface IpcRendererPort {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>;
  send(channel: string, ...args: unknown[]): void;
  on(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
}

export function ipcBridge(ipc: IpcRendererPort): LoupeBridge {
  const listeners = new Map<string, (message: StreamMessage) => void>();
  let next = 0;
  const prefix = Math.random().toString(36).slice(2, 8);
  ipc.on(CHANNELS.streamMessage, (_event, payload) => {
    const { streamId, message } = (payload ?? {}) as Partial<StreamEnvelope>;
    const listener = streamId ? listeners.get(streamId) : undefined;
    if (!listener || !message) return;
    if (message.kind !== 'event') listeners.delete(streamId!);
    listener(message);
  });
  return {
    call: (method: CallName, input: unknown) =>
      ipc.invoke(CHANNELS.call, { method, input } satisfies CallRequest) as Promise<Envelope<unknown>>,
    stream(method: StreamName, input: unknown, onMessage: (message: StreamMessage) => void) {
      const streamId = `${prefix}-${++next}`;
      listeners.set(streamId, onMessage);
      ipc.send(CHANNELS.streamStart, { streamId, method, input } satisfies StreamStart);
      return () => {
        if (listeners.has(streamId)) ipc.send(CHANNELS.streamCancel, { streamId });
      };
    },
    pickPaths: async (kind: 'files' | 'folder') => {
      const paths = await ipc.invoke(CHANNELS.pickPaths, kind);
      return Array.isArray(paths) ? paths.filter((p): p is string => typeof p === 'string') : [];
    },
  };
}
