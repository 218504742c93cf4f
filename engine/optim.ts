// Optimizers (shaders/optim.wgsl): AdamW with a fused in-place update kernel, and global
// gradient-norm clipping computed and applied on the GPU (no read-back in a training step).
import { zeroGrad } from './autograd.js';
import { Tensor, keep, shapeStr } from './tensor.js';
import { f32bits, gridFor, run } from './ops/common.js';
import { fill } from './ops/elementwise.js';

const SHADER = 'optim';
/** Invocations per workgroup of every optim kernel (the shader's WG). */
const WG = 256;
/** Partial sums of squares per gradient: one per workgroup, at most this many. */
const SUMSQ_MAX_WGS = 512;

export interface AdamWConfig {
  lr: number;
  betas: [number, number];
  eps: number;
  /** Decoupled weight decay λ: θ ← θ·(1 − lr·λ) before the Adam update. */
  weightDecay: number;
}

/** PyTorch's torch.optim.AdamW defaults. */
export const ADAMW_DEFAULTS: AdamWConfig = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 };

/** A set of parameters with its own settings (e.g. no weight decay for norms and biases). */
export interface ParamGroup extends Partial<AdamWConfig> {
  params: Tensor[];
}

/** Checkpointable optimizer state, per parameter in order; m and v are null before the first step. */
export interface AdamWState {
  step: number[];
  m: (Float32Array | null)[];
  v: (Float32Array | null)[];
}

function checkParam(p: Tensor, op: string): void {
  if (p.dtype !== 'f32') throw new Error(`${op}: parameter ${shapeStr(p.shape)} must be f32`);
}

/**
 * One fused AdamW update of `param`, `m`, `v` in place from `grad` at step `step` (1-based),
 * optionally multiplying the gradient by `gradScale[0]` (e.g. the scale from gradNorm).
 */
export function adamwStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: number, cfg: AdamWConfig, gradScale?: Tensor): void {
  if (grad.size !== param.size || m.size !== param.size || v.size !== param.size)
    throw new Error(`adamwStep: grad ${shapeStr(grad.shape)}, m, v must match param ${shapeStr(param.shape)}`);
  if (param.size === 0) return;
  const [b1, b2] = cfg.betas;
  // Bias corrections in float64 on the host, as PyTorch computes them in Python floats.
  const stepSize = cfg.lr / (1 - b1 ** step);
  const bc2Sqrt = Math.sqrt(1 - b2 ** step);
  run({
    shader: SHADER, entry: 'adamw', constants: { WG, USE_SCALE: gradScale ? 1 : 0 }, label: 'adamw',
    // Unused when USE_SCALE is off, but the binding must exist: the gradient stands in.
    buffers: { 1: grad.buffer, 2: (gradScale ?? grad).buffer, 3: param.buffer, 4: m.buffer, 5: v.buffer },
    params: [param.size, 0, 0, 0, ...[cfg.lr, b1, b2, cfg.eps, 1 - cfg.lr * cfg.weightDecay, stepSize, bc2Sqrt, 0].map(f32bits)],
    workgroups: [gridFor(Math.ceil(param.size / 4))],
  });
}

interface Slot {
  param: Tensor;
  cfg: AdamWConfig;
  step: number;
  m: Tensor | null;
  v: Tensor | null;
}

/** AdamW (Loshchilov & Hutter) with PyTorch's semantics: per-parameter step counts, bias correction. */
export class AdamW {
  /** Resolved settings per group; change `lr` here (or with setLr) for schedules. */
  readonly groups: (AdamWConfig & { params: Tensor[] })[];
  private slots: Slot[] = [];

  constructor(params: Iterable<Tensor> | ParamGroup[], config: Partial<AdamWConfig> = {}) {
    const list = [...(params as Iterable<Tensor | ParamGroup>)];
    const groups: ParamGroup[] = list.every((x) => x instanceof Tensor) ? [{ params: list as Tensor[] }] : (list as ParamGroup[]);
    const seen = new Set<Tensor>();
    this.groups = groups.map((g) => {
      const cfg = { ...ADAMW_DEFAULTS, ...config, ...stripParams(g), params: g.params };
      for (const p of g.params) {
        checkParam(p, 'AdamW');
        if (seen.has(p)) throw new Error(`AdamW: parameter ${p} appears twice`);
        seen.add(p);
        this.slots.push({ param: p, cfg, step: 0, m: null, v: null });
      }
      return cfg;
    });
  }

  /** All parameters, in state order. */
  get params(): Tensor[] {
    return this.slots.map((s) => s.param);
  }

  setLr(lr: number): void {
    for (const g of this.groups) g.lr = lr;
  }

  /**
   * Updates every parameter that has a gradient (others keep their step count, as in PyTorch).
   * `gradScale` ([1] or [] tensor) multiplies all gradients inside the kernel: pass gradNorm's
   * scale to clip without a separate pass over the gradients.
   */
  step(opts: { gradScale?: Tensor } = {}): void {
    for (const s of this.slots) {
      const g = s.param.grad;
      if (!g) continue;
      if (!s.m || !s.v) {
        s.m = keep(fill(s.param.shape, 0));
        s.v = keep(fill(s.param.shape, 0));
      }
      s.step++;
      adamwStep(s.param, g, s.m, s.v, s.step, s.cfg, opts.gradScale);
    }
  }

