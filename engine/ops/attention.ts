// Fused scaled-dot-product attention (shaders/attention.wgsl): causal / masked / grouped-query, with
// the flash-attention-2 backward, a KV cache for decoding, and a composite twin from engine ops.
import { record } from '../autograd.js';
import { Tensor, keep, shapeStr } from '../tensor.js';
import { assertF32, broadcastShapes, broadcastStrides, f32bits, gridFor, run, sameShape } from './common.js';
import { add, fill, mul } from './elementwise.js';
import { matmul } from './matmul.js';
import { broadcastTo } from './reduce.js';
import { softmax } from './softmax.js';
import { reshape, slice } from './view.js';

const SHADER = 'attention';
/** Largest head size: the kernels keep rows in registers of ceil(hs / 4) vec4s, at most 32. */
export const MAX_HEAD_SIZE = 128;

/** Workgroup shapes (WGSL override constants); tests and bench/attention-tune.ts may change them. */
export const ATTENTION_TUNING = {
  /** Invocations per workgroup of fwd and bwd_dq. */
  rowsPerGroup: 32,
  /** Rows each invocation owns in fwd and bwd_dq (query rows) and bwd_dkv (key rows); fewer when the
   * head size leaves no room (rows · ceil(hs / 4) ≤ 32). On lavapipe every load of a streamed row is
   * a per-lane loop, so rows held in registers cut the loads per FMA (fwd, T = 512, hs = 32: about
   * 39 → 13 ms CPU for 1 → 4 rows); bwd_dkv holds four arrays per row and spills beyond 2. */
  rowsPerInvocation: 4,
  dqRowsPerInvocation: 4,
  dkvRowsPerInvocation: 2,
  /** Invocations per workgroup of bwd_dkv. */
  keyRowsPerGroup: 32,
  /** Up to this many query rows, fwd_split is used: a workgroup per (batch, kv head, rows of the
   * group's G·T query rows), with the keys split across its invocations (decoding). */
  splitMaxT: 4,
  /** fwd_split narrows its workgroup until each invocation gets at least this many keys. */
  splitMinKeys: 4,
  /** Most / fewest invocations in a fwd_split workgroup (powers of two). */
  splitMax: 64,
  splitMin: 8,
  /** Workgroup memory for fwd_split's merge of partial rows: SPLIT · rows · ceil(hs / 4) · 16 bytes ≤
   * this (WebGPU's guaranteed minimum is 16 KiB). */
  splitSharedBytes: 16384,
  /** Head sizes up to this get unrolled loops over a row's chunks (rows in registers: about 2× faster
   * on lavapipe at hs = 32, but each pipeline takes seconds to compile, and far longer past 32). */
  unrollMaxHeadSize: 32,
  /** Forces a forward kernel ('auto' picks by T). */
  kernel: 'auto' as 'auto' | 'rows' | 'split',
  /** KVCache.attend reads a shared prompt once per group of rows (KVCache.sharePrefix); off: per row. */
  sharedPrefix: true,
};

export interface AttentionOptions {
  /** Query row i attends keys j ≤ qOffset + i (default true). */
  causal?: boolean;
  /** Score scale (default 1 / sqrt(hs)). */
  scale?: number;
  /** Additive f32 mask broadcastable to [B, 1, T, Tk] (e.g. -1e9 on padding keys); gets no gradient. */
  mask?: Tensor;
  /** Position of query row 0 among the keys (default Tk − T: the queries are the last positions). */
  qOffset?: number;
  /** Valid keys: the first kvLength rows of k and v along axis 2 (default k.shape[2]); a KV cache's
   * buffers are longer than its contents. Key gradients are zero past it. */
  kvLength?: number;
}

interface Geometry {
  B: number;
  NH: number;
  NKV: number;
  G: number;
  T: number;
  Tk: number;
  /** Key rows per kv head in k/v's buffers (k.shape[2]). */
  KS: number;
  hs: number;
  scale: number;
  causal: boolean;
  qOff: number;
  mask?: Tensor;
  /** Mask element strides for batch, query row and key. */
  maskStrides: [number, number, number];
}

