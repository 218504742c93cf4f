// Reductions (shaders/reduce.wgsl): sum, mean and max along one axis or over everything, and
// sumTo, which undoes broadcasting in backward rules.
import { record } from '../autograd.js';
import { Tensor, shapeStr, type Shape } from '../tensor.js';
import { assertF32, broadcastShapes, broadcastStrides, gridFor, normAxis, pack8, run, sameShape, stridesOf } from './common.js';
import { div, eq, fill, mul } from './elementwise.js';
import { reshape } from './view.js';

const SHADER = 'reduce';
/** Invocations per workgroup in the `rows` kernel; also the partial-sum buffer length. */
const ROW_WG = 64;
/** Below this many outputs the one-workgroup-per-output kernel wins; above, one invocation each. */
const THREAD_PER_OUTPUT_MIN = 4096;
/**
 * Few outputs with long rows (e.g. a full reduction of 70k elements) would leave all but a few
 * workgroups idle: R is then split into chunks of at least SPLIT_CHUNK_MIN elements, one
 * workgroup each, aiming at SPLIT_TARGET_WGS workgroups, and a second pass sums the chunks.
 * Chunking depends only on the shape, so results stay bit-identical run to run.
 */
const SPLIT_CHUNK_MIN = 4096;
const SPLIT_TARGET_WGS = 256;
/** Workgroups per grid dimension the `rows` kernel folds its grid into. */
const MAX_GRID_DIM = 65535;

function header(outer: number, r: number, inner: number, rank = 0, count = 0, nOut = 0): number[] {
  return [outer, r, inner, rank, count, nOut, 0, 0];
}

/** x viewed as [outer, R, inner] reduced over R → [outer, inner]. */
function reduceRows(x: Tensor, outer: number, r: number, inner: number, op: 'sum' | 'max', outShape: Shape): Tensor {
  assertF32(x, op);
  const OP = op === 'sum' ? 0 : 1;
  const n = outer * inner;
  if (n === 0) return Tensor.empty(outShape);
  if (r === 0) {
    if (op === 'max') throw new Error(`max: cannot reduce an empty axis (${n} outputs of 0 elements)`);
    return fill(outShape, 0);
  }
  if (n >= THREAD_PER_OUTPUT_MIN || r < ROW_WG) {
    const out = Tensor.empty(outShape);
    run({ shader: SHADER, entry: 'rows_thread', constants: { OP }, label: `${op}_rows`, buffers: { 1: x.buffer, 2: out.buffer }, params: header(outer, r, inner), workgroups: [gridFor(n)] });
    return out;
  }
  const chunks = Math.min(Math.floor(r / SPLIT_CHUNK_MIN), Math.ceil(SPLIT_TARGET_WGS / n));
  if (chunks <= 1) return rowsWorkgroup(x, outer, r, inner, r, 1, OP, outShape, op);
  // Pass 1: partial [outer, chunks, inner]; pass 2 reduces the chunks (few, so one more pass).
  const chunk = Math.ceil(r / chunks);
  const nChunks = Math.ceil(r / chunk);
  const partial = rowsWorkgroup(x, outer, r, inner, chunk, nChunks, OP, [outer, nChunks, inner], op);
  const out = reduceRows(partial, outer, nChunks, inner, op, outShape);
  partial.dispose();
  return out;
}

/** One workgroup per (output, chunk of R): writes [outer, nChunks, inner]. */
function rowsWorkgroup(x: Tensor, outer: number, r: number, inner: number, chunk: number, nChunks: number, OP: number, outShape: Shape, op: string): Tensor {
  const out = Tensor.empty(outShape);
  const groups = outer * inner * nChunks;
  // Fold the grid into x·y so it stays under the per-dimension limit.
  const gx = Math.min(groups, MAX_GRID_DIM);
  run({
    shader: SHADER, entry: 'rows', constants: { OP, WG: ROW_WG }, label: `${op}_rows_wg`, buffers: { 1: x.buffer, 2: out.buffer },
    params: header(outer, r, inner, 0, chunk, nChunks), workgroups: [gx, Math.ceil(groups / gx)],
  });
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
  // A rank-0 factor, so the product keeps the sum's shape (a [1] factor would turn [] into [1]).
  return mul(sum(x, axis, keepDims), fill([], 1 / n));
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
  // The common cases (bias gradients: [B, T, C] → [C]; row or column sums) reduce one run of
  // adjacent dims: x is then [outer, R, inner] and the tuned row kernels apply. Size-1 dims of x
  // play no part. Anything else takes the general (slower) sum_to kernel.
  let [outer, r, inner, phase] = [1, 1, 1, 0]; // phase 0: before the reduced run, 1: in it, 2: after
  for (let i = 0; i < rank && phase >= 0; i++) {
    const d = x.shape[i];
    if (d === 1) continue;
    if (outDims[i] === 1) {
      if (phase === 2) phase = -1;
      else [phase, r] = [1, r * d];
    } else if (phase === 0) outer *= d;
    else [phase, inner] = [2, inner * d];
  }
  if (phase >= 0 && x.size > 0) return r === 1 ? x.view(shape) : reduceRows(x, outer, r, inner, 'sum', shape);
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

/** Broadcasts x to `shape` (materialised by one gather kernel), with sumTo as its backward. */
export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  if (sameShape(x.shape, shape)) return reshape(x, shape); // an alias that keeps the tape
  assertF32(x, 'broadcastTo');
  if (!sameShape(broadcastShapes(x.shape, shape, 'broadcastTo'), shape))
    throw new Error(`broadcastTo: ${shapeStr(x.shape)} does not broadcast to ${shapeStr(shape)}`);
  const out = Tensor.empty(shape);
  run({
    shader: SHADER, entry: 'expand', label: 'expand', buffers: { 1: x.buffer, 2: out.buffer },
    params: [...header(0, 0, 0, shape.length, 0, out.size), ...pack8(shape), ...pack8(broadcastStrides(x.shape, shape)), ...pack8([])],
    workgroups: [gridFor(out.size)],
  });
  // d broadcast / dx: every copy of x_i contributes, so the gradient sums back over broadcast dims.
  return record(out, 'broadcastTo', [x], (g) => [sumTo(g, x.shape)]);
}
