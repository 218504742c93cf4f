// Losses (shaders/losses.wgsl): fused cross-entropy whose forward writes dlogits in the same pass,
// with a GPU-side count of the rows that count for the mean; plus its composite twin.
import { isGradEnabled, record } from '../autograd.js';
import { Tensor, shapeStr } from '../tensor.js';
import { assertF32, f32bits, gridFor, run } from './common.js';
import { mul, neg, scale } from './elementwise.js';
import { sum } from './reduce.js';
import { ROW_WG, rowGrid, threadsPerRow, logSoftmax } from './softmax.js';
import { reshape } from './view.js';

const SHADER = 'losses';
/** Invocations of the one-workgroup reduction and of the gradient-scaling kernel. */
const FLAT_WG = 256;
const MODES = { none: 0, sum: 1, mean: 2 } as const;

export interface CrossEntropyOptions {
  /** Rows whose target equals this get zero loss and zero gradient and are not counted. */
  ignoreIndex?: number;
  /** 'mean' over the rows that count (NaN when none does), 'sum', or 'none' (one loss per row). */
  reduction?: 'mean' | 'sum' | 'none';
}

function checkArgs(logits: Tensor, targets: Tensor, op: string): { R: number; V: number } {
  assertF32(logits, op);
  if (targets.dtype !== 'i32') throw new Error(`${op}: targets must be i32, got ${targets.dtype} ${shapeStr(targets.shape)}`);
  const V = logits.shape[logits.ndim - 1];
  if (logits.ndim < 1 || targets.shape.join() !== logits.shape.slice(0, -1).join())
    throw new Error(`${op}: targets ${shapeStr(targets.shape)} must be logits ${shapeStr(logits.shape)} without its last axis`);
  return { R: targets.size, V };
}

/** Host-side check of uploaded targets: each is in [0, V) or the ignore index. */
function checkTargets(targets: Tensor, V: number, ignoreIndex: number, op: string): void {
  const host = targets.hostInts;
  if (!host) return;
  for (let r = 0; r < host.length; r++)
    if (host[r] !== ignoreIndex && (host[r] < 0 || host[r] >= V))
      throw new Error(`${op}: target ${host[r]} at row ${r} is outside [0, ${V}) and is not ignoreIndex (${ignoreIndex})`);
}

/**
 * Cross-entropy of logits [..., V] against integer targets [...]: −log softmax(logits)[target] per
 * row, reduced by `reduction`. Targets that are ignoreIndex (or, when not host-checked, out of
 * range) give zero loss and gradient. When the tape records (grad enabled and logits needs a
 * gradient) the same kernel pass also writes dlogits = softmax − onehot, the op's only V-sized
 * output; otherwise it only computes the losses.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  const { R, V } = checkArgs(logits, targets, op);
  checkTargets(targets, V, ignoreIndex, op);
  const withGrad = isGradEnabled() && logits.requiresGrad;
  const nc = Math.ceil(V / 4);
  const vec4 = V % 4 === 0;
  const tpr = threadsPerRow(nc);
  const params = [R, V, 0, f32bits(-Infinity), ignoreIndex | 0, Math.ceil((R * V) / 4), 0, 0];

  const losses = Tensor.empty(targets.shape);
  // dlogits [R, V] = softmax(logits) − onehot(target), unscaled (the backward applies dout).
  const grad = withGrad ? Tensor.empty(logits.shape) : null;
  if (R > 0 && V > 0) {
    const entry = grad ? (vec4 ? 'fwd_grad4' : 'fwd_grad1') : 'fwd';
    const buffers: Record<number, GPUBuffer> = { 11: logits.buffer, 3: targets.buffer, 4: losses.buffer };
    if (grad) buffers[vec4 ? 15 : 5] = grad.buffer;
    run({
      shader: SHADER, entry, label: `crossEntropy_${entry}`, constants: { WG: ROW_WG, TPR: tpr, VEC4: vec4 ? 1 : 0 },
      buffers, params, workgroups: rowGrid(Math.ceil(R / (ROW_WG / tpr))),
    });
  }

  let out = losses;
  let count: Tensor | null = null;
  if (reduction !== 'none') {
    out = Tensor.empty([]);
    count = Tensor.empty([1]);
    run({
      shader: SHADER, entry: 'reduce', label: 'crossEntropy_reduce', constants: { WG: FLAT_WG, MEAN: reduction === 'mean' ? 1 : 0 },
      buffers: { 3: targets.buffer, 6: losses.buffer, 7: out.buffer, 8: count.buffer }, params, workgroups: [1],
    });
    losses.dispose();
    if (reduction === 'sum' || !grad) {
      count.dispose();
      count = null;
    }
  }
  if (!grad) return out;
  const cnt = count;
  // ∂loss_r/∂logits_r = softmax(logits_r) − onehot(target_r) for rows that count, else 0; the
  // stored gradient is scaled by dout_r ('none'), dout ('sum') or dout / count ('mean').
  return record(out, op, [logits], (dout) => {
    const dx = Tensor.empty(logits.shape);
    const n4 = params[5];
    if (n4 > 0)
      run({
        shader: SHADER, entry: 'bwd', label: 'crossEntropy_bwd', constants: { WG: FLAT_WG, MODE: MODES[reduction] },
        buffers: { 12: grad.buffer, 9: dout.buffer, 10: (cnt ?? dout).buffer, 16: dx.buffer }, params, workgroups: [gridFor(n4, FLAT_WG)],
      });
    return [dx];
  });
}

/**
 * The same loss from logSoftmax, a one-hot mask and sum/mean (a check on the fused kernel). Builds
 * the mask and the count on the host, so targets must carry their host copy.
 */
export function crossEntropyComposite(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropyComposite';
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  const { R, V } = checkArgs(logits, targets, op);
  checkTargets(targets, V, ignoreIndex, op);
  const host = targets.hostInts;
  if (!host) throw new Error(`${op}: targets must be uploaded from the host (the one-hot mask is built there)`);
  const onehot = new Float32Array(R * V);
  let count = 0;
  for (let r = 0; r < R; r++)
    if (host[r] !== ignoreIndex) {
      onehot[r * V + host[r]] = 1;
      count++;
    }
  const logp = logSoftmax(reshape(logits, [R, V]));
  const nll = neg(sum(mul(logp, Tensor.fromData(onehot, [R, V])), -1)); // [R], 0 on ignored rows
  if (reduction === 'none') return reshape(nll, targets.shape);
  const total = sum(nll);
  return reduction === 'sum' ? total : scale(total, 1 / count);
}
