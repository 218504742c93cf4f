// Fused cross-entropy: value vs float64 reference and gradient vs finite differences (ignored rows,
// all reductions, vec4 and masked rows), stability at |logits| = 1e4, agreement with the composite
// twin in value and gradient, and the forward-only mode that allocates no gradient.
import { describe, expect, it } from 'vitest';
import { Rng, backward, device, noGrad, tensor, tidy, type Tensor } from '../../engine/index.js';
import * as L from '../../engine/ops/losses.js';
import * as R from '../../engine/ref/losses.js';
import { checkOp, expectClose, randData, useDevice } from '../helpers.js';

useDevice();

/** Targets for `rows` rows over V classes, every `ignoreEvery`-th row ignored (-100). */
function targetsFor(rows: number, V: number, seed: number, ignoreEvery = 3): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: rows }, (_, r) => (r % ignoreEvery === 1 ? -100 : rng.int(V)));
}

describe('crossEntropy', () => {
  const cases: [string, number[]][] = [
    ['tiny odd', [5, 7]],
    ['vec4 rows', [4, 8]],
    ['batched [B, T, V]', [2, 3, 12]],
    ['several threads per row', [3, 101]],
    ['one', [1, 1]],
  ];
  for (const reduction of ['mean', 'sum', 'none'] as const)
    for (const [label, shape] of cases)
      it(`${reduction}: ${label} [${shape}]`, async () => {
        const V = shape[shape.length - 1];
        const rows = shape.slice(0, -1);
        const t = targetsFor(rows.reduce((a, b) => a * b, 1), V, V + shape[0]);
        if (label === 'one') t[0] = 0;
        await checkOp({
          name: `ce-${reduction}-${label}`, shapes: [shape], range: [-3, 3],
          fn: ([x]) => L.crossEntropy(x, tensor(t, rows, 'i32'), { reduction }), ref: ([x]) => R.crossEntropy(x, t, { reduction }),
        });
      });
  it('custom ignoreIndex', async () => {
    const t = [0, 2, 0, 1];
    await checkOp({
      name: 'ce-ignore0', shapes: [[4, 3]],
      fn: ([x]) => L.crossEntropy(x, tensor(t, [4], 'i32'), { ignoreIndex: 0 }), ref: ([x]) => R.crossEntropy(x, t, { ignoreIndex: 0 }),
    });
  });
  it('large (one workgroup per row), forward', async () => {
    for (const shape of [[67, 2052], [40, 1001]]) {
      const t = targetsFor(shape[0], shape[1], 5, 7);
      await checkOp({
        name: `ce-large[${shape}]`, shapes: [shape], range: [-5, 5], noGrad: true,
        fn: ([x]) => L.crossEntropy(x, tensor(t, [shape[0]], 'i32'), { reduction: 'none' }), ref: ([x]) => R.crossEntropy(x, t, { reduction: 'none' }),
      });
    }
    // More rows than the reduction's workgroup has threads.
    const t = targetsFor(600, 37, 6, 5);
    await checkOp({
      name: 'ce-large-mean', shapes: [[600, 37]], range: [-5, 5], noGrad: true,
      fn: ([x]) => L.crossEntropy(x, tensor(t, [600], 'i32')), ref: ([x]) => R.crossEntropy(x, t),
    });
  });
  it('stable for logits of magnitude 1e4', async () => {
    const data = [1e4, -1e4, 0, 1e4 - 1, 5, -3, 1e4 - 2, -1e4, -1e4, -1e4, -1e4, -1e4, -1e4, -1e4, -1e4 + 1, -1e4];
    for (const [shape, tt] of [[[4, 4], [3, 1, 2, 0]], [[2, 8], [3, 6]]]) {
      const y = L.crossEntropy(tensor(data, shape), tensor(tt, [shape[0]], 'i32'), { reduction: 'none' });
      const got = await y.toArray();
      expect(Array.from(got).every(Number.isFinite)).toBe(true);
      expectClose(got, R.crossEntropy({ data: Float64Array.from(data), shape }, tt, { reduction: 'none' }).data, { atol: 1e-5, rtol: 1e-5, name: 'ce ±1e4' });
      y.dispose();
    }
  });
  it('all rows ignored: mean is NaN, gradient is zero', async () => {
    const x = tensor(randData(6, 1), [2, 3], 'f32', { requiresGrad: true });
    const loss = tidy(() => {
      const l = L.crossEntropy(x, tensor([-100, -100], [2], 'i32'));
      backward(l);
      return l;
    });
    expect(Number.isNaN(await loss.item())).toBe(true);
    expect(Array.from(await x.grad!.toArray())).toEqual([0, 0, 0, 0, 0, 0]);
    for (const t of [x, x.grad!, loss]) t.dispose();
  });
  it('rejects out-of-range targets and mismatched shapes', () => {
    const x = tensor(randData(6, 1), [2, 3]);
    expect(() => L.crossEntropy(x, tensor([0, 3], [2], 'i32'))).toThrow(/outside \[0, 3\)/);
    expect(() => L.crossEntropy(x, tensor([0, 1, 2], [3], 'i32'))).toThrow(/without its last axis/);
    x.dispose();
  });
});

