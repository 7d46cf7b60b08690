/** The API over Electron IPC, through the object the preload exposes (`window.loupe`). */
import type { LoupeBridge } from '../../../src-main/api/contract.ts';
import { ApiError, messagesToIterable, unwrap, type ApiClient } from './client.ts';

export function ipcClient(bridge: LoupeBridge): ApiClient {
  return {
    async call(method, input) {
      try {
        return unwrap(await bridge.call(method, input));
      } catch (error) {
        throw ApiError.from(error);
      }
    },
    stream(method, input, signal) {
      return messagesToIterable((push) => bridge.stream(method, input, push), signal);
    },
  };
}

/** The client for wherever this page runs: IPC inside Electron, HTTP in a browser. */
export function defaultClient(httpFallback: () => ApiClient): ApiClient {
  const bridge = (globalThis as { loupe?: LoupeBridge }).loupe;
  return bridge ? ipcClient(bridge) : httpFallback();
}
