/**
 * The app page's Content-Security-Policy, one source for both shells: web mode sends it as it is; Electron adds
 * its `loupe-media:` protocol to the two directives that load media (video and image), and nowhere else, so a
 * video URL can never be a script, style or connection target.
 */

const BASE: ReadonlyArray<readonly [string, string]> = [
  ['default-src', "'none'"],
  ['script-src', "'self'"],
  ['style-src', "'self'"],
  ['img-src', "'self' data:"],
  ['media-src', "'self'"],
  ['connect-src', "'self'"],
  ['font-src', "'self'"],
  ['manifest-src', "'self'"],
  ['base-uri', "'none'"],
  ['form-action', "'none'"],
  ['frame-ancestors', "'none'"],
];

/** The directives that may name extra media sources. */
const MEDIA_DIRECTIVES = new Set(['img-src', 'media-src']);

/** The policy; `mediaSources` (e.g. `loupe-media:`) are added to img-src and media-src only. */
export function contentSecurityPolicy(mediaSources: readonly string[] = []): string {
  return BASE.map(([name, value]) =>
    MEDIA_DIRECTIVES.has(name) && mediaSources.length
      ? `${name} ${value} ${mediaSources.join(' ')}`
      : `${name} ${value}`,
  ).join('; ');
}

/** Web mode's policy. */
export const CONTENT_SECURITY_POLICY = contentSecurityPolicy();
