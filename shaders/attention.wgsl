// Fused attention O = softmax(scale·Q Kᵀ + mask [+ causal]) V, flash-attention style: the T×Tk score
// matrix is never stored. Forward (fwd: rows of queries; fwd_split, for decoding: a kv head's few
// query rows with the keys split across a workgroup), the flash-attention-2 backward (bwd_dq: D and
// dq, then bwd_dkv: dk and dv), and the KV-cache copies.
//
// Layout: q, O [B, NH, T, HS]; k, v [B, NKV, KS, HS] of which the first tk rows per head are keys
// (KS: a KV cache's capacity); query head h reads kv head h / G (G = NH / NKV, grouped-query).
// ld [3, B, NH, T]: the forward's per-row max m and log l (log-sum-exp L = m + log l, kept apart: with
// scores near −1e9 from a padding mask, m + log l would round log l away), then D = rowsum(dO ⊙ O)
// from bwd_dq. The backward recomputes P = exp((S − m) − log l).
//
// One invocation owns RPL query rows (fwd, bwd_dq) or key rows (bwd_dkv) and keeps them and their
// accumulators in registers; the other operand streams through one row at a time, so each streamed
// row serves RPL rows. That reuse is what matters on lavapipe (Mesa 25.0): it turns every storage
// load inside a loop into a per-lane scalar loop with bounds checks (~4 cycles per lane and float,
// uniform address or not), so loads, not FMAs, set the speed. No workgroup memory and no barriers
// (except fwd_split's final merge); on a GPU the streamed rows are warp-uniform loads served from
// L1. Causal limits are per row: an invocation runs to its last row's limit and masks the rest.
//
// Compile time is the other constraint: lavapipe compiles each pipeline with LLVM, and every storage
// access expands into per-lane code. The hot loops over a row's vec4 chunks are unrolled (UNROLL,
// rows in registers) while the once-per-row loads and stores run in rolled loops (bounded by the
// uniform p.hs4) so their code appears once; causal and dq are uniform flags, not overrides.

struct Params {
  t: u32,        // query rows per head (T)
  tk: u32,       // valid keys per kv head (Tk ≤ ks)
  ks: u32,       // key rows per kv head in k/v's buffers (key stride)
  nh: u32,       // query heads (NH)
  nkv: u32,      // kv heads (NKV)
  g: u32,        // query heads per kv head (NH / NKV)
  q_off: u32,    // causal: query row i sees keys j ≤ q_off + i
  scale: f32,
  msb: u32,      // mask element strides for batch, query row and key (0 on broadcast dims)
  mst: u32,
  msk: u32,
  nrows: u32,    // B·NH·T: rows of each of ld's three parts
  // cache copies (cache_append*, cache_reorder*), counted in units (f32, or vec4 for the *4 entries)
  cn: u32,       // units to copy
  crow: u32,     // units per source row block (append: Tn·hs; reorder: (len − from)·hs)
  cstride: u32,  // units per cache head (maxT·hs)
  coff: u32,     // append: destination offset within a head (len·hs); reorder: source offset (from·hs)
  hs4: u32,      // ceil(HS / 4): the row loops' trip count when not unrolled
  causal: u32,   // 1: query row i sees keys j ≤ q_off + i only
  want_dq: u32,  // bwd_dq: 1 computes dq, 0 only D (q needs no gradient)
  cdst: u32,     // reorder: units per destination head (cstride into a new cache, crow into a compact copy)
  // fwd_split only: general row and key addressing, for beam search's shared prompt (see attention.ts)
  kvb: u32,      // kv heads per batch index in k/v (NKV; K·NKV when batch b reads beam row b·K)
  k0: u32,       // keys start at row k0 of each head (and of the mask)
  qsb: u32,      // query row of (batch b, head h, row i) = b·qsb + h·qsh + i·qsi (also O's and ld's row)
  qsh: u32,
  qsi: u32,
  prev: u32,     // 1: merge in an earlier pass over other keys: O at o4 (binding 6), m, log l at ld_in
}

