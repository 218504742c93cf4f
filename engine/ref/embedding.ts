// Float64 twin of engine/ops/embedding.ts (ids as an ND of integer values).
import type { ND } from './nd.js';
import { gather } from './view.js';

export function embedding(W: ND, ids: ND): ND {
  const out = gather(W, 0, ids.data);
  return { data: out.data, shape: [...ids.shape, W.shape[1]] };
}
