// Float64 twin of engine/ops/losses.ts (targets as a plain array).
import { ndZeros, type ND } from './nd.js';
import type { CrossEntropyOptions } from '../ops/losses.js';

export function crossEntropy(logits: ND, targets: ArrayLike<number>, opts: CrossEntropyOptions = {}): ND {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  const V = logits.shape[logits.shape.length - 1];
  const R = targets.length;
  const nll = ndZeros(logits.shape.slice(0, -1));
  let count = 0;
  for (let r = 0; r < R; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    const row = logits.data.subarray(r * V, (r + 1) * V);
    let m = -Infinity;
    for (const v of row) m = Math.max(m, v);
    let s = 0;
    for (const v of row) s += Math.exp(v - m);
    nll.data[r] = m + Math.log(s) - row[t];
    count++;
  }
  if (reduction === 'none') return nll;
  const total = nll.data.reduce((a, b) => a + b, 0);
  const out = ndZeros([]);
  out.data[0] = reduction === 'sum' ? total : total / count;
  return out;
}

export const crossEntropyComposite = crossEntropy;
