// Top-k along the last axis (shaders/topk.wgsl): values sorted descending, ties to the lower index,
// for beam search over vocabularies (k small, V up to ~32k). Backward scatters dvalues to the indices.
import { record } from '../autograd.js';
import { Tensor, shapeStr } from '../tensor.js';
import { assertF32, f32bits, gridFor, run } from './common.js';
import { fill } from './elementwise.js';
import { rowGrid } from './softmax.js';

const SHADER = 'topk';
/** Invocations per row's workgroup. */
const TOPK_WG = 64;
/** Outputs per pass: the private list capacity KMAX in shaders/topk.wgsl. */
const KMAX = 64;

/**
 * The k largest entries of each row of x [..., V] and their positions: values [..., k] (f32,
 * descending; NaN ranks above everything) and indices [..., k] (i32; equal values in ascending
 * index order). Keep `indices` alive until backward, which scatters dvalues to them.
 */
export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  assertF32(x, 'topk');
  if (x.ndim === 0) throw new Error(`topk: needs at least one axis, got ${shapeStr(x.shape)}`);
  const V = x.shape[x.ndim - 1];
  if (!Number.isInteger(k) || k < 0 || k > V) throw new Error(`topk: k = ${k} must be an integer in [0, ${V}] for ${shapeStr(x.shape)}`);
  const rows = V === 0 ? 0 : x.size / V;
  const shape = [...x.shape.slice(0, -1), k];
  const values = Tensor.empty(shape);
  const indices = Tensor.empty(shape, 'i32');
  const params = (first: number, kpass: number) => [rows, V, k, first, kpass, rows * k, f32bits(-Infinity), 0];
  if (rows > 0)
    for (let first = 0; first < k; first += KMAX)
      run({
        shader: SHADER, entry: 'select_pass', label: 'topk', constants: { WG: TOPK_WG },
        buffers: { 1: x.buffer, 2: values.buffer, 3: indices.buffer }, params: params(first, Math.min(KMAX, k - first)), workgroups: rowGrid(rows),
      });
  // values[r, j] = x[r, indices[r, j]]  ⇒  dx[r, indices[r, j]] = dvalues[r, j], 0 elsewhere
  record(values, 'topk', [x], (dv) => {
    const dx = fill(x.shape, 0);
    if (rows * k > 0)
      run({
        shader: SHADER, entry: 'scatter', label: 'topk_bwd', constants: { WG: TOPK_WG },
        buffers: { 4: dv.buffer, 5: indices.buffer, 6: dx.buffer }, params: params(0, 0), workgroups: [gridFor(rows * k, TOPK_WG)],
      });
    return [dx];
  });
  return { values, indices };
}
