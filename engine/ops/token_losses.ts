// Token-level preference loss of ILRec (ILREC.md §3; shaders/token_losses.wgsl): self-hard negatives
// from the intermediate layers, the penalised cross-entropy L_CPO, the distillation L_CPD and the
// reward regulariser L_CRR in one fused kernel that writes the gradients in its forward pass; plus
// a composite twin built from engine ops (a check on the kernel).
import { isGradEnabled, noGrad, record } from '../autograd.js';
import { Tensor, shapeStr } from '../tensor.js';
import { assertF32, f32bits, gridFor, run } from './common.js';
import { add, eq, exp, fill, gt, mul, scale, sub, where } from './elementwise.js';
import { mean, sum } from './reduce.js';
import { ROW_WG, logSoftmax, rowGrid, softmax, threadsPerRow } from './softmax.js';
import { concat, reshape, slice } from './view.js';

const SHADER = 'token_losses';
/** Invocations of the one-workgroup reduction and of the gradient-scaling kernel. */
const FLAT_WG = 256;
/** Floats per row in the kernel's per-row record (cpo, cpd, crr, |N|, counts, padding). */
const ROW_TERMS = 8;
/** Most intermediate layers: the kernel keeps one statistic per layer in registers. */
export const MAX_TOKEN_LAYERS = 8;
/** Rewards below this carry no CF mass (−Infinity included). */
export const NO_MASS = -1e30;

export interface TokenPreferenceConfig {
  /** How the intermediate layers' logits combine into z~ (released code: sum). */
  aggregator: 'sum' | 'mean';
  /**
   * What φ scales: 'logit' (ILREC.md §3): N = {v ∈ D, v ≠ y : z~_v ≥ φ·zL[y]} on raw logits.
   * 'logprob': N = {v ∈ D, v ≠ y : ℓ~_v ≥ φ·log p^L_y} with ℓ^(l) = log softmax_D zI[l],
   * ℓ~ = f(ℓ^(l)) (the same aggregator; log softmax_D zL without zI) and p^L = softmax_D zL: blind
   * to the row-wide offset a lens layer's logits may carry against the final layer's (small models
   * trained from scratch, where φ = 1 on raw logits makes every domain token a negative). There
   * φ multiplies log p^L_y ≤ 0: φ > 1 admits more negatives, φ < 1 fewer. With f = sum over K
   * layers ℓ~ is on K times the scale of log p^L_y (as z~ is in 'logit' mode); mean keeps them alike.
   */
  threshold: 'logit' | 'logprob';
  /** Threshold factor φ (see threshold); ties with the threshold are negatives. */
  phi: number;
  /** CPO penalty strength α; 0 = plain cross-entropy ("without CPO"). */
  alpha: number;
  /** m, the scale of the additive penalty. */
  margin: number;
  /** z' = zL + α·m·w (additive, sign-safe) or zL·(1 + α·w) (the released code). */
  cpoForm: 'additive' | 'multiplicative';
  /** The CPD teacher p^L gets no gradient. */
  detachTeacher: boolean;
  /** Weight of L_CPD; 0 = "without CPD". */
  lambdaCPD: number;
  /** Weight of L_CRR; 0 = "without CRR". */
  b: number;
}

export const TOKEN_PREFERENCE_DEFAULTS: TokenPreferenceConfig = {
  aggregator: 'sum', threshold: 'logit', phi: 1, alpha: 0.1, margin: 1, cpoForm: 'additive', detachTeacher: true, lambdaCPD: 1, b: 0.005,
};

export interface TokenPreferenceInputs {
  /** Final-layer logits [R, V]. */
  zL: Tensor;
  /**
   * Intermediate-layer logits [K, R, VI], K ≤ 8, columns = zL columns [colOffset, colOffset + VI).
   * null: negatives from the final layer (detached) and no CPD term.
   */
  zI: Tensor | null;
  colOffset?: number;
  /** i32 [R]; rows whose target is ignoreIndex give 0 loss and gradient and are not counted. */
  targets: Tensor;
  /** i32 [R, 2]: each row's candidate range [lo, hi) in zL columns; default [colOffset, colOffset + VI). */
  domain?: Tensor;
  /** f32 [R, VI] in zI's columns: CF log-mass r; values < −1e30 mean "no mass". Required when b ≠ 0. */
  rewards?: Tensor | null;
  ignoreIndex?: number;
}

