/** Which requests the Electron window may make: the app's own protocols and loopback, nothing else. */

const OWN_PROTOCOLS = new Set(['loupe:', 'loupe-media:', 'devtools:', 'data:', 'blob:']);
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

export function isAllowedRequest(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (OWN_PROTOCOLS.has(parsed.protocol)) return true;
  if (parsed.protocol === 'http:' || parsed.protocol === 'https:' || parsed.protocol === 'ws:')
    return LOOPBACK.has(parsed.hostname);
  return false;
}
