// View and data-movement ops: reshape (no copy), and the strided copies (permute, slice, concat,
// gather) in shaders/view.wgsl.
import { record } from '../autograd.js';
import { Tensor, numel, shapeStr, type Shape } from '../tensor.js';

/** Same data, new shape (one dim may be -1). Shares the buffer; the gradient is reshaped back. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(s.filter((_, i) => i !== neg));
    s[neg] = rest === 0 ? 0 : x.size / rest;
  }
  if (numel(s) !== x.size) throw new Error(`reshape: cannot reshape ${shapeStr(x.shape)} (${x.size} elements) to ${shapeStr(shape)}`);
  const out = x.view(s);
  return record(out, 'reshape', [x], (g) => [g.view(x.shape)]);
}
