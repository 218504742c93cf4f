// Fused token-level preference loss of ILRec (ILREC.md §3; engine/ops/token_losses.ts): per row of
// the final logits zL [R, V] and the intermediate logits zI [K, R, VI], the self-hard negatives N,
// their weights w, the penalised cross-entropy (CPO), the distillation KLs (CPD), the reward KL
// (CRR) and, in `fwd_grad`, their unscaled gradients; no probability row is ever stored. A group of
// `tpr` threads owns a row and makes three passes: (1) [0, V) for the statistics (the threshold is
// known up front, so N is decided on the fly), (2) the domain D for the KL sums and the penalised
// logits, (3) [0, V) again for the gradients. `reduce` forms the means on the GPU; `bwd` scales the
// stored gradients by dout / count. The log-prob threshold (F_LOGPROB) needs each row's log Σ_D exp
// of zL and of every zI[k] before N can be decided: `thresholds` computes them and τ in a pass of its
// own, dispatched first, and pass (1) reads τ from there (its reduction inside `fwd` would cost the
// logit mode ~9% on lavapipe even when skipped: the barriers reshape the whole compiled kernel).
//
// The switches, K and the threads per row are uniforms, not override constants: lavapipe takes
// about a second to build each pipeline of this kernel, and one pipeline per entry serves every
// configuration. The branches on them are uniform, so a real GPU pays next to nothing for them.