export interface TokenPreferenceResult {
  /** Scalar: mean over the counted rows of CPO + λ·CPD + b·CRR (0 when none counts). */
  loss: Tensor;
  /** f32 [4], no gradient: mean CPO, mean CPD, mean CRR, mean |N_t| over the counted rows. */
  terms: Tensor;
}

interface Shapes {
  R: number;
  V: number;
  K: number;
  VI: number;
  colOffset: number;
  ignoreIndex: number;
  cfg: TokenPreferenceConfig;
}

function checkInputs(inp: TokenPreferenceInputs, partial: Partial<TokenPreferenceConfig>, op: string): Shapes {
  const cfg = { ...TOKEN_PREFERENCE_DEFAULTS, ...partial };
  const { zL, zI, targets } = inp;
  assertF32(zL, op);
  if (zL.ndim !== 2) throw new Error(`${op}: zL must be [R, V], got ${shapeStr(zL.shape)}`);
  const [R, V] = zL.shape;
  const colOffset = inp.colOffset ?? 0;
  const ignoreIndex = inp.ignoreIndex ?? -100;
  let K = 0;
  // zI's (and the rewards') columns; without zI, the rewards' width or the rest of zL.
  let VI = !zI && inp.rewards?.ndim === 2 ? inp.rewards.shape[1] : V - colOffset;
  if (zI) {
    assertF32(zI, op);
    if (zI.ndim !== 3 || zI.shape[1] !== R) throw new Error(`${op}: zI must be [K, R, VI] with R = ${R}, got ${shapeStr(zI.shape)}`);
    [K, , VI] = zI.shape;
    if (K < 1 || K > MAX_TOKEN_LAYERS) throw new Error(`${op}: zI has ${K} layers; 1..${MAX_TOKEN_LAYERS} are supported`);
  }
  if (!Number.isInteger(colOffset) || colOffset < 0 || colOffset + VI > V)
    throw new Error(`${op}: columns [${colOffset}, ${colOffset + VI}) of zI do not fit in zL ${shapeStr(zL.shape)}`);
  if (targets.dtype !== 'i32' || targets.shape.join() !== String(R))
    throw new Error(`${op}: targets must be i32 [${R}], got ${targets.dtype} ${shapeStr(targets.shape)}`);
  if (inp.domain && (inp.domain.dtype !== 'i32' || inp.domain.shape.join() !== `${R},2`))
    throw new Error(`${op}: domain must be i32 [${R}, 2], got ${inp.domain.dtype} ${shapeStr(inp.domain.shape)}`);
  const rw = inp.rewards;
  if (rw) {
    assertF32(rw, op);
    if (rw.shape.join() !== `${R},${VI}`) throw new Error(`${op}: rewards must be [${R}, ${VI}] (zI's columns), got ${shapeStr(rw.shape)}`);
  } else if (cfg.b !== 0) throw new Error(`${op}: b = ${cfg.b} ≠ 0 needs rewards`);
  if (!['sum', 'mean'].includes(cfg.aggregator)) throw new Error(`${op}: aggregator must be sum or mean, got ${cfg.aggregator}`);
  if (!['logit', 'logprob'].includes(cfg.threshold)) throw new Error(`${op}: threshold must be logit or logprob, got ${cfg.threshold}`);
  if (!['additive', 'multiplicative'].includes(cfg.cpoForm)) throw new Error(`${op}: cpoForm must be additive or multiplicative, got ${cfg.cpoForm}`);
  // Host-side checks where the indices were uploaded (GPU-made ones are clamped in the kernel).
  const t = targets.hostInts;
  const d = inp.domain?.hostInts;
  if (t)
    for (let r = 0; r < R; r++) {
      if (t[r] === ignoreIndex) continue;
      if (t[r] < 0 || t[r] >= V) throw new Error(`${op}: target ${t[r]} at row ${r} is outside [0, ${V}) and is not ignoreIndex (${ignoreIndex})`);
      const [lo, hi] = d ? [d[2 * r], d[2 * r + 1]] : [colOffset, colOffset + VI];
      if (lo < colOffset || hi > colOffset + VI || lo >= hi || t[r] < lo || t[r] >= hi)
        throw new Error(`${op}: row ${r}: domain [${lo}, ${hi}) must lie in [${colOffset}, ${colOffset + VI}) and contain the target ${t[r]}`);
    }
  return { R, V, K, VI, colOffset, ignoreIndex, cfg };
}

/**
 * Threads per row: as softmax, capped at TPR_CAP because the end-of-pass reductions are serial in
 * the row's threads (16 ran ~1.8× faster than 64 on lavapipe at R = 1024, V = 1283, K = 4). Few
 * rows (R < ROW_WG) get up to ROW_WG threads each so that a large GPU still has work.
 */
