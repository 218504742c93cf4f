// Embedding: forward vs float64 reference and the CSR scatter-add backward vs finite differences,
// with repeated ids, odd and vec4 widths, plus a larger case and the index checks.
import { describe, expect, it } from 'vitest';
import { Rng, tensor } from '../../engine/index.js';
import { embedding } from '../../engine/ops/embedding.js';
import * as R from '../../engine/ref/embedding.js';
import { nd } from '../../engine/ref/nd.js';
import { checkOp, randData, useDevice } from '../helpers.js';

useDevice();

function ids(n: number, v: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => rng.int(v));
}

describe('embedding', () => {
  const cases: [string, number, number, number[]][] = [
    ['odd width, repeats', 11, 5, [2, 3]],
    ['vec4 width, batched', 13, 8, [3, 7]],
    ['single', 1, 1, [1, 1]],
    ['1-D ids', 7, 3, [9]],
  ];
  for (const [label, V, C, shape] of cases)
    it(label, async () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const id = ids(n, V, V * 31 + n);
      await checkOp({
        name: `embedding-${label}`, shapes: [[V, C]],
        fn: ([W]) => embedding(W, tensor(id, shape, 'i32')), ref: ([W]) => R.embedding(W, nd(id, shape)),
      });
    });
  it('larger (many workgroups)', async () => {
    const [V, C, B, T] = [300, 64, 4, 33];
    const id = ids(B * T, V, 9);
    await checkOp({
      name: 'embedding-large', shapes: [[V, C]], noGrad: true,
      fn: ([W]) => embedding(W, tensor(id, [B, T], 'i32')), ref: ([W]) => R.embedding(W, nd(id, [B, T])),
    });
  });
  it('rejects out-of-range ids and a non-table', () => {
    const W = tensor(randData(12, 2), [4, 3], 'f32', { requiresGrad: true });
    const bad = tensor([1, -1], [1, 2], 'i32');
    expect(() => embedding(W, bad)).toThrow(/out of range/);
    const flat = tensor(randData(4, 1), [4]);
    expect(() => embedding(flat, tensor([0], [1], 'i32'))).toThrow(/\[V, C\]/);
    for (const t of [W, bad, flat]) t.dispose();
  });
});
