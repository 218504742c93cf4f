// Reductions: sum, mean and max along every axis (negative too), with and without keepDims, full
// reductions and long rows, forward vs the float64 reference and backward vs finite differences.
import { describe, expect, it } from 'vitest';
import { Rng, backward, tensor, tidy, type Tensor } from '../../engine/index.js';
import * as O from '../../engine/ops/reduce.js';
import * as R from '../../engine/ref/reduce.js';
import type { ND } from '../../engine/ref/nd.js';
import { checkOp, expectClose, randData, useDevice } from '../helpers.js';

useDevice();

type RedOp = 'sum' | 'mean' | 'max';
const ops: Record<RedOp, [(x: Tensor, axis?: number, keepDims?: boolean) => Tensor, (x: ND, axis?: number, keepDims?: boolean) => ND]> = {
  sum: [O.sum, R.sum],
  mean: [O.mean, R.mean],
  max: [O.max, R.max],
};

/** Distinct values (a shuffled ramp), so max has no ties and finite differences stay valid. */
function distinct(_i: number, n: number, rng: { next(): number }): Float32Array {
  const a = Float32Array.from({ length: n }, (_, k) => (k - n / 2) / Math.max(1, n) * 4);
  for (let k = n - 1; k > 0; k--) {
    const j = Math.floor(rng.next() * (k + 1));
    [a[k], a[j]] = [a[j], a[k]];
  }
  return a;
}

describe('along one axis', () => {
  const shapes = [[1], [7], [1, 5], [3, 7, 5], [2, 1, 13]];
  for (const op of Object.keys(ops) as RedOp[]) {
    const [fn, ref] = ops[op];
    for (const shape of shapes) {
      for (let axis = -shape.length; axis < shape.length; axis++) {
        for (const keepDims of [false, true]) {
          it(`${op} [${shape}] axis ${axis}${keepDims ? ' keepDims' : ''}`, async () => {
            await checkOp({
              name: `${op}[${shape}]@${axis}`, shapes: [shape], gen: op === 'max' ? distinct : undefined,
              fn: ([x]) => fn(x, axis, keepDims), ref: ([x]) => ref(x, axis, keepDims),
            });
          });
        }
      }
    }
  }
});

describe('full reduction', () => {
  for (const op of Object.keys(ops) as RedOp[]) {
    const [fn, ref] = ops[op];
    for (const shape of [[1], [11], [3, 7, 5]]) {
      for (const keepDims of [false, true]) {
        it(`${op} [${shape}]${keepDims ? ' keepDims' : ''}`, async () => {
          await checkOp({
            name: `${op}[${shape}]`, shapes: [shape], gen: op === 'max' ? distinct : undefined,
            fn: ([x]) => fn(x, undefined, keepDims), ref: ([x]) => ref(x, undefined, keepDims),
          });
        });
      }
    }
  }
});

describe('long rows (multiple workgroups / long loops)', () => {
  // Forward against the reference; the gradient of a long sum/max is checked structurally below.
  const cases: [number[], number | undefined][] = [
    [[3, 5000], 1], [[3, 5000], 0], [[3, 5000], -1], [[70000], 0], [[70000], undefined], [[5000, 3], 0], [[4099, 2], 1],
    [[2, 70001, 3], 1], [[9000, 70], 1],
  ];
  for (const op of Object.keys(ops) as RedOp[]) {
    const [fn, ref] = ops[op];
    for (const [shape, axis] of cases) {
      it(`${op} [${shape}] axis ${axis}`, async () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const data = randData(n, 7, -1, 1);
        const x = tensor(data, shape);
        const y = tidy(() => fn(x, axis));
        const got = await y.toArray();
        const want = ref({ data: Float64Array.from(data), shape }, axis);
        // Sums of thousands of f32 terms: allow for f32 accumulation error (relative to Σ|x|).
        const r = axis === undefined ? n : shape[axis < 0 ? axis + shape.length : axis];
        expectClose(got, want.data, { atol: op === 'sum' ? 1e-6 * r : op === 'mean' ? 1e-6 : 0, rtol: 1e-5, name: op });
        x.dispose();
        y.dispose();
      });
    }
  }
  it('gradients of long rows', async () => {
    // Finite differences over 10⁴+ inputs are too slow on the CPU; the exact gradients are known:
    // d sum = broadcast g, d mean = g / R, d max = g at the argmax.
    const data = distinct(0, 3 * 5000, new Rng(5));
    const x = tensor(data, [3, 5000], 'f32', { requiresGrad: true });
    const g = tensor([0.5, -2, 3], [3]);
    for (const op of ['sum', 'mean', 'max'] as RedOp[]) {
      tidy(() => backward(ops[op][0](x, -1), g));
      const got = await x.grad!.toArray();
      const want = new Float64Array(data.length);
      for (let row = 0; row < 3; row++) {
        let arg = row * 5000;
        for (let k = 0; k < 5000; k++) {
          const i = row * 5000 + k;
          if (data[i] > data[arg]) arg = i;
          want[i] = op === 'sum' ? [0.5, -2, 3][row] : op === 'mean' ? [0.5, -2, 3][row] / 5000 : 0;
        }
        if (op === 'max') want[arg] = [0.5, -2, 3][row];
      }
      expectClose(got, want, { atol: 1e-9, rtol: 1e-6, name: `d${op}` });
      x.grad!.dispose();
      x.grad = null;
    }
    x.dispose();
    g.dispose();
  });
  it('gradient of a full mean over 70000', async () => {
    const x = tensor(randData(70000, 9), [70000], 'f32', { requiresGrad: true });
    tidy(() => backward(O.mean(x)));
    expectClose(await x.grad!.toArray(), new Float64Array(70000).fill(1 / 70000), { atol: 0, rtol: 1e-6 });
    x.grad!.dispose();
    x.dispose();
  });
});

