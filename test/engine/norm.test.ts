// RMSNorm: fused kernels vs the float64 reference (forward and finite-difference gradients), vs
// the analytic gradient on a large case with many dweight chunks, and vs the composite twin.
import { describe, expect, it } from 'vitest';
import { backward, noGrad, tensor, tidy, device } from '../../engine/index.js';
import { rmsNorm, rmsNormComposite } from '../../engine/ops/norm.js';
import * as R from '../../engine/ref/norm.js';
import { nd } from '../../engine/ref/nd.js';
import { checkOp, expectClose, randData, useDevice } from '../helpers.js';

useDevice();

describe('rmsNorm vs reference', () => {
  const shapes = [[1, 1], [1, 7], [5, 13], [2, 3, 17], [3, 257]];
  for (const shape of shapes) {
    it(`[${shape}]`, async () => {
      const C = shape[shape.length - 1];
      await checkOp({
        name: `rmsNorm[${shape}]`, shapes: [shape, [C]],
        gen: (i, n, rng) => Float32Array.from({ length: n }, () => (i === 0 ? rng.next() * 4 - 2 : 0.5 + rng.next())),
        fn: ([x, w]) => rmsNorm(x, w, 1e-5), ref: ([x, w]) => R.rmsNorm(x, w, 1e-5),
        grad: { atol: 2e-4, rtol: 2e-3 },
      });
    });
  }
  it('eps matters for tiny rows', async () => {
    await checkOp({
      name: 'rmsNorm-small', shapes: [[4, 9], [9]], range: [-1e-3, 1e-3],
      fn: ([x, w]) => rmsNorm(x, w, 1e-6), ref: ([x, w]) => R.rmsNorm(x, w, 1e-6), fwd: { atol: 1e-5, rtol: 1e-4 }, eps: 1e-8,
      grad: { atol: 1e-3, rtol: 2e-3 },
    });
  });
});

describe('large case (multiple workgroups per row, many dweight chunks)', () => {
  it('[2, 701, 1031] forward and analytic gradients', async () => {
    const shape = [2, 701, 1031];
    const C = 1031;
    const n = 2 * 701 * C;
    const xd = randData(n, 3, -2, 2);
    const wd = randData(C, 4, 0.5, 1.5);
    const dyd = randData(n, 5);
    const x = tensor(xd, shape, 'f32', { requiresGrad: true });
    const w = tensor(wd, [C], 'f32', { requiresGrad: true });
    const dy = tensor(dyd, shape);
    const y = tidy(() => {
      const out = rmsNorm(x, w, 1e-6);
      backward(out, dy);
      return out;
    });
    const xr = nd(xd, shape);
    const wr = nd(wd, [C]);
    expectClose(await y.toArray(), R.rmsNorm(xr, wr, 1e-6).data, { atol: 1e-5, rtol: 1e-5, name: 'y' });
    const want = R.rmsNormBackward(xr, wr, 1e-6, nd(dyd, shape));
    expectClose(await x.grad!.toArray(), want.dx.data, { atol: 1e-5, rtol: 1e-4, name: 'dx' });
    // dweight sums 1402 rows: f32 accumulation error grows with the row count.
    expectClose(await w.grad!.toArray(), want.dweight.data, { atol: 1e-3, rtol: 1e-4, name: 'dweight' });
    for (const t of [x.grad!, w.grad!, x, w, dy, y]) t.dispose();
  });
});

describe('fused vs composite', () => {
  it('agree in value and gradient', async () => {
    const shape = [3, 5, 67];
    const xd = randData(3 * 5 * 67, 11, -3, 3);
    const wd = randData(67, 12, 0.2, 2);
    const dyd = randData(3 * 5 * 67, 13);
    const results: Float32Array[][] = [];
    for (const f of [rmsNorm, rmsNormComposite]) {
      const x = tensor(xd, shape, 'f32', { requiresGrad: true });
      const w = tensor(wd, [67], 'f32', { requiresGrad: true });
      const dy = tensor(dyd, shape);
      const y = tidy(() => {
        const out = f(x, w, 1e-6);
        backward(out, dy);
        return out;
      });
      results.push([await y.toArray(), await x.grad!.toArray(), await w.grad!.toArray()] as Float32Array[]);
      for (const t of [x.grad!, w.grad!, x, w, dy, y]) t.dispose();
    }
    const [fused, comp] = results;
    expectClose(fused[0], comp[0], { atol: 1e-6, rtol: 1e-5, name: 'y' });
    expectClose(fused[1], comp[1], { atol: 1e-5, rtol: 1e-4, name: 'dx' });
    expectClose(fused[2], comp[2], { atol: 1e-5, rtol: 1e-4, name: 'dweight' });
  });
});

describe('determinism and memory', () => {
  it('bit-identical gradients run to run, no saved tensors leak', async () => {
    const shape = [300, 129];
    const x = tensor(randData(300 * 129, 21), shape, 'f32', { requiresGrad: true });
    const w = tensor(randData(129, 22), [129], 'f32', { requiresGrad: true });
    const dy = tensor(randData(300 * 129, 23), shape);
    const pool = device().pool;
    const grads: number[][] = [];
    let inUse = -1;
    for (let k = 0; k < 3; k++) {
      tidy(() => backward(rmsNorm(x, w), dy));
      grads.push([...(await w.grad!.toArray()), ...(await x.grad!.toArray())]);
      w.grad!.dispose();
      x.grad!.dispose();
      x.grad = w.grad = null;
      if (k === 0) inUse = pool.snapshot().inUseBytes;
      else expect(pool.snapshot().inUseBytes).toBe(inUse);
    }
    expect(grads[1]).toEqual(grads[0]);
    expect(grads[2]).toEqual(grads[0]);
    // Inference saves nothing.
    const before = pool.snapshot().inUseBuffers;
    const y = noGrad(() => rmsNorm(x, w));
    expect(pool.snapshot().inUseBuffers).toBe(before + 1);
    for (const t of [x, w, dy, y]) t.dispose();
  });
  it('rejects a mismatched weight', () => {
    const x = tensor(randData(6, 1), [2, 3]);
    const w = tensor(randData(4, 1), [4]);
    expect(() => rmsNorm(x, w)).toThrow(/weight \[4\]/);
    x.dispose();
    w.dispose();
  });
});
