/**
 * The only bridge between the sandboxed renderer and main: `window.loupe`, the contract's call/stream
 * object. Never raw ipcRenderer.
 */
import { contextBridge, ipcRenderer } from 'electron';
import { ipcBridge } from '../api/ipc-bridge.ts';

contextBridge.exposeInMainWorld('loupe', ipcBridge(ipcRenderer));
