/**
 * ONNX Runtime's C API, called through koffi (FFI) on the very library onnxruntime-node loads: one library, one
 * environment (ORT's environment is a process singleton, so `CreateEnv` here returns the binding's). It exists
 * for what onnxruntime-node cannot do: keep tensors in native memory between runs. The decoder's KV cache lives
 * here for a whole conversation (kv-native.ts); JavaScript only sees each step's last logits row.
 *
 * Only the handful of OrtApi entries Loupe needs are bound, by their index in the OrtApi struct (the struct is
 * append-only across ORT versions, so an index is stable). Everything is synchronous, like onnxruntime-node's
 * `run()`: it runs in the engine worker, never on the app's main thread.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { LoupeError, cancelled } from '../errors.ts';

/** koffi's loaded module (typed loosely: the FFI surface is declared by the prototypes below). */
type Koffi = typeof import('koffi');
type Ptr = unknown;

/** ONNX element types used here (ONNXTensorElementDataType). */
export const DTYPE = { float32: 1, int8: 3, int64: 7 } as const;
export type DType = keyof typeof DTYPE;
/** Bytes per element of each type in DTYPE. */
const ELEMENT_BYTES: Record<DType, number> = { float32: 4, int8: 1, int64: 8 };
/** ONNXTensorElementDataType -> a name, for error messages and shape checks (as onnxruntime-node names them). */
const DTYPE_NAMES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  16: 'bfloat16',
};

/** A graph input's or output's declared type: element type and dims (-1 where the graph leaves a dim free). */
export interface ValueInfo {
  readonly dtype: string;
  readonly dims: readonly number[];
}

/** OrtApi indices (onnxruntime_c_api.h, counting from CreateStatus = 0). */
const FN = {
  GetErrorCode: [1, 'int GetErrorCode(void *status)'],
  GetErrorMessage: [2, 'const char *GetErrorMessage(void *status)'],
  CreateEnv: [3, 'void *CreateEnv(int level, const char *id, _Out_ void **out)'],
  CreateSession: [7, 'void *CreateSession(void *env, PATH path, void *options, _Out_ void **out)'],
  Run: [
    9,
    'void *Run(void *session, void *runOptions, const char **inputNames, void **inputs, size_t inputCount, const char **outputNames, size_t outputCount, _Inout_ void **outputs)',
  ],
  CreateSessionOptions: [10, 'void *CreateSessionOptions(_Out_ void **out)'],
  SetSessionGraphOptimizationLevel: [23, 'void *SetSessionGraphOptimizationLevel(void *options, int level)'],
  SetIntraOpNumThreads: [24, 'void *SetIntraOpNumThreads(void *options, int threads)'],
  SetInterOpNumThreads: [25, 'void *SetInterOpNumThreads(void *options, int threads)'],
  SessionGetInputCount: [30, 'void *SessionGetInputCount(void *session, _Out_ size_t *out)'],
  SessionGetOutputCount: [31, 'void *SessionGetOutputCount(void *session, _Out_ size_t *out)'],
  SessionGetInputTypeInfo: [
    33,
    'void *SessionGetInputTypeInfo(void *session, size_t index, _Out_ void **out)',
  ],
  SessionGetOutputTypeInfo: [
    34,
    'void *SessionGetOutputTypeInfo(void *session, size_t index, _Out_ void **out)',
  ],
  SessionGetInputName: [
    36,
    'void *SessionGetInputName(void *session, size_t index, void *allocator, _Out_ void **out)',
  ],
  SessionGetOutputName: [
    37,
    'void *SessionGetOutputName(void *session, size_t index, void *allocator, _Out_ void **out)',
  ],
  CreateRunOptions: [39, 'void *CreateRunOptions(_Out_ void **out)'],
  RunOptionsSetTerminate: [46, 'void *RunOptionsSetTerminate(void *options)'],
  CreateTensorAsOrtValue: [
    48,
    'void *CreateTensorAsOrtValue(void *allocator, const int64_t *shape, size_t rank, int type, _Out_ void **out)',
  ],
  GetTensorMutableData: [51, 'void *GetTensorMutableData(void *value, _Out_ void **out)'],
  CastTypeInfoToTensorInfo: [55, 'void *CastTypeInfoToTensorInfo(void *typeInfo, _Out_ void **out)'],
  GetTensorElementType: [60, 'void *GetTensorElementType(void *info, _Out_ int *out)'],
  GetDimensionsCount: [61, 'void *GetDimensionsCount(void *info, _Out_ size_t *out)'],
  GetDimensions: [62, 'void *GetDimensions(void *info, _Out_ int64_t *dims, size_t count)'],
  GetTensorTypeAndShape: [65, 'void *GetTensorTypeAndShape(void *value, _Out_ void **out)'],
  AllocatorFree: [76, 'void *AllocatorFree(void *allocator, void *p)'],
  GetAllocatorWithDefaultOptions: [78, 'void *GetAllocatorWithDefaultOptions(_Out_ void **out)'],
  ReleaseStatus: [93, 'void ReleaseStatus(void *status)'],
  ReleaseSession: [95, 'void ReleaseSession(void *session)'],
  ReleaseValue: [96, 'void ReleaseValue(void *value)'],
  ReleaseRunOptions: [97, 'void ReleaseRunOptions(void *options)'],
  ReleaseTypeInfo: [98, 'void ReleaseTypeInfo(void *typeInfo)'],
  ReleaseTensorTypeAndShapeInfo: [99, 'void ReleaseTensorTypeAndShapeInfo(void *info)'],
  ReleaseSessionOptions: [100, 'void ReleaseSessionOptions(void *options)'],
  AddSessionConfigEntry: [
    130,
    'void *AddSessionConfigEntry(void *options, const char *key, const char *value)',
  ],
} as const;
type FnName = keyof typeof FN;
type Fns = Record<FnName, (...args: unknown[]) => unknown>;

