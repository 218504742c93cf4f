// Float64 twins of engine/optim.ts: the AdamW update and global gradient-norm clipping.
import type { ND } from './nd.js';
import type { AdamWConfig } from '../optim.js';

/** One AdamW step on float64 arrays, in place (step is 1-based); gradScale multiplies the gradient. */
export function adamwStep(param: ND, grad: ND, m: ND, v: ND, step: number, cfg: AdamWConfig, gradScale = 1): void {
  const [b1, b2] = cfg.betas;
  const bc1 = 1 - b1 ** step;
  const bc2 = 1 - b2 ** step;
  for (let i = 0; i < param.data.length; i++) {
    const g = grad.data[i] * gradScale;
    param.data[i] *= 1 - cfg.lr * cfg.weightDecay;
    m.data[i] = b1 * m.data[i] + (1 - b1) * g;
    v.data[i] = b2 * v.data[i] + (1 - b2) * g * g;
    param.data[i] -= (cfg.lr / bc1) * m.data[i] / (Math.sqrt(v.data[i] / bc2) + cfg.eps);
  }
}

/** Global L2 norm of the gradients and the clip scale min(1, maxNorm/(norm + 1e-6)) (1 without maxNorm). */
export function gradNorm(grads: ND[], maxNorm?: number): { norm: number; scale: number } {
  let ss = 0;
  for (const g of grads) for (const x of g.data) ss += x * x;
  const norm = Math.sqrt(ss);
  return { norm, scale: maxNorm === undefined ? 1 : Math.min(1, maxNorm / (norm + 1e-6)) };
}

/** Scales the gradients in place like torch.nn.utils.clip_grad_norm_; returns the norm before clipping. */
export function clipGradNorm(grads: ND[], maxNorm: number): number {
  const { norm, scale } = gradNorm(grads, maxNorm);
  for (const g of grads) for (let i = 0; i < g.data.length; i++) g.data[i] *= scale;
  return norm;
}