function geometry(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions, op: string): Geometry {
  for (const [n, t] of [['q', q], ['k', k], ['v', v]] as const) {
    assertF32(t, op);
    if (t.ndim !== 4) throw new Error(`${op}: ${n} must be [B, heads, T, hs], got ${shapeStr(t.shape)}`);
  }
  const [B, NH, T, hs] = q.shape;
  const [Bk, NKV, KS, hsk] = k.shape;
  const shapes = `q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)}`;
  if (!sameShape(k.shape, v.shape) || Bk !== B || hsk !== hs) throw new Error(`${op}: shapes do not fit (${shapes})`);
  if (NKV === 0 || NH % NKV !== 0) throw new Error(`${op}: query heads ${NH} are not a multiple of kv heads ${NKV} (${shapes})`);
  if (hs < 1 || hs > MAX_HEAD_SIZE) throw new Error(`${op}: head size ${hs} outside [1, ${MAX_HEAD_SIZE}]`);
  const Tk = o.kvLength ?? KS;
  if (!Number.isInteger(Tk) || Tk < 1 || Tk > KS) throw new Error(`${op}: kvLength ${Tk} outside [1, ${KS}] (${shapes})`);
  const causal = o.causal ?? true;
  const qOff = o.qOffset ?? Math.max(0, Tk - T);
  if (!Number.isInteger(qOff) || qOff < 0) throw new Error(`${op}: qOffset ${qOff} must be a non-negative integer`);
  const scale = o.scale ?? 1 / Math.sqrt(hs);
  let maskStrides: [number, number, number] = [0, 0, 0];
  if (o.mask) {
    assertF32(o.mask, op);
    const full = [B, 1, T, Tk];
    if (o.mask.ndim > 4 || !sameShape(broadcastShapes(o.mask.shape, full, op), full))
      throw new Error(`${op}: mask ${shapeStr(o.mask.shape)} does not broadcast to [B, 1, T, Tk] = ${shapeStr(full)}`);
    const st = broadcastStrides(o.mask.shape, full);
    maskStrides = [st[0], st[2], st[3]];
  }
  return { B, NH, NKV, G: NH / NKV, T, Tk, KS, hs, scale, causal, qOff, mask: o.mask, maskStrides };
}

/**
 * fwd_split's addressing: batch b's kv head h is head b·kvb + h of k/v, its keys start at row k0,
 * and query row (b, head h, position i) is row b·qsb + h·qsh + i·qsi of q, O and ld. The default
 * is attention's own [B, NH, T, hs] layout.
 */
interface SplitAddressing {
  kvb: number;
  k0: number;
  qsb: number;
  qsh: number;
  qsi: number;
}

function ownLayout(g: Geometry): SplitAddressing {
  return { kvb: g.NKV, k0: 0, qsb: g.NH * g.T, qsh: g.T, qsi: 1 };
}

/** The kernels' uniforms; `prev`: fwd_split merges in an earlier pass's rows. */
function params(g: Geometry, wantDq = false, a: SplitAddressing = ownLayout(g), prev = false): number[] {
  const [msb, mst, msk] = g.maskStrides;
  return [
    g.T, g.Tk, g.KS, g.NH, g.NKV, g.G, g.qOff, f32bits(g.scale), msb, mst, msk, g.B * g.NH * g.T,
    0, 0, 0, 0, Math.ceil(g.hs / 4), g.causal ? 1 : 0, wantDq ? 1 : 0,
    0, a.kvb, a.k0, a.qsb, a.qsh, a.qsi, prev ? 1 : 0,
  ];
}

/** Override constants shared by the attention kernels: the head size and whether to unroll over it. */
function headConstants(g: Geometry): Record<string, number> {
  return { HS: g.hs, UNROLL: g.hs <= ATTENTION_TUNING.unrollMaxHeadSize ? 1 : 0, HAS_MASK: g.mask ? 1 : 0 };
}

/** Rows per invocation: up to `want`, as many as fit the kernels' 32-vec4 register arrays. */
function rowsPerInvocation(hs: number, want: number): number {
  return Math.max(1, Math.min(want, Math.floor(32 / Math.ceil(hs / 4))));
}

/** Invocations sharing fwd_split's rows: enough keys for each, within the workgroup-memory budget. */
function splitWidth(hs: number, Tk: number, rows: number): number {
  const tune = ATTENTION_TUNING;
  const cap = Math.min(tune.splitMax, Math.floor(tune.splitSharedBytes / (rows * Math.ceil(hs / 4) * 16)));
  let s = tune.splitMin;
  while (s * 2 <= cap && s * 2 * tune.splitMinKeys <= Tk) s *= 2;
  return s;
}

