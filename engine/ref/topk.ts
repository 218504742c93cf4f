// Float64 twin of engine/ops/topk.ts: a stable sort of each row (NaN first, then descending value,
// ties by index).
import { ndZeros, type ND } from './nd.js';

export function topk(x: ND, k: number): { values: ND; indices: ND } {
  const V = x.shape[x.shape.length - 1];
  const rows = V === 0 ? 0 : x.data.length / V;
  const shape = [...x.shape.slice(0, -1), k];
  const values = ndZeros(shape);
  const indices = ndZeros(shape);
  for (let r = 0; r < rows; r++) {
    const row = x.data.subarray(r * V, (r + 1) * V);
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => {
      const na = Number.isNaN(row[a]);
      const nb = Number.isNaN(row[b]);
      if (na !== nb) return na ? -1 : 1;
      if (!na && row[a] !== row[b]) return row[b] - row[a];
      return a - b;
    });
    for (let j = 0; j < k; j++) {
      values.data[r * k + j] = row[order[j]];
      indices.data[r * k + j] = order[j];
    }
  }
  return { values, indices };
}
