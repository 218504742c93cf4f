// Reductions. `rows`: x viewed as [outer, R, inner], one workgroup per (outer, chunk of R, inner)
// output, its invocations striding over the chunk and combining in workgroup memory. `sum_to`: the
// general broadcast-undo reduction used by backward rules (each output sums its broadcast
// preimage); `expand`, its inverse, materialises a broadcast.

struct Params {
  outer: u32,
  r: u32,
  inner: u32,
  rank: u32,
  count: u32,     // sum_to: input elements per output element; rows: elements of R per chunk
  n_out: u32,     // sum_to, expand: output elements; rows: chunks of R
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

// The start value: 0 for sum; for max a member of the reduced set (max is idempotent), so rows
// of -inf give -inf. `first` is the index of one element of the set (R is never empty here).
fn start(first: u32) -> f32 {
  if (OP == 1u) { return x[first]; }
  return 0.0;
}

// One workgroup per output of [outer, chunks, inner] (chunks = n_out, each `count` long); the
// grid is folded into x/y.
@compute @workgroup_size(WG)
fn rows(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let o = wid.y * nw.x + wid.x;                     // = (outer_i * chunks + chunk_i) * inner + inner_i
  if (o >= p.outer * p.n_out * p.inner) { return; }  // uniform per workgroup
  let ii = o % p.inner;
  let ci = (o / p.inner) % p.n_out;
  let oi = o / (p.inner * p.n_out);
  let base = oi * p.r * p.inner + ii;
  let k0 = ci * p.count;
  let k1 = min(p.r, k0 + p.count);
  var acc = start(base + k0 * p.inner);
  for (var k = k0 + lid.x; k < k1; k += WG) { acc = combine(acc, x[base + k * p.inner]); }
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
    var acc = start(base);
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

// out[o] = x[broadcast offset of o]: in_dims holds the output dims, in_strides x's strides read
// as broadcast to them (0 on broadcast dims).
@compute @workgroup_size(WG)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var o = gid.x; o < p.n_out; o += nw.x * WG) {
    var rem = o;
    var off = 0u;
    for (var i = i32(p.rank) - 1; i >= 0; i--) {
      let k = u32(i);
      let n = d(p.in_dims, k);
      off += (rem % n) * d(p.in_strides, k);
      rem /= n;
    }
    out[o] = x[off];
  }
}
