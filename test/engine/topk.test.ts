// Top-k: values and indices vs a stable float64 sort (ties, NaN, k = 1, k = V, k > one pass),
// the scatter backward vs finite differences, and a beam-search-sized case.
import { describe, expect, it } from 'vitest';
import { Rng, tensor } from '../../engine/index.js';
import { topk } from '../../engine/ops/topk.js';
import * as R from '../../engine/ref/topk.js';
import { nd } from '../../engine/ref/nd.js';
import { checkOp, randData, useDevice } from '../helpers.js';

useDevice();

async function expectTopk(data: ArrayLike<number>, shape: number[], k: number, label: string) {
  const x = tensor(data, shape);
  const { values, indices } = topk(x, k);
  const want = R.topk(nd(data, shape), k);
  expect(values.shape).toEqual(want.values.shape);
  expect(indices.dtype).toBe('i32');
  expect(Array.from(await indices.toArray())).toEqual(Array.from(want.indices.data));
  const got = await values.toArray();
  expect(Array.from(got).map(String)).toEqual(Array.from(want.values.data).map((v) => String(Math.fround(v))));
  for (const t of [x, values, indices]) t.dispose();
  return label;
}

describe('topk', () => {
  const cases: [string, number[], number][] = [
    ['k = 1 of one', [1], 1],
    ['odd rows', [3, 7], 3],
    ['k = V', [2, 5], 5],
    ['batched', [2, 3, 37], 4],
    ['k = 0', [2, 3], 0],
    ['more than one pass (k > 64)', [3, 300], 150],
    ['long rows', [5, 2049], 10],
  ];
  for (const [label, shape, k] of cases)
    it(label, async () => {
      const n = shape.reduce((a, b) => a * b, 1);
      await expectTopk(randData(n, n + k), shape, k, label);
    });
  it('ties go to the lower index, across passes too', async () => {
    const rng = new Rng(3);
    const data = Array.from({ length: 2 * 200 }, () => rng.int(5)); // many equal values
    await expectTopk(data, [2, 200], 100, 'ties');
    await expectTopk([1, 3, 3, 2, 3, 1, 3], [7], 4, 'ties small');
  });
  it('NaN ranks first; ±inf in order', async () => {
    await expectTopk([1, NaN, -Infinity, Infinity, 0, NaN, -Infinity], [7], 7, 'nan');
  });
  it('beam search size: [8, 32000] k = 64', async () => {
    await expectTopk(randData(8 * 32000, 5, -10, 10), [8, 32000], 64, 'beam');
  });
  it('gradient of values', async () => {
    for (const [shape, k] of [[[3, 7], 3], [[2, 3, 37], 5], [[1], 1]] as [number[], number][])
      await checkOp({ name: `topk[${shape}]k${k}`, shapes: [shape], fn: ([x]) => topk(x, k).values, ref: ([x]) => R.topk(x, k).values });
  });
  it('rejects a bad k', () => {
    const x = tensor(randData(6, 1), [2, 3]);
    expect(() => topk(x, 4)).toThrow(/k = 4/);
    x.dispose();
  });
});