  zeroGrad(): void {
    zeroGrad(this.params);
  }

  /** Reads m, v and the step counts back (for checkpoints; not inside a training step). */
  async state(): Promise<AdamWState> {
    const m: (Float32Array | null)[] = [];
    const v: (Float32Array | null)[] = [];
    for (const s of this.slots) {
      m.push(s.m ? ((await s.m.toArray()) as Float32Array) : null);
      v.push(s.v ? ((await s.v.toArray()) as Float32Array) : null);
    }
    return { step: this.slots.map((s) => s.step), m, v };
  }

  /** Restores a state from `state()` (same parameters, same order): resumes bit-exactly. */
  loadState(st: AdamWState): void {
    const n = this.slots.length;
    if (st.step.length !== n || st.m.length !== n || st.v.length !== n)
      throw new Error(`AdamW.loadState: state has ${st.step.length} parameters, optimizer has ${n}`);
    this.slots.forEach((s, i) => {
      const [m, v] = [st.m[i], st.v[i]];
      if ((m === null) !== (v === null)) throw new Error(`AdamW.loadState: parameter ${i} has only one of m, v`);
      for (const a of [m, v])
        if (a && a.length !== s.param.size)
          throw new Error(`AdamW.loadState: parameter ${i} ${shapeStr(s.param.shape)} got state of ${a.length} elements`);
      s.m?.dispose();
      s.v?.dispose();
      s.m = m ? keep(Tensor.fromData(m, s.param.shape)) : null;
      s.v = v ? keep(Tensor.fromData(v, s.param.shape)) : null;
      s.step = st.step[i];
    });
  }

  /** Frees the moment buffers. */
  dispose(): void {
    for (const s of this.slots) {
      s.m?.dispose();
      s.v?.dispose();
      s.m = s.v = null;
    }
  }
}

function stripParams(g: ParamGroup): Partial<AdamWConfig> {
  const { params: _params, ...rest } = g;
  return Object.fromEntries(Object.entries(rest).filter(([, x]) => x !== undefined));
}

/**
 * The global L2 norm of all gradients ([] tensor) and the clip scale min(1, maxNorm/(norm+1e-6))
 * ([] tensor; 1 when maxNorm is undefined), computed on the GPU in a fixed order. Parameters
 * without a gradient are skipped.
 */
export function gradNorm(params: Iterable<Tensor>, maxNorm?: number): { norm: Tensor; scale: Tensor } {
  const grads = [...params].map((p) => p.grad).filter((g): g is Tensor => g !== null && g.size > 0);
  const norm = Tensor.empty([]);
  const scale = Tensor.empty([]);
  const groups = grads.map((g) => Math.min(SUMSQ_MAX_WGS, Math.ceil(g.size / 4 / WG)));
  const nParts = groups.reduce((a, b) => a + b, 0);
  // An empty list still needs one (zero) partial for the final kernel to read.
  const parts = nParts === 0 ? fill([1], 0) : Tensor.empty([nParts]);
  let offset = 0;
  grads.forEach((g, i) => {
    run({
      shader: SHADER, entry: 'sumsq', constants: { WG }, label: 'grad_sumsq',
      buffers: { 1: g.buffer, 6: parts.buffer }, params: [g.size, offset, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], workgroups: [groups[i]],
    });
    offset += groups[i];
  });
  run({
    shader: SHADER, entry: 'sumsq_final', constants: { WG, CLIP: maxNorm === undefined ? 0 : 1 }, label: 'grad_norm',
    buffers: { 7: parts.buffer, 8: norm.buffer, 9: scale.buffer },
    params: [0, 0, Math.max(1, nParts), 0, 0, 0, 0, 0, 0, 0, 0, f32bits(maxNorm ?? 0)], workgroups: [1],
  });
  parts.dispose();
  return { norm, scale };
}

/**
 * torch.nn.utils.clip_grad_norm_: scales every gradient in place by min(1, maxNorm/(norm+1e-6))
 * on the GPU and returns the pre-clipping global norm as a [] tensor (read it later, if at all).
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): Tensor {
  const list = [...params];
  const { norm, scale } = gradNorm(list, maxNorm);
  // Backward rules may hand two parameters views of one gradient buffer: scale each buffer once.
  const done = new Set<GPUBuffer>();
  for (const p of list) {
    const g = p.grad;
    if (!g || g.size === 0 || done.has(g.buffer)) continue;
    done.add(g.buffer);
    run({
      shader: SHADER, entry: 'scale_grad', constants: { WG }, label: 'grad_clip',
      buffers: { 2: scale.buffer, 10: g.buffer }, params: [g.size, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
      workgroups: [gridFor(Math.ceil(g.size / 4))],
    });
  }
  scale.dispose();
  return norm;
}
