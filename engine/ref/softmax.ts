// Float64 twins of engine/ops/softmax.ts (last axis), same names and argument order.
import { ndZeros, type ND } from './nd.js';

function rows(x: ND, f: (row: Float64Array, out: Float64Array) => void): ND {
  const v = x.shape[x.shape.length - 1];
  const out = ndZeros(x.shape);
  for (let r = 0; r * v < x.data.length; r++) f(x.data.subarray(r * v, (r + 1) * v), out.data.subarray(r * v, (r + 1) * v));
  return out;
}

function logSumExp(row: Float64Array): number {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return m + Math.log(s);
}

export function softmax(x: ND): ND {
  return rows(x, (row, out) => {
    const lse = logSumExp(row);
    row.forEach((v, i) => (out[i] = Math.exp(v - lse)));
  });
}

export function logSoftmax(x: ND): ND {
  return rows(x, (row, out) => {
    const lse = logSumExp(row);
    row.forEach((v, i) => (out[i] = v - lse));
  });
}

export const softmaxComposite = softmax;
export const logSoftmaxComposite = logSoftmax;
