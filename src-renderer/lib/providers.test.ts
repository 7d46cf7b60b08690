import { describe, expect, it } from 'vitest';
import { buildProviders, providerName, runsOn } from './providers.ts';

describe('provider wording', () => {
  it('names providers for people', () => {
    expect(providerName('cpu')).toBe('CPU');
    expect(providerName('webgpu')).toBe('WebGPU');
    expect(providerName('tensorrt')).toBe('TENSORRT');
  });

  it('lists what this build can use, CPU at the least', () => {
    expect(buildProviders(['cpu', 'webgpu'])).toBe('CPU, WebGPU');
    expect(buildProviders([])).toBe('CPU');
  });

  it('says what the model runs on, and why the providers tried first were passed over', () => {
    const r = runsOn({
      requested: 'auto',
      used: 'cpu',
      fallbacks: [
        { provider: 'cuda', error: 'not available in this onnxruntime-node build' },
        { provider: 'dml', error: 'device lost' },
      ],
    });
    expect(r.used).toBe('CPU');
    expect(r.notes).toEqual([
      'CUDA (NVIDIA GPU) is not part of this build',
      'DirectML (GPU) failed to start: device lost',
    ]);
    expect(runsOn({ requested: 'cpu', used: 'cpu', fallbacks: [] }).notes).toEqual([]);
  });
});
