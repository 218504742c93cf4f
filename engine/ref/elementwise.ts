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

/** The k-th draw (k ≥ 1) of the engine's Rng(seed), as a u32: murmur3's finaliser on seed + k·0x9e3779b9. */
function draw(seed: number, k: number): number {
  let z = (seed + Math.imul(k, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** Inverted dropout with the engine's mask: element i dropped iff draw i+1 of Rng(seed) is below p (as f32). */
export function dropout(x: ND, p: number, seed: number): ND {
  const pf = Math.fround(p);
  const data = x.data.map((v, i) => (draw(seed, i + 1) / 2 ** 32 < pf ? 0 : v / (1 - pf)));
  return { data, shape: [...x.shape] };
}
