// Tensor creation: from host data, constants, and seeded random numbers (generated on the host
// with a splittable PRNG so runs are reproducible on any device).
import { Tensor, type DType, type Shape } from '../tensor.js';
import { fill } from './elementwise.js';

export interface CreateOptions {
  requiresGrad?: boolean;
}

/** Uploads data; f32 unless dtype 'i32'. */
export function tensor(data: ArrayLike<number>, shape?: Shape, dtype: DType = 'f32', opts: CreateOptions = {}): Tensor {
  const t = Tensor.fromData(data, shape ?? [data.length], dtype);
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

export function zeros(shape: Shape, opts: CreateOptions = {}): Tensor {
  const t = fill(shape, 0);
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

export function ones(shape: Shape, opts: CreateOptions = {}): Tensor {
  const t = fill(shape, 1);
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  const t = fill(shape, value);
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

/** Deterministic PRNG (splitmix32 state, mulberry-style output) with uniform and normal draws. */
export class Rng {
  private s: number;
  private spare: number | null = null;
  constructor(seed = 0) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let z = (this.s = (this.s + 0x9e3779b9) >>> 0);
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  }
  /** Standard normal (Box–Muller, both values used). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const u = 1 - this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Full generator state, for checkpoints that must resume exactly. */
  get state(): [number, number | null] {
    return [this.s, this.spare];
  }
  set state(st: [number, number | null]) {
    [this.s, this.spare] = st;
  }
}

export interface RandomOptions extends CreateOptions {
  seed?: number;
  rng?: Rng;
  std?: number;
  mean?: number;
}

export function randnArray(n: number, opts: RandomOptions = {}): Float32Array {
  const rng = opts.rng ?? new Rng(opts.seed ?? 0);
  const std = opts.std ?? 1;
  const mean = opts.mean ?? 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = mean + std * rng.normal();
  return a;
}

/** Normal(mean, std²) samples, seeded. */
export function randn(shape: Shape, opts: RandomOptions = {}): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(randnArray(n, opts), shape, 'f32', opts);
}

/** Uniform [lo, hi) samples, seeded. */
export function rand(shape: Shape, opts: RandomOptions & { lo?: number; hi?: number } = {}): Tensor {
  const rng = opts.rng ?? new Rng(opts.seed ?? 0);
  const lo = opts.lo ?? 0;
  const hi = opts.hi ?? 1;
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.next();
  return tensor(a, shape, 'f32', opts);
}
