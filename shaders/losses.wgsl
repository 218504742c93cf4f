// Fused cross-entropy (llm.c's fused classifier): one pass per row of logits [R, V] finds the max
// and log-sum-exp, writes the row's NLL and, in the same pass, dlogits = softmax − onehot(target)
// (unscaled); the probabilities are never stored. `reduce` sums the NLLs and counts the rows that
// count (target in range and not ignore_index) on the GPU; `bwd` scales the stored gradient by
// dout (and 1/count). The row statistics and the aligned-chunk reads (vec4 loads for every row
// length, lanes outside the row masked) mirror shaders/softmax.wgsl.

struct Params {
  rows: u32,
  v: u32,
  pad: u32,
  neg_inf: f32,       // -inf from the host: WGSL const-expressions cannot be infinite
  ignore_index: i32,
  n4: u32,            // bwd: vec4s in the [R, V] gradient
  pad0: u32,
  pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(11) var<storage, read> x4: array<vec4<f32>>;    // logits [R, V]
@group(0) @binding(3) var<storage, read> targets: array<i32>;      // [R]
@group(0) @binding(4) var<storage, read_write> losses: array<f32>; // [R] per-row NLL (0 when ignored)
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;   // [R, V] softmax − onehot
@group(0) @binding(15) var<storage, read_write> grad4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> losses_in: array<f32>;    // reduce: [R]
@group(0) @binding(7) var<storage, read_write> loss_out: array<f32>;  // reduce: [1]
@group(0) @binding(8) var<storage, read_write> count_out: array<f32>; // reduce: [1] rows that count
@group(0) @binding(12) var<storage, read> g4: array<vec4<f32>>;    // bwd: the stored gradient
@group(0) @binding(9) var<storage, read> dout: array<f32>;         // bwd: [1] or [R]
@group(0) @binding(10) var<storage, read> count_in: array<f32>;    // bwd: [1]
@group(0) @binding(16) var<storage, read_write> dx4: array<vec4<f32>>;

override WG: u32 = 64u;
override TPR: u32 = 64u;      // threads per row, a power of two dividing WG
override VEC4: bool = true;   // v % 4 == 0: rows are whole chunks, no masking
override MEAN: bool = true;   // reduce: divide the sum by the count
override MODE: u32 = 2u;      // bwd: 0 none (dout per row), 1 sum, 2 mean

const LOWEST = -3.4028234663852886e38;

// Group reductions: (max, sum of exp) pairs in the row passes, (loss, count) pairs in `reduce`.
var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

struct Slot {
  row: u32,
  lane: u32,
  e0: u32,      // the row's first element
  q0: u32,      // the first chunk overlapping the row
  n: u32,       // chunks overlapping the row (0 for the padding rows of the last workgroup)
}

fn slot(lid: u32, wid: vec3<u32>, nw: vec3<u32>) -> Slot {
  let row = (wid.y * nw.x + wid.x) * (WG / TPR) + lid / TPR;
  let e0 = row * p.v;
  let q0 = e0 / 4u;
  return Slot(row, lid % TPR, e0, q0, select(0u, (e0 + p.v + 3u) / 4u - q0, row < p.rows));
}

fn elems(s: Slot, j: u32) -> vec4<u32> { return vec4<u32>(4u * (s.q0 + j)) + vec4<u32>(0u, 1u, 2u, 3u); }
fn in_row(s: Slot, e: vec4<u32>) -> vec4<bool> { return (e >= vec4<u32>(s.e0)) & (e < vec4<u32>(s.e0 + p.v)); }

fn ld(s: Slot, j: u32, fill: f32) -> vec4<f32> {
  let v = x4[s.q0 + j];
  if (VEC4) { return v; }
  return select(vec4<f32>(fill), v, in_row(s, elems(s, j)));
}

fn hmax(v: vec4<f32>) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
fn hsum(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }

fn counts(t: i32) -> bool { return t != p.ignore_index && t >= 0 && u32(t) < p.v; }

// (max, log Σ exp(x − max)) of the row: online max and rescaled sum, then a group tree.
fn row_stats(lid: u32, s: Slot) -> vec2<f32> {
  var m = LOWEST;
  var acc = 0.0;
  for (var j = s.lane; j < s.n; j += TPR) {
    let v = ld(s, j, p.neg_inf);
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

// NLL = log Σ exp(x) − x[t] = (m − x[t]) + log s, written by the row's first thread.
fn write_loss(s: Slot, st: vec2<f32>) -> i32 {
  var t = -1;
  if (s.n > 0u) {
    t = targets[s.row];
    if (!counts(t)) { t = -1; }
    if (s.lane == 0u) {
      let e = s.e0 + u32(max(t, 0));
      losses[s.row] = select(0.0, (st.x - x4[e / 4u][e % 4u]) + st.y, t >= 0);
    }
  }
  return t;
}

// dlogits chunk j: softmax − onehot(t), all zero for a row that does not count (t < 0).
fn grad_chunk(s: Slot, st: vec2<f32>, t: i32, j: u32) -> vec4<f32> {
  let c = vec4<i32>(elems(s, j) - vec4<u32>(s.e0));  // position in the row (negative before it)
  let pr = exp((ld(s, j, 0.0) - st.x) - st.y);
  return select(vec4<f32>(0.0), pr - select(vec4<f32>(0.0), vec4<f32>(1.0), c == vec4<i32>(t)), t >= 0);
}

@compute @workgroup_size(WG)
fn fwd(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slot(l.x, wid, nw);
  let st = row_stats(l.x, s);
  write_loss(s, st);
}

@compute @workgroup_size(WG)
fn fwd_grad4(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slot(l.x, wid, nw);
  let st = row_stats(l.x, s);
  let t = write_loss(s, st);
  for (var j = s.lane; j < s.n; j += TPR) { grad4[s.q0 + j] = grad_chunk(s, st, t, j); }
}

@compute @workgroup_size(WG)
fn fwd_grad1(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slot(l.x, wid, nw);
  let st = row_stats(l.x, s);
  let t = write_loss(s, st);
  for (var j = s.lane; j < s.n; j += TPR) {
    // Only the in-row lanes: neighbouring rows own the others.
    let g = grad_chunk(s, st, t, j);
    let e = elems(s, j);
    let ok = in_row(s, e);
    for (var k = 0u; k < 4u; k++) {
      if (ok[k]) { grad[e[k]] = g[k]; }
    }
  }
}

// One workgroup: loss = Σ NLL (÷ count when MEAN), count = rows that count. Fixed summation
// order (strided per thread, then a tree), so the result is the same on every run.
@compute @workgroup_size(WG)
fn reduce(@builtin(local_invocation_id) l: vec3<u32>) {
  var acc = 0.0;
  var cnt = 0.0;
  for (var r = l.x; r < p.rows; r += WG) {
    acc += losses_in[r];
    cnt += select(0.0, 1.0, counts(targets[r]));
  }
  red_m[l.x] = acc;
  red_s[l.x] = cnt;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (l.x < k) {
      red_m[l.x] += red_m[l.x + k];
      red_s[l.x] += red_s[l.x + k];
    }
    workgroupBarrier();
  }
  if (l.x == 0u) {
    loss_out[0] = select(red_m[0], red_m[0] / red_s[0], MEAN);
    count_out[0] = red_s[0];
  }
}

// dlogits = stored gradient × dout (per row for 'none'), ÷ count for 'mean' (0 when no row counts).
@compute @workgroup_size(WG)
fn bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  var scale = vec4<f32>(dout[0]);
  if (MODE == 2u) {
    let c = count_in[0];
    scale = select(vec4<f32>(0.0), scale / c, c > 0.0);
  }
  for (var i = gid.x; i < p.n4; i += nw.x * WG) {
    if (MODE == 0u) {
      // Each lane's row, with one division per chunk (a chunk spans at most two rows when
      // V ≥ 4); lanes past R·V (buffer padding) clamp to the last row.
      let e0 = 4u * i;
      let r0 = e0 / p.v;
      let lane = vec4<u32>(0u, 1u, 2u, 3u);
      var r: vec4<u32>;
      if (p.v >= 4u) {
        r = vec4<u32>(r0) + select(vec4<u32>(0u), vec4<u32>(1u), vec4<u32>(e0 - r0 * p.v) + lane >= vec4<u32>(p.v));
      } else {
        r = (vec4<u32>(e0) + lane) / vec4<u32>(p.v);
      }
      r = min(r, vec4<u32>(p.rows - 1u));
      scale = vec4<f32>(dout[r.x], dout[r.y], dout[r.z], dout[r.w]);
    }
    dx4[i] = g4[i] * scale;
  }
}
