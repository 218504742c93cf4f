// Softmax and log-softmax over the last axis (shaders/softmax.wgsl): fused, max-shifted forward and
// one-pass-per-row fused backward; plus composite twins built from elementwise + reduce ops.
import { noGrad, record } from '../autograd.js';
import { Tensor, shapeStr } from '../tensor.js';
import { assertF32, f32bits, run } from './common.js';
import { div, exp, log, sub } from './elementwise.js';
import { max, sum } from './reduce.js';

const SHADER = 'softmax';
/** Invocations per workgroup; 64 measured best on lavapipe (2 cores, 8-wide SIMD) for [256 × 8192]. */
export const ROW_WG = 64;
/** Give each thread at least this many 4-element chunks before adding threads to a row. */
const MIN_CHUNKS_PER_THREAD = 4;
const MAX_GRID_DIM = 65535;

/** Threads per row: a power of two ≤ ROW_WG, small for short rows so one workgroup takes several. */
export function threadsPerRow(chunks: number, wg = ROW_WG): number {
  let t = 1;
  while (t < wg && t * 2 * MIN_CHUNKS_PER_THREAD <= chunks) t *= 2;
  return t;
}

/** A grid of `groups` workgroups folded into x·y (the shaders rebuild the linear id). */
export function rowGrid(groups: number): [number, number] {
  const gx = Math.max(1, Math.min(groups, MAX_GRID_DIM));
  return [gx, Math.ceil(groups / gx)];
}

interface RowLayout {
  rows: number;
  v: number;
  nc: number;
  vec4: boolean;
  tpr: number;
  grid: [number, number];
}

function layout(x: Tensor, op: string): RowLayout {
  assertF32(x, op);
  if (x.ndim === 0) throw new Error(`${op}: needs at least one axis, got ${shapeStr(x.shape)}`);
  const v = x.shape[x.ndim - 1];
  const rows = v === 0 ? 0 : x.size / v;
  const nc = Math.ceil(v / 4);
  const tpr = threadsPerRow(nc);
  return { rows, v, nc, vec4: v % 4 === 0, tpr, grid: rowGrid(Math.ceil(rows / (ROW_WG / tpr))) };
}

function params(l: RowLayout): number[] {
  return [l.rows, l.v, 0, f32bits(-Infinity)];
}

function forward(x: Tensor, isLog: boolean): Tensor {
  const op = isLog ? 'logSoftmax' : 'softmax';
  const l = layout(x, op);
  const y = Tensor.empty(x.shape);
  if (l.rows === 0) return y;
  run({
    shader: SHADER, entry: l.vec4 ? 'fwd4' : 'fwd1', label: op,
    constants: { WG: ROW_WG, TPR: l.tpr, VEC4: l.vec4 ? 1 : 0, LOG: isLog ? 1 : 0 },
    buffers: { 11: x.buffer, [l.vec4 ? 13 : 3]: y.buffer }, params: params(l), workgroups: l.grid,
  });
  return y;
}

/** The fused backward from the saved output y and dy (no autograd). */
function backwardKernel(y: Tensor, dy: Tensor, isLog: boolean): Tensor {
  const l = layout(y, isLog ? 'logSoftmax' : 'softmax');
  const dx = Tensor.empty(y.shape);
  if (l.rows === 0) return dx;
  run({
    shader: SHADER, entry: l.vec4 ? 'bwd4' : 'bwd1', label: isLog ? 'logSoftmax_bwd' : 'softmax_bwd',
    constants: { WG: ROW_WG, TPR: l.tpr, VEC4: l.vec4 ? 1 : 0, LOG: isLog ? 1 : 0 },
    buffers: { 11: y.buffer, 12: dy.buffer, [l.vec4 ? 13 : 3]: dx.buffer },
    params: params(l), workgroups: l.grid,
  });
  return dx;
}

/** softmax(x)_i = exp(x_i − max x) / Σ_j exp(x_j − max x) over the last axis. */
export function softmax(x: Tensor): Tensor {
  const y = forward(x, false);
  // dx_i = Σ_j dy_j ∂y_j/∂x_i = Σ_j dy_j y_j (δ_ij − y_i) = y_i (dy_i − Σ_j dy_j y_j)
  return record(y, 'softmax', [x], (dy) => [backwardKernel(y, dy, false)]);
}

/** logSoftmax(x)_i = x_i − max x − log Σ_j exp(x_j − max x) over the last axis. */
export function logSoftmax(x: Tensor): Tensor {
  const y = forward(x, true);
  // dx_i = Σ_j dy_j (δ_ij − softmax_i) = dy_i − exp(y_i) Σ_j dy_j
  return record(y, 'logSoftmax', [x], (dy) => [backwardKernel(y, dy, true)]);
}

/** The same softmax from elementwise and reduce ops (a check on the fused kernels). */
export function softmaxComposite(x: Tensor): Tensor {
  const m = noGrad(() => max(x, -1, true)); // a constant shift: softmax does not depend on it
  const e = exp(sub(x, m));
  return div(e, sum(e, -1, true));
}

/** The same log-softmax from elementwise and reduce ops. */
export function logSoftmaxComposite(x: Tensor): Tensor {
  const m = noGrad(() => max(x, -1, true));
  const z = sub(x, m);
  return sub(z, log(sum(exp(z), -1, true)));
}
