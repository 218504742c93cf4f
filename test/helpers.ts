// Test helpers: the engine device for a test file, `expectClose` (atol + rtol·|ref| with the worst
// elements printed), and `checkOp`, which compares an op's forward with its float64 reference and
// its backward with central finite differences of that reference under a random upstream gradient.
import { beforeAll, expect } from 'vitest';
import { initNode } from '../engine/node/index.js';
import { Tensor, backward, tensor, tidy, Rng, type Device } from '../engine/index.js';
import { nd, type ND } from '../engine/ref/nd.js';

let dev: Device | null = null;

/** Call at the top of a test file: creates the Dawn device once per worker. */
export function useDevice(): () => Device {
  beforeAll(async () => {
    dev ??= await initNode();
  });
  return () => dev!;
}

export interface Tol {
  atol?: number;
  rtol?: number;
}

/** Asserts |a − e| ≤ atol + rtol·|e| elementwise; on failure prints the first mismatches and the max error. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol & { name?: string } = {}): void {
  const atol = tol.atol ?? 1e-5;
  const rtol = tol.rtol ?? 1e-4;
  const name = tol.name ?? 'value';
  if (actual.length !== expected.length) throw new Error(`${name}: length ${actual.length} != expected ${expected.length}`);
  const bad: string[] = [];
  let maxErr = 0;
  let maxAt = -1;
  let nBad = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const err = Math.abs(a - e);
    const ok = err <= atol + rtol * Math.abs(e) || (Number.isNaN(a) && Number.isNaN(e)) || a === e;
    if (!ok || Number.isNaN(err)) {
      nBad++;
      if (bad.length < 8) bad.push(`  [${i}] got ${a} want ${e} (|diff| ${err.toExponential(3)})`);
    }
    if (err > maxErr || Number.isNaN(err)) {
      maxErr = Number.isNaN(err) ? NaN : err;
      maxAt = i;
    }
  }
  if (nBad > 0) {
    const msg = `${name}: ${nBad}/${actual.length} elements outside atol=${atol} rtol=${rtol}; max |diff| ${maxErr} at [${maxAt}]\n${bad.join('\n')}`;
    console.error(msg);
    expect.fail(msg);
  }
}

/** Deterministic random host data for tests. */
export function randData(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const rng = new Rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.next();
  return a;
}

export interface OpCase {
  name: string;
  /** Shapes of the differentiable f32 inputs. */
  shapes: number[][];
  /** The engine op on GPU tensors. */
  fn: (xs: Tensor[]) => Tensor;
  /** Its float64 reference on the same inputs. */
  ref: (xs: ND[]) => ND;
  /** Input value range (default [-1, 1]); use e.g. [0.5, 2] for log/sqrt. */
  range?: [number, number];
  /** Custom input generator (overrides range), e.g. to avoid ties or kinks. */
  gen?: (i: number, n: number, rng: Rng) => Float32Array;
  seed?: number;
  fwd?: Tol;
  grad?: Tol;
  /** Skip the gradient check (non-differentiable op). */
  noGrad?: boolean;
  /** Inputs that get no gradient check (e.g. an index-like input). */
  constInputs?: number[];
  /** Finite-difference step in float64. */
  eps?: number;
}

/**
 * Forward against the float64 reference, then backward (with a random upstream gradient u)
 * against central differences of L(x) = Σ u · ref(x) in float64.
 */
export async function checkOp(c: OpCase): Promise<void> {
  const seed = c.seed ?? 1;
  const rng = new Rng(seed);
  const [lo, hi] = c.range ?? [-1, 1];
  const datas = c.shapes.map((s, i) => {
    const n = s.reduce((a, b) => a * b, 1);
    if (c.gen) return c.gen(i, n, rng);
    const a = new Float32Array(n);
    for (let k = 0; k < n; k++) a[k] = lo + (hi - lo) * rng.next();
    return a;
  });
  const refIn = datas.map((d, i) => nd(d, c.shapes[i]));
  const want = c.ref(refIn);
  const u = new Float32Array(want.data.length);
  for (let k = 0; k < u.length; k++) u[k] = rng.next() * 2 - 1;

  const inputs = datas.map((d, i) => tensor(d, c.shapes[i], 'f32', { requiresGrad: !c.noGrad && !c.constInputs?.includes(i) }));
  try {
    const [outData, grads] = await (async () => {
      const out = tidy(() => {
        const y = c.fn(inputs);
        if (y.shape.join() !== want.shape.join()) throw new Error(`${c.name}: output shape [${y.shape}] != reference [${want.shape}]`);
        if (!c.noGrad) backward(y, tensor(u, y.shape));
        return y;
      });
      const od = await out.toArray();
      out.dispose();
      const gs = c.noGrad ? [] : await Promise.all(inputs.map((t) => (t.grad ? t.grad.toArray() : Promise.resolve(null))));
      return [od, gs] as const;
    })();
    expectClose(outData, want.data, { ...c.fwd, name: `${c.name} forward` });
    if (c.noGrad) return;
    const eps = c.eps ?? 1e-6;
    const loss = (xs: ND[]) => {
      const y = c.ref(xs).data;
      let s = 0;
      for (let k = 0; k < y.length; k++) s += u[k] * y[k];
      return s;
    };
    for (let i = 0; i < inputs.length; i++) {
      if (c.constInputs?.includes(i)) continue;
      const x = refIn[i];
      const fd = new Float64Array(x.data.length);
      for (let k = 0; k < x.data.length; k++) {
        const v = x.data[k];
        x.data[k] = v + eps;
        const lp = loss(refIn);
        x.data[k] = v - eps;
        const lm = loss(refIn);
        x.data[k] = v;
        fd[k] = (lp - lm) / (2 * eps);
      }
      const g = grads[i];
      if (!g) throw new Error(`${c.name}: input ${i} got no gradient`);
      expectClose(g, fd, { atol: 1e-4, rtol: 1e-3, ...c.grad, name: `${c.name} d/dinput${i}` });
    }
  } finally {
    for (const t of inputs) {
      t.grad?.dispose();
      t.dispose();
    }
  }
}