const TPR_CAP = 16;

function rowThreads(R: number, V: number): number {
  const t = threadsPerRow(Math.ceil(V / 4));
  return R < ROW_WG ? t : Math.min(t, TPR_CAP);
}

/** Switch bits of the kernel's `flags` uniform (F_* in the shader). */
const F = { mean: 1, mult: 2, detach: 4, zI: 8, rewards: 16, domain: 32, gradL: 64, gradI: 128, logprob: 256 } as const;

function uniforms(s: Shapes, opts: { n4?: number; tpr?: number; flags?: number } = {}): number[] {
  const c = s.cfg;
  return [
    s.R, s.V, s.VI, s.colOffset, s.ignoreIndex | 0, opts.n4 ?? 0, Math.max(s.K, 1), opts.tpr ?? 1,
    opts.flags ?? 0, 0, 0, 0,
    f32bits(c.phi), f32bits(c.alpha), f32bits(c.margin), f32bits(c.lambdaCPD), f32bits(c.b), 0, 0, 0,
  ];
}

/**
 * The ILRec token loss (ILREC.md §3), per counted row t with target y and domain D:
 *   z~ = Σ_l zI[l] (or the mean), τ = φ·zL[y], N = {v ∈ D, v ≠ y : z~_v ≥ τ}, w = softmax_N(z~),
 *   (threshold 'logprob': N = {v ∈ D, v ≠ y : ℓ~_v ≥ φ·log p^L_y}, ℓ~ = f(log softmax_D zI[l]);
 *   w stays softmax_N(z~), equal to softmax_N(ℓ~) as the two differ by a per-row constant),
 *   CPO = CE(z', y) over all V with z'_v = zL_v + α·m·w_v (or zL_v·(1 + α·w_v)) on N,
 *   CPD = Σ_l KL(p^L ‖ p^(l)) over D, CRR = KL(q ‖ p^L) over N with q = softmax_N(r),
 * loss = mean_t (CPO + λ·CPD + b·CRR). N, w, q (and the teacher when detached) are constants for
 * the gradient. With the tape recording, the forward kernel also writes the unscaled gradients.
 */