describe('max ties', () => {
  it('splits the gradient equally between tied maxima', async () => {
    const x = tensor([1, 3, 3, 2, 5, 5, 5, 0, -1, -1, -1, -1], [3, 4], 'f32', { requiresGrad: true });
    const g = tensor([6, 9, 2], [3]);
    tidy(() => backward(O.max(x, 1), g));
    expect(Array.from(await x.grad!.toArray())).toEqual([0, 3, 3, 0, 3, 3, 3, 0, 0.5, 0.5, 0.5, 0.5]);
    x.grad!.dispose();
    x.dispose();
    g.dispose();
  });
  it('full max with ties', async () => {
    const x = tensor([2, 7, 7, 1, 7], [5], 'f32', { requiresGrad: true });
    tidy(() => backward(O.max(x)));
    expectClose(await x.grad!.toArray(), [0, 1 / 3, 1 / 3, 0, 1 / 3]);
    x.grad!.dispose();
    x.dispose();
  });
});

describe('edge values', () => {
  it('max of rows of -inf is -inf (all kernels)', async () => {
    const inf = -Infinity;
    for (const [shape, axis] of [[[2, 3], 1], [[5000, 2], 1], [[2, 100], 1], [[9000], 0]] as [number[], number][]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n).fill(inf);
      data[n - 1] = 2;
      const x = tensor(data, shape);
      const y = tidy(() => O.max(x, axis));
      const got = Array.from(await y.toArray());
      expect(got[got.length - 1]).toBe(2);
      expect(got.slice(0, -1).every((v) => v === inf)).toBe(true);
      x.dispose();
      y.dispose();
    }
  });
  it('empty axis: sum is 0, max throws', async () => {
    const x = tensor([], [3, 0]);
    const y = tidy(() => O.sum(x, 1));
    expect(Array.from(await y.toArray())).toEqual([0, 0, 0]);
    expect(() => tidy(() => O.max(x, 1))).toThrow(/empty axis/);
    x.dispose();
    y.dispose();
  });
});

describe('sumTo / broadcastTo', () => {
  it('broadcastTo the same shape keeps the gradient path', async () => {
    await checkOp({ name: 'broadcastTo-same', shapes: [[2, 3]], fn: ([x]) => O.broadcastTo(x, [2, 3]), ref: ([x]) => x });
  });
  /** Float64 sumTo: every input element adds into the output element it broadcasts from. */
  function sumToRef(x: ND, shape: number[]): ND {
    const out = { data: new Float64Array(shape.reduce((a, b) => a * b, 1)), shape };
    const off = x.shape.length - shape.length;
    const st = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    for (let i = 0; i < x.data.length; i++) {
      let rem = i;
      let o = 0;
      for (let d = x.shape.length - 1; d >= 0; d--) {
        const idx = rem % x.shape[d];
        rem = Math.floor(rem / x.shape[d]);
        if (d >= off && shape[d - off] !== 1) o += idx * st[d - off];
      }
      out.data[o] += x.data[i];
    }
    return out;
  }
  const sumToCases: [number[], number[]][] = [
    [[2, 3, 5], [3, 1]], // two separate reduced runs: the general kernel
    [[4, 3, 5], [5]], [[4, 3, 5], [4, 1, 1]], [[4, 3, 5], [4, 1, 5]], [[1, 7, 1, 3], [1, 1, 3]], [[7, 1, 3], [1, 3]],
    [[3000, 70], [70]], [[9000, 5], [5]], [[2, 9000, 3], [2, 1, 3]], [[5, 2], [5, 2]], [[1, 5, 2], [5, 2]],
  ];
  for (const [from, to] of sumToCases) {
    it(`sumTo [${from}] → [${to}]`, async () => {
      const n = from.reduce((a, b) => a * b, 1);
      const data = randData(n, 3);
      const x = tensor(data, from);
      const out = tidy(() => O.sumTo(x, to));
      expect(out.shape).toEqual(to);
      const rows = n / Math.max(1, to.reduce((a, b) => a * b, 1));
      expectClose(await out.toArray(), sumToRef({ data: Float64Array.from(data), shape: from }, to).data, { atol: 1e-6 * rows, name: 'sumTo' });
      x.dispose();
      out.dispose();
    });
  }
  it('broadcastTo forward and backward', async () => {
    await checkOp({
      name: 'broadcastTo', shapes: [[3, 1]], fn: ([x]) => O.broadcastTo(x, [2, 3, 5]),
      ref: ([x]) => {
        const out = { data: new Float64Array(30), shape: [2, 3, 5] };
        for (let i = 0; i < 30; i++) out.data[i] = x.data[Math.floor(i / 5) % 3];
        return out;
      },
    });
  });
});
