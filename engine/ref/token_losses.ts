// Float64 twin of engine/ops/token_losses.ts: the loss, its terms and its analytic gradients, and a
// frozen mode (N, w, q and the detached teacher fixed at given values) whose finite differences
// follow the op's stop-gradient semantics.
import { ndZeros, type ND } from './nd.js';
import { NO_MASS, TOKEN_PREFERENCE_DEFAULTS, type TokenPreferenceConfig } from '../ops/token_losses.js';

export interface TokenPreferenceInputs {
  zL: ND; // [R, V]
  zI: ND | null; // [K, R, VI]
  colOffset?: number;
  targets: ArrayLike<number>; // [R]
  domain?: ArrayLike<number>; // [R, 2]
  rewards?: ND | null; // [R, VI]
  ignoreIndex?: number;
}

/** The selection the gradient treats as constant, per row in zI's columns [R, VI]. */
export interface FrozenSelection {
  neg: Uint8Array;
  w: Float64Array;
  /** q on N (0 elsewhere and on rows without CF mass). */
  q: Float64Array;
  /** Rows whose negatives carry CF mass (the rows with a CRR term). */
  mass: Uint8Array;
  /** log p^L over D: CPD's teacher, frozen when detachTeacher. */
  teacher: Float64Array;
}

export interface TokenPreferenceResult {
  loss: ND; // []
  terms: ND; // [4]: mean CPO, CPD, CRR, |N|
  /** d loss / d zL and d zI (dout = 1), with the selection constant. */
  dzL: ND;
  dzI: ND | null;
  count: number;
  /** The selection this evaluation used (the live one unless `frozen` was given). */
  frozen: FrozenSelection;
}

function logSoftmaxOver(x: (v: number) => number, cols: number[]): Map<number, number> {
  let m = -Infinity;
  for (const v of cols) m = Math.max(m, x(v));
  let s = 0;
  for (const v of cols) s += Math.exp(x(v) - m);
  const lse = m + Math.log(s);
  return new Map(cols.map((v) => [v, x(v) - lse]));
}

/**
 * The loss of engine/ops/token_losses.ts in float64. With `frozen`, N, w, q (and the teacher when
 * detachTeacher) are taken from it instead of from the inputs: the function whose derivative the
 * op's gradient is.
 */