/** A tensor in ORT's native memory. `release()` frees it; using it afterwards is a bug. */
export interface NativeTensor {
  readonly handle: Ptr;
  /** Its element type and dims as ORT made it: set by `tensor()`, or read from ORT (`output()`) for its outputs. */
  readonly dtype: string;
  readonly dims: readonly number[];
}

export class OrtNative {
  private constructor(
    private readonly koffi: Koffi,
    private readonly fn: Fns,
    private readonly env: Ptr,
    private readonly allocator: Ptr,
    readonly version: string,
  ) {}

  private static loaded: OrtNative | Error | undefined;

  /**
   * The C API of onnxruntime-node's own library, or why it cannot be had (koffi missing for this platform, no
   * library found, an API version this code does not know). Loaded once per process.
   */
  static get(): OrtNative {
    if (OrtNative.loaded === undefined) {
      try {
        OrtNative.loaded = OrtNative.load();
      } catch (error) {
        OrtNative.loaded = error instanceof Error ? error : new Error(String(error));
      }
    }
    if (OrtNative.loaded instanceof Error) throw OrtNative.loaded;
    return OrtNative.loaded;
  }

  /** Whether the native path can be used here, and if not, why (for logs and the fallback message). */
  static availability(): { ok: true } | { ok: false; why: string } {
    try {
      OrtNative.get();
      return { ok: true };
    } catch (error) {
      return { ok: false, why: (error as Error).message };
    }
  }

