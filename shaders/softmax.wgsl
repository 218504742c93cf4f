// Softmax and log-softmax over the last axis, forward and fused backward. TPR threads own a row
// (WG / TPR rows per workgroup, so short rows do not idle a whole workgroup): one pass keeps an
// online max and a max-shifted sum of exp, a group reduction combines them, a second pass writes.
// A row is read as the 16-byte-aligned vec4 chunks of the buffer that overlap it, lanes outside
// the row masked, so every row length gets vec4 loads. The *4 entry points (V % 4 == 0: chunks are
// exactly the row) store vec4s; the *1 ones store the in-row lanes one by one.

struct Params {
  rows: u32,
  v: u32,        // row length
  pad: u32,
  neg_inf: f32,  // -inf from the host: WGSL const-expressions cannot be infinite
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(11) var<storage, read> a4: array<vec4<f32>>;   // x (forward) or y (backward)
@group(0) @binding(12) var<storage, read> b4: array<vec4<f32>>;   // dy (backward)
@group(0) @binding(13) var<storage, read_write> out4: array<vec4<f32>>;

override WG: u32 = 64u;
override TPR: u32 = 64u;        // threads per row, a power of two dividing WG
override VEC4: bool = true;     // v % 4 == 0: rows are whole chunks, no masking
override LOG: bool = false;     // log-softmax instead of softmax

// Lowest finite f32: a running max that starts here never makes exp(m_old - m_new) = exp(nan).
const LOWEST = -3.4028234663852886e38;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

struct Slot {
  row: u32,
  lane: u32,    // this thread's index among its row's TPR threads
  e0: u32,      // the row's first element
  q0: u32,      // the first chunk overlapping the row
  n: u32,       // chunks overlapping the row (0 for the padding rows of the last workgroup)
}

// Workgroups fold into x·y so large row counts stay under the per-dimension limit.
fn slot(lid: u32, wid: vec3<u32>, nw: vec3<u32>) -> Slot {
  let row = (wid.y * nw.x + wid.x) * (WG / TPR) + lid / TPR;
  let e0 = row * p.v;
  let q0 = e0 / 4u;
  return Slot(row, lid % TPR, e0, q0, select(0u, (e0 + p.v + 3u) / 4u - q0, row < p.rows));
}

// Element indices of chunk j of the row, and which of them belong to the row.
fn elems(s: Slot, j: u32) -> vec4<u32> { return vec4<u32>(4u * (s.q0 + j)) + vec4<u32>(0u, 1u, 2u, 3u); }
fn in_row(s: Slot, e: vec4<u32>) -> vec4<bool> { return (e >= vec4<u32>(s.e0)) & (e < vec4<u32>(s.e0 + p.v)); }

// Chunk j of the row of `a` (or `b`), lanes outside the row set to `fill`.
fn ld_a(s: Slot, j: u32, fill: f32) -> vec4<f32> {
  let v = a4[s.q0 + j];
  if (VEC4) { return v; }
  return select(vec4<f32>(fill), v, in_row(s, elems(s, j)));
}

fn ld_b(s: Slot, j: u32, fill: f32) -> vec4<f32> {
  let v = b4[s.q0 + j];
  if (VEC4) { return v; }
  return select(vec4<f32>(fill), v, in_row(s, elems(s, j)));
}

// Stores the in-row lanes of chunk j (the *1 entry points: neighbouring rows own the others).
fn st1(s: Slot, j: u32, y: vec4<f32>) {
  let e = elems(s, j);
  let ok = in_row(s, e);
  for (var k = 0u; k < 4u; k++) {
    if (ok[k]) { out[e[k]] = y[k]; }
  }
}

fn hmax(v: vec4<f32>) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
fn hsum(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }

// (max, log Σ exp(x - max)) over the row of `a`, shared by the row's TPR threads. One read of the
// row: a running max m and s = Σ exp(x - m), rescaled when m grows; then a tree over the group's
// (m, s) pairs. Kept apart (not summed into one lse) so x - m - log s stays exact for |x| ~ 1e4.
fn row_logsumexp(lid: u32, s: Slot) -> vec2<f32> {
  var m = LOWEST;
  var acc = 0.0;
  for (var j = s.lane; j < s.n; j += TPR) {
    let v = ld_a(s, j, p.neg_inf);
    let mn = max(m, hmax(v));
    acc = acc * exp(m - mn) + hsum(exp(v - mn));
    m = mn;
  }
  red_m[lid] = m;
  red_s[lid] = acc;
  workgroupBarrier();
  for (var k = TPR / 2u; k > 0u; k >>= 1u) {
    if (s.lane < k) {
      let ma = red_m[lid];
      let mb = red_m[lid + k];
      let mm = max(ma, mb);
      red_s[lid] = red_s[lid] * exp(ma - mm) + red_s[lid + k] * exp(mb - mm);
      red_m[lid] = mm;
    }
    workgroupBarrier();
  }
  let head = lid - s.lane;
  return vec2<f32>(red_m[head], log(red_s[head]));
}

// Σ over the row of the chunk sums in `part`, shared by the row's TPR threads.
fn row_sum(lid: u32, s: Slot, part: f32) -> f32 {
  red_s[lid] = part;
  workgroupBarrier();
  for (var k = TPR / 2u; k > 0u; k >>= 1u) {
    if (s.lane < k) { red_s[lid] = red_s[lid] + red_s[lid + k]; }
    workgroupBarrier();
  }
  return red_s[lid - s.lane];
}

// y = (x - m) - log s (log-softmax) or its exp (softmax: one exp per element, no division).
fn fwd_value(x: vec4<f32>, lse: vec2<f32>) -> vec4<f32> {
  let y = (x - lse.x) - lse.y;
  if (LOG) { return y; }
  return exp(y);
}

@compute @workgroup_size(WG)
fn fwd4(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slot(l.x, wid, nw);
  let lse = row_logsumexp(l.x, s);
  for (var j = s.lane; j < s.n; j += TPR) { out4[s.q0 + j] = fwd_value(ld_a(s, j, 0.0), lse); }
}

@compute @workgroup_size(WG)
fn fwd1(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slot(l.x, wid, nw);
  let lse = row_logsumexp(l.x, s);
  for (var j = s.lane; j < s.n; j += TPR) { st1(s, j, fwd_value(ld_a(s, j, 0.0), lse)); }
}

// Backward from the saved output y (a) and dy (b), out-of-row lanes 0:
//   softmax      dx = y ⊙ (dy − Σ dy⊙y)
//   log-softmax  dx = dy − exp(y) · Σ dy      (exp(y) is softmax(x))
fn bwd_part(y: vec4<f32>, dy: vec4<f32>) -> f32 {
  if (LOG) { return hsum(dy); }
  return hsum(dy * y);
}

fn bwd_value(y: vec4<f32>, dy: vec4<f32>, t: f32) -> vec4<f32> {
  if (LOG) { return dy - exp(y) * t; }
  return y * (dy - t);
}

fn bwd_total(lid: u32, s: Slot) -> f32 {
  var part = 0.0;
  for (var j = s.lane; j < s.n; j += TPR) { part += bwd_part(ld_a(s, j, 0.0), ld_b(s, j, 0.0)); }
  return row_sum(lid, s, part);
}

@compute @workgroup_size(WG)
fn bwd4(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slot(l.x, wid, nw);
  let t = bwd_total(l.x, s);
  for (var j = s.lane; j < s.n; j += TPR) { out4[s.q0 + j] = bwd_value(ld_a(s, j, 0.0), ld_b(s, j, 0.0), t); }
}

@compute @workgroup_size(WG)
fn bwd1(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slot(l.x, wid, nw);
  let t = bwd_total(l.x, s);
  for (var j = s.lane; j < s.n; j += TPR) { st1(s, j, bwd_value(ld_a(s, j, 0.0), ld_b(s, j, 0.0), t)); }
}