/** O [B, NH, T, hs] and ld [3, B·NH·T] (row max m and log l; D's third is written by the backward). */
function forward(q: Tensor, k: Tensor, v: Tensor, g: Geometry): { out: Tensor; ld: Tensor } {
  const tune = ATTENTION_TUNING;
  const out = Tensor.empty([g.B, g.NH, g.T, g.hs]);
  const ld = Tensor.empty([3, g.B * g.NH * g.T]);
  if (out.size === 0) return { out, ld };
  const split = tune.kernel === 'split' || (tune.kernel === 'auto' && g.T <= tune.splitMaxT);
  if (split) splitPass(q, k, v, g, ownLayout(g), out, ld);
  else {
    const buffers = { 1: q.buffer, 2: k.buffer, 3: v.buffer, 4: (g.mask ?? q).buffer, 7: out.buffer, 8: ld.buffer };
    const rpl = rowsPerInvocation(g.hs, tune.rowsPerInvocation);
    run({
      shader: SHADER, entry: 'fwd', label: 'attention_fwd', buffers, params: params(g),
      constants: { ...headConstants(g), BR: tune.rowsPerGroup, RPL: rpl },
      workgroups: [Math.ceil(g.T / (tune.rowsPerGroup * rpl)), g.B * g.NH],
    });
  }
  return { out, ld };
}

/** One fwd_split dispatch: a workgroup per (batch, kv head, up to `rows` of its G·T query rows). */
function splitPass(q: Tensor, k: Tensor, v: Tensor, g: Geometry, a: SplitAddressing, out: Tensor, ld: Tensor, prev?: { out: Tensor; ld: Tensor }): void {
  const rows = rowsPerInvocation(g.hs, Math.min(g.G * g.T, ATTENTION_TUNING.rowsPerInvocation));
  run({
    shader: SHADER, entry: 'fwd_split', label: 'attention_fwd_split', params: params(g, false, a, prev !== undefined),
    // Bindings 6 and 9 are read only when merging an earlier pass; q stands in for them otherwise.
    buffers: { 1: q.buffer, 2: k.buffer, 3: v.buffer, 4: (g.mask ?? q).buffer, 6: (prev?.out ?? q).buffer, 7: out.buffer, 8: ld.buffer, 9: (prev?.ld ?? q).buffer },
    constants: { ...headConstants(g), SPLIT: splitWidth(g.hs, g.Tk, rows), RPL: rows },
    workgroups: [Math.ceil((g.G * g.T) / rows), g.B * g.NKV],
  });
}

/**
 * Decoding attention for rows in groups of K (a prompt's beams) whose first P cache positions hold the
 * same keys and values (the prompt): q [N·K, NH, 1, hs] against the first kvLength positions of
 * k, v [N·K, NKV, KS, hs], all of them visible. Pass 1 reads the prompt once per group, from the group's
 * first row, for the K·G query rows of each kv head together (GQA over beams); pass 2 reads each row's
 * own positions [P, kvLength) and merges pass 1's rows by their log-sum-exp. Same result as
 * attention(q, k, v, { kvLength, mask }) up to rounding; no gradient (decoding only).
 */
export function attentionSharedPrefix(q: Tensor, k: Tensor, v: Tensor, opts: { group: number; prefix: number; kvLength: number; mask?: Tensor; scale?: number }): Tensor {
  const op = 'attentionSharedPrefix';
  const { group: K, prefix: P, kvLength } = opts;
  const g = geometry(q, k, v, { kvLength, causal: false, mask: opts.mask, scale: opts.scale }, op);
  if (g.T !== 1) throw new Error(`${op}: one query row per sequence (decoding), got q ${shapeStr(q.shape)}`);
  if (!Number.isInteger(K) || K < 1 || g.B % K !== 0) throw new Error(`${op}: group ${K} does not divide the batch ${g.B}`);
  if (!Number.isInteger(P) || P < 1 || P >= kvLength) throw new Error(`${op}: prefix ${P} outside [1, kvLength ${kvLength})`);
  if (q.requiresGrad || k.requiresGrad || v.requiresGrad) throw new Error(`${op}: decoding only, no gradient (call it under noGrad)`);
  const N = g.B / K;
  const [msb, , msk] = g.maskStrides;
  // Pass 1: batch n's "query rows" are its K beams (i), row (n·K + i, head h) of q.
  const g1: Geometry = { ...g, B: N, T: K, Tk: P, maskStrides: [K * msb, msb, msk] };
  const o1 = Tensor.empty(q.shape);
  const ld1 = Tensor.empty([3, g.B * g.NH]);
  splitPass(q, k, v, g1, { kvb: K * g.NKV, k0: 0, qsb: K * g.NH, qsh: 1, qsi: g.NH }, o1, ld1);
  // Pass 2: every row's own keys [P, kvLength), merged with pass 1.
  const g2: Geometry = { ...g, Tk: kvLength - P };
  const out = Tensor.empty(q.shape);
  const ld = Tensor.empty([3, g.B * g.NH]);
  splitPass(q, k, v, g2, { ...ownLayout(g2), k0: P }, out, ld, { out: o1, ld: ld1 });
  o1.dispose();
  ld1.dispose();
  ld.dispose();
  return out;
}