  private static load(): OrtNative {
    const require = createRequire(import.meta.url);
    let koffi: Koffi;
    try {
      koffi = require('koffi') as Koffi;
    } catch (error) {
      throw new Error(`koffi (FFI) is not installed for this platform: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const file = ortLibrary();
    const lib = koffi.load(file);
    const base = lib.func('void *OrtGetApiBase()')() as Ptr;
    const slot = (table: Ptr, index: number) => koffi.decode(table, index * 8, 'void *') as Ptr;
    const getVersion = koffi.decode(
      slot(base, 1),
      koffi.proto('const char *GetVersionString()'),
    ) as () => string;
    const version = getVersion();
    const minor = Number(version.split('.')[1]);
    const getApi = koffi.decode(slot(base, 0), koffi.proto('void *GetApi(uint32_t version)')) as (
      v: number,
    ) => Ptr;
    // The OrtApi version equals the minor version (1.30 -> 30); the indices above exist since API 14.
    const api = Number.isInteger(minor) && minor >= 14 ? getApi(minor) : null;
    if (!api) throw new Error(`onnxruntime ${version} gives no C API this build of Loupe knows`);
    const pathType = process.platform === 'win32' ? 'const char16_t *' : 'const char *';
    const fn = {} as Fns;
    for (const [name, [index, signature]] of Object.entries(FN) as [FnName, (typeof FN)[FnName]][])
      fn[name] = koffi.decode(slot(api, index), koffi.proto(signature.replace('PATH', pathType))) as (
        ...args: unknown[]
      ) => unknown;
    const check = statusChecker(fn);
    const env = [null];
    check(fn.CreateEnv(3 /* ORT_LOGGING_LEVEL_ERROR */, 'loupe', env), 'CreateEnv');
    const allocator = [null];
    check(fn.GetAllocatorWithDefaultOptions(allocator), 'GetAllocatorWithDefaultOptions');
    return new OrtNative(koffi, fn, env[0], allocator[0], version);
  }

  /** Throws ORT's failure of `call` (its error code and message) as a typed error; `details` are added to it. */
  private check(status: unknown, call: FnName, details: Record<string, unknown> = {}): void {
    statusChecker(this.fn)(status, call, details);
  }

  /** A session on `file`, CPU provider, `threads` intra-op threads (spinning: the hot decode loop). */
  createSession(file: string, { threads, spinning }: { threads: number; spinning: boolean }): NativeSession {
    const options = [null];
    this.check(this.fn.CreateSessionOptions(options), 'CreateSessionOptions');
    const session: Ptr[] = [null];
    try {
      this.check(this.fn.SetIntraOpNumThreads(options[0], threads), 'SetIntraOpNumThreads');
      this.check(this.fn.SetInterOpNumThreads(options[0], 1), 'SetInterOpNumThreads');
      this.check(
        this.fn.SetSessionGraphOptimizationLevel(options[0], 99 /* ORT_ENABLE_ALL */),
        'SetSessionGraphOptimizationLevel',
      );
      this.check(
        this.fn.AddSessionConfigEntry(options[0], 'session.intra_op.allow_spinning', spinning ? '1' : '0'),
        'AddSessionConfigEntry',
      );
      this.check(this.fn.CreateSession(this.env, file, options[0], session), 'CreateSession', { file });
      const inputs = this.values(session[0], 'input');
      const outputs = this.values(session[0], 'output');
      return new NativeSession(this, session[0], inputs, outputs);
    } catch (error) {
      // a session whose names or types could not be read is released, not leaked
      if (session[0]) this.fn.ReleaseSession(session[0]);
      throw error;
    } finally {
      this.fn.ReleaseSessionOptions(options[0]);
    }
  }

  /** A session's inputs or outputs: names, element types and declared dims, in the graph's order. */
  private values(session: Ptr, kind: 'input' | 'output'): [string, ValueInfo][] {
    const input = kind === 'input';
    const count = [0];
    this.check(
      input ? this.fn.SessionGetInputCount(session, count) : this.fn.SessionGetOutputCount(session, count),
      input ? 'SessionGetInputCount' : 'SessionGetOutputCount',
    );
    const out: [string, ValueInfo][] = [];
    for (let i = 0; i < Number(count[0]); i++) {
      const name = [null];
      this.check(
        input
          ? this.fn.SessionGetInputName(session, i, this.allocator, name)
          : this.fn.SessionGetOutputName(session, i, this.allocator, name),
        input ? 'SessionGetInputName' : 'SessionGetOutputName',
      );
      let text: string;
      try {
        text = this.koffi.decode(name[0], 'char', -1) as string;
      } finally {
        this.check(this.fn.AllocatorFree(this.allocator, name[0]), 'AllocatorFree');
      }
      out.push([text, this.typeInfo(session, i, input)]);
    }
    return out;
  }

  private typeInfo(session: Ptr, index: number, input: boolean): ValueInfo {
    const typeInfo = [null];
    this.check(
      input
        ? this.fn.SessionGetInputTypeInfo(session, index, typeInfo)
        : this.fn.SessionGetOutputTypeInfo(session, index, typeInfo),
      input ? 'SessionGetInputTypeInfo' : 'SessionGetOutputTypeInfo',
    );
    try {
      const tensorInfo = [null];
      this.check(this.fn.CastTypeInfoToTensorInfo(typeInfo[0], tensorInfo), 'CastTypeInfoToTensorInfo');
      if (!tensorInfo[0]) return { dtype: 'non-tensor', dims: [] };
      return this.describe(tensorInfo[0]); // owned by the type info
    } finally {
      this.fn.ReleaseTypeInfo(typeInfo[0]);
    }
  }

  /** Element type and dims of an OrtTensorTypeAndShapeInfo. */
  private describe(info: Ptr): ValueInfo {
    const type = [0];
    this.check(this.fn.GetTensorElementType(info, type), 'GetTensorElementType');
    const count = [0];
    this.check(this.fn.GetDimensionsCount(info, count), 'GetDimensionsCount');
    const dims = new BigInt64Array(Number(count[0]));
    this.check(this.fn.GetDimensions(info, dims, dims.length), 'GetDimensions');
    return { dtype: DTYPE_NAMES[Number(type[0])] ?? `type ${type[0]}`, dims: Array.from(dims, Number) };
  }

  /** A new native tensor of `dims`, filled from `data` when given (else left uninitialized). */
  tensor(type: DType, dims: readonly number[], data?: Float32Array | BigInt64Array): NativeTensor {
    if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new LoupeError(
        'INTERNAL',
        `a native tensor's dims must be whole numbers ≥ 0: [${dims.join(', ')}]`,
      );
    const elements = dims.reduce((a, b) => a * b, 1);
    if (data && data.length !== elements)
      throw new LoupeError(
        'INTERNAL',
        `${data.length} values do not fill a [${dims.join(', ')}] tensor (${elements} elements)`,
      );
    const out = [null];
    const shape = BigInt64Array.from(dims, (d) => BigInt(d));
    this.check(
      this.fn.CreateTensorAsOrtValue(this.allocator, shape, dims.length, DTYPE[type], out),
      'CreateTensorAsOrtValue',
      {
        dtype: type,
        dims,
      },
    );
    const tensor: NativeTensor = { handle: out[0], dtype: type, dims: [...dims] };
    try {
      if (data?.length) this.write(tensor, type, data);
    } catch (error) {
      this.release(tensor.handle);
      throw error;
    }
    return tensor;
  }

  /** Element type and dims of a native tensor, as ORT reports them (never as the caller believes them). */
  info(handle: Ptr): ValueInfo {
    const info = [null];
    this.check(this.fn.GetTensorTypeAndShape(handle, info), 'GetTensorTypeAndShape');
    try {
      return this.describe(info[0]);
    } finally {
      this.fn.ReleaseTensorTypeAndShapeInfo(info[0]);
    }
  }

  /** An output ORT allocated, with the element type and dims ORT reports for it (never what a caller believes). */
  output(handle: Ptr): NativeTensor {
    return { handle, ...this.info(handle) };
  }

  /**
   * Checks that elements [offset, offset + count) of a `type` tensor exist before native memory is touched.
   * The dims are ORT's own: from `tensor()`, which made the tensor at them, or from `output()`.
   */
  private checkRange(tensor: NativeTensor, type: DType, offset: number, count: number, what: string): void {
    const { dtype, dims } = tensor;
    const elements = dims.reduce((a, b) => a * b, 1);
    if (dtype !== type)
      throw new LoupeError('MODEL_RUNTIME', `${what}: the tensor holds ${dtype}, not ${type}.`, { dims });
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(count) ||
      offset < 0 ||
      count < 0 ||
      offset + count > elements
    )
      throw new LoupeError(
        'MODEL_RUNTIME',
        `${what}: elements ${offset}..${offset + count} lie outside a [${dims.join(', ')}] tensor (${elements} elements).`,
        { dims, offset, count },
      );
  }