@group(0) @binding(0) var<uniform> p: Params;
// Inputs are read as vec4s (pool buffers are padded to 16 bytes); rows of head sizes that are not a
// multiple of 4 straddle vec4s and are reassembled from two (see shift4).
@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;       // bound to q when there is none
@group(0) @binding(5) var<storage, read> do4: array<vec4<f32>>;  // dO
@group(0) @binding(6) var<storage, read> o4: array<vec4<f32>>;   // O (for D)
@group(0) @binding(7) var<storage, read_write> out: array<f32>;  // O (fwd*), dq (bwd_dq), dk (bwd_dkv)
@group(0) @binding(8) var<storage, read_write> ld: array<f32>;   // m, log l written (fwd*) or read, D written (bwd_dq)
@group(0) @binding(9) var<storage, read> ld_in: array<f32>;      // m, log l and D (bwd_dkv)
@group(0) @binding(10) var<storage, read_write> out2: array<f32>; // dv (bwd_dkv)
// KV cache copies
@group(0) @binding(11) var<storage, read> beam: array<i32>;
@group(0) @binding(12) var<storage, read> src_k: array<f32>;
@group(0) @binding(13) var<storage, read> src_v: array<f32>;
@group(0) @binding(14) var<storage, read_write> dst_k: array<f32>;
@group(0) @binding(15) var<storage, read_write> dst_v: array<f32>;
@group(0) @binding(16) var<storage, read> src_k4: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read> src_v4: array<vec4<f32>>;
@group(0) @binding(18) var<storage, read_write> dst_k4: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read_write> dst_v4: array<vec4<f32>>;

override HS: u32 = 32u;          // head size, ≤ 4·MAX_HS4
override BR: u32 = 32u;          // invocations per workgroup of fwd, bwd_dq and bwd_dkv
override RPL: u32 = 1u;          // rows per invocation (RPL·HS4 ≤ MAX_HS4, RPL ≤ MAX_RPL)
override SPLIT: u32 = 64u;       // invocations per fwd_split workgroup (they split the keys)
// Unrolled loops over a row's chunks keep rows in registers (about 2× faster on lavapipe at HS = 32)
// but cost seconds of LLVM compile per pipeline, growing fast with HS; rolled ones index memory.
override UNROLL: bool = true;
override HAS_MASK: bool = false; // add mask[b·msb + i·mst + j·msk] to the scores
override CWG: u32 = 256u;        // invocations per workgroup of the cache copies

override HS4: u32 = (HS + 3u) / 4u;       // vec4 chunks per row (zero-padded past HS)
override VEC: bool = HS % 4u == 0u;       // rows start on vec4 boundaries
override SPLIT_RPL: u32 = SPLIT * RPL;
override SPLIT_RPL_HS4: u32 = SPLIT * RPL * HS4;

const MAX_HS4 = 32u;
const MAX_RPL = 8u;
const LOWEST = -3.4028234663852886e38;   // running-max start and the score of an excluded key
const BIG = 3.4028234663852886e38;       // m of a row that admits no key: P = exp(S − BIG) = 0 in the backward

// An invocation's rows in registers, RPL rows of HS4 chunks at [r·HS4 + d]: the queries (pre-scaled
// in fwd), and the accumulators (Σ exp(s − m) v in fwd, dq in bwd_dq).
var<private> qr: array<vec4<f32>, MAX_HS4>;
var<private> acc: array<vec4<f32>, MAX_HS4>;

// fwd_split's partial softmax states, [SPLIT, RPL] rows.
var<workgroup> wm: array<f32, SPLIT_RPL>;
var<workgroup> wl: array<f32, SPLIT_RPL>;
var<workgroup> wo: array<vec4<f32>, SPLIT_RPL_HS4>;

// Trip count of the loops over a row's vec4 chunks: a constant (unrolled) or a uniform (rolled).
fn nch() -> u32 { return select(p.hs4, HS4, UNROLL); }

