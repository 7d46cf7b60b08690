/**
 * Which requests the Electron window may make: the app's own protocols, nothing else. The page talks to the
 * main process over IPC, so it has no use for HTTP, loopback included (a local web-mode server or any other
 * service on 127.0.0.1 is out of its reach).
 */

const OWN_PROTOCOLS = new Set(['loupe:', 'loupe-media:', 'devtools:', 'data:', 'blob:']);

export function isAllowedRequest(url: string): boolean {
  try {
    return OWN_PROTOCOLS.has(new URL(url).protocol);
  } catch {
    return false;
  }
}
