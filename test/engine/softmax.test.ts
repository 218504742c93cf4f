// Softmax / log-softmax: fused kernels vs float64 reference and finite differences (vec4 and masked
// scalar rows, several rows per workgroup, many workgroups), stability at |x| = 1e4, and agreement
// of the fused kernels with their composite twins in value and gradient.
import { describe, expect, it } from 'vitest';
import { backward, tensor, tidy, type Tensor } from '../../engine/index.js';
import * as S from '../../engine/ops/softmax.js';
import * as R from '../../engine/ref/softmax.js';
import { nd } from '../../engine/ref/nd.js';
import { checkOp, expectClose, randData, useDevice } from '../helpers.js';

useDevice();

const shapes: number[][] = [
  [1],          // one element: y = 1, log y = 0
  [3, 5],       // masked scalar loads, several rows per workgroup
  [2, 3, 8],    // vec4, batched
  [7, 13],      // prime row length
  [4, 101],     // several threads per row, masked tail chunk
  [2, 260],     // vec4, several threads per row
];

for (const op of ['softmax', 'logSoftmax'] as const) {
  describe(op, () => {
    for (const shape of shapes)
      it(`[${shape}]`, async () => {
        await checkOp({ name: `${op}[${shape}]`, shapes: [shape], range: [-3, 3], fn: ([x]) => S[op](x), ref: ([x]) => R[op](x) });
      });
    it('large (one workgroup per row, many rows), forward', async () => {
      await checkOp({ name: `${op}-large`, shapes: [[67, 2052]], range: [-5, 5], noGrad: true, fn: ([x]) => S[op](x), ref: ([x]) => R[op](x) });
      await checkOp({ name: `${op}-large1`, shapes: [[300, 37]], range: [-5, 5], noGrad: true, fn: ([x]) => S[op](x), ref: ([x]) => R[op](x) });
    });
    it('stable for logits of magnitude 1e4', async () => {
      // Rows mixing ±1e4 with ordinary values, a row of all -1e4, and one with a -inf (masked) entry.
      const data = [1e4, -1e4, 0, 1e4 - 1, 5, -3, 1e4 - 2, -1e4, -1e4, -1e4, -1e4, -1e4, -1e4, -1e4, -1e4 + 1, -Infinity, 1e4, 1e4 - 0.5, -1e4, 3, 2, 1, 0, -1];
      for (const s of [[3, 8], [4, 6]]) {
        const x = tensor(data, s);
        const y = await S[op](x).toArray();
        const want = R[op](nd(data, s)).data;
        // The masked entry is exactly 0 (softmax) or -inf (log-softmax); compare the rest numerically.
        expect(y[15]).toBe(want[15]);
        expect(Array.from(y).every((v, i) => i === 15 || Number.isFinite(v))).toBe(true);
        const finite = (a: ArrayLike<number>) => Array.from(a).filter((_, i) => i !== 15);
        expectClose(finite(y), finite(want), { atol: 1e-6, rtol: 1e-5, name: `${op} ±1e4 [${s}]` });
        x.dispose();
      }
    });
  });
}

describe('fused vs composite', () => {
  async function valueAndGrad(f: (x: Tensor) => Tensor, data: Float32Array, shape: number[], u: Float32Array) {
    const x = tensor(data, shape, 'f32', { requiresGrad: true });
    const y = tidy(() => {
      const y = f(x);
      backward(y, tensor(u, shape));
      return y;
    });
    const out = [await y.toArray(), await x.grad!.toArray()];
    y.dispose();
    x.grad!.dispose();
    x.dispose();
    return out;
  }
  for (const [fused, comp] of [['softmax', 'softmaxComposite'], ['logSoftmax', 'logSoftmaxComposite']] as const)
    for (const shape of [[5, 13], [3, 64]])
      it(`${fused} [${shape}]`, async () => {
        const n = shape[0] * shape[1];
        const data = randData(n, 11, -4, 4);
        const u = randData(n, 12);
        const [yf, gf] = await valueAndGrad(S[fused], data, shape, u);
        const [yc, gc] = await valueAndGrad(S[comp], data, shape, u);
        expectClose(yf, yc, { atol: 1e-6, rtol: 1e-5, name: `${fused} value` });
        expectClose(gf, gc, { atol: 1e-6, rtol: 1e-4, name: `${fused} gradient` });
      });
});
