// Elementwise ops: forward vs float64 reference and backward vs finite differences, on odd and
// broadcast shapes.
import { describe, expect, it } from 'vitest';
import { Rng, tensor, tidy } from '../../engine/index.js';
import * as E from '../../engine/ops/elementwise.js';
import * as R from '../../engine/ref/elementwise.js';
import { checkOp, useDevice } from '../helpers.js';

useDevice();

const unaryRanges: Record<keyof typeof R.unaryFns, [number, number]> = {
  neg: [-2, 2], exp: [-2, 2], log: [0.5, 2], sqrt: [0.5, 2], rsqrt: [0.5, 2], relu: [-2, 2], silu: [-3, 3],
  gelu: [-3, 3], sigmoid: [-3, 3], tanh: [-3, 3], abs: [-2, 2], square: [-2, 2],
  softplus: [-30, 30],
};

describe('unary', () => {
  for (const op of Object.keys(unaryRanges) as (keyof typeof R.unaryFns)[]) {
    it(op, async () => {
      await checkOp({ name: op, shapes: [[3, 7, 5]], range: unaryRanges[op], fn: ([x]) => E.unary(op, x), ref: ([x]) => R.unary(op, x),
        // relu and abs have a kink at 0: keep inputs away from it so finite differences are valid.
        gen: op === 'relu' || op === 'abs' ? (_i, n, rng) => Float32Array.from({ length: n }, () => (rng.next() < 0.5 ? -1 : 1) * (0.1 + rng.next())) : undefined,
      });
    });
  }
  it('pow (integer and fractional exponents)', async () => {
    await checkOp({ name: 'pow3', shapes: [[13]], range: [-2, 2], fn: ([x]) => E.pow(x, 3), ref: ([x]) => R.pow(x, 3) });
    await checkOp({ name: 'pow1.5', shapes: [[13]], range: [0.5, 2], fn: ([x]) => E.pow(x, 1.5), ref: ([x]) => R.pow(x, 1.5) });
  });
});

describe('binary with broadcasting', () => {
  const cases: [string, number[], number[]][] = [
    ['same', [5, 11], [5, 11]],
    ['row', [5, 11], [11]],
    ['col', [5, 1], [1, 7]],
    ['scalar', [3, 1, 5], [1]],
    ['batched', [2, 3, 5], [3, 1]],
    ['one', [1], [1]],
  ];
  for (const op of ['add', 'sub', 'mul', 'div', 'maximum', 'minimum'] as const) {
    for (const [label, sa, sb] of cases) {
      it(`${op} ${label} [${sa}]·[${sb}]`, async () => {
        await checkOp({
          name: `${op}-${label}`, shapes: [sa, sb], fn: ([a, b]) => E.binary(op, a, b), ref: ([a, b]) => R[op](a, b),
          range: op === 'div' ? [0.5, 2] : [-1, 1],
        });
      });
    }
  }
});

describe('where', () => {
  it('broadcast condition', async () => {
    await checkOp({
      name: 'where', shapes: [[4, 1], [4, 7], [7]], constInputs: [0],
      gen: (i, n, rng) => Float32Array.from({ length: n }, () => (i === 0 ? (rng.next() < 0.5 ? 0 : 1) : rng.next() * 2 - 1)),
      fn: ([c, a, b]) => E.where(c, a, b), ref: ([c, a, b]) => R.where(c, a, b),
    });
  });
});

describe('dropout', () => {
  for (const [p, seed, shape] of [[0.1, 7, [3, 7, 5]], [0.5, 123456789, [13]], [0.9, 4294967295, [2, 3, 11]], [0, 5, [9]]] as const) {
    it(`p ${p}, seed ${seed}, [${shape}]: the mask of Rng(seed), forward and backward`, async () => {
      await checkOp({ name: `dropout${p}`, shapes: [[...shape]], fn: ([x]) => E.dropout(x, p, seed), ref: ([x]) => R.dropout(x, p, seed) });
    });
  }
  it('drops about p of a large tensor, a different set per seed, the same for the same seed', async () => {
    const n = 40_003;
    const x = tensor(new Float32Array(n).fill(1), [n]);
    const [a, b, c] = await Promise.all([1, 2, 1].map((s) => tidy(() => E.dropout(x, 0.25, s)).toArray()));
    const zeros = (v: ArrayLike<number>) => Array.from(v).filter((t) => t === 0).length;
    expect(Math.abs(zeros(a) / n - 0.25)).toBeLessThan(0.01);
    expect(Array.from(a)).toEqual(Array.from(c));
    let same = 0;
    for (let i = 0; i < n; i++) same += Number((a[i] === 0) === (b[i] === 0));
    expect(same / n).toBeLessThan(0.7); // independent masks agree on 0.25² + 0.75² = 62.5%
    expect(Array.from(a).every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6)).toBe(true);
    const host = new Rng(1); // the documented mask: element i is dropped iff the host Rng's (i+1)-th draw < p
    for (let i = 0; i < 1000; i++) expect(a[i] === 0, `element ${i}`).toBe(host.next() < 0.25);
    x.dispose();
  });
  it('rejects p outside [0, 1) and non-u32 seeds', () => {
    const x = tensor([1, 2, 3], [3]);
    expect(() => E.dropout(x, 1, 0)).toThrow(/probability 1 must be in \[0, 1\)/);
    expect(() => E.dropout(x, 0.1, -1)).toThrow(/seed -1 must be a u32/);
    x.dispose();
  });
});
