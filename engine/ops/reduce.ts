// Reductions (shaders/reduce.wgsl): sum, mean and max along one axis or over everything, and
// sumTo, which undoes broadcasting in backward rules.
import { record } from '../autograd.js';
import { Tensor, shapeStr, type Shape } from '../tensor.js';
import { assertF32, gridFor, normAxis, pack8, run, sameShape, stridesOf } from './common.js';
import { div, eq, fill, mul } from './elementwise.js';
import { reshape } from './view.js';

const SHADER = 'reduce';
/** Invocations per workgroup in the `rows` kernel; also the partial-sum buffer length. */
const ROW_WG = 64;
/** Below this many outputs the one-workgroup-per-output kernel wins; above, one invocation each. */
const THREAD_PER_OUTPUT_MIN = 4096;

function header(outer: number, r: number, inner: number, rank = 0, count = 0, nOut = 0): number[] {
  return [outer, r, inner, rank, count, nOut, 0, 0];
}

/** x viewed as [outer, R, inner] reduced over R → [outer, inner]. */
function reduceRows(x: Tensor, outer: number, r: number, inner: number, op: 'sum' | 'max', outShape: Shape): Tensor {
  assertF32(x, op);
  const out = Tensor.empty(outShape);
  const OP = op === 'sum' ? 0 : 1;
  const n = outer * inner;
  if (n === 0) return out;
  if (n >= THREAD_PER_OUTPUT_MIN || r < ROW_WG) {
    run({ shader: SHADER, entry: 'rows_thread', constants: { OP }, label: `${op}_rows`, buffers: { 1: x.buffer, 2: out.buffer }, params: header(outer, r, inner), workgroups: [gridFor(n)] });
  } else {
    // Fold the output grid into x·y so it stays under the per-dimension limit.
    const gx = Math.min(n, 65535);
    run({ shader: SHADER, entry: 'rows', constants: { OP, WG: ROW_WG }, label: `${op}_rows_wg`, buffers: { 1: x.buffer, 2: out.buffer }, params: header(outer, r, inner), workgroups: [gx, Math.ceil(n / gx)] });
  }
  return out;
}

function split(shape: Shape, axis: number): [number, number, number] {
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return [outer, shape[axis], inner];
}

function reducedShape(shape: Shape, axis: number, keepDims: boolean): number[] {
  return keepDims ? shape.map((d, i) => (i === axis ? 1 : d)) : shape.filter((_, i) => i !== axis);
}

/** Sum along `axis` (or of everything when axis is undefined). */
export function sum(x: Tensor, axis?: number, keepDims = false): Tensor {
  if (axis === undefined) return reshape(sum(reshape(x, [x.size]), 0), keepDims ? x.shape.map(() => 1) : []);
  const ax = normAxis(axis, x.ndim, 'sum');
  const [outer, r, inner] = split(x.shape, ax);
  const out = reduceRows(x, outer, r, inner, 'sum', reducedShape(x.shape, ax, keepDims));
  // d sum / dx_i = 1: broadcast dout back over the reduced axis.
  return record(out, 'sum', [x], (g) => [broadcastTo(g.view(reducedShape(x.shape, ax, true)), x.shape)]);
}

/** Mean along `axis` (or of everything). */
export function mean(x: Tensor, axis?: number, keepDims = false): Tensor {
  const n = axis === undefined ? x.size : x.shape[normAxis(axis, x.ndim, 'mean')];
  return mul(sum(x, axis, keepDims), fill([1], 1 / n));
}

/** Max along `axis` (or of everything); the gradient is shared equally by tied maxima. */
export function max(x: Tensor, axis?: number, keepDims = false): Tensor {
  if (axis === undefined) return reshape(max(reshape(x, [x.size]), 0), keepDims ? x.shape.map(() => 1) : []);
  const ax = normAxis(axis, x.ndim, 'max');
  const [outer, r, inner] = split(x.shape, ax);
  const kept = reducedShape(x.shape, ax, true);
  const out = reduceRows(x, outer, r, inner, 'max', reducedShape(x.shape, ax, keepDims));
  return record(out, 'max', [x], (g) => {
    // d max / dx_i = [x_i == max] / #ties
    const mask = eq(x, out.view(kept));
    const count = reduceRows(mask, outer, r, inner, 'sum', kept);
    return [mul(mask, div(g.view(kept), count))];
  });
}

/** Sums `x` down to `shape` (the inverse of broadcasting `shape` up to x's shape). No autograd. */
export function sumTo(x: Tensor, shape: Shape): Tensor {
  if (sameShape(x.shape, shape)) return x.view(shape);
  const rank = x.ndim;
  const off = rank - shape.length;
  if (off < 0) throw new Error(`sumTo: cannot reduce ${shapeStr(x.shape)} to ${shapeStr(shape)}`);
  const outDims = x.shape.map((d, i) => {
    const t = i < off ? 1 : shape[i - off];
    if (t !== 1 && t !== d) throw new Error(`sumTo: cannot reduce ${shapeStr(x.shape)} to ${shapeStr(shape)}`);
    return t;
  });
  const nOut = outDims.reduce((a, b) => a * b, 1);
  const out = Tensor.empty(shape);
  const count = nOut === 0 ? 0 : x.size / nOut;
  run({
    shader: SHADER, entry: 'sum_to', label: 'sum_to', buffers: { 1: x.buffer, 2: out.buffer },
    params: [...header(0, 0, 0, rank, count, nOut), ...pack8(x.shape), ...pack8(stridesOf(x.shape)), ...pack8(outDims)],
    workgroups: [gridFor(nOut)],
  });
  return out;
}

/** Broadcasts x to `shape` (materialised), with sumTo as its backward. */
export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  if (sameShape(x.shape, shape)) return x.view(shape);
  const out = mul(x, fill(shape, 1));
  if (!sameShape(out.shape, shape)) throw new Error(`broadcastTo: ${shapeStr(x.shape)} does not broadcast to ${shapeStr(shape)}`);
  return out;
}