  /** Copy `data` into a tensor's native buffer from element `offset`; the range is checked against its dims. */
  write(tensor: NativeTensor, type: DType, data: Float32Array | BigInt64Array, offset = 0): void {
    if ((type === 'float32') !== data instanceof Float32Array)
      throw new LoupeError('INTERNAL', `writing ${data.constructor.name} into a ${type} tensor`);
    this.checkRange(tensor, type, offset, data.length, 'write');
    const ptr = this.dataPointer(tensor.handle);
    const size = type === 'float32' ? 4 : 8;
    this.koffi.encode(ptr, offset * size, type === 'float32' ? 'float' : 'int64_t', data, data.length);
  }

  /**
   * Copies `count` elements from one native tensor to another of the same element type, natively: both ranges
   * are checked against the tensors' dims first, then the bytes move between views of ORT's own buffers
   * (`koffi.view`), never through a JavaScript array.
   */
  copy(from: NativeTensor, fromOffset: number, to: NativeTensor, toOffset: number, count: number): void {
    const type = from.dtype as DType;
    if (!(type in ELEMENT_BYTES))
      throw new LoupeError('INTERNAL', `copying ${from.dtype} tensors is not supported`);
    this.checkRange(from, type, fromOffset, count, 'copy from');
    this.checkRange(to, type, toOffset, count, 'copy to');
    if (count === 0) return;
    const size = ELEMENT_BYTES[type];
    const bytes = (t: NativeTensor) => t.dims.reduce((a, b) => a * b, 1) * size;
    const source = new Uint8Array(this.koffi.view(this.dataPointer(from.handle), bytes(from)));
    const target = new Uint8Array(this.koffi.view(this.dataPointer(to.handle), bytes(to)));
    target.set(source.subarray(fromOffset * size, (fromOffset + count) * size), toOffset * size);
  }

