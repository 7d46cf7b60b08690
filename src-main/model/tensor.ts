/** Float32 tensors typed by their shape, so each pipeline stage states what it takes and gives. */

export interface Tensor<Dims extends readonly number[]> {
  readonly data: Float32Array;
  readonly dims: Dims;
}

/** (tokens, hidden) */
export type Tokens2D = Tensor<readonly [tokens: number, hidden: number]>;
/** (frames, tokens, hidden) */
export type Frames3D = Tensor<readonly [frames: number, tokens: number, hidden: number]>;

export function tensor<D extends readonly number[]>(data: Float32Array, dims: D): Tensor<D> {
  const size = dims.reduce((a, b) => a * b, 1);
  if (data.length !== size)
    throw new Error(`tensor data has ${data.length} values, dims ${dims.join('x')} need ${size}`);
  return { data, dims };
}

/** Stack per-frame (tokens, hidden) tensors into (frames, tokens, hidden). */
export function stackFrames(frames: readonly Tokens2D[]): Frames3D {
  const first = frames[0];
  if (!first) throw new Error('stackFrames needs at least one frame');
  const [p, d] = first.dims;
  const out = new Float32Array(frames.length * p * d);
  frames.forEach((f, i) => {
    if (f.dims[0] !== p || f.dims[1] !== d) throw new Error('frames differ in shape');
    out.set(f.data, i * p * d);
  });
  return tensor(out, [frames.length, p, d] as const);
}

/**
 * FreeVA temporal aggregation: max-pool each frame's tokens by 2 along the token axis (an odd last
 * token is dropped, as the reference's max_pool1d does), then concatenate all frames as one prefix.
 * (T, P, D) -> (T * floor(P/2), D)
 */
export function poolAndConcatFrames(frames: Frames3D): Tokens2D {
  const [t, p, d] = frames.dims;
  const half = Math.floor(p / 2);
  const out = new Float32Array(t * half * d);
  const src = frames.data;
  for (let f = 0; f < t; f++) {
    for (let k = 0; k < half; k++) {
      const a = (f * p + 2 * k) * d;
      const b = a + d;
      const o = (f * half + k) * d;
      for (let c = 0; c < d; c++) out[o + c] = Math.max(src[a + c]!, src[b + c]!);
    }
  }
  return tensor(out, [t * half, d] as const);
}

/** Image path: a single still keeps all its tokens. (1, P, D) -> (P, D) */
export function flattenFrames(frames: Frames3D): Tokens2D {
  const [t, p, d] = frames.dims;
  return tensor(frames.data, [t * p, d] as const);
}
