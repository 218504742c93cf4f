// View ops: permute/transpose/slice/concat/gather forward vs float64 reference and backward vs finite
// differences, on odd shapes (scalar and vec4 copy paths), plus gather's index checks and determinism.
import { describe, expect, it } from 'vitest';
import { Tensor, backward, tensor, tidy, topk } from '../../engine/index.js';
import * as V from '../../engine/ops/view.js';
import * as R from '../../engine/ref/view.js';
import { checkOp, expectClose, randData, useDevice } from '../helpers.js';

useDevice();

describe('permute / transpose', () => {
  const cases: [number[], number[]][] = [
    [[1], [0]],
    [[3, 5], [1, 0]],
    [[2, 3, 5, 7], [0, 2, 1, 3]], // attention head split, odd head size: scalar copy
    [[2, 3, 4, 8], [0, 2, 1, 3]], // same with a vec4-able inner dim
    [[5, 7, 3], [2, 0, 1]],
    [[2, 1, 3], [-1, 0, 1]],
  ];
  for (const [shape, dims] of cases)
    it(`permute [${shape}] by [${dims}]`, async () => {
      await checkOp({ name: 'permute', shapes: [shape], fn: ([x]) => V.permute(x, dims), ref: ([x]) => R.permute(x, dims) });
    });
  it('transpose default and explicit axes', async () => {
    await checkOp({ name: 'transpose', shapes: [[2, 5, 3]], fn: ([x]) => V.transpose(x), ref: ([x]) => R.transpose(x) });
    await checkOp({ name: 'transpose02', shapes: [[2, 5, 3]], fn: ([x]) => V.transpose(x, 0, 2), ref: ([x]) => R.transpose(x, 0, 2) });
  });
  it('large (many workgroups), forward', async () => {
    await checkOp({ name: 'transpose-large', shapes: [[129, 257]], noGrad: true, fn: ([x]) => V.transpose(x), ref: ([x]) => R.transpose(x) });
    // More rows than workgroups: each workgroup walks several rows.
    await checkOp({ name: 'transpose-rows', shapes: [[70, 2100]], noGrad: true, fn: ([x]) => V.transpose(x), ref: ([x]) => R.transpose(x) });
    await checkOp({ name: 'permute-large4', shapes: [[64, 48, 36]], noGrad: true, fn: ([x]) => V.permute(x, [1, 0, 2]), ref: ([x]) => R.permute(x, [1, 0, 2]) });
  });
  it('rejects a non-permutation', () => {
    const x = tensor([1, 2, 3, 4], [2, 2]);
    expect(() => V.permute(x, [0, 0])).toThrow(/not a permutation/);
    x.dispose();
  });
});

describe('slice', () => {
  const cases: [number[], number[], number[]][] = [
    [[1], [0], [1]],
    [[7, 11], [2, 3], [5, 10]],
    [[7, 11], [-5, 0], [-1, -2]],
    [[2, 3, 8], [0, 1, 4], [2, 3, 8]], // vec4 path: contiguous inner range at an aligned offset
    [[3, 5, 13], [1, 0, 2], [3, 4, 11]],
  ];
  for (const [shape, st, en] of cases)
    it(`[${shape}][${st}:${en}]`, async () => {
      await checkOp({ name: 'slice', shapes: [shape], fn: ([x]) => V.slice(x, st, en), ref: ([x]) => R.slice(x, st, en) });
    });
  it('large, forward', async () => {
    await checkOp({ name: 'slice-large', shapes: [[300, 257]], noGrad: true, fn: ([x]) => V.slice(x, [3, 1], [299, 250]), ref: ([x]) => R.slice(x, [3, 1], [299, 250]) });
  });
  it('empty range and bad ranges', async () => {
    const x = tensor(randData(15, 3), [3, 5]);
    const e = V.slice(x, [1, 2], [1, 5]);
    expect(e.shape).toEqual([0, 3]);
    expect(() => V.slice(x, [0, 0], [4, 5])).toThrow(/invalid for axis 0/);
    expect(() => V.slice(x, [0], [1])).toThrow(/one start and one end per axis/);
    e.dispose();
    x.dispose();
  });
  it('i32 with a host copy stays host-backed (ids → inputs/targets)', async () => {
    const ids = tensor([1, 2, 3, 4, 5, 6, 7, 8], [2, 4], 'i32');
    const inp = V.slice(ids, [0, 0], [2, 3]);
    const tgt = V.slice(ids, [0, 1], [2, 4]);
    expect(Array.from(inp.hostInts!)).toEqual([1, 2, 3, 5, 6, 7]);
    expect(Array.from(await tgt.toArray())).toEqual([2, 3, 4, 6, 7, 8]);
    for (const t of [ids, inp, tgt]) t.dispose();
  });
});

