/**
 * The only bridge between the sandboxed renderer and main: `window.loupe`, the contract's call/stream
 * object. Never raw ipcRenderer.
 */
import { contextBridge, ipcRenderer, webUtils } from 'electron';
import type { LoupeBridge } from '../api/contract.ts';
import { ipcBridge } from '../api/ipc-bridge.ts';

const bridge: LoupeBridge = {
  ...ipcBridge(ipcRenderer),
  // A dropped file's path (the sandboxed page only sees a File); '' for one that is not on disk.
  pathForFile: (file) => (file instanceof File ? webUtils.getPathForFile(file) : ''),
};
contextBridge.exposeInMainWorld('loupe', bridge);
