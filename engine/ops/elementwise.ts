// Elementwise ops (shaders/elementwise.wgsl): fill, unary maths, broadcasting binary ops, where,
// each with its derivative written above its backward rule.
import { record } from '../autograd.js';
import { Tensor, type Shape } from '../tensor.js';
import { WG, assertF32, broadcastShapes, broadcastStrides, f32bits, gridFor, pack8, run, sameShape } from './common.js';
import { sumTo } from './reduce.js';

const SHADER = 'elementwise';

/** Contiguous kernels on at most this many vec4s run one small workgroup: fewer idle lanes to launch. */
const SMALL_N4 = 64;

/** Workgroup size (an override constant) and grid for a contiguous kernel over n4 vec4s. */
function contiguous(n4: number): { constants: Record<string, number>; workgroups: [number] } {
  const wg = n4 <= SMALL_N4 ? SMALL_N4 : WG;
  return { constants: { WG: wg }, workgroups: [gridFor(n4, wg)] };
}

export const UNARY = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, relu: 5, silu: 6, gelu: 7, sigmoid: 8, tanh: 9, pow: 10, abs: 11, square: 12, softplus: 13,
} as const;
export type UnaryOp = keyof typeof UNARY;

export const BINARY = { add: 0, sub: 1, mul: 2, div: 3, maximum: 4, minimum: 5, eq: 6, gt: 7 } as const;
export type BinaryOp = keyof typeof BINARY;
type DiffBinaryOp = Exclude<BinaryOp, 'eq' | 'gt'>;

function params(n: number, scalar = 0, rank = 0, shape: Shape = [], sa: Shape = [], sb: Shape = [], sc: Shape = []) {
  // Contiguous kernels read only n and scalar: skip packing the (unused) dims on the hot path.
  if (rank === 0) return [n, 0, f32bits(scalar), 0];
  return [n, rank, f32bits(scalar), 0, ...pack8(shape), ...pack8(sa), ...pack8(sb), ...pack8(sc)];
}

/** A new tensor of `shape` filled with `value` (no autograd). */
export function fill(shape: Shape, value: number): Tensor {
  const out = Tensor.empty(shape);
  const n4 = Math.ceil(out.size / 4);
  run({ shader: SHADER, entry: 'fill', buffers: { 14: out.buffer }, params: params(out.size, value), ...contiguous(n4), label: 'fill' });
  return out;
}

function withOp(c: ReturnType<typeof contiguous>, OP: number) {
  return { ...c, constants: { OP, ...c.constants } };
}

function unaryKernel(op: UnaryOp, x: Tensor, scalar = 0): Tensor {
  assertF32(x, op);
  const out = Tensor.empty(x.shape);
  const n4 = Math.ceil(x.size / 4);
  run({
    shader: SHADER, entry: 'unary_fwd', label: op, ...withOp(contiguous(n4), UNARY[op]),
    buffers: { 11: x.buffer, 14: out.buffer }, params: params(x.size, scalar),
  });
  return out;
}

/** dx = dout · f'(x), with f' from the shader's table (it may use the saved output y). */
function unaryGrad(op: UnaryOp, x: Tensor, y: Tensor, dout: Tensor, scalar = 0): Tensor {
  const dx = Tensor.empty(x.shape);
  const n4 = Math.ceil(x.size / 4);
  run({
    shader: SHADER, entry: 'unary_bwd', label: `${op}_bwd`, ...withOp(contiguous(n4), UNARY[op]),
    buffers: { 11: x.buffer, 12: y.buffer, 13: dout.buffer, 14: dx.buffer }, params: params(x.size, scalar),
  });
  return dx;
}

/** y = f(x) for a unary op; `scalar` is the exponent for pow. */
export function unary(op: UnaryOp, x: Tensor, scalar = 0): Tensor {
  const y = unaryKernel(op, x, scalar);
  return record(y, op, [x], (dy) => [unaryGrad(op, x, y, dy, scalar)]);
}

export const neg = (x: Tensor) => unary('neg', x);
export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const rsqrt = (x: Tensor) => unary('rsqrt', x);
export const relu = (x: Tensor) => unary('relu', x);
export const silu = (x: Tensor) => unary('silu', x);
/** GELU, tanh approximation (GPT-2's `gelu_new`, PyTorch's approximate='tanh'). */
export const gelu = (x: Tensor) => unary('gelu', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const abs = (x: Tensor) => unary('abs', x);
export const square = (x: Tensor) => unary('square', x);
/** log(1 + eˣ), stable at any magnitude; d/dx = σ(x). */
export const softplus = (x: Tensor) => unary('softplus', x);
/** x^e for a scalar exponent (negative x allowed for integer e). */
export const pow = (x: Tensor, e: number) => unary('pow', x, e);

function binaryKernel(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  assertF32(a, op);
  assertF32(b, op);
  const shape = broadcastShapes(a.shape, b.shape, op);
  const out = Tensor.empty(shape);
  if (sameShape(a.shape, b.shape)) {
    const n4 = Math.ceil(out.size / 4);
    run({
      shader: SHADER, entry: 'binary_same', label: op, ...withOp(contiguous(n4), BINARY[op]),
      buffers: { 11: a.buffer, 12: b.buffer, 14: out.buffer }, params: params(out.size),
    });
  } else {
    run({
      shader: SHADER, entry: 'binary_bcast', constants: { OP: BINARY[op] }, label: `${op}_bcast`,
      buffers: { 1: a.buffer, 2: b.buffer, 4: out.buffer },
      params: params(out.size, 0, shape.length, shape, broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)),
      workgroups: [gridFor(out.size)],
    });
  }
  return out;
}

