/**
 * `loupe serve [--port N]`: web mode. Builds the services, the API service and the HTTP server on
 * 127.0.0.1, then prints the one URL (with its access token) to open in a browser.
 */
import { LoupeService, type ServiceOptions } from '../api/service.ts';
import { startWebServer, type WebServer } from '../api/http.ts';
import { rendererDir } from '../paths.ts';
import { Services, type ServicesOptions } from '../services.ts';

export interface ServeOptions extends ServicesOptions {
  port?: number;
  rendererDir?: string;
  /** Fixed token (tests). */
  token?: string;
  /** Where the URL line goes (default stdout); null prints nothing. */
  log?: ((line: string) => void) | null;
  openClip?: ServiceOptions['openClip'];
  /** Print the OpenAI-compatible base URL and API key (`loupe serve --openai`). */
  openai?: boolean;
  /** Folders whose files OpenAI clients may name as file:// URLs (besides the library's videos). */
  allowedFolders?: readonly string[];
}

export interface RunningWeb {
  web: WebServer;
  service: LoupeService;
  services: Services;
  close(): Promise<void>;
}

export async function serve(options: ServeOptions = {}): Promise<RunningWeb> {
  const services = new Services(options);
  const service = await LoupeService.create(services, {
    mediaUrl: (videoId, proxy) => `/media/${encodeURIComponent(videoId)}${proxy ? '?v=proxy' : ''}`,
    openClip: options.openClip,
    allowedFolders: options.allowedFolders,
  });
  const web = await startWebServer({
    api: service,
    mediaFile: (videoId, proxy) => service.mediaFile(videoId, proxy),
    rendererDir: options.rendererDir ?? rendererDir(),
    port: options.port,
    token: options.token,
  });
  const log = options.log === undefined ? (line: string) => process.stdout.write(line + '\n') : options.log;
  log?.(`Loupe (web mode) is running: open ${web.openUrl}`);
  log?.('Only this machine can reach it; the link carries this run’s access token. Press Ctrl+C to stop.');
  if (options.openai) {
    log?.(`OpenAI-compatible API: base URL ${web.url}v1  API key ${web.token}`);
    log?.(
      options.allowedFolders?.length
        ? `file:// URLs may name library videos and files under: ${options.allowedFolders.join(', ')}`
        : 'file:// URLs may name library videos only (allow a folder with --allow DIR); data: URLs always work.',
    );
  }
  for (const notice of service.store.notices) log?.(`Note: ${notice}`);
  return {
    web,
    service,
    services,
    async close() {
      service.dispose();
      await web.close();
      await services.dispose();
    },
  };
}

/** Run until Ctrl+C (what `loupe serve` calls). */
export async function serveUntilInterrupted(options: ServeOptions = {}): Promise<void> {
  const running = await serve(options);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await running.close();
}

if (process.argv[1]?.endsWith('cli/serve.ts')) {
  const at = process.argv.indexOf('--port');
  const port = at > 0 ? Number(process.argv[at + 1]) : undefined;
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536)) {
    process.stderr.write('loupe serve: --port must be a whole number from 0 to 65535\n');
    process.exitCode = 2;
  } else
    serveUntilInterrupted({ port }).catch((error: unknown) => {
      process.stderr.write(`loupe: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    });
}