  /** A copy of `count` floats of a tensor's native buffer, from element `offset` (checked against its dims). */
  readFloats(tensor: NativeTensor, offset: number, count: number): Float32Array {
    this.checkRange(tensor, 'float32', offset, count, 'read');
    const ptr = this.dataPointer(tensor.handle);
    return this.koffi.decode(ptr, offset * 4, 'float', count) as Float32Array;
  }

  private dataPointer(handle: Ptr): Ptr {
    const out = [null];
    this.check(this.fn.GetTensorMutableData(handle, out), 'GetTensorMutableData');
    return out[0];
  }

  /**
   * Run a session. `outputs[i]` is a preallocated tensor ORT writes into (the same handle as an input shares
   * that buffer between past and present), or null for ORT to allocate one; returns the output handles. A
   * failure names the feeds: their names, element types and shapes.
   */
  run(
    session: Ptr,
    inputNames: readonly string[],
    inputs: readonly Ptr[],
    outputNames: readonly string[],
    outputs: Ptr[],
  ): Ptr[] {
    this.checkRunArgs(inputNames, inputs, outputNames, outputs);
    const out = [...outputs];
    const status = this.fn.Run(...this.runArgs(session, null, inputNames, inputs, outputNames, out));
    if (status) this.check(status, 'Run', { feeds: this.describeFeeds(inputNames, inputs) });
    return out;
  }

  /**
   * `run` on one of koffi's worker threads: this thread stays free while the graph runs (a Stop message gets
   * through), and `signal` ends the run early through ORT's terminate flag on the run's own RunOptions, which
   * ORT checks between nodes; the run then fails as cancelled. Buffers bound as outputs may have been written
   * part-way: the caller rolls back. Nothing else may use the session until the promise settles.
   */
  async runAsync(
    session: Ptr,
    inputNames: readonly string[],
    inputs: readonly Ptr[],
    outputNames: readonly string[],
    outputs: Ptr[],
    signal?: AbortSignal,
  ): Promise<Ptr[]> {
    this.checkRunArgs(inputNames, inputs, outputNames, outputs);
    if (signal?.aborted) throw cancelled();
    const made = [null];
    this.check(this.fn.CreateRunOptions(made), 'CreateRunOptions');
    const runOptions = made[0];
    const terminate = () => {
      const status = this.fn.RunOptionsSetTerminate(runOptions);
      if (status) this.fn.ReleaseStatus(status);
    };
    signal?.addEventListener('abort', terminate, { once: true });
    const out = [...outputs];
    try {
      const run = this.fn.Run as unknown as {
        async(...args: [...unknown[], (error: unknown, status: unknown) => void]): void;
      };
      const status = await new Promise<unknown>((resolve, reject) =>
        run.async(
          ...this.runArgs(session, runOptions, inputNames, inputs, outputNames, out),
          (error, result) => (error ? reject(error as Error) : resolve(result)),
        ),
      );
      if (status && signal?.aborted) {
        this.fn.ReleaseStatus(status);
        throw cancelled();
      }
      if (status) this.check(status, 'Run', { feeds: this.describeFeeds(inputNames, inputs) });
      return out;
    } finally {
      signal?.removeEventListener('abort', terminate);
      this.fn.ReleaseRunOptions(runOptions); // only once the run has ended: ORT reads it until then
    }
  }

  /** OrtApi::Run's arguments; `out` receives the outputs (null entries: ORT allocates them). */
  private runArgs(
    session: Ptr,
    runOptions: Ptr,
    inputNames: readonly string[],
    inputs: readonly Ptr[],
    outputNames: readonly string[],
    out: Ptr[],
  ): unknown[] {
    return [session, runOptions, inputNames, inputs, inputs.length, outputNames, outputNames.length, out];
  }

