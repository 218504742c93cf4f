// Float64 twins of engine/ops/elementwise.ts, same names and argument order.
import { zipWith, type ND } from './nd.js';

const GELU_C = Math.sqrt(2 / Math.PI);
const sig = (x: number) => 1 / (1 + Math.exp(-x));

export const unaryFns = {
  neg: (x: number) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x: number) => 1 / Math.sqrt(x),
  relu: (x: number) => Math.max(x, 0),
  silu: (x: number) => x * sig(x),
  gelu: (x: number) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x ** 3))),
  sigmoid: sig,
  tanh: Math.tanh,
  abs: Math.abs,
  square: (x: number) => x * x,
  softplus: (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),
};

export const unary = (op: keyof typeof unaryFns, x: ND) => zipWith([x], unaryFns[op]);
export const pow = (x: ND, e: number) => zipWith([x], (v) => v ** e);
export const add = (a: ND, b: ND) => zipWith([a, b], (x, y) => x + y);
export const sub = (a: ND, b: ND) => zipWith([a, b], (x, y) => x - y);
export const mul = (a: ND, b: ND) => zipWith([a, b], (x, y) => x * y);
export const div = (a: ND, b: ND) => zipWith([a, b], (x, y) => x / y);
export const maximum = (a: ND, b: ND) => zipWith([a, b], Math.max);
export const minimum = (a: ND, b: ND) => zipWith([a, b], Math.min);
export const where = (c: ND, a: ND, b: ND) => zipWith([c, a, b], (cv, x, y) => (cv !== 0 ? x : y));
