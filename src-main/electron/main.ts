/**
 * The Electron shell: one window on the same API service web mode uses, carried over IPC.
 *
 * Security: contextIsolation + sandbox + no nodeIntegration; the preload exposes only the contract's object;
 * the page comes from the app's own `loupe://app/` protocol with a strict CSP; local videos from
 * `loupe-media://media/<id>` (range requests, the same handler as web mode); every other request is
 * blocked (loopback too: the window talks to main over IPC only); no new windows, no navigation away, no permissions.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { app, BrowserWindow, dialog, ipcMain, nativeTheme, protocol, screen, session, shell } from 'electron';
import { CHANNELS } from '../api/ipc-bridge.ts';
import { serveIpc, type IpcMainPort } from '../api/ipc.ts';
import { LoupeService } from '../api/service.ts';
import { contentSecurityPolicy } from '../csp.ts';
import { LoupeError } from '../errors.ts';
import { errorFields, flushLog, log, LOG_FILE, logFile, openLog } from '../log.ts';
import { setWorkerSpawner } from '../model/engine.ts';
import { killAllProcesses } from '../media/index.ts';
import { rendererDir } from '../paths.ts';
import { fileReply } from '../playback/range.ts';
import { Services } from '../services.ts';
import { utilityWorker } from './engine-host.ts';
import { isAllowedRequest } from './network.ts';
import { loadWindowState, onScreen, saveWindowState } from './window-state.ts';

const APP_ORIGIN = 'loupe://app';
/** Web mode's policy with `loupe-media:` added to media-src and img-src (the video and its thumbnails) only. */
const PAGE_CSP = contentSecurityPolicy(['loupe-media:']);
const here = path.dirname(fileURLToPath(import.meta.url));

protocol.registerSchemesAsPrivileged([
  { scheme: 'loupe', privileges: { standard: true, secure: true, supportFetchAPI: true } },
  {
    scheme: 'loupe-media',
    privileges: { standard: true, secure: true, stream: true, supportFetchAPI: true },
  },
]);

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  let window: BrowserWindow | null = null;
  app.on('second-instance', () => {
    if (!window) return;
    if (window.isMinimized()) window.restore();
    window.focus();
  });

  const dataDir = process.env.LOUPE_DATA_DIR ?? app.getPath('userData');
  app
    .whenReady()
    .then(() => startApp(dataDir, (w) => (window = w)))
    .catch((error: unknown) => {
      // No window, or no service behind it: say why in a dialog (and the log) rather than fail silently.
      log.error('Loupe could not start', error);
      flushLog();
      const err = LoupeError.from(error);
      dialog.showErrorBox(
        'Loupe could not start',
        `${err.message}\n\nThe log is at ${logFile() ?? path.join(dataDir, LOG_FILE)}.`,
      );
      app.exit(1);
    });
}