/**
 * The flash-attention-2 backward: bwd_dq writes D = rowsum(dO ⊙ O) into ld (and dq when wanted),
 * bwd_dkv then sums dk, dv over the query heads sharing each kv head. No autograd.
 */
function backwardKernels(q: Tensor, k: Tensor, v: Tensor, out: Tensor, ld: Tensor, dout: Tensor, g: Geometry, wantDq: boolean, wantDkv: boolean): (Tensor | null)[] {
  const tune = ATTENTION_TUNING;
  const maskBuf = (g.mask ?? q).buffer;
  const dq = wantDq ? Tensor.empty(q.shape) : null;
  const scratch = wantDq ? null : Tensor.empty([1]); // bwd_dq binds an output even when it only computes D
  const rq = rowsPerInvocation(g.hs, tune.dqRowsPerInvocation);
  run({
    shader: SHADER, entry: 'bwd_dq', label: wantDq ? 'attention_bwd_dq' : 'attention_bwd_d', params: params(g, wantDq),
    constants: { ...headConstants(g), BR: tune.rowsPerGroup, RPL: rq },
    buffers: { 1: q.buffer, 2: k.buffer, 3: v.buffer, 4: maskBuf, 5: dout.buffer, 6: out.buffer, 7: (dq ?? scratch!).buffer, 8: ld.buffer },
    workgroups: [Math.ceil(g.T / (tune.rowsPerGroup * rq)), g.B * g.NH],
  });
  scratch?.dispose();
  if (!wantDkv) return [dq, null, null];
  const dk = Tensor.empty(k.shape);
  const dv = Tensor.empty(v.shape);
  const rk = rowsPerInvocation(g.hs, tune.dkvRowsPerInvocation);
  run({
    shader: SHADER, entry: 'bwd_dkv', label: 'attention_bwd_dkv', params: params(g),
    constants: { ...headConstants(g), BR: tune.keyRowsPerGroup, RPL: rk },
    buffers: { 1: q.buffer, 2: k.buffer, 3: v.buffer, 4: maskBuf, 5: dout.buffer, 9: ld.buffer, 7: dk.buffer, 10: dv.buffer },
    workgroups: [Math.ceil(g.KS / (tune.keyRowsPerGroup * rk)), g.B * g.NKV],
  });
  return [dq, dk, dv];
}

/**
 * softmax(scale · q kᵀ + mask, causal) v for q [B, NH, T, hs], k, v [B, NKV, Tk, hs] → [B, NH, T, hs];
 * query head h uses kv head h / (NH / NKV). One fused kernel: the T×Tk scores are never stored.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const g = geometry(q, k, v, opts, 'attention');
  const { out, ld } = forward(q, k, v, g);
  // With S = scale·q kᵀ + mask, P = softmax(S) (row-wise), O = P v:
  //   dv = Pᵀ dO,  dP = dO vᵀ,  dS = P ⊙ (dP − D) with D_i = Σ_j P_ij dP_ij = dO_i · O_i,
  //   dq = scale · dS k,  dk = scale · dSᵀ q;  P is recomputed from the saved row max and log-sum.
  record(out, 'attention', [q, k, v], (dout) => {
    if (out.size === 0) return [fill(q.shape, 0), fill(k.shape, 0), fill(v.shape, 0)];
    const wantDkv = k.requiresGrad || v.requiresGrad;
    const grads = backwardKernels(q, k, v, out, ld, dout, g, q.requiresGrad, wantDkv);
    if (!k.requiresGrad) grads[1]?.dispose();
    if (!v.requiresGrad) grads[2]?.dispose();
    return [grads[0], k.requiresGrad ? grads[1] : null, v.requiresGrad ? grads[2] : null];
  });
  // ld lives as long as the tape node (freed with the enclosing tidy scope); without one it is not needed.
  if (!out.node) ld.dispose();
  return out;
}

// ---- KV cache -------------------------------------------------------------------------------------

/**
 * Keys and values of past positions for incremental decoding: k, v [B, NKV, maxT, hs] of which the
 * first `length` positions are filled. The buffers are kept out of `tidy` scopes; call dispose().
 */