// Dims 4c..4c+3 of a row that starts r elements (0..3) into vec4 v0 and continues into v1; 0 past HS.
fn shift4(v0: vec4<f32>, v1: vec4<f32>, r: u32, c: u32) -> vec4<f32> {
  var x = v0;
  if (r == 1u) { x = vec4<f32>(v0.yzw, v1.x); }
  if (r == 2u) { x = vec4<f32>(v0.zw, v1.xy); }
  if (r == 3u) { x = vec4<f32>(v0.w, v1.xyz); }
  return select(vec4<f32>(0.0), x, vec4<u32>(4u * c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(HS));
}

// Chunk c (dims 4c..4c+3) of the row whose first element is at `base`, one function per binding.
fn ld_q(base: u32, c: u32) -> vec4<f32> {
  if (VEC) { return q4[base / 4u + c]; }
  let a = base + 4u * c;
  return shift4(q4[a / 4u], q4[a / 4u + 1u], a % 4u, c);
}
fn ld_k(base: u32, c: u32) -> vec4<f32> {
  if (VEC) { return k4[base / 4u + c]; }
  let a = base + 4u * c;
  return shift4(k4[a / 4u], k4[a / 4u + 1u], a % 4u, c);
}
fn ld_v(base: u32, c: u32) -> vec4<f32> {
  if (VEC) { return v4[base / 4u + c]; }
  let a = base + 4u * c;
  return shift4(v4[a / 4u], v4[a / 4u + 1u], a % 4u, c);
}
fn ld_do(base: u32, c: u32) -> vec4<f32> {
  if (VEC) { return do4[base / 4u + c]; }
  let a = base + 4u * c;
  return shift4(do4[a / 4u], do4[a / 4u + 1u], a % 4u, c);
}
fn ld_o(base: u32, c: u32) -> vec4<f32> {
  if (VEC) { return o4[base / 4u + c]; }
  let a = base + 4u * c;
  return shift4(o4[a / 4u], o4[a / 4u + 1u], a % 4u, c);
}

fn hsum(x: vec4<f32>) -> f32 { return (x.x + x.y) + (x.z + x.w); }

// The additive mask at (batch b, query row i, key j).
fn mask_at(b: u32, i: u32, j: u32) -> f32 {
  if (HAS_MASK) { return mask[b * p.msb + i * p.mst + j * p.msk]; }
  return 0.0;
}

// Keys [0, key_end(i)) are admitted for query row i.
fn key_end(i: u32) -> u32 {
  if (p.causal != 0u) { return min(p.tk, p.q_off + i + 1u); }
  return p.tk;
}

// Loads the RPL query rows starting at row i0 of head bh into qr (times `scale`) and zeroes acc;
// rows past T repeat row T − 1 (computed, never stored). Rolled: see the header.
fn load_queries(bh: u32, i0: u32, scale: f32) {
  for (var x = 0u; x < RPL * p.hs4; x++) {
    let r = x / p.hs4;
    let d = x % p.hs4;
    qr[r * HS4 + d] = ld_q((bh * p.t + min(i0 + r, p.t - 1u)) * HS, d) * scale;
    acc[r * HS4 + d] = vec4<f32>(0.0);
  }
}

// Stores acc · f[r] as the RPL rows (those < T) starting at row i0 of head bh of `out`.
fn store_rows(bh: u32, i0: u32, f: array<f32, MAX_RPL>) {
  let w = p.hs4 * 4u; // a uniform bound keeps the loop rolled
  for (var x = 0u; x < RPL * w; x++) {
    let r = x / w;
    let e = x % w;
    if (i0 + r < p.t && e < HS) { out[(bh * p.t + i0 + r) * HS + e] = acc[r * HS4 + e / 4u][e % 4u] * f[r]; }
  }
}

// Keys an invocation with rows [i0, i0 + RPL) runs over: its last valid row's limit (0 when it has none,
// so idle invocations past T cost nothing).
fn rows_key_end(i0: u32) -> u32 {
  return select(0u, key_end(min(i0 + RPL - 1u, p.t - 1u)), i0 < p.t);
}

// Saves a row's softmax statistics for the backward (P = 0 everywhere when it admitted no key).
fn store_lse(o: u32, m: f32, l: f32) {
  ld[o] = select(BIG, m, l > 0.0);
  ld[p.nrows + o] = select(0.0, log(l), l > 0.0);
}

// Forward, BR·RPL query rows of one (b, h) per workgroup, RPL consecutive rows per invocation:
// grid [ceil(T / (BR·RPL)), B·NH]. Online softmax per row: running max m, l = Σ exp(s − m) and
// acc = Σ exp(s − m) v; the max only grows a few times per row, so the rescale of acc by
// exp(m_old − m_new) sits behind a branch.
@compute @workgroup_size(BR)
fn fwd(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let bh = wid.y;
  let b = bh / p.nh;
  let kbase = (b * p.nkv + (bh % p.nh) / p.g) * p.ks * HS;
  let i0 = (wid.x * BR + lid.x) * RPL;
  load_queries(bh, i0, p.scale);
  var ms: array<f32, MAX_RPL>;
  var ls: array<f32, MAX_RPL>;
  var lims: array<u32, MAX_RPL>;
  for (var r = 0u; r < RPL; r++) {
    ms[r] = LOWEST;
    lims[r] = key_end(min(i0 + r, p.t - 1u));
  }
  var kv: array<vec4<f32>, MAX_HS4>;
  var sc: array<f32, MAX_RPL>;
  for (var j = 0u; j < rows_key_end(i0); j++) {
    let rb = kbase + j * HS;
    for (var d = 0u; d < nch(); d++) { kv[d] = ld_k(rb, d); }
    for (var r = 0u; r < RPL; r++) {
      var dot = vec4<f32>(0.0);
      for (var d = 0u; d < nch(); d++) { dot = fma(qr[r * HS4 + d], kv[d], dot); }
      let s = select(LOWEST, hsum(dot) + mask_at(b, min(i0 + r, p.t - 1u), j), j < lims[r]);
      sc[r] = s;
      if (s > ms[r]) {
        let alpha = exp(ms[r] - s);
        ls[r] *= alpha;
        for (var d = 0u; d < nch(); d++) { acc[r * HS4 + d] *= alpha; }
        ms[r] = s;
      }
    }
    for (var d = 0u; d < nch(); d++) { kv[d] = ld_v(rb, d); }
    for (var r = 0u; r < RPL; r++) {
      let pr = select(0.0, exp(sc[r] - ms[r]), j < lims[r]);
      ls[r] += pr;
      for (var d = 0u; d < nch(); d++) { acc[r * HS4 + d] = fma(vec4<f32>(pr), kv[d], acc[r * HS4 + d]); }
    }
  }
  var inv: array<f32, MAX_RPL>;
  for (var r = 0u; r < RPL; r++) {
    inv[r] = select(0.0, 1.0 / ls[r], ls[r] > 0.0);
    if (i0 + r < p.t) { store_lse(bh * p.t + i0 + r, ms[r], ls[r]); }
  }
  store_rows(bh, i0, inv);
}

// Row (in q, O and ld) of query row x of fwd_split's group for kv head kvh of batch b: query head
// kvh·G + x / T, position x % T.
fn split_row(b: u32, kvh: u32, x: u32) -> u32 {
  return b * p.qsb + (kvh * p.g + x / p.t) * p.qsh + (x % p.t) * p.qsi;
}

// Forward for a few query rows against many keys (decoding with a KV cache). A workgroup takes up to
// RPL of the G·T query rows that share one kv head (the G query heads of a group × the T new
// positions), so each streamed key row serves all of them; its SPLIT invocations split the keys
// (invocation t takes keys t, t + SPLIT, ...), each with its own online softmax, and the partial
// (m, l, acc) are merged in a fixed order. Grid [ceil(G·T / RPL), B·NKV].
// Beam search runs it twice per step (attentionSharedPrefix): once over the prompt, with a prompt's
// beams as the "positions" of one batch entry (qsb/qsh/qsi, kvb) so each prompt key is read once for
// all of them, and once over each beam's own generated keys (k0), merging the first pass (prev).
@compute @workgroup_size(SPLIT)
fn fwd_split(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = lid.x;
  let bkv = wid.y;
  let b = bkv / p.nkv;
  let kvh = bkv % p.nkv;
  let kbase = ((b * p.kvb + kvh) * p.ks + p.k0) * HS;
  let x0 = wid.x * RPL;
  let nx = p.g * p.t;
  // Row r is query row i = x % T of query head hh = x / T of the group, x = min(x0 + r, nx − 1).
  for (var x = 0u; x < RPL * p.hs4; x++) {
    let r = x / p.hs4;
    let d = x % p.hs4;
    qr[r * HS4 + d] = ld_q(split_row(b, kvh, min(x0 + r, nx - 1u)) * HS, d) * p.scale;
    acc[r * HS4 + d] = vec4<f32>(0.0);
  }
  var ms: array<f32, MAX_RPL>;
  var ls: array<f32, MAX_RPL>;
  var lims: array<u32, MAX_RPL>;
  var kend = 0u;
  for (var r = 0u; r < RPL; r++) {
    ms[r] = LOWEST;
    lims[r] = key_end(min(x0 + r, nx - 1u) % p.t);
    kend = max(kend, lims[r]);
  }
  var kv: array<vec4<f32>, MAX_HS4>;
  var sc: array<f32, MAX_RPL>;
  for (var j = t; j < kend; j += SPLIT) {
    let rb = kbase + j * HS;
    for (var d = 0u; d < nch(); d++) { kv[d] = ld_k(rb, d); }
    for (var r = 0u; r < RPL; r++) {
      var dot = vec4<f32>(0.0);
      for (var d = 0u; d < nch(); d++) { dot = fma(qr[r * HS4 + d], kv[d], dot); }
      let i = min(x0 + r, nx - 1u) % p.t;
      let s = select(LOWEST, hsum(dot) + mask_at(b, i, p.k0 + j), j < lims[r]);
      sc[r] = s;
      if (s > ms[r]) {
        let alpha = exp(ms[r] - s);
        ls[r] *= alpha;
        for (var d = 0u; d < nch(); d++) { acc[r * HS4 + d] *= alpha; }
        ms[r] = s;
      }
    }
    for (var d = 0u; d < nch(); d++) { kv[d] = ld_v(rb, d); }
    for (var r = 0u; r < RPL; r++) {
      let pr = select(0.0, exp(sc[r] - ms[r]), j < lims[r]);
      ls[r] += pr;
      for (var d = 0u; d < nch(); d++) { acc[r * HS4 + d] = fma(vec4<f32>(pr), kv[d], acc[r * HS4 + d]); }
    }
  }
  for (var r = 0u; r < RPL; r++) {
    wm[t * RPL + r] = ms[r];
    wl[t * RPL + r] = ls[r];
  }
  for (var x = 0u; x < RPL * p.hs4; x++) {
    let r = x / p.hs4;
    let d = x % p.hs4;
    wo[(t * RPL + r) * HS4 + d] = acc[r * HS4 + d];
  }
  workgroupBarrier();
  // Merge: invocations take (row, element) pairs; each recomputes its row's overall max and sum.
  let w = p.hs4 * 4u;
  for (var x = t; x < RPL * w; x += SPLIT) {
    let r = x / w;
    let e = x % w;
    let xr = x0 + r;
    if (xr < nx && e < HS) {
      let o = split_row(b, kvh, xr);
      var mx = LOWEST;
      for (var u = 0u; u < SPLIT; u++) { mx = max(mx, wm[u * RPL + r]); }
      // An earlier pass's row (O normalised, l = exp(log l); none when it admitted no key).
      var m1 = LOWEST;
      var l1 = 0.0;
      if (p.prev != 0u && ld_in[o] < BIG) {
        m1 = ld_in[o];
        l1 = exp(ld_in[p.nrows + o]);
        mx = max(mx, m1);
      }
      var lt = 0.0;
      var a = 0.0;
      for (var u = 0u; u < SPLIT; u++) {
        let f = exp(wm[u * RPL + r] - mx);
        lt += wl[u * RPL + r] * f;
        a += wo[(u * RPL + r) * HS4 + e / 4u][e % 4u] * f;
      }
      if (l1 > 0.0) {
        let f = l1 * exp(m1 - mx);
        let ie = o * HS + e;
        lt += f;
        a += o4[ie / 4u][ie % 4u] * f;
      }
      out[o * HS + e] = a * select(0.0, 1.0 / lt, lt > 0.0);
      if (e == 0u) { store_lse(o, mx, lt); }
    }
  }
}

// Backward, query side, grid as fwd: D_i = dO_i · O_i into ld, then (want_dq)
//   P_ij = exp(S_ij − L_i) (as exp((S_ij − m_i) − log l_i)),  dS_ij = P_ij (dO_i · v_j − D_i),  dq_i = scale · Σ_j dS_ij k_j.
@compute @workgroup_size(BR)
fn bwd_dq(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let bh = wid.y;
  let b = bh / p.nh;
  let kbase = (b * p.nkv + (bh % p.nh) / p.g) * p.ks * HS;
  let i0 = (wid.x * BR + lid.x) * RPL;
  load_queries(bh, i0, p.scale);
  var dor: array<vec4<f32>, MAX_HS4>;
  var di: array<f32, MAX_RPL>;
  for (var x = 0u; x < RPL * p.hs4; x++) {
    let r = x / p.hs4;
    let d = x % p.hs4;
    let rb = (bh * p.t + min(i0 + r, p.t - 1u)) * HS;
    let g = ld_do(rb, d);
    dor[r * HS4 + d] = g;
    di[r] += hsum(g * ld_o(rb, d));
  }
  var mi: array<f32, MAX_RPL>;
  var lli: array<f32, MAX_RPL>;
  var lims: array<u32, MAX_RPL>;
  for (var r = 0u; r < RPL; r++) {
    let o = bh * p.t + min(i0 + r, p.t - 1u);
    if (i0 + r < p.t) { ld[2u * p.nrows + o] = di[r]; }
    mi[r] = ld[o];
    lli[r] = ld[p.nrows + o];
    lims[r] = key_end(min(i0 + r, p.t - 1u));
  }
  if (p.want_dq == 0u) { return; }
  var kv: array<vec4<f32>, MAX_HS4>;
  var vv: array<vec4<f32>, MAX_HS4>;
  for (var j = 0u; j < rows_key_end(i0); j++) {
    let rb = kbase + j * HS;
    for (var d = 0u; d < nch(); d++) {
      kv[d] = ld_k(rb, d);
      vv[d] = ld_v(rb, d);
    }
    for (var r = 0u; r < RPL; r++) {
      var dot = vec4<f32>(0.0);
      var dp = vec4<f32>(0.0);
      for (var d = 0u; d < nch(); d++) {
        dot = fma(qr[r * HS4 + d], kv[d], dot);
        dp = fma(dor[r * HS4 + d], vv[d], dp);
      }
      let pr = select(0.0, exp((hsum(dot) + mask_at(b, min(i0 + r, p.t - 1u), j) - mi[r]) - lli[r]), j < lims[r]);
      let ds = vec4<f32>(pr * (hsum(dp) - di[r]));
      for (var d = 0u; d < nch(); d++) { acc[r * HS4 + d] = fma(ds, kv[d], acc[r * HS4 + d]); }
    }
  }
  var f: array<f32, MAX_RPL>;
  for (var r = 0u; r < RPL; r++) { f[r] = p.scale; }
  store_rows(bh, i0, f);
}

// Backward, key side: BR·RPL key rows of one (b, kv head) per workgroup, RPL per invocation, grid
// [ceil(KS / (BR·RPL)), B·NKV]; rows past tk get zeros. Sums over the G query heads sharing the kv
// head and their query rows in a fixed order (deterministic, no atomics):
//   dv_j = Σ_i P_ij dO_i,  dk_j = scale · Σ_i dS_ij q_i.
@compute @workgroup_size(BR)
fn bwd_dkv(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let bkv = wid.y;
  let b = bkv / p.nkv;
  let j0 = (wid.x * BR + lid.x) * RPL;
  var kr: array<vec4<f32>, MAX_HS4>;
  var vr: array<vec4<f32>, MAX_HS4>;
  var dk: array<vec4<f32>, MAX_HS4>;
  var dv: array<vec4<f32>, MAX_HS4>;
  for (var x = 0u; x < RPL * p.hs4; x++) {
    let r = x / p.hs4;
    let d = x % p.hs4;
    let rb = (bkv * p.ks + min(j0 + r, p.tk - 1u)) * HS;
    kr[r * HS4 + d] = ld_k(rb, d) * p.scale;
    vr[r * HS4 + d] = ld_v(rb, d);
  }
  // The first query row that admits this invocation's first key; none when all its keys are past tk.
  var ist = 0u;
  if (p.causal != 0u && j0 > p.q_off) { ist = j0 - p.q_off; }
  if (j0 >= p.tk) { ist = p.t; }
  var qv: array<vec4<f32>, MAX_HS4>;
  var dov: array<vec4<f32>, MAX_HS4>;
  for (var hh = 0u; hh < p.g; hh++) {
    let bh = b * p.nh + (bkv % p.nkv) * p.g + hh;
    for (var i = ist; i < p.t; i++) {
      let o = bh * p.t + i;
      for (var d = 0u; d < nch(); d++) {
        qv[d] = ld_q(o * HS, d);
        dov[d] = ld_do(o * HS, d);
      }
      let mi = ld_in[o];
      let lli = ld_in[p.nrows + o];
      let di = ld_in[2u * p.nrows + o];
      for (var r = 0u; r < RPL; r++) {
        let j = j0 + r;
        var dot = vec4<f32>(0.0);
        var dp = vec4<f32>(0.0);
        for (var d = 0u; d < nch(); d++) {
          dot = fma(kr[r * HS4 + d], qv[d], dot);
          dp = fma(vr[r * HS4 + d], dov[d], dp);
        }
        let adm = j < p.tk && (p.causal == 0u || j <= p.q_off + i);
        let pr = select(0.0, exp((hsum(dot) + mask_at(b, i, min(j, p.tk - 1u)) - mi) - lli), adm);
        let ds = vec4<f32>(pr * (hsum(dp) - di));
        for (var d = 0u; d < nch(); d++) {
          dv[r * HS4 + d] = fma(vec4<f32>(pr), dov[d], dv[r * HS4 + d]);
          dk[r * HS4 + d] = fma(ds, qv[d], dk[r * HS4 + d]);
        }
      }
    }
  }
  let w = p.hs4 * 4u;
  for (var x = 0u; x < RPL * w; x++) {
    let r = x / w;
    let e = x % w;
    if (j0 + r < p.ks && e < HS) {
      let o = (bkv * p.ks + j0 + r) * HS + e;
      out[o] = dk[r * HS4 + e / 4u][e % 4u] * p.scale;
      out2[o] = dv[r * HS4 + e / 4u][e % 4u];
    }
  }
}

// ---- KV cache ------------------------------------------------------------------------------------
// append: new rows [B·NKV, Tn·hs] go to cache rows [len, len + Tn) of each head.
// reorder: head block b of the new cache = head block beam[b] of the old one (first len rows).

@compute @workgroup_size(CWG)
fn cache_append(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var e = gid.x; e < p.cn; e += nw.x * CWG) {
    let o = (e / p.crow) * p.cstride + p.coff + e % p.crow;
    dst_k[o] = src_k[e];
    dst_v[o] = src_v[e];
  }
}