/** Everything after `ready`: services, protocols, IPC, the window. Throws when any of it fails. */
async function startApp(dataDir: string, setWindow: (w: BrowserWindow | null) => void): Promise<void> {
  openLog(dataDir);
  setWorkerSpawner(utilityWorker); // the model runs in a utility process
  let window: BrowserWindow | null = null;
  const services = new Services({ dataDir });
  const service = await LoupeService.create(services, {
    mediaUrl: (videoId, proxy) =>
      `loupe-media://media/${encodeURIComponent(videoId)}${proxy ? '?v=proxy' : ''}`,
  });

  // 1. Network: nothing leaves the machine.
  session.defaultSession.webRequest.onBeforeRequest((details, callback) =>
    callback({ cancel: !isAllowedRequest(details.url) }),
  );
  session.defaultSession.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));

  // 2. The app's page, with the same CSP as web mode.
  const pages = path.resolve(rendererDir());
  protocol.handle('loupe', async (request) => {
    const url = new URL(request.url);
    const file = path.resolve(
      pages,
      '.' + decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname),
    );
    if (url.host !== 'app' || !file.startsWith(pages + path.sep))
      return new Response('Not found', { status: 404 });
    try {
      const body = await readFile(file);
      const type = file.endsWith('.html')
        ? 'text/html'
        : file.endsWith('.js')
          ? 'text/javascript'
          : file.endsWith('.css')
            ? 'text/css'
            : 'application/octet-stream';
      return new Response(body, {
        headers: {
          'Content-Type': type,
          'Content-Security-Policy': PAGE_CSP,
        },
      });
    } catch {
      return new Response('Not found', { status: 404 });
    }
  });

  // 3. Local videos with range requests (the handler web mode uses).
  protocol.handle('loupe-media', async (request) => {
    const url = new URL(request.url);
    try {
      const file = await service.mediaFile(
        decodeURIComponent(url.pathname.slice(1)),
        url.searchParams.get('v') === 'proxy',
      );
      const reply = await fileReply(file, request.headers.get('range'), request.method === 'HEAD');
      const body = reply.body ? (Readable.toWeb(reply.body) as unknown as ReadableStream<Uint8Array>) : null;
      return new Response(body, { status: reply.status, headers: reply.headers });
    } catch (error) {
      return new Response(LoupeError.from(error).message, { status: 404 });
    }
  });

  // 4. The API over IPC, only for the app's own page.
  const stopIpc = serveIpc(service, ipcMain as unknown as IpcMainPort, (event) =>
    Boolean(event.senderFrame?.url.startsWith(`${APP_ORIGIN}/`)),
  );
  // The system's picker for the Add field (files or a folder); only the app's own page may open it.
  ipcMain.handle(CHANNELS.pickPaths, async (event, kind: unknown) => {
    if (!event.senderFrame?.url.startsWith(`${APP_ORIGIN}/`) || !window) return [];
    const folder = kind === 'folder';
    const picked = await dialog.showOpenDialog(window, {
      title: folder ? 'Add a folder of videos' : 'Add videos',
      properties: folder ? ['openDirectory'] : ['openFile', 'multiSelections'],
    });
    return picked.canceled ? [] : picked.filePaths;
  });

  // 5. The window, where it was last time.
  const saved = onScreen(
    await loadWindowState(dataDir),
    screen.getAllDisplays().map((d) => d.workArea),
  );
  window = new BrowserWindow({
    ...saved,
    minWidth: 900,
    minHeight: 600,
    show: false,
    title: 'Loupe',
    backgroundColor: nativeTheme.shouldUseDarkColors ? '#15171a' : '#f7f7f5',
    webPreferences: {
      preload: path.join(here, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: false,
    },
  });
  if (saved.maximized) window.maximize();
  window.once('ready-to-show', () => window?.show());
  window.webContents.setWindowOpenHandler(({ url }) => {
    if (url.startsWith('https://')) void shell.openExternal(url); // links to docs open in the user's browser
    return { action: 'deny' };
  });
  window.webContents.on('will-navigate', (event, url) => {
    if (!url.startsWith(`${APP_ORIGIN}/`)) event.preventDefault();
  });
  const logWindowState = (error: unknown) => log.warn('window state not saved', errorFields(error));
  let saveTimer: NodeJS.Timeout | undefined;
  const remember = () => {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => {
      if (!window || window.isDestroyed()) return;
      const bounds = window.getNormalBounds();
      void saveWindowState(dataDir, { ...bounds, maximized: window.isMaximized() }).catch(logWindowState);
    }, 500);
  };
  for (const e of ['resize', 'move', 'maximize', 'unmaximize'] as const) window.on(e as 'resize', remember);
  window.on('close', () => {
    if (!window) return;
    const bounds = window.getNormalBounds();
    void saveWindowState(dataDir, { ...bounds, maximized: window.isMaximized() }).catch(logWindowState);
  });
  window.on('closed', () => ((window = null), setWindow(null)));
  setWindow(window);
  app.on('window-all-closed', () => app.quit());
  app.on('will-quit', () => {
    stopIpc();
    ipcMain.removeHandler(CHANNELS.pickPaths);
    service.dispose();
    killAllProcesses('SIGTERM');
    void services.dispose();
    flushLog();
  });
  await window.loadURL(`${APP_ORIGIN}/index.html`);
  log.info('window open', { dataDir });
}