/** Elementwise binary op with NumPy broadcasting. */
export function binary(op: DiffBinaryOp, a: Tensor, b: Tensor): Tensor {
  const out = binaryKernel(op, a, b);
  return record(out, op, [a, b], (g) => {
    // Each rule gives dL/da and dL/db at the output shape; sumTo folds broadcast dims back.
    switch (op) {
      case 'add': // d(a+b) = da + db
        return [sumTo(g, a.shape), sumTo(g, b.shape)];
      case 'sub': // d(a-b) = da - db
        return [sumTo(g, a.shape), b.requiresGrad ? sumTo(unaryKernel('neg', g), b.shape) : null];
      case 'mul': // d(ab) = b da + a db
        return [a.requiresGrad ? sumTo(binaryKernel('mul', g, b), a.shape) : null, b.requiresGrad ? sumTo(binaryKernel('mul', g, a), b.shape) : null];
      case 'div': // d(a/b) = da / b - a db / b²
        return [
          a.requiresGrad ? sumTo(binaryKernel('div', g, b), a.shape) : null,
          b.requiresGrad ? sumTo(binaryKernel('div', binaryKernel('mul', g, unaryKernel('neg', out)), b), b.shape) : null,
        ];
      case 'maximum':
      case 'minimum': { // the gradient goes to the selected operand (to b on ties)
        const pickA = binaryKernel('sub', out, b); // nonzero exactly where a was selected over b
        const zero = fill([1], 0);
        const ga = whereKernel(pickA, g, zero, out.shape);
        const gb = whereKernel(pickA, zero, g, out.shape);
        return [sumTo(ga, a.shape), sumTo(gb, b.shape)];
      }
    }
  });
}

export const add = (a: Tensor, b: Tensor) => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor) => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor) => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor) => binary('div', a, b);
export const maximum = (a: Tensor, b: Tensor) => binary('maximum', a, b);
export const minimum = (a: Tensor, b: Tensor) => binary('minimum', a, b);

/** 1 where a == b else 0 (broadcast); no gradient. */
export function eq(a: Tensor, b: Tensor): Tensor {
  return binaryKernel('eq', a, b);
}

/** 1 where a > b else 0 (broadcast); no gradient. */
export function gt(a: Tensor, b: Tensor): Tensor {
  return binaryKernel('gt', a, b);
}

/** a · s for a scalar s (a one-element constant, broadcast). */
export function scale(a: Tensor, s: number): Tensor {
  return mul(a, fill([1], s));
}

/** a + s for a scalar s. */
export function addScalar(a: Tensor, s: number): Tensor {
  return add(a, fill([1], s));
}

function dropoutKernel(x: Tensor, p: number, seed: number, label: string): Tensor {
  const out = Tensor.empty(x.shape);
  run({
    shader: SHADER, entry: 'dropout', label, ...contiguous(Math.ceil(x.size / 4)),
    buffers: { 11: x.buffer, 14: out.buffer }, params: [x.size, 0, f32bits(p), seed], // Params' n, rank, scalar, seed
  });
  return out;
}

/**
 * Inverted dropout: each element is zeroed with probability p, the rest scaled by 1/(1−p). The mask
 * is a function of (seed, element index): element i is dropped iff the (i+1)-th draw of
 * `new Rng(seed)` is below p, so it costs no memory, the backward rebuilds it, and a host
 * generator's state (one draw per call for the seed) is all a checkpoint needs to resume exactly.
 */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  assertF32(x, 'dropout');
  if (!(p >= 0 && p < 1)) throw new Error(`dropout: probability ${p} must be in [0, 1)`);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new Error(`dropout: seed ${seed} must be a u32`);
  const y = dropoutKernel(x, p, seed, 'dropout');
  // y = m ⊙ x / (1−p) is linear in x: dx = m ⊙ dy / (1−p), the same kernel on dy.
  return record(y, 'dropout', [x], (dy) => [dropoutKernel(dy, p, seed, 'dropout_bwd')]);
}

function whereKernel(cond: Tensor, a: Tensor, b: Tensor, shape: Shape): Tensor {
  const out = Tensor.empty(shape);
  run({
    shader: SHADER, entry: 'where_bcast', label: 'where',
    buffers: { 1: a.buffer, 2: b.buffer, 3: cond.buffer, 4: out.buffer },
    params: params(out.size, 0, shape.length, shape, broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape), broadcastStrides(cond.shape, shape)),
    workgroups: [gridFor(out.size)],
  });
  return out;
}

/** cond ≠ 0 ? a : b, all broadcast together; the condition gets no gradient. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  assertF32(cond, 'where');
  const shape = broadcastShapes(broadcastShapes(cond.shape, a.shape, 'where'), b.shape, 'where');
  const out = whereKernel(cond, a, b, shape);
  return record(out, 'where', [cond, a, b], (g) => {
    // d out/da = [cond], d out/db = [!cond]
    const zero = fill([1], 0);
    return [
      null,
      a.requiresGrad ? sumTo(whereKernel(cond, g, zero, shape), a.shape) : null,
      b.requiresGrad ? sumTo(whereKernel(cond, zero, g, shape), b.shape) : null,
    ];
  });
}