describe('i32 without a host copy (GPU copy path, bit-exact)', () => {
  it('permute, slice and concat of top-k indices', async () => {
    const x = tensor([5, 1, 9, 3, 7, 2, 8, 6, 4, 0, 11, 10], [2, 6]);
    const { values, indices } = topk(x, 4); // [[2, 4, 0, 3], [4, 5, 0, 1]]
    expect(indices.hostInts).toBeUndefined();
    const t = V.transpose(indices);
    const s = V.slice(indices, [0, 1], [2, 3]);
    const c = V.concat([indices, s], 1);
    expect(Array.from(await t.toArray())).toEqual([2, 4, 4, 5, 0, 0, 3, 1]);
    expect(Array.from(await s.toArray())).toEqual([4, 0, 5, 0]);
    expect(Array.from(await c.toArray())).toEqual([2, 4, 0, 3, 4, 0, 4, 5, 0, 1, 5, 0]);
    for (const v of [x, values, indices, t, s, c]) v.dispose();
  });
});

describe('concat', () => {
  it('axis 0, odd sizes', async () => {
    await checkOp({ name: 'concat0', shapes: [[2, 5], [1, 5], [3, 5]], fn: (xs) => V.concat(xs, 0), ref: (xs) => R.concat(xs, 0) });
  });
  it('axis -1 (scalar copy) and axis 1 of a batched case', async () => {
    await checkOp({ name: 'concat-1', shapes: [[3, 2, 3], [3, 2, 7]], fn: (xs) => V.concat(xs, -1), ref: (xs) => R.concat(xs, -1) });
    await checkOp({ name: 'concat1', shapes: [[2, 3, 8], [2, 1, 8], [2, 5, 8]], fn: (xs) => V.concat(xs, 1), ref: (xs) => R.concat(xs, 1) });
  });
  it('one input without grad', async () => {
    await checkOp({ name: 'concat-const', shapes: [[4, 3], [4, 2]], constInputs: [1], fn: (xs) => V.concat(xs, 1), ref: (xs) => R.concat(xs, 1) });
  });
  it('large, forward', async () => {
    await checkOp({ name: 'concat-large', shapes: [[200, 129], [200, 131]], noGrad: true, fn: (xs) => V.concat(xs, 1), ref: (xs) => R.concat(xs, 1) });
  });
});

describe('gather', () => {
  const cases: [string, number[], number, number[]][] = [
    ['rows with repeats', [7, 3], 0, [6, 0, 6, 2, 6]],
    ['middle axis', [3, 7, 5], 1, [4, 0, 4, 2]],
    ['last axis', [2, 3, 5], -1, [4, 4, 0]],
    ['vec4 rows', [10, 8], 0, [9, 1, 1, 3, 0, 9, 9]],
    ['single', [1], 0, [0, 0, 0]],
  ];
  for (const [label, shape, axis, idx] of cases)
    it(label, async () => {
      await checkOp({
        name: `gather-${label}`, shapes: [shape],
        fn: ([x]) => V.gather(x, axis, tensor(idx, [idx.length], 'i32')), ref: ([x]) => R.gather(x, axis, idx),
      });
    });
  it('large, forward and backward against the reference', async () => {
    const [A, C, K] = [37, 12, 300];
    const idx = Array.from({ length: K }, (_, k) => (k * 23) % A);
    await checkOp({
      name: 'gather-large', shapes: [[A, C]],
      fn: ([x]) => V.gather(x, 0, tensor(idx, [K], 'i32')), ref: ([x]) => R.gather(x, 0, idx),
    });
  });
  it('backward is bit-identical across runs (more rows than workgroups)', async () => {
    const [A, C, K] = [2100, 256, 3000];
    const x = tensor(randData(A * C, 5), [A, C], 'f32', { requiresGrad: true });
    const idx = Array.from({ length: K }, (_, k) => (k * k) % A);
    const u = randData(K * C, 6);
    const grads: Float32Array[] = [];
    for (let r = 0; r < 2; r++) {
      tidy(() => backward(V.gather(x, 0, tensor(idx, [K], 'i32')), tensor(u, [K, C])));
      grads.push((await x.grad!.toArray()) as Float32Array);
      x.grad!.dispose();
      x.grad = null;
    }
    expect(Buffer.from(grads[0].buffer).equals(Buffer.from(grads[1].buffer))).toBe(true);
    // And the sums are right: dx[a] = Σ u[k] over idx[k] == a.
    const want = new Float64Array(A * C);
    idx.forEach((a, k) => { for (let c = 0; c < C; c++) want[a * C + c] += u[k * C + c]; });
    expectClose(grads[0], want, { name: 'gather scatter-add' });
    x.dispose();
  });
  it('errors: out-of-range index, and backward without host indices', () => {
    const x = tensor(randData(12, 1), [4, 3], 'f32', { requiresGrad: true });
    const bad = tensor([0, 4], [2], 'i32');
    expect(() => V.gather(x, 0, bad)).toThrow(/out of range/);
    const gpuOnly = Tensor.empty([2], 'i32');
    expect(() => V.gather(x, 0, gpuOnly)).toThrow(/host/);
    for (const t of [x, bad, gpuOnly]) t.dispose();
  });
});
