// Segmented log-sum-exp: out[seg.out] = log Σ_{j ∈ [start, end)} exp(x[row, j]) for a list of
// segments (row, start, end, out) of the rows of x [B, N]. TPS threads own a segment (WG / TPS
// segments per workgroup): the host groups segments by length and dispatches each group with a
// fitting TPS, so one length-1 segment does not idle a workgroup and a 20k-long one is not left to
// a single thread. Each thread keeps an online (max, Σ exp(x − max)) pair; a tree combines them.

struct Params {
  n_seg: u32,    // segments in this dispatch
  first: u32,    // index of its first segment in `segs`
  n: u32,        // row length N of x
  neg_inf: f32,  // -inf from the host: WGSL const-expressions cannot be infinite
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> segs: array<vec4<i32>>;   // (row, start, end, out)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 64u;
override TPS: u32 = 1u;   // threads per segment, a power of two dividing WG

// Lowest finite f32: a running max that starts here never makes exp(m_old - m_new) = exp(nan).
const LOWEST = -3.4028234663852886e38;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

@compute @workgroup_size(WG)
fn lse(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  // Workgroups fold into x·y so large segment counts stay under the per-dimension limit.
  let slot = (wid.y * nw.x + wid.x) * (WG / TPS) + l.x / TPS;
  let lane = l.x % TPS;
  let live = slot < p.n_seg;
  var sg = vec4<i32>(0, 0, 0, 0);
  if (live) { sg = segs[p.first + slot]; }
  let base = u32(sg.x) * p.n;
  var m = LOWEST;
  var acc = 0.0;
  for (var j = u32(sg.y) + lane; j < u32(sg.z); j += TPS) {
    let v = x[base + j];
    let mn = max(m, v);
    acc = acc * exp(m - mn) + exp(v - mn);
    m = mn;
  }
  if (TPS > 1u) {
    // Barriers stay in uniform control flow: every invocation takes part, dead slots with (LOWEST, 0).
    red_m[l.x] = m;
    red_s[l.x] = acc;
    workgroupBarrier();
    for (var k = TPS / 2u; k > 0u; k >>= 1u) {
      if (lane < k) {
        let ma = red_m[l.x];
        let mb = red_m[l.x + k];
        let mm = max(ma, mb);
        red_s[l.x] = red_s[l.x] * exp(ma - mm) + red_s[l.x + k] * exp(mb - mm);
        red_m[l.x] = mm;
      }
      workgroupBarrier();
    }
    m = red_m[l.x];
    acc = red_s[l.x];
  }
  // acc is 0 only for an empty segment (or one of -inf only): log(0) is not defined in WGSL.
  if (live && lane == 0u) { out[u32(sg.w)] = select(p.neg_inf, m + log(acc), acc > 0.0); }
}
