// Reductions. `rows`: x viewed as [outer, R, inner], one workgroup per (outer, inner) output,
// its invocations striding over R and combining in workgroup memory. `sum_to`: the general
// broadcast-undo reduction used by backward rules (each output sums its broadcast preimage).

struct Params {
  outer: u32,
  r: u32,
  inner: u32,
  rank: u32,
  count: u32,     // sum_to: input elements per output element
  n_out: u32,     // sum_to: output elements
  pad0: u32,
  pad1: u32,
  in_dims: array<vec4<u32>, 2>,
  in_strides: array<vec4<u32>, 2>,
  out_dims: array<vec4<u32>, 2>,   // 1 on reduced dims
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override OP: u32 = 0u;   // 0 sum, 1 max
override WG: u32 = 64u;

var<workgroup> part: array<f32, WG>;

fn combine(a: f32, b: f32) -> f32 {
  if (OP == 1u) { return max(a, b); }
  return a + b;
}

fn identity() -> f32 {
  if (OP == 1u) { return bitcast<f32>(0xff7fffffu); } // lowest finite f32
  return 0.0;
}

// One workgroup per output; grid is (inner, outer) folded into x/y.
@compute @workgroup_size(WG)
fn rows(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let o = wid.y * nw.x + wid.x;           // output index = outer_i * inner + inner_i
  if (o >= p.outer * p.inner) { return; }  // uniform per workgroup
  let oi = o / p.inner;
  let ii = o % p.inner;
  let base = oi * p.r * p.inner + ii;
  var acc = identity();
  for (var k = lid.x; k < p.r; k += WG) { acc = combine(acc, x[base + k * p.inner]); }
  part[lid.x] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) { part[lid.x] = combine(part[lid.x], part[lid.x + s]); }
    workgroupBarrier();
  }
  if (lid.x == 0u) { out[o] = part[0]; }
}

// Many outputs with a short reduction each: one invocation per output, looping over R.
@compute @workgroup_size(WG)
fn rows_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n = p.outer * p.inner;
  for (var o = gid.x; o < n; o += nw.x * WG) {
    let base = (o / p.inner) * p.r * p.inner + o % p.inner;
    var acc = identity();
    for (var k = 0u; k < p.r; k++) { acc = combine(acc, x[base + k * p.inner]); }
    out[o] = acc;
  }
}

fn d(a: array<vec4<u32>, 2>, i: u32) -> u32 { return a[i / 4u][i % 4u]; }

@compute @workgroup_size(WG)
fn sum_to(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var o = gid.x; o < p.n_out; o += nw.x * WG) {
    // Base offset of this output's coordinates in the input.
    var rem = o;
    var base = 0u;
    for (var i = i32(p.rank) - 1; i >= 0; i--) {
      let k = u32(i);
      let n = d(p.out_dims, k);
      base += (rem % n) * d(p.in_strides, k);
      rem /= n;
    }
    var acc = 0.0;
    for (var c = 0u; c < p.count; c++) {
      // Decompose c over the reduced dims (those with out_dims == 1 and in_dims > 1).
      var r = c;
      var off = base;
      for (var i = i32(p.rank) - 1; i >= 0; i--) {
        let k = u32(i);
        if (d(p.out_dims, k) == 1u) {
          let n = d(p.in_dims, k);
          off += (r % n) * d(p.in_strides, k);
          r /= n;
        }
      }
      acc += x[off];
    }
    out[o] = acc;
  }
}
