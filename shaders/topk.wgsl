// Top-k along the last axis, one workgroup per row. Order: larger value first, ties by lower index,
// NaN above everything (a total order, so deterministic). Per pass:
//  1. each thread finds its best candidate; the kpass-th best of these, τ, bounds the answer (at
//     least kpass elements rank at or before τ, so nothing ranking after τ can be in it);
//  2. each thread keeps a sorted private list of its candidates ranking at or before τ (a few times
//     kpass insertions in the whole row, instead of kpass in every thread);
//  3. kpass rounds of a workgroup argmax merge the lists' heads.
// k > KMAX runs in passes, each taking the next KMAX elements after the last one already chosen.

struct Params {
  rows: u32,
  v: u32,
  k: u32,        // total k (row stride of values / indices)
  first: u32,    // rank of this pass's first output
  kpass: u32,    // outputs of this pass (1 ≤ kpass ≤ KMAX)
  n: u32,        // scatter: rows · k
  neg_inf: f32,  // -inf from the host: WGSL const-expressions cannot be infinite
  pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [rows, v]
@group(0) @binding(2) var<storage, read_write> vals: array<f32>;  // [rows, k]
@group(0) @binding(3) var<storage, read_write> idx: array<i32>;   // [rows, k]
@group(0) @binding(4) var<storage, read> dvals: array<f32>;       // scatter: [rows, k]
@group(0) @binding(5) var<storage, read> idx_in: array<i32>;      // scatter: [rows, k]
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;    // scatter: [rows, v], zeroed

override WG: u32 = 64u;
/** Capacity of each thread's private list, and so the most outputs per pass. */
const KMAX = 64u;
const NONE = 0xffffffffu;  // index of an empty slot: ranks after every real element

var<workgroup> sv: array<f32, WG>;
var<workgroup> si: array<u32, WG>;
var<workgroup> tau_v: f32;
var<workgroup> tau_i: u32;

fn is_nan(a: f32) -> bool { return (bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u; }

// Whether (a, ia) ranks before (b, ib).
fn before(a: f32, ia: u32, b: f32, ib: u32) -> bool {
  let an = is_nan(a);
  let bn = is_nan(b);
  if (an != bn) { return an; }
  if (!an && a != b) { return a > b; }
  return ia < ib;
}

@compute @workgroup_size(WG)
fn select_pass(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.y * nw.x + wid.x;
  if (row >= p.rows) { return; }  // uniform across the workgroup
  let lid = l.x;
  let base = row * p.v;
  let out0 = row * p.k + p.first;
  // Candidates: elements ranking after the last output of the previous pass.
  let has_prev = p.first > 0u;
  var pv = 0.0;
  var pi = 0u;
  if (has_prev) {
    pv = vals[out0 - 1u];
    pi = u32(idx[out0 - 1u]);
  }

  // 1. This thread's best candidate, then τ = the kpass-th best of them (the sentinel when fewer
  //    than kpass threads have a candidate: then every candidate is kept).
  var bv = p.neg_inf;
  var bi = NONE;
  for (var j = lid; j < p.v; j += WG) {
    let xv = x[base + j];
    if ((!has_prev || before(pv, pi, xv, j)) && before(xv, j, bv, bi)) {
      bv = xv;
      bi = j;
    }
  }
  sv[lid] = bv;
  si[lid] = bi;
  if (lid == 0u) {
    tau_v = p.neg_inf;
    tau_i = NONE;
  }
  workgroupBarrier();
  var rank = 0u;
  for (var t = 0u; t < WG; t++) { rank += select(0u, 1u, before(sv[t], si[t], bv, bi)); }
  if (rank == p.kpass - 1u) {  // one thread, or several sentinels writing the same value
    tau_v = bv;
    tau_i = bi;
  }
  workgroupBarrier();
  let tv = tau_v;
  let ti = tau_i;

  // 2. Sorted private list of this thread's candidates ranking at or before τ.
  var lv: array<f32, KMAX>;
  var li: array<u32, KMAX>;
  var len = 0u;
  for (var j = lid; j < p.v; j += WG) {
    let xv = x[base + j];
    if (before(tv, ti, xv, j) || (has_prev && !before(pv, pi, xv, j))) { continue; }
    if (len == p.kpass && !before(xv, j, lv[len - 1u], li[len - 1u])) { continue; }
    // Insertion, dropping the last entry when full.
    var pos = min(len, p.kpass - 1u);
    len = min(len + 1u, p.kpass);
    while (pos > 0u && before(xv, j, lv[pos - 1u], li[pos - 1u])) {
      lv[pos] = lv[pos - 1u];
      li[pos] = li[pos - 1u];
      pos--;
    }
    lv[pos] = xv;
    li[pos] = j;
  }

  // 3. Merge: each round the best head among the threads wins and its owner advances.
  var h = 0u;
  for (var r = 0u; r < p.kpass; r++) {
    sv[lid] = select(p.neg_inf, lv[min(h, KMAX - 1u)], h < len);
    si[lid] = select(NONE, li[min(h, KMAX - 1u)], h < len);
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid < s && before(sv[lid + s], si[lid + s], sv[lid], si[lid])) {
        sv[lid] = sv[lid + s];
        si[lid] = si[lid + s];
      }
      workgroupBarrier();
    }
    let win = si[0];
    if (h < len && li[min(h, KMAX - 1u)] == win) { h++; }
    if (lid == 0u) {
      vals[out0 + r] = sv[0];
      idx[out0 + r] = i32(win);
    }
    workgroupBarrier();  // everyone has read the winner before the next round overwrites it
  }
}

// dx[r, idx[r, j]] = dvalues[r, j] into a zeroed dx; indices within a row are distinct.
@compute @workgroup_size(WG)
fn scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var i = gid.x; i < p.n; i += nw.x * WG) {
    let r = i / p.k;
    dx[r * p.v + u32(idx_in[i])] = dvals[i];
  }
}