export function tokenPreferenceLoss(inp: TokenPreferenceInputs, partial: Partial<TokenPreferenceConfig> = {}, frozen?: FrozenSelection): TokenPreferenceResult {
  const cfg = { ...TOKEN_PREFERENCE_DEFAULTS, ...partial };
  const [R, V] = inp.zL.shape;
  const zL = inp.zL.data;
  const zI = inp.zI?.data;
  const K = inp.zI ? inp.zI.shape[0] : 0;
  const colOffset = inp.colOffset ?? 0;
  const VI = inp.zI ? inp.zI.shape[2] : inp.rewards ? inp.rewards.shape[1] : V - colOffset;
  const ignoreIndex = inp.ignoreIndex ?? -100;
  const rw = inp.rewards?.data;
  const mult = cfg.cpoForm === 'multiplicative';
  const dzL = ndZeros([R, V]);
  const dzI = inp.zI ? ndZeros(inp.zI.shape) : null;
  const sel: FrozenSelection = frozen ?? {
    neg: new Uint8Array(R * VI), w: new Float64Array(R * VI), q: new Float64Array(R * VI), mass: new Uint8Array(R), teacher: new Float64Array(R * VI),
  };
  const sums = [0, 0, 0, 0];
  let total = 0;
  let count = 0;
  for (let r = 0; r < R; r++) {
    const y = inp.targets[r];
    if (y === ignoreIndex) continue;
    count++;
    const lo = inp.domain ? inp.domain[2 * r] : colOffset;
    const hi = inp.domain ? inp.domain[2 * r + 1] : colOffset + VI;
    const D = Array.from({ length: hi - lo }, (_, i) => lo + i);
    const at = (v: number) => r * VI + v - colOffset; // [R, VI] index of zL column v
    const zl = (v: number) => zL[r * V + v];
    const zi = (k: number, v: number) => zI![(k * R + r) * VI + v - colOffset];

    // Selection: N, w, q (live unless frozen).
    if (!frozen) {
      /** f over the layers of g(k, v). */
      const agg = (g: (k: number, v: number) => number) => (v: number) => {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += g(k, v);
        return cfg.aggregator === 'mean' ? acc / K : acc;
      };
      const zt = zI ? agg(zi) : zl; // z~
      // The thresholded score and τ: z~ and φ·zL[y], or ℓ~ = f(log softmax_D zI[l]) and φ·log p^L_y.
      let score = zt;
      let tau = cfg.phi * zl(y);
      if (cfg.threshold === 'logprob') {
        const lpL = logSoftmaxOver(zl, D);
        if (zI) {
          const lpI = Array.from({ length: K }, (_, k) => logSoftmaxOver((v) => zi(k, v), D));
          score = agg((k, v) => lpI[k].get(v)!);
        } else score = (v) => lpL.get(v)!;
        tau = cfg.phi * lpL.get(y)!;
      }
      const N = D.filter((v) => v !== y && score(v) >= tau);
      for (const v of N) sel.neg[at(v)] = 1;
      // w = softmax_N(z~) in both modes (= softmax_N(ℓ~): they differ by a per-row constant).
      for (const [v, lw] of logSoftmaxOver(zt, N)) sel.w[at(v)] = Math.exp(lw);
      if (rw) {
        const withMass = N.filter((v) => rw[at(v)] >= NO_MASS);
        sel.mass[r] = withMass.length > 0 ? 1 : 0;
        for (const [v, lq] of logSoftmaxOver((v) => rw[at(v)], withMass)) sel.q[at(v)] = Math.exp(lq);
      }
    }
    const isNeg = (v: number) => v >= lo && v < hi && sel.neg[at(v)] === 1;

    // CPO: cross-entropy of the penalised logits over all V.
    const zp = new Float64Array(V);
    const jac = new Float64Array(V).fill(1);
    for (let v = 0; v < V; v++) {
      zp[v] = zl(v);
      if (isNeg(v)) {
        const w = sel.w[at(v)];
        zp[v] = mult ? zl(v) * (1 + cfg.alpha * w) : zl(v) + cfg.alpha * cfg.margin * w;
        if (mult) jac[v] = 1 + cfg.alpha * w;
      }
    }
    let m = -Infinity;
    for (const x of zp) m = Math.max(m, x);
    let s = 0;
    for (const x of zp) s += Math.exp(x - m);
    const lse = m + Math.log(s);
    const cpo = lse - zp[y];
    const g = new Float64Array(V); // dℓ/dzL of this row
    for (let v = 0; v < V; v++) g[v] = Math.exp(zp[v] - lse) * jac[v] - (v === y ? 1 : 0);

    // p^L over D (live), the teacher (frozen when detached), CPD.
    const logpL = logSoftmaxOver(zl, D);
    if (!frozen) for (const v of D) sel.teacher[at(v)] = logpL.get(v)!;
    const teacher = (v: number) => (cfg.detachTeacher ? sel.teacher[at(v)] : logpL.get(v)!);
    let cpd = 0;
    for (let k = 0; k < K; k++) {
      const logpI = logSoftmaxOver((v) => zi(k, v), D);
      let kl = 0;
      for (const v of D) kl += Math.exp(teacher(v)) * (teacher(v) - logpI.get(v)!);
      cpd += kl;
      for (const v of D) {
        // d KL / d zI[k]_v = p^(k)_v − p^T_v;  d KL / d zL_v = p^L_v((log p^L_v − log p^(k)_v) − KL) when live.
        dzI!.data[(k * R + r) * VI + v - colOffset] = cfg.lambdaCPD * (Math.exp(logpI.get(v)!) - Math.exp(teacher(v)));
        if (!cfg.detachTeacher) g[v] += cfg.lambdaCPD * Math.exp(logpL.get(v)!) * ((logpL.get(v)! - logpI.get(v)!) - kl);
      }
    }

    // CRR = KL(q ‖ p^L) over N with CF mass; d/dzL_v = p^L_v − q_v on D.
    let crr = 0;
    if (rw && sel.mass[r]) {
      for (const v of D) {
        const q = isNeg(v) ? sel.q[at(v)] : 0;
        if (q > 0) crr += q * (Math.log(q) - logpL.get(v)!);
        g[v] += cfg.b * (Math.exp(logpL.get(v)!) - q);
      }
    }
    for (let v = 0; v < V; v++) dzL.data[r * V + v] = g[v];
    let nNeg = 0;
    for (const v of D) nNeg += isNeg(v) ? 1 : 0;
    sums[0] += cpo;
    sums[1] += cpd;
    sums[2] += crr;
    sums[3] += nNeg;
    total += cpo + cfg.lambdaCPD * cpd + cfg.b * crr;
  }
  const inv = count > 0 ? 1 / count : 0;
  for (const t of [dzL, dzI]) if (t) for (let i = 0; i < t.data.length; i++) t.data[i] *= inv;
  const loss = ndZeros([]);
  loss.data[0] = total * inv;
  const terms = ndZeros([4]);
  for (let j = 0; j < 4; j++) terms.data[j] = sums[j] * inv;
  return { loss, terms, dzL, dzI, count, frozen: sel };
}

export const tokenPreferenceComposite = tokenPreferenceLoss;
