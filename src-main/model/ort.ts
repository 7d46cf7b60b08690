/**
 * The only module that imports onnxruntime-node. Sessions are declared in one table, created with the
 * best execution provider this machine has (CUDA, DirectML, CoreML, else CPU), and a failed run is
 * reported with the names, dtypes and shapes it was given.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { LoupeError } from '../errors.ts';
import { onnxruntimeBindingDir } from './ort-native.ts';

export type ProviderName = 'cpu' | 'cuda' | 'dml' | 'coreml' | 'webgpu';
export type ProviderRequest = ProviderName | 'auto';

export interface ProviderReport {
  requested: ProviderRequest;
  used: ProviderName;
  /** Providers tried before the one used, with why each failed. */
  fallbacks: { provider: ProviderName; error: string }[];
}

/** The order in which `auto` tries providers on a platform (pure, for tests). */
export function providerCandidates(requested: ProviderRequest, platform: NodeJS.Platform): ProviderName[] {
  if (requested !== 'auto') return requested === 'cpu' ? ['cpu'] : [requested, 'cpu'];
  if (platform === 'win32') return ['cuda', 'dml', 'cpu'];
  if (platform === 'darwin') return ['coreml', 'cpu'];
  return ['cuda', 'cpu'];
}

/**
 * Providers this onnxruntime-node can use: bundled ones, plus those whose provider library the user
 * installed beside the binding (CUDA on Linux is a separate download, see docs/install.md).
 */
export function supportedProviders(): string[] {
  const bindingDir = onnxruntimeBindingDir();
  const libName = (name: string) =>
    process.platform === 'win32'
      ? `onnxruntime_providers_${name}.dll`
      : `libonnxruntime_providers_${name}.so`;
  return ort
    .listSupportedBackends()
    .filter((b) => b.bundled || existsSync(path.join(bindingDir, libName(b.name))))
    .map((b) => b.name);
}

export type OrtTensor = ort.Tensor;
export type Feeds = Record<string, ort.Tensor>;

export const floatTensor = (data: Float32Array, dims: readonly number[]): ort.Tensor =>
  new ort.Tensor('float32', data, dims);
/** A KV-cache tensor of the cache's own element type (float32, or int8 for a quantized cache). */
export const cacheTensor = (data: Float32Array | Int8Array, dims: readonly number[]): ort.Tensor =>
  data instanceof Int8Array ? new ort.Tensor('int8', data, dims) : new ort.Tensor('float32', data, dims);
export const int64Tensor = (data: BigInt64Array, dims: readonly number[]): ort.Tensor =>
  new ort.Tensor('int64', data, dims);

/** A graph input's or output's declared type: element type and dims (-1 where the graph leaves a dim free). */
export interface ValueInfo {
  readonly dtype: string;
  readonly dims: readonly number[];
}

function valueInfo(metadata: readonly ort.InferenceSession.ValueMetadata[]): ReadonlyMap<string, ValueInfo> {
  return new Map(
    metadata.map((m) => [
      m.name,
      m.isTensor
        ? { dtype: m.type, dims: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) }
        : { dtype: 'non-tensor', dims: [] },
    ]),
  );
}

export class Session {
  private constructor(
    readonly name: string,
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(
    name: string,
    file: string,
    provider: ProviderName,
    { threads, spinning }: GraphThreads,
  ): Promise<Session> {
    const session = await ort.InferenceSession.create(file, {
      executionProviders: [provider],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      // Idle pool threads spin for a while after each run: only the graph that runs back to back may, or
      // the other graphs' spinning threads steal the cores it needs.
      extra: { session: { intra_op: { allow_spinning: spinning ? '1' : '0' } } },
    });
    return new Session(name, session);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Declared element types and dims of the graph's inputs (-1 where a dim is left free). */
  get inputInfo(): ReadonlyMap<string, ValueInfo> {
    return valueInfo(this.session.inputMetadata);
  }
  get outputInfo(): ReadonlyMap<string, ValueInfo> {
    return valueInfo(this.session.outputMetadata);
  }

  /**
   * Run the graph. `into` names outputs with preallocated tensors of the exact shape the graph will produce:
   * onnxruntime-node writes those in place instead of copying a fresh native buffer into JavaScript.
   */
  async run(
    feeds: Feeds,
    into: Record<string, ort.Tensor> = {},
    /** Only these outputs (the graph computes only what they need); default all. */
    only?: readonly string[],
  ): Promise<Record<string, ort.Tensor>> {
    try {
      if (only) return await this.session.run(feeds, [...only]);
      if (Object.keys(into).length === 0) return await this.session.run(feeds);
      const fetches: Record<string, ort.Tensor | null> = {};
      for (const name of this.session.outputNames) fetches[name] = into[name] ?? null;
      return { ...(await this.session.run(feeds, fetches)), ...into };
    } catch (e) {
      const given = Object.entries(feeds).map(([k, t]) => `${k}:${t.type}[${t.dims.join(',')}]`);
      throw new LoupeError('MODEL_RUNTIME', `${this.name} failed: ${(e as Error).message}`, {
        graph: this.name,
        inputs: given,
        expected: this.session.inputNames,
      });
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export function defaultThreads(): number {
  // Physical cores are what matters for matmuls; availableParallelism counts hyperthreads.
  return Math.max(1, Math.min(8, os.availableParallelism()));
}

/** Threads of one graph's session; `spinning` keeps idle threads hot between runs (for the hot loop only). */
export interface GraphThreads {
  threads: number;
  spinning: boolean;
}

/**
 * Create one session per graph with the first provider that works; CPU is the last resort.
 * `threading` sets a graph's threads (default: `threads`, not spinning).
 */
export async function createSessions<K extends string>(
  files: Record<K, string>,
  requested: ProviderRequest,
  threads = defaultThreads(),
  threading: Partial<Record<K, GraphThreads>> = {},
): Promise<{ sessions: Record<K, Session>; provider: ProviderReport }> {
  const fallbacks: ProviderReport['fallbacks'] = [];
  const available = new Set(supportedProviders());
  for (const provider of providerCandidates(requested, process.platform)) {
    if (provider !== 'cpu' && !available.has(provider)) {
      fallbacks.push({ provider, error: 'not available in this onnxruntime-node build' });
      continue;
    }
    const created: Session[] = [];
    try {
      const sessions = {} as Record<K, Session>;
      for (const [name, file] of Object.entries(files) as [K, string][]) {
        const s = await Session.create(name, file, provider, threading[name] ?? { threads, spinning: false });
        created.push(s);
        sessions[name] = s;
      }
      return { sessions, provider: { requested, used: provider, fallbacks } };
    } catch (e) {
      await Promise.all(created.map((s) => s.release()));
      if (provider === 'cpu') {
        throw new LoupeError(
          'MODEL_INVALID',
          `Could not load the model's ONNX graphs: ${(e as Error).message}`,
          {
            fallbacks,
          },
        );
      }
      fallbacks.push({ provider, error: (e as Error).message.split('\n')[0] ?? String(e) });
    }
  }
  throw new LoupeError('MODEL_RUNTIME', 'No execution provider could load the model.', { fallbacks });
}