export function tokenPreferenceLoss(inp: TokenPreferenceInputs, partial: Partial<TokenPreferenceConfig> = {}): TokenPreferenceResult {
  const op = 'tokenPreferenceLoss';
  const s = checkInputs(inp, partial, op);
  const { R, V, cfg } = s;
  const { zL, zI, targets } = inp;
  const gradL = isGradEnabled() && zL.requiresGrad;
  const gradI = isGradEnabled() && !!zI?.requiresGrad;
  const tpr = rowThreads(R, V);
  const flags = (cfg.aggregator === 'mean' ? F.mean : 0) | (cfg.cpoForm === 'multiplicative' ? F.mult : 0) |
    (cfg.detachTeacher ? F.detach : 0) | (zI ? F.zI : 0) | (inp.rewards ? F.rewards : 0) | (inp.domain ? F.domain : 0) |
    (gradL ? F.gradL : 0) | (gradI ? F.gradI : 0) | (cfg.threshold === 'logprob' ? F.logprob : 0);
  const params = uniforms(s, { tpr, flags });
  const rowTerms = Tensor.empty([R, ROW_TERMS]);
  // dzL [R, V], dzI [K, R, VI]: dℓ_t/dz per row, unscaled (the backward applies dout / count).
  // The kernel writes dzI on each row's domain only, so it starts zero-filled.
  const dzL = gradL ? Tensor.empty(zL.shape) : null;
  const dzI = gradI ? fill(zI!.shape, 0) : null;
  if (R > 0) {
    const grad = gradL || gradI;
    // Bindings the entry uses but this call does not need get a stand-in (never written).
    const spare = grad && !(gradL && gradI) ? Tensor.empty([1]) : null;
    const rows = rowGrid(Math.ceil(R / (ROW_WG / tpr)));
    const common: Record<number, GPUBuffer> = { 1: zL.buffer, 2: (zI ?? zL).buffer, 3: targets.buffer, 4: (inp.domain ?? targets).buffer };
    // The log-prob threshold: τ [R] per row from its own pass first (see the shader's header).
    const tau = cfg.threshold === 'logprob' ? Tensor.empty([R]) : null;
    if (tau)
      run({
        shader: SHADER, entry: 'thresholds', label: 'tokenPreference_thresholds', constants: { WG: ROW_WG },
        buffers: { ...common, 17: tau.buffer }, params, workgroups: rows,
      });
    const buffers: Record<number, GPUBuffer> = { ...common, 5: (inp.rewards ?? zL).buffer, 6: rowTerms.buffer, 18: (tau ?? zL).buffer };
    if (grad) {
      buffers[7] = (dzL ?? spare!).buffer;
      buffers[8] = (dzI ?? spare!).buffer;
    }
    const entry = grad ? 'fwd_grad' : 'fwd';
    run({
      shader: SHADER, entry, label: `tokenPreference_${entry}`,
      constants: { WG: ROW_WG },
      buffers, params, workgroups: rows,
    });
    spare?.dispose();
    tau?.dispose();
  }
  const loss = Tensor.empty([]);
  const terms = Tensor.empty([4]);
  const count = Tensor.empty([1]);
  run({
    shader: SHADER, entry: 'reduce', label: 'tokenPreference_reduce', constants: { WG: FLAT_WG },
    buffers: { 9: rowTerms.buffer, 10: loss.buffer, 11: terms.buffer, 12: count.buffer }, params, workgroups: [1],
  });
  rowTerms.dispose();
  if (!dzL && !dzI) {
    count.dispose();
    return { loss, terms };
  }
  const scaled = (g: Tensor | null, dout: Tensor): Tensor | null => {
    if (!g) return null;
    const dx = Tensor.empty(g.shape);
    const n4 = Math.ceil(g.size / 4);
    if (n4 > 0)
      run({
        shader: SHADER, entry: 'bwd', label: 'tokenPreference_bwd', constants: { WG: FLAT_WG },
        buffers: { 13: g.buffer, 14: dout.buffer, 15: count.buffer, 16: dx.buffer }, params: uniforms(s, { n4 }), workgroups: [gridFor(n4, FLAT_WG)],
      });
    return dx;
  };
  // With N, w, q constant (and the teacher detached), per counted row:
  //   dℓ/dzL_v = s'_v·J_v − [v = y] + λ·[¬detach]·Σ_l p^L_v((log p^L_v − log p^(l)_v) − KL_l) + b·(p^L_v − q_v)
  //   dℓ/dzI[l]_v = λ·(p^(l)_v − p^L_v) on D,
  // s' = softmax(z'), J_v = 1 + α·w_v on N in the multiplicative form (else 1); the last two terms
  // only on D (CRR only on rows with CF mass on N). loss = mean ⇒ each scaled by dout / count.
  const parents = zI ? [zL, zI] : [zL];
  record(loss, op, parents, (dout) => [scaled(dzL, dout), scaled(dzI, dout)].slice(0, parents.length));
  return { loss, terms };
}

/**
 * The same loss from engine ops (logSoftmax, softmax, where, gt/eq, mul, sum, slice, concat):
 * domain, target and counted-row masks are built on the host (targets and domain must carry
 * their host copies); N, w and q are computed on the GPU from the live logits under noGrad.
 */
