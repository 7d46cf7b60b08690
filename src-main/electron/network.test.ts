import { describe, expect, it } from 'vitest';
import { isAllowedRequest } from './network.ts';
import { onScreen } from './window-state.ts';

describe('Electron request filter', () => {
  it('lets the app’s own protocols through', () => {
    for (const url of [
      'loupe://app/index.html',
      'loupe-media://media/abc?v=proxy',
      'data:image/jpeg;base64,AA',
    ])
      expect(isAllowedRequest(url), url).toBe(true);
  });

  it('blocks everything else', () => {
    for (const url of [
      'https://example.com/',
      'http://127.0.0.1:5173/',
      'http://localhost/x',
      'http://[::1]:80/',
      'ws://127.0.0.1:8123/',
      'http://127.0.0.1.evil.example/',
      'file:///etc/passwd',
      'ftp://localhost/',
      'wss://example.com',
      'not a url',
    ])
      expect(isAllowedRequest(url), url).toBe(false);
  });
});

describe('window state', () => {
  const screen = [{ x: 0, y: 0, width: 1920, height: 1080 }];
  it('keeps a window that is on a screen', () => {
    expect(onScreen({ x: 100, y: 100, width: 1200, height: 800, maximized: false }, screen)).toMatchObject({
      x: 100,
      y: 100,
    });
  });
  it('brings back a window saved on a monitor that is gone', () => {
    expect(onScreen({ x: 3000, y: 100, width: 1200, height: 800, maximized: true }, screen)).toEqual({
      width: 1200,
      height: 800,
      maximized: true,
    });
  });
});