export class KVCache {
  k: Tensor;
  v: Tensor;
  length = 0;
  /** Rows in groups of `group` hold the same first `length` positions (sharePrefix), or null. */
  shared: { group: number; length: number } | null = null;

  constructor(B: number, NKV: number, readonly maxT: number, hs: number) {
    this.k = keep(Tensor.empty([B, NKV, maxT, hs]));
    this.v = keep(Tensor.empty([B, NKV, maxT, hs]));
  }

  get shape(): readonly number[] {
    return this.k.shape;
  }

  /** Copies kNew, vNew [B, NKV, Tn, hs] to positions [length, length + Tn) and advances length. */
  append(kNew: Tensor, vNew: Tensor): void {
    const [B, NKV, maxT, hs] = this.k.shape;
    const Tn = kNew.shape[2];
    if (kNew.ndim !== 4 || !sameShape(kNew.shape, vNew.shape) || kNew.shape[0] !== B || kNew.shape[1] !== NKV || kNew.shape[3] !== hs)
      throw new Error(`KVCache.append: k ${shapeStr(kNew.shape)}, v ${shapeStr(vNew.shape)} do not fit the cache [${B}, ${NKV}, ·, ${hs}]`);
    if (this.length + Tn > maxT) throw new Error(`KVCache.append: ${this.length} + ${Tn} positions exceed the capacity ${maxT}`);
    assertF32(kNew, 'KVCache.append');
    assertF32(vNew, 'KVCache.append');
    this.copyIn(kNew, vNew, this.length);
    this.length += Tn;
  }

  /** Writes k, v [B, NKV, Tn, hs] to positions [at, at + Tn). */
  private copyIn(kNew: Tensor, vNew: Tensor, at: number): void {
    const [B, NKV, maxT, hs] = this.k.shape;
    const Tn = kNew.shape[2];
    if (Tn === 0) return;
    const w = hs % 4 === 0 ? 4 : 1; // copy in vec4s when rows are 16-byte aligned
    const n = (B * NKV * Tn * hs) / w;
    const p = new Array(12).fill(0).concat([n, (Tn * hs) / w, (maxT * hs) / w, (at * hs) / w]);
    run({
      shader: SHADER, entry: w === 4 ? 'cache_append4' : 'cache_append', label: 'kv_cache_append', params: p,
      buffers: w === 4 ? { 16: kNew.buffer, 17: vNew.buffer, 18: this.k.buffer, 19: this.v.buffer } : { 12: kNew.buffer, 13: vNew.buffer, 14: this.k.buffer, 15: this.v.buffer },
      workgroups: [gridFor(n)],
    });
  }

  /**
   * Beam search: sequence b continues from sequence beamIdx[b] (i32 [B]); copies the filled positions.
   * Positions before `from` are left alone: the caller promises they already agree between every row
   * and its source (the prompt that a prompt's beams share), so a decoding step copies only the few
   * generated positions instead of the whole cache.
   */
  reorder(beamIdx: Tensor, from = 0): void {
    const [B, NKV, maxT, hs] = this.k.shape;
    if (beamIdx.dtype !== 'i32' || beamIdx.ndim !== 1 || beamIdx.size !== B)
      throw new Error(`KVCache.reorder: beamIdx must be i32 [${B}], got ${beamIdx.dtype} ${shapeStr(beamIdx.shape)}`);
    if (!Number.isInteger(from) || from < 0 || from > this.length) throw new Error(`KVCache.reorder: from ${from} outside [0, ${this.length}]`);
    const host = beamIdx.hostInts;
    if (host) for (const b of host) if (b < 0 || b >= B) throw new Error(`KVCache.reorder: beam index ${b} outside [0, ${B})`);
    if (this.shared && from < this.shared.length) this.shared = null; // rows may now differ in the prefix
    const Tn = this.length - from;
    if (Tn === 0) return;
    const w = hs % 4 === 0 ? 4 : 1;
    const n = (B * NKV * Tn * hs) / w;
    // Whole cache: gather into new buffers of the cache's shape. A suffix: gather it into a compact
    // [B, NKV, Tn, hs] copy, then write that back in place.
    const whole = from === 0;
    const shape = whole ? this.k.shape : [B, NKV, Tn, hs];
    const k = keep(Tensor.empty(shape));
    const v = keep(Tensor.empty(shape));
    const rowUnits = (Tn * hs) / w;
    const p = [0, 0, 0, 0, NKV].concat(new Array(7).fill(0), [n, rowUnits, (maxT * hs) / w, (from * hs) / w, 0, 0, 0, whole ? (maxT * hs) / w : rowUnits]);
    run({
      shader: SHADER, entry: w === 4 ? 'cache_reorder4' : 'cache_reorder', label: 'kv_cache_reorder', params: p,
      buffers: { 11: beamIdx.buffer, ...(w === 4 ? { 16: this.k.buffer, 17: this.v.buffer, 18: k.buffer, 19: v.buffer } : { 12: this.k.buffer, 13: this.v.buffer, 14: k.buffer, 15: v.buffer }) },
      workgroups: [gridFor(n)],
    });
    if (whole) {
      this.k.dispose();
      this.v.dispose();
      this.k = k;
      this.v = v;
    } else {
      this.copyIn(k, v, from);
      k.dispose();
      v.dispose();
    }
  }