  private checkRunArgs(
    inputNames: readonly string[],
    inputs: readonly Ptr[],
    outputNames: readonly string[],
    outputs: Ptr[],
  ): void {
    if (inputs.length !== inputNames.length || outputs.length !== outputNames.length)
      throw new LoupeError(
        'INTERNAL',
        `run: ${inputs.length} inputs for ${inputNames.length} names, ${outputs.length} outputs for ${outputNames.length}`,
      );
  }

  /** The feeds of a failed run, for its error: names, element types and shapes as ORT reports them. */
  private describeFeeds(inputNames: readonly string[], inputs: readonly Ptr[]): string[] {
    return inputNames.map((name, i) => {
      try {
        const { dtype, dims } = this.info(inputs[i]);
        return `${name}: ${dtype}[${dims.join(', ')}]`;
      } catch {
        return `${name}: ?`;
      }
    });
  }

  release(handle: Ptr): void {
    if (handle) this.fn.ReleaseValue(handle);
  }

  releaseSession(handle: Ptr): void {
    this.fn.ReleaseSession(handle);
  }
}

/** A session created through the C API; its inputs and outputs are native tensors. */
export class NativeSession {
  private released = false;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Declared element types and dims of the graph's inputs and outputs, by name. */
  readonly inputInfo: ReadonlyMap<string, ValueInfo>;
  readonly outputInfo: ReadonlyMap<string, ValueInfo>;
  constructor(
    readonly ort: OrtNative,
    readonly handle: Ptr,
    inputs: readonly [string, ValueInfo][],
    outputs: readonly [string, ValueInfo][],
  ) {
    this.inputNames = inputs.map(([name]) => name);
    this.outputNames = outputs.map(([name]) => name);
    this.inputInfo = new Map(inputs);
    this.outputInfo = new Map(outputs);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.ort.releaseSession(this.handle);
  }
}

/** OrtErrorCode names (onnxruntime_c_api.h). */
const ORT_ERROR_CODES = [
  'ORT_OK',
  'ORT_FAIL',
  'ORT_INVALID_ARGUMENT',
  'ORT_NO_SUCHFILE',
  'ORT_NO_MODEL',
  'ORT_ENGINE_ERROR',
  'ORT_RUNTIME_EXCEPTION',
  'ORT_INVALID_PROTOBUF',
  'ORT_MODEL_LOADED',
  'ORT_NOT_IMPLEMENTED',
  'ORT_INVALID_GRAPH',
  'ORT_EP_FAIL',
];

function statusChecker(fn: Fns): (status: unknown, call: string, details?: Record<string, unknown>) => void {
  return (status, call, details = {}) => {
    if (!status) return;
    const code = Number(fn.GetErrorCode(status));
    const message = fn.GetErrorMessage(status) as string;
    fn.ReleaseStatus(status);
    const ortCode = ORT_ERROR_CODES[code] ?? `ORT error ${code}`;
    // a file ORT cannot parse as a model is the pack's fault, not the runtime's
    const invalid =
      call === 'CreateSession' &&
      (ortCode === 'ORT_INVALID_PROTOBUF' || ortCode === 'ORT_INVALID_GRAPH' || ortCode === 'ORT_NO_MODEL');
    throw new LoupeError(
      invalid ? 'MODEL_INVALID' : 'MODEL_RUNTIME',
      `onnxruntime ${call} failed (${ortCode}): ${message}`,
      {
        ortCall: call,
        ortCode,
        ...details,
      },
    );
  };
}

/** Where onnxruntime-node keeps its binding and shared libraries for this platform (ort.ts reads it too). */
export function onnxruntimeBindingDir(): string {
  const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
  return path.join(path.dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

/** onnxruntime-node's shared library (the one its binding links), beside the binding for this platform. */
function ortLibrary(): string {
  const override = process.env.LOUPE_ORT_LIBRARY;
  if (override) return override;
  const dir = onnxruntimeBindingDir();
  const pattern =
    process.platform === 'win32'
      ? /^onnxruntime\.dll$/
      : process.platform === 'darwin'
        ? /^libonnxruntime\.\d+(\.\d+)*\.dylib$/
        : /^libonnxruntime\.so\.\d+$/;
  const file = existsSync(dir) ? readdirSync(dir).find((name) => pattern.test(name)) : undefined;
  if (!file) throw new Error(`onnxruntime-node's library is not in ${dir}`);
  return path.join(dir, file);
}