@compute @workgroup_size(CWG)
fn cache_append4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var e = gid.x; e < p.cn; e += nw.x * CWG) {
    let o = (e / p.crow) * p.cstride + p.coff + e % p.crow;
    dst_k4[o] = src_k4[e];
    dst_v4[o] = src_v4[e];
  }
}

// e runs over [B, NKV, crow]; the source batch is beam[b]; returns (source, destination) indices.
fn reorder_src(e: u32) -> vec2<u32> {
  let per_b = p.nkv * p.crow;
  let b = e / per_b;
  let rest = e % per_b;
  let h = rest / p.crow;
  let x = rest % p.crow;
  let sb = u32(beam[b]);
  return vec2<u32>((sb * p.nkv + h) * p.cstride + p.coff + x, (b * p.nkv + h) * p.cdst + x);
}

@compute @workgroup_size(CWG)
fn cache_reorder(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var e = gid.x; e < p.cn; e += nw.x * CWG) {
    let so = reorder_src(e);
    dst_k[so.y] = src_k[so.x];
    dst_v[so.y] = src_v[so.x];
  }
}

@compute @workgroup_size(CWG)
fn cache_reorder4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var e = gid.x; e < p.cn; e += nw.x * CWG) {
    let so = reorder_src(e);
    dst_k4[so.y] = src_k4[so.x];
    dst_v4[so.y] = src_v4[so.x];
  }
}
