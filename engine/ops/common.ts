// Shape helpers shared by the op modules: strides, broadcasting, grid sizing, parameter packing.
import { device, f32bits, type DispatchSpec } from '../device.js';
import { Tensor, shapeStr, type Shape } from '../tensor.js';

/** Most dims an op's uniform block carries (two vec4<u32>). */
export const MAX_RANK = 8;
/** Invocations per workgroup of the simple 1-D kernels. */
export const WG = 256;
/** Cap on workgroups of grid-stride kernels: enough to fill a large GPU, few enough for lavapipe. */
export const MAX_GRID = 2048;

export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** NumPy broadcasting of two shapes; throws naming both shapes. */
export function broadcastShapes(a: Shape, b: Shape, op = 'op'): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Element strides of `shape` read as broadcast to `out` (0 on broadcast dims). */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const st = stridesOf(shape);
  const off = out.length - shape.length;
  return out.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : st[i - off]));
}

/** Packs up to MAX_RANK values into two vec4<u32> (8 words), zero padded. */
export function pack8(v: readonly number[]): number[] {
  if (v.length > MAX_RANK) throw new Error(`rank ${v.length} exceeds the supported ${MAX_RANK}`);
  return [...v, ...new Array(MAX_RANK - v.length).fill(0)];
}

/** Workgroups for a grid-stride loop over `n` items with WG invocations each. */
export function gridFor(n: number, wg = WG): number {
  return Math.max(1, Math.min(MAX_GRID, Math.ceil(n / wg)));
}

export function normAxis(axis: number, rank: number, op: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${op}: axis ${axis} out of range for rank ${rank}`);
  return a;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function assertF32(t: Tensor, op: string): void {
  if (t.dtype !== 'f32') throw new Error(`${op}: expected an f32 tensor, got ${t.dtype} ${shapeStr(t.shape)}`);
}

export { f32bits };

/** Shorthand for recording a dispatch on the current device. */
export function run(spec: DispatchSpec): void {
  device().dispatch(spec);
}
