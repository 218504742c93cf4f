// Token embedding: rows of a table W [V, C] picked by integer ids [B, T] → [B, T, C]. It is gather
// along axis 0, so it shares gather's kernels and its deterministic CSR scatter-add backward.
import { record } from '../autograd.js';
import { Tensor, shapeStr } from '../tensor.js';
import { checkedHostIndex, gatherRows, scatterAddRows } from './view.js';

/** out[b, t, :] = W[ids[b, t], :]; ids is i32 of any shape (uploaded from the host when W needs a gradient). */
export function embedding(W: Tensor, ids: Tensor): Tensor {
  if (W.ndim !== 2) throw new Error(`embedding: table must be [V, C], got ${shapeStr(W.shape)}`);
  if (ids.dtype !== 'i32') throw new Error(`embedding: ids must be i32, got ${ids.dtype} ${shapeStr(ids.shape)}`);
  const [V, C] = W.shape;
  const host = checkedHostIndex(W, ids, V, 'the vocabulary', 'embedding');
  const out = gatherRows(W, ids, 1, V, C, [...ids.shape, C]);
  // dW[v, :] = Σ_{(b,t): ids[b,t] = v} dout[b, t, :], summed in ascending (b, t)
  return record(out, 'embedding', [W], (g) => [scatterAddRows(g, host!, 1, V, C, W.shape)]);
}
