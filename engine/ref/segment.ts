// Float64 twin of engine/ops/segment.ts.
import { ndZeros, type ND } from './nd.js';
import type { Segments } from '../ops/segment.js';

/** out[seg.out[s]] = log Σ_{j ∈ [start, end)} exp(x[row, j]), max-shifted; −Infinity elsewhere and for empty segments. */
export function segmentLogSumExp(x: ND, seg: Segments, outSize: number): ND {
  const N = x.shape[1];
  const out = ndZeros([outSize]);
  out.data.fill(-Infinity);
  for (let s = 0; s < seg.row.length; s++) {
    const base = seg.row[s] * N;
    let m = -Infinity;
    for (let j = seg.start[s]; j < seg.end[s]; j++) m = Math.max(m, x.data[base + j]);
    if (m === -Infinity) continue;
    let acc = 0;
    for (let j = seg.start[s]; j < seg.end[s]; j++) acc += Math.exp(x.data[base + j] - m);
    out.data[seg.out[s]] = m + Math.log(acc);
  }
  return out;
}