describe('forward-only mode', () => {
  it('writes no gradient buffer under noGrad or without requiresGrad', () => {
    const [Rr, V] = [64, 1024];
    const t = tensor(targetsFor(Rr, V, 3), [Rr], 'i32');
    const pool = device().pool;
    const grown = (f: () => Tensor) => {
      const before = pool.snapshot().inUseBytes;
      const y = f();
      const d = pool.snapshot().inUseBytes - before;
      y.dispose();
      return d;
    };
    const x = tensor(randData(Rr * V, 2), [Rr, V], 'f32', { requiresGrad: true });
    const xc = tensor(randData(Rr * V, 2), [Rr, V]);
    const gradBytes = Rr * V * 4;
    expect(grown(() => noGrad(() => L.crossEntropy(x, t)))).toBeLessThan(gradBytes);
    expect(grown(() => L.crossEntropy(xc, t))).toBeLessThan(gradBytes);
    // With the tape recording, the V-sized gradient is written (and freed with the step's scope).
    tidy(() => {
      expect(grown(() => L.crossEntropy(x, t))).toBeGreaterThanOrEqual(gradBytes);
    });
    for (const v of [t, x, xc]) v.dispose();
  });
  it('gives the same loss with and without the gradient pass', async () => {
    const shape = [9, 37];
    const tt = targetsFor(9, 37, 4);
    const data = randData(9 * 37, 8, -4, 4);
    const x = tensor(data, shape, 'f32', { requiresGrad: true });
    const t = tensor(tt, [9], 'i32');
    const a = L.crossEntropy(x, t);
    const b = noGrad(() => L.crossEntropy(x, t));
    expect(await a.item()).toBe(await b.item());
    for (const v of [x, t, a, b]) v.dispose();
  });
});

describe('fused vs composite', () => {
  async function valueAndGrad(f: typeof L.crossEntropy, data: Float32Array, shape: number[], tt: number[], reduction: 'mean' | 'sum' | 'none') {
    const x = tensor(data, shape, 'f32', { requiresGrad: true });
    const rows = shape.slice(0, -1);
    const u = randData(tt.length, 9);
    const y = tidy(() => {
      const y = f(x, tensor(tt, rows, 'i32'), { reduction });
      backward(y, reduction === 'none' ? tensor(u, rows) : undefined);
      return y;
    });
    const out = [await y.toArray(), await x.grad!.toArray()];
    for (const t of [y, x.grad!, x]) t.dispose();
    return out;
  }
  for (const reduction of ['mean', 'sum', 'none'] as const)
    for (const shape of [[6, 13], [2, 5, 64]])
      it(`${reduction} [${shape}]`, async () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const V = shape[shape.length - 1];
        const tt = targetsFor(n / V, V, 21);
        const data = randData(n, 22, -6, 6);
        const [yf, gf] = await valueAndGrad(L.crossEntropy, data, shape, tt, reduction);
        const [yc, gc] = await valueAndGrad(L.crossEntropyComposite, data, shape, tt, reduction);
        expectClose(yf, yc, { atol: 1e-5, rtol: 1e-5, name: `ce ${reduction} value` });
        expectClose(gf, gc, { atol: 1e-6, rtol: 1e-4, name: `ce ${reduction} gradient` });
      });
});