  /**
   * Declares that rows in consecutive groups of `group` (a prompt's beams) hold the same first
   * `length` positions, so that attend reads them once per group; reorder from an earlier position
   * withdraws it.
   */
  sharePrefix(group: number, length: number): void {
    const B = this.k.shape[0];
    if (!Number.isInteger(group) || group < 1 || B % group !== 0) throw new Error(`KVCache.sharePrefix: group ${group} does not divide the ${B} rows`);
    if (!Number.isInteger(length) || length < 0 || length > this.length) throw new Error(`KVCache.sharePrefix: length ${length} outside [0, ${this.length}]`);
    this.shared = { group, length };
  }

  /** attention(q, k, v) over the filled positions; q's rows are the last ones (qOffset = length − T). */
  attend(q: Tensor, opts: Omit<AttentionOptions, 'kvLength'> = {}): Tensor {
    const s = this.shared;
    // One new position per row after a shared prompt: every cached key is visible, the prompt read once per group.
    if (s && ATTENTION_TUNING.sharedPrefix && q.shape[2] === 1 && s.length > 0 && s.length < this.length && opts.qOffset === undefined && !q.requiresGrad)
      return attentionSharedPrefix(q, this.k, this.v, { group: s.group, prefix: s.length, kvLength: this.length, mask: opts.mask, scale: opts.scale });
    return attention(q, this.k, this.v, { ...opts, kvLength: this.length });
  }

  dispose(): void {
    this.k.dispose();
    this.v.dispose();
    this.length = 0;
  }
}

// ---- composite twin -------------------------------------------------------------------------------

/** Additive score for keys a causal query may not see: exp of it underflows to exactly 0. */
const EXCLUDED = -1e30;

/** The same attention from matmul, softmax and view ops (a check on the fused kernels; stores the T×Tk scores). */
export function attentionComposite(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const g = geometry(q, k, v, opts, 'attentionComposite');
  let kk = k;
  let vv = v;
  if (g.Tk !== g.KS) {
    kk = slice(k, [0, 0, 0, 0], [g.B, g.NKV, g.Tk, g.hs]);
    vv = slice(v, [0, 0, 0, 0], [g.B, g.NKV, g.Tk, g.hs]);
  }
  if (g.G > 1) {
    // Repeat each kv head G times: [B, NKV, 1, Tk·hs] → [B, NKV, G, Tk·hs] → [B, NH, Tk, hs].
    const rep = (x: Tensor) => reshape(broadcastTo(reshape(x, [g.B, g.NKV, 1, g.Tk * g.hs]), [g.B, g.NKV, g.G, g.Tk * g.hs]), [g.B, g.NH, g.Tk, g.hs]);
    kk = rep(kk);
    vv = rep(vv);
  }
  let s = mul(matmul(q, kk, { transB: true }), fill([], g.scale));
  if (g.causal) {
    const m = new Float32Array(g.T * g.Tk);
    for (let i = 0; i < g.T; i++) for (let j = g.qOff + i + 1; j < g.Tk; j++) m[i * g.Tk + j] = EXCLUDED;
    s = add(s, Tensor.fromData(m, [g.T, g.Tk]));
  }
  if (g.mask) s = add(s, g.mask);
  return matmul(softmax(s), vv);
}
