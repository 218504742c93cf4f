// Elementwise ops: forward vs float64 reference and backward vs finite differences, on odd and
// broadcast shapes.
import { describe, it } from 'vitest';
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
