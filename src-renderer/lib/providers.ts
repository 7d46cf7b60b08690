/** Plain words for onnxruntime's execution providers: what this build has, and what the model in use runs on. */
import type { ModelInfo } from '../../src-main/api/contract.ts';

const NAMES: Record<string, string> = {
  cpu: 'CPU',
  cuda: 'CUDA (NVIDIA GPU)',
  dml: 'DirectML (GPU)',
  coreml: 'Core ML',
  webgpu: 'WebGPU',
};

/** A provider's name for people: "CUDA (NVIDIA GPU)" for cuda; an unknown one in capitals. */
export const providerName = (id: string): string => NAMES[id.toLowerCase()] ?? id.toUpperCase();

/** "CPU, WebGPU": the providers this build of Loupe can use (the API lists CPU first, always). */
export function buildProviders(ids: readonly string[]): string {
  return (ids.length ? ids : ['cpu']).map(providerName).join(', ');
}

/**
 * What the model in use runs on, and, for each provider tried before it, why not: "CUDA (NVIDIA GPU) is not part
 * of this build" when it was never there, its error when it failed to start.
 */
export function runsOn(provider: ModelInfo['provider']): { used: string; notes: string[] } {
  return {
    used: providerName(provider.used),
    notes: provider.fallbacks.map((f) =>
      /not available/i.test(f.error)
        ? `${providerName(f.provider)} is not part of this build`
        : `${providerName(f.provider)} failed to start: ${f.error}`,
    ),
  };
}
