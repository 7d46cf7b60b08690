import { describe, expect, it } from 'vitest';
import config from '../../electron.config.ts';

describe('electron-builder configuration', () => {
  it('flips the security fuses: no Node mode, no NODE_OPTIONS, no inspector, only the checked asar', () => {
    expect(config.electronFuses).toMatchObject({
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      onlyLoadAppFromAsar: true,
      enableEmbeddedAsarIntegrityValidation: true,
    });
  });

  it('unpacks every native binary from the asar (native code cannot load from inside it)', () => {
    const unpack = [config.asarUnpack ?? []].flat();
    for (const pkg of ['onnxruntime-node', 'ffmpeg-static'])
      expect(unpack).toContain(`node_modules/${pkg}/**`);
  });
});
