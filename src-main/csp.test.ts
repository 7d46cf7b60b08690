import { describe, expect, it } from 'vitest';
import { contentSecurityPolicy, CONTENT_SECURITY_POLICY } from './csp.ts';

const directives = (policy: string) =>
  new Map(policy.split('; ').map((d) => [d.split(' ')[0]!, d.split(' ').slice(1)] as const));

describe('Content-Security-Policy', () => {
  it('adds an extra media source to img-src and media-src only', () => {
    const electron = directives(contentSecurityPolicy(['loupe-media:']));
    const web = directives(CONTENT_SECURITY_POLICY);
    expect(electron.get('media-src')).toEqual(["'self'", 'loupe-media:']);
    expect(electron.get('img-src')).toEqual(["'self'", 'data:', 'loupe-media:']);
    for (const [name, sources] of electron)
      if (name !== 'media-src' && name !== 'img-src') expect(sources, name).toEqual(web.get(name));
    expect(electron.get('script-src')).toEqual(["'self'"]);
    expect(electron.get('connect-src')).toEqual(["'self'"]);
    expect(web.get('default-src')).toEqual(["'none'"]);
  });
});
