// Float64 twins of engine/ops/reduce.ts.
import { ndZeros, type ND } from './nd.js';

function reduce(x: ND, axis: number | undefined, keepDims: boolean, init: number, f: (a: number, b: number) => number): ND {
  if (axis === undefined) {
    let acc = init;
    for (const v of x.data) acc = f(acc, v);
    const out = ndZeros(keepDims ? x.shape.map(() => 1) : []);
    out.data[0] = acc;
    return out;
  }
  const ax = axis < 0 ? axis + x.shape.length : axis;
  const outer = x.shape.slice(0, ax).reduce((a, b) => a * b, 1);
  const r = x.shape[ax];
  const inner = x.shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  const out = ndZeros(keepDims ? x.shape.map((d, i) => (i === ax ? 1 : d)) : x.shape.filter((_, i) => i !== ax));
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let acc = init;
      for (let k = 0; k < r; k++) acc = f(acc, x.data[(o * r + k) * inner + i]);
      out.data[o * inner + i] = acc;
    }
  return out;
}

export const sum = (x: ND, axis?: number, keepDims = false) => reduce(x, axis, keepDims, 0, (a, b) => a + b);
export const max = (x: ND, axis?: number, keepDims = false) => reduce(x, axis, keepDims, -Infinity, Math.max);
export function mean(x: ND, axis?: number, keepDims = false): ND {
  const s = sum(x, axis, keepDims);
  const n = axis === undefined ? x.data.length : x.shape[axis < 0 ? axis + x.shape.length : axis];
  return { data: s.data.map((v) => v / n), shape: s.shape };
}