struct Params {
  rows: u32,
  v: u32,
  vi: u32,          // columns of zI and rewards: zL columns [col_off, col_off + vi)
  col_off: u32,
  ignore_index: i32,
  n4: u32,          // bwd: vec4s in the gradient being scaled
  k: u32,           // intermediate layers, 1..MAX_K (1 and unused without zI)
  tpr: u32,         // threads per row, a power of two dividing WG
  flags: u32,       // F_* below
  pad0: u32,
  pad1: u32,
  pad2: u32,
  phi: f32,
  alpha: f32,
  margin: f32,
  lambda: f32,      // λ_CPD
  b: f32,           // weight of CRR
  pad3: f32,
  pad4: f32,
  pad5: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> zl: array<f32>;            // [R, V]
@group(0) @binding(2) var<storage, read> zi: array<f32>;            // [K, R, VI]
@group(0) @binding(3) var<storage, read> targets: array<i32>;       // [R]
@group(0) @binding(4) var<storage, read> domain: array<i32>;        // [R, 2] [lo, hi) in zL columns
@group(0) @binding(5) var<storage, read> rewards: array<f32>;       // [R, VI] r, < NO_MASS: none
@group(0) @binding(6) var<storage, read_write> row_terms: array<f32>; // [R, TERMS]
@group(0) @binding(7) var<storage, read_write> dzl: array<f32>;     // [R, V] unscaled dℓ/dzL
@group(0) @binding(8) var<storage, read_write> dzi: array<f32>;     // [K, R, VI] unscaled dℓ/dzI
@group(0) @binding(9) var<storage, read> terms_in: array<f32>;      // reduce: [R, TERMS]
@group(0) @binding(10) var<storage, read_write> loss_out: array<f32>;  // reduce: [1]
@group(0) @binding(11) var<storage, read_write> terms_out: array<f32>; // reduce: [4] means
@group(0) @binding(12) var<storage, read_write> count_out: array<f32>; // reduce: [1] rows that count
@group(0) @binding(13) var<storage, read> g4: array<vec4<f32>>;     // bwd: a stored gradient
@group(0) @binding(14) var<storage, read> dout: array<f32>;         // bwd: [1]
@group(0) @binding(15) var<storage, read> count_in: array<f32>;     // bwd: [1]
@group(0) @binding(16) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read_write> tau_out: array<f32>;  // thresholds: [R] τ
@group(0) @binding(18) var<storage, read> tau_in: array<f32>;       // fwd with F_LOGPROB: [R] τ

override WG: u32 = 64u;

const F_MEAN = 1u;      // z~ = mean over the layers (else their sum)
const F_MULT = 2u;      // multiplicative CPO penalty (else additive)
const F_DETACH = 4u;    // the CPD teacher p^L gets no gradient
const F_ZI = 8u;        // zI bound (else z~ = zL and no CPD)
const F_R = 16u;        // rewards bound: CRR
const F_DOM = 32u;      // per-row domains bound (else D = [col_off, col_off + vi))
const F_GRAD_L = 64u;   // fwd_grad writes dzl
const F_GRAD_I = 128u;  // fwd_grad writes dzi
const F_LOGPROB = 256u; // N by ℓ~ ≥ φ·log p^L_y on log-softmaxes over D (else z~ ≥ φ·zL[y]); τ from tau_in

const MAX_K = 8u;
const TERMS = 8u;               // per-row record: cpo, cpd, crr, |N|, counts, padding
const NO_MASS = -1e30;          // rewards below this carry no CF mass
const LOWEST = -3.4028234663852886e38;
// Per-thread slots (slot s of thread i at red[s * WG + i]) for the running statistics and their
// reductions. The per-layer statistics live here too (registers would need arrays indexed by the
// layer; a vec4-register variant ran no faster on lavapipe and took longer to build).
// Pass 1: (max, Σ exp) pairs C = zL off N, N = z~ on N, Q = r on N with mass, L = zL on D,
// I[k] = zI[k] on D (L and I[k] last: `thresholds` reduces just those), then |N|. Pass 2: the
// pair P = z' on N, CRR, KL[k].
const P_C = 0u;
const P_N = 1u;
const P_Q = 2u;
const P_L = 3u;
const P_I = 4u;                 // + k
const S_CNT = 2u * (P_I + MAX_K);
const P_P = (S_CNT + 2u) / 2u;  // the first pair after |N|
const S_CRR = 2u * P_P + 2u;
const S_KL = S_CRR + 1u;        // + k
const SLOTS = S_KL + MAX_K;
const FLAT_TERMS = 5u;          // reduce: Σ cpo, Σ cpd, Σ crr, Σ |N|, count

var<workgroup> red: array<f32, SLOTS * WG>;
var<workgroup> flat: array<f32, FLAT_TERMS * WG>;

fn on(f: u32) -> bool { return (p.flags & f) != 0u; }

struct Row {
  row: u32,
  lane: u32,
  head: u32,    // the row's first thread: its slots hold the row's totals after a reduction
  live: bool,   // false for the padding rows of the last workgroup
}

fn row_of(lid: u32, wid: vec3<u32>, nw: vec3<u32>) -> Row {
  let lane = lid % p.tpr;
  let row = (wid.y * nw.x + wid.x) * (WG / p.tpr) + lid / p.tpr;
  return Row(row, lane, lid - lane, row < p.rows);
}

// Online (max, Σ exp(x − max)) with one exp: the smaller of the two is rescaled to the larger.
fn push(ms: vec2<f32>, x: f32) -> vec2<f32> {
  let e = exp(-abs(x - ms.x));
  let up = x > ms.x;
  return vec2<f32>(select(ms.x, x, up), select(ms.y + e, ms.y * e + 1.0, up));
}

fn put_pair(s: u32, i: u32, v: vec2<f32>) {
  red[(2u * s) * WG + i] = v.x;
  red[(2u * s + 1u) * WG + i] = v.y;
}

fn get_pair(s: u32, i: u32) -> vec2<f32> { return vec2<f32>(red[(2u * s) * WG + i], red[(2u * s + 1u) * WG + i]); }

// Combines the row's threads' slots into the head's: pairs [p0, p0 + np) as (max, Σ exp), each
// becoming (log Σ exp, Σ) (Σ > 0 tells a non-empty set), and slots [s0, s0 + ns) by addition.
// Thread `lane` folds tasks lane, lane + tpr, ... serially in thread order (deterministic) with
// two barriers in all: lavapipe turns every barrier into a coroutine split, and a log-depth tree
// of them took it many seconds to build (a two-level fold with one more barrier ran slower there).
// The serial fold costs O(tpr), which is why the op caps the threads per row.
fn group_reduce(lane: u32, head: u32, p0: u32, np: u32, s0: u32, ns: u32) {
  workgroupBarrier();
  for (var j = lane; j < np + ns; j += p.tpr) {
    if (j < np) {
      let s = p0 + j;
      var m = LOWEST;
      for (var i = 0u; i < p.tpr; i++) { m = max(m, red[(2u * s) * WG + head + i]); }
      var acc = 0.0;
      for (var i = 0u; i < p.tpr; i++) { acc += red[(2u * s + 1u) * WG + head + i] * exp(red[(2u * s) * WG + head + i] - m); }
      put_pair(s, head, vec2<f32>(m + log(acc), acc));
    } else {
      let s = s0 + j - np;
      var acc = 0.0;
      for (var i = 0u; i < p.tpr; i++) { acc += red[s * WG + head + i]; }
      red[s * WG + head] = acc;
    }
  }
  workgroupBarrier();
}

// z' of a negative with weight w (the others keep zL).
fn penalise(x: f32, w: f32) -> f32 {
  if (on(F_MULT)) { return x * (1.0 + p.alpha * w); }
  return x + p.alpha * p.margin * w;
}

fn zi_index(k: u32, row: u32, c: u32) -> u32 { return (k * p.rows + row) * p.vi + c - p.col_off; }

fn aggregate(acc: f32) -> f32 { return select(acc, acc / f32(p.k), on(F_MEAN)); }

// A row's scalars for the gradient pass; the per-layer ones stay in the head's slots.
struct Stats {
  y: i32,         // target, −1 when the row does not count
  lo: u32,        // D = [lo, hi) in zL columns
  hi: u32,
  tau: f32,       // on z~: φ·zL[y], or with F_LOGPROB φ·log p^L_y + (z~ − ℓ~) from tau_in
  lse: f32,       // log Σ_[0,V) exp z'
  lse_l: f32,     // log Σ_D exp zL
  lse_n: f32,     // log Σ_N exp z~
  lse_q: f32,     // log Σ_{N, mass} exp r
  mass: bool,     // some negative has CF mass
}

fn lse_i(r: Row, k: u32) -> f32 { return red[(2u * (P_I + k)) * WG + r.head]; }  // log Σ_D exp zI[k]
fn kl_of(r: Row, k: u32) -> f32 { return red[(S_KL + k) * WG + r.head]; }         // KL(p^L ‖ p^(k))

// The row's target (−1 when it does not count) and domain.
fn row_target(r: Row) -> Stats {
  var st: Stats;
  st.y = -1;
  st.lo = p.col_off;
  st.hi = p.col_off + p.vi;
  if (r.live) {
    let t = targets[r.row];
    if (t != p.ignore_index && t >= 0 && u32(t) < p.v) { st.y = t; }
    if (on(F_DOM)) {
      st.lo = clamp(u32(max(domain[2u * r.row], 0)), p.col_off, p.col_off + p.vi);
      st.hi = clamp(u32(max(domain[2u * r.row + 1u], 0)), st.lo, p.col_off + p.vi);
    }
  }
  return st;
}

fn stats(lid: u32, r: Row) -> Stats {
  var st = row_target(r);
  let counts = st.y >= 0;
  let base = r.row * p.v;
  if (counts) {
    if (on(F_LOGPROB)) { st.tau = tau_in[r.row]; } else { st.tau = p.phi * zl[base + u32(st.y)]; }
  }
  let y = st.y;
  let tau = st.tau;
  let lo = st.lo;
  let hi = st.hi;
  let has_zi = on(F_ZI);
  let has_r = on(F_R);

  // Pass 1 over [0, V), the threshold known up front.
  let none = vec2<f32>(LOWEST, 0.0);
  for (var k = 0u; k < p.k; k++) { put_pair(P_I + k, lid, none); }
  var sc = none;
  var sl = none;
  var sn = none;
  var sq = none;
  var cnt = 0.0;
  let end = select(0u, p.v, counts);
  for (var c = r.lane; c < end; c += p.tpr) {
    let x = zl[base + c];
    var neg = false;
    if (c >= lo && c < hi) {
      sl = push(sl, x);
      var zt = x;
      if (has_zi) {
        var acc = 0.0;
        for (var k = 0u; k < p.k; k++) {
          let xi = zi[zi_index(k, r.row, c)];
          put_pair(P_I + k, lid, push(get_pair(P_I + k, lid), xi));
          acc += xi;
        }
        zt = aggregate(acc);
      }
      neg = i32(c) != y && zt >= tau;
      if (neg) {
        sn = push(sn, zt);
        cnt += 1.0;
        if (has_r) {
          let rv = rewards[r.row * p.vi + c - p.col_off];
          if (rv >= NO_MASS) { sq = push(sq, rv); }
        }
      }
    }
    if (!neg) { sc = push(sc, x); }
  }
  put_pair(P_C, lid, sc);
  put_pair(P_N, lid, sn);
  put_pair(P_Q, lid, sq);
  put_pair(P_L, lid, sl);
  red[S_CNT * WG + lid] = cnt;
  group_reduce(r.lane, r.head, P_C, P_I + p.k, S_CNT, 1u);
  let lse_c = red[(2u * P_C) * WG + r.head];
  st.lse_l = red[(2u * P_L) * WG + r.head];
  st.lse_n = red[(2u * P_N) * WG + r.head];
  st.lse_q = red[(2u * P_Q) * WG + r.head];
  st.mass = red[(2u * P_Q + 1u) * WG + r.head] > 0.0;
  cnt = red[S_CNT * WG + r.head];

  // Pass 2 over D: z' of the negatives, KL(p^L ‖ p^(k)) and KL(q ‖ p^L) over N.
  var sp = none;
  var crr = 0.0;
  for (var k = 0u; k < p.k; k++) { red[(S_KL + k) * WG + lid] = 0.0; }
  let dend = select(lo, hi, counts);
  for (var c = lo + r.lane; c < dend; c += p.tpr) {
    let x = zl[base + c];
    let lpl = x - st.lse_l;
    let pl = exp(lpl);
    var zt = x;
    if (has_zi) {
      var acc = 0.0;
      for (var k = 0u; k < p.k; k++) {
        let xi = zi[zi_index(k, r.row, c)];
        red[(S_KL + k) * WG + lid] += pl * (lpl - (xi - lse_i(r, k)));
        acc += xi;
      }
      zt = aggregate(acc);
    }
    if (i32(c) != y && zt >= tau) {
      sp = push(sp, penalise(x, exp(zt - st.lse_n)));
      if (has_r && st.mass) {
        let rv = rewards[r.row * p.vi + c - p.col_off];
        if (rv >= NO_MASS) {
          let lq = rv - st.lse_q;
          crr += exp(lq) * (lq - lpl);
        }
      }
    }
  }
  put_pair(P_P, lid, sp);
  red[S_CRR * WG + lid] = crr;
  group_reduce(r.lane, r.head, P_P, 1u, S_CRR, p.k + 1u);
  // log(e^lse_c + e^lse_p); lse_p is −∞ when N is empty.
  let lse_p = red[(2u * P_P) * WG + r.head];
  let mx = max(lse_c, lse_p);
  st.lse = mx + log(exp(lse_c - mx) + exp(lse_p - mx));
  var cpd = 0.0;
  for (var k = 0u; k < p.k; k++) { cpd += kl_of(r, k); }
  crr = red[S_CRR * WG + r.head];
  if (r.live && r.lane == 0u) {
    let o = r.row * TERMS;
    // z'[y] = zL[y]: the target is never a negative.
    row_terms[o] = select(0.0, st.lse - zl[base + u32(max(y, 0))], counts);
    row_terms[o + 1u] = select(0.0, cpd, counts && has_zi);
    row_terms[o + 2u] = select(0.0, crr, counts);
    row_terms[o + 3u] = cnt;
    row_terms[o + 4u] = select(0.0, 1.0, counts);
  }
  return st;
}

// The log-prob threshold on the z~ scale, per counted row (before fwd / fwd_grad): ℓ~ = z~ − shift
// with shift = f(log Σ_D exp zI[k]) (log Σ_D exp zL without zI), so ℓ~ ≥ φ·log p^L_y ⇔
// z~ ≥ φ·log p^L_y + shift, and the passes of `stats` compare z~ as in the logit mode.
@compute @workgroup_size(WG)
fn thresholds(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let lid = l.x;
  let r = row_of(lid, wid, nw);
  let st = row_target(r);
  let counts = st.y >= 0;
  let base = r.row * p.v;
  let none = vec2<f32>(LOWEST, 0.0);
  var sl = none;
  for (var k = 0u; k < p.k; k++) { put_pair(P_I + k, lid, none); }
  let dend = select(st.lo, st.hi, counts);
  for (var c = st.lo + r.lane; c < dend; c += p.tpr) {
    sl = push(sl, zl[base + c]);
    if (on(F_ZI)) {
      for (var k = 0u; k < p.k; k++) { put_pair(P_I + k, lid, push(get_pair(P_I + k, lid), zi[zi_index(k, r.row, c)])); }
    }
  }
  put_pair(P_L, lid, sl);
  group_reduce(r.lane, r.head, P_L, 1u + p.k, 0u, 0u);
  if (counts && r.lane == 0u) {
    let lse_l = red[(2u * P_L) * WG + r.head];
    var shift = lse_l;
    if (on(F_ZI)) {
      var acc = 0.0;
      for (var k = 0u; k < p.k; k++) { acc += lse_i(r, k); }
      shift = aggregate(acc);
    }
    tau_out[r.row] = p.phi * (zl[base + u32(st.y)] - lse_l) + shift;
  }
}

@compute @workgroup_size(WG)
fn fwd(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  stats(l.x, row_of(l.x, wid, nw));
}

// Pass 3: dzL = s'·J − onehot(y) + λ·(teacher term) + b·(p^L − q), every column written (zeros on
// rows that do not count), and dzI[k] = λ·(p^(k) − p^L) on D only: dzI arrives zero-filled (one
// contiguous vec4 fill is far cheaper than scattered zeros from here, lavapipe and GPUs alike).
@compute @workgroup_size(WG)
fn fwd_grad(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let r = row_of(l.x, wid, nw);
  let st = stats(l.x, r);
  let base = r.row * p.v;
  let end = select(0u, p.v, r.live);
  let grad_l = on(F_GRAD_L);
  let grad_i = on(F_GRAD_I);
  let has_zi = on(F_ZI);
  let crr_row = on(F_R) && st.mass;
  let teacher_grad = has_zi && !on(F_DETACH);
  for (var c = r.lane; c < end; c += p.tpr) {
    if (st.y < 0 || c < st.lo || c >= st.hi) {
      if (grad_l) {
        var g = 0.0;
        if (st.y >= 0) { g = exp(zl[base + c] - st.lse) - select(0.0, 1.0, i32(c) == st.y); }
        dzl[base + c] = g;
      }
      continue;
    }
    let x = zl[base + c];
    let lpl = x - st.lse_l;
    let pl = exp(lpl);
    var zt = x;
    // Σ_k ((log p^L − log p^(k)) − KL_k): the undetached teacher's gradient factor.
    var teacher = 0.0;
    if (has_zi) {
      var acc = 0.0;
      for (var k = 0u; k < p.k; k++) {
        let xi = zi[zi_index(k, r.row, c)];
        acc += xi;
        let lpi = xi - lse_i(r, k);
        if (grad_i) { dzi[zi_index(k, r.row, c)] = p.lambda * (exp(lpi) - pl); }
        teacher += (lpl - lpi) - kl_of(r, k);
      }
      zt = aggregate(acc);
    }
    var zp = x;
    var jac = 1.0;
    var q = 0.0;
    if (i32(c) != st.y && zt >= st.tau) {
      let w = exp(zt - st.lse_n);
      zp = penalise(x, w);
      if (on(F_MULT)) { jac = 1.0 + p.alpha * w; }
      if (crr_row) {
        let rv = rewards[r.row * p.vi + c - p.col_off];
        if (rv >= NO_MASS) { q = exp(rv - st.lse_q); }
      }
    }
    var g = exp(zp - st.lse) * jac - select(0.0, 1.0, i32(c) == st.y);
    if (crr_row) { g += p.b * (pl - q); }
    if (teacher_grad) { g += p.lambda * pl * teacher; }
    if (grad_l) { dzl[base + c] = g; }
  }
}

// One workgroup: the sums of the per-row terms in a fixed order (strided, then a tree), then
// loss = (Σ cpo + λ Σ cpd + b Σ crr) / count, the four means, and the count (0s when no row counts).
@compute @workgroup_size(WG)
fn reduce(@builtin(local_invocation_id) l: vec3<u32>) {
  var acc: array<f32, FLAT_TERMS>;
  for (var r = l.x; r < p.rows; r += WG) {
    for (var j = 0u; j < FLAT_TERMS; j++) { acc[j] += terms_in[r * TERMS + j]; }
  }
  for (var j = 0u; j < FLAT_TERMS; j++) { flat[j * WG + l.x] = acc[j]; }
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (l.x < k) {
      for (var j = 0u; j < FLAT_TERMS; j++) { flat[j * WG + l.x] += flat[j * WG + l.x + k]; }
    }
    workgroupBarrier();
  }
  if (l.x == 0u) {
    let cnt = flat[4u * WG];
    let inv = select(0.0, 1.0 / cnt, cnt > 0.0);
    for (var j = 0u; j < 4u; j++) { terms_out[j] = flat[j * WG] * inv; }
    loss_out[0] = (flat[0] + p.lambda * flat[WG] + p.b * flat[2u * WG]) * inv;
    count_out[0] = cnt;
  }
}

// dx = stored gradient × dout / count (0 when no row counts).
@compute @workgroup_size(WG)
fn bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let c = count_in[0];
  let s = vec4<f32>(select(0.0, dout[0] / c, c > 0.0));
  for (var i = gid.x; i < p.n4; i += nw.x * WG) { dx4[i] = g4[i] * s; }
}