export function tokenPreferenceComposite(inp: TokenPreferenceInputs, partial: Partial<TokenPreferenceConfig> = {}): TokenPreferenceResult {
  const op = 'tokenPreferenceComposite';
  const s = checkInputs(inp, partial, op);
  const { R, V, VI, colOffset, ignoreIndex, cfg } = s;
  const { zL, zI } = inp;
  const t = inp.targets.hostInts;
  const d = inp.domain?.hostInts;
  if (!t || (inp.domain && !d)) throw new Error(`${op}: targets and domain must be uploaded from the host (the masks are built there)`);
  const BIG_NEG = fill([1], -1e30);
  // Host masks: D in zI's columns [R, VI], the target one-hot in zL's [R, V] and zI's columns, counted rows [R, 1].
  const domI = new Float32Array(R * VI);
  const hotV = new Float32Array(R * V);
  const hotI = new Float32Array(R * VI);
  const rowOn = new Float32Array(R);
  let count = 0;
  for (let r = 0; r < R; r++) {
    if (t[r] === ignoreIndex) continue;
    const [lo, hi] = d ? [d[2 * r], d[2 * r + 1]] : [colOffset, colOffset + VI];
    for (let v = lo; v < hi; v++) domI[r * VI + v - colOffset] = 1;
    hotV[r * V + t[r]] = 1;
    hotI[r * VI + t[r] - colOffset] = 1;
    rowOn[r] = 1;
    count++;
  }
  const dom = Tensor.fromData(domI, [R, VI]);
  const onehotV = Tensor.fromData(hotV, [R, V]);
  const counted = Tensor.fromData(rowOn, [R, 1]);
  const zLs = colOffset === 0 && VI === V ? zL : slice(zL, [0, colOffset], [R, colOffset + VI]); // [R, VI]
  /** x [R, VI] zero-padded to zL's columns [R, V]. */
  const toV = (x: Tensor) => {
    const parts = [x];
    if (colOffset > 0) parts.unshift(fill([R, colOffset], 0));
    if (colOffset + VI < V) parts.push(fill([R, V - colOffset - VI], 0));
    return parts.length === 1 ? x : concat(parts, 1);
  };
  const { neg, w, q, logq } = noGrad(() => {
    const agg = (x: Tensor) => (cfg.aggregator === 'sum' ? sum(x, 0) : mean(x, 0)); // over the layers
    const zt = zI ? agg(zI) : zLs; // z~ [R, VI]
    const onehotI = Tensor.fromData(hotI, [R, VI]);
    // The thresholded score and τ [R, 1]: z~ and φ·zL[y], or ℓ~ and φ·log p^L_y.
    let score = zt;
    let tau = scale(sum(mul(zL, onehotV), -1, true), cfg.phi);
    if (cfg.threshold === 'logprob') {
      const lpL = logSoftmax(where(dom, zLs, BIG_NEG)); // log p^L over D [R, VI]
      score = zI ? agg(logSoftmax(where(dom, zI, BIG_NEG))) : lpL; // ℓ~
      tau = scale(sum(mul(lpL, onehotI), -1, true), cfg.phi);
    }
    const ge = add(gt(score, tau), eq(score, tau));
    const notY = sub(fill([1], 1), onehotI);
    const neg = mul(mul(ge, dom), notY); // N as a 0/1 mask (0 on rows that do not count)
    const w = mul(softmax(where(neg, zt, BIG_NEG)), neg); // over z~ in both threshold modes
    let q: Tensor | null = null;
    let logq: Tensor | null = null;
    if (inp.rewards) {
      const rw = inp.rewards;
      const hasMass = mul(add(gt(rw, fill([1], NO_MASS)), eq(rw, fill([1], NO_MASS))), neg);
      logq = logSoftmax(where(hasMass, rw, BIG_NEG));
      q = mul(exp(logq), hasMass); // rows without mass: all 0
    }
    return { neg, w, q, logq };
  });
  // CPO: cross-entropy over all V of the penalised logits.
  const wV = noGrad(() => toV(w));
  const zp = cfg.cpoForm === 'additive'
    ? add(zL, noGrad(() => scale(wV, cfg.alpha * cfg.margin)))
    : mul(zL, noGrad(() => add(scale(wV, cfg.alpha), fill([1], 1))));
  const cpo = sum(mul(logSoftmax(zp), onehotV), -1); // −CPO per row, [R]
  // p^L over D: live for CRR, detached (or not) as CPD's teacher.
  const logpLOf = (x: Tensor) => logSoftmax(where(dom, x, BIG_NEG));
  const logpL = logpLOf(zLs);
  let cpd: Tensor | null = null;
  if (zI) {
    const teacher = cfg.detachTeacher ? noGrad(() => logpLOf(zLs)) : logpL; // [R, VI]
    const logpI = logSoftmax(where(dom, zI, BIG_NEG)); // [K, R, VI]
    const kl = mul(mul(exp(teacher), sub(teacher, logpI)), dom); // [K, R, VI]
    cpd = mul(sum(sum(kl, 0), -1, true), counted); // [R, 1]
  }
  const crr = q && logq ? sum(mul(q, sub(logq, logpL)), -1, true) : null; // [R, 1]
  let rowLoss = scale(reshape(cpo, [R, 1]), -1);
  if (cpd && cfg.lambdaCPD !== 0) rowLoss = add(rowLoss, scale(cpd, cfg.lambdaCPD));
  if (crr && cfg.b !== 0) rowLoss = add(rowLoss, scale(crr, cfg.b));
  const inv = count > 0 ? 1 / count : 0;
  const loss = mul(sum(rowLoss), fill([], inv)); // a rank-0 factor keeps the scalar's shape
  const terms = noGrad(() => {
    const zero = fill([1], 0);
    const parts = [scale(reshape(sum(cpo), [1]), -inv), cpd ? scale(reshape(sum(cpd), [1]), inv) : zero, crr ? scale(reshape(sum(crr), [1]), inv) : zero, scale(reshape(sum(neg), [1]), inv)];
    return concat(parts, 0);
  });
  return { loss, terms };
}
