// Data movement: the general strided copy behind permute/slice/concat (forward and backward),
// gather along an axis, and gather's deterministic scatter-add backward over a host-built CSR.
// Copies move u32 bit patterns so f32 and i32 tensors share the kernels bit-exactly.
//
// Every kernel sees its work as rows × inner: 2^lanes_log2 lanes of a workgroup share a row and
// stride over its inner elements, the workgroup's other lanes take the next rows. Index
// arithmetic (the divisions that locate a row) is paid per row, not per element: integer division
// is scalar and slow on CPU Vulkan (lavapipe) and not free on GPUs either.

struct Params {
  rows: u32,
  inner: u32,            // elements (or vec4s for the *4 entry points) per row
  rows_per_group: u32,   // rows handled by one workgroup
  lanes_log2: u32,       // log2 of lanes per row (≤ log2 WG)
  // copy: the region is [outer dims..., inner]; a row is one multi-index over the outer dims
  src_base: u32,
  dst_base: u32,
  src_inner: u32,        // stride of the inner dim in the source
  dst_inner: u32,
  rank: u32,             // outer dims used below
  // gather / scatter-add: x viewed as [outer, A, inner] and the output as [outer, K, inner]
  a: u32,
  k: u32,
  pad: u32,
  shape: array<vec4<u32>, 2>,        // copy: outer dims
  src_strides: array<vec4<u32>, 2>,  // copy: their element strides in the source
  dst_strides: array<vec4<u32>, 2>,  // copy: their element strides in the destination
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read> idx: array<i32>;      // gather indices [K]
@group(0) @binding(4) var<storage, read> csr_off: array<u32>;  // [A + 1]: list range of each source row
@group(0) @binding(5) var<storage, read> csr_pos: array<u32>;  // [K]: output positions, ascending per row
@group(0) @binding(11) var<storage, read> src4: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read_write> dst4: array<vec4<u32>>;

override WG: u32 = 64u;

fn dim(arr: array<vec4<u32>, 2>, i: u32) -> u32 { return arr[i / 4u][i % 4u]; }

// This thread's lane within its row, its first row, the row step and the group's row end.
struct Walk {
  lane: u32,
  lanes: u32,
  first: u32,
  step: u32,
  end: u32,
}

fn walk(lid: u32, wid: vec3<u32>, nw: vec3<u32>) -> Walk {
  let lanes = 1u << p.lanes_log2;
  let row0 = (wid.y * nw.x + wid.x) * p.rows_per_group;
  return Walk(lid & (lanes - 1u), lanes, row0 + (lid >> p.lanes_log2), WG >> p.lanes_log2, min(row0 + p.rows_per_group, p.rows));
}

// Source and destination offsets of the first element of copy row r.
fn copy_row(r: u32) -> vec2<u32> {
  var rem = r;
  var o = vec2<u32>(p.src_base, p.dst_base);
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let k = u32(d);
    let n = dim(p.shape, k);
    o += (rem % n) * vec2<u32>(dim(p.src_strides, k), dim(p.dst_strides, k));
    rem = rem / n;
  }
  return o;
}

@compute @workgroup_size(WG)
fn copy(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let w = walk(l.x, wid, nw);
  for (var r = w.first; r < w.end; r += w.step) {
    let o = copy_row(r);
    for (var c = w.lane; c < p.inner; c += w.lanes) { dst[o.y + c * p.dst_inner] = src[o.x + c * p.src_inner]; }
  }
}

// Same copy in vec4 units: the inner dim is contiguous on both sides and the host divided every
// stride, base and the inner length by 4.
@compute @workgroup_size(WG)
fn copy4(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let w = walk(l.x, wid, nw);
  for (var r = w.first; r < w.end; r += w.step) {
    let o = copy_row(r);
    for (var c = w.lane; c < p.inner; c += w.lanes) { dst4[o.y + c] = src4[o.x + c]; }
  }
}

// Gather row r = (o, k) of the output reads x row (o, idx[k]); -1 when idx[k] is out of range
// (the row is then 0: indices the host could not check must not read out of bounds).
fn gather_row(r: u32) -> i32 {
  let a = idx[r % p.k];
  if (a < 0 || u32(a) >= p.a) { return -1; }
  return i32((r / p.k) * p.a + u32(a));
}

@compute @workgroup_size(WG)
fn gather(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let w = walk(l.x, wid, nw);
  for (var r = w.first; r < w.end; r += w.step) {
    let s = gather_row(r);
    let so = u32(max(s, 0)) * p.inner;
    for (var c = w.lane; c < p.inner; c += w.lanes) { dst[r * p.inner + c] = select(0u, src[so + c], s >= 0); }
  }
}

@compute @workgroup_size(WG)
fn gather4(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let w = walk(l.x, wid, nw);
  for (var r = w.first; r < w.end; r += w.step) {
    let s = gather_row(r);
    let so = u32(max(s, 0)) * p.inner;
    for (var c = w.lane; c < p.inner; c += w.lanes) { dst4[r * p.inner + c] = select(vec4<u32>(0u), src4[so + c], s >= 0); }
  }
}

// dx row r = (o, a) = Σ dout rows (o, k) over the k with idx[k] == a, in ascending k: each output
// element owns its sum, so no atomics and the result is the same on every run.
// src = dout [outer, K, inner], dst = dx [outer, A, inner].
@compute @workgroup_size(WG)
fn scatter_add(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let w = walk(l.x, wid, nw);
  for (var r = w.first; r < w.end; r += w.step) {
    let a = r % p.a;
    let row0 = (r / p.a) * p.k;
    let j0 = csr_off[a];
    let j1 = csr_off[a + 1u];
    for (var c = w.lane; c < p.inner; c += w.lanes) {
      var acc = 0.0;
      for (var j = j0; j < j1; j++) { acc += bitcast<f32>(src[(row0 + csr_pos[j]) * p.inner + c]); }
      dst[r * p.inner + c] = bitcast<u32>(acc);
    }
  }
}

@compute @workgroup_size(WG)
fn scatter_add4(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let w = walk(l.x, wid, nw);
  for (var r = w.first; r < w.end; r += w.step) {
    let a = r % p.a;
    let row0 = (r / p.a) * p.k;
    let j0 = csr_off[a];
    let j1 = csr_off[a + 1u];
    for (var c = w.lane; c < p.inner; c += w.lanes) {
      var acc = vec4<f32>(0.0);
      for (var j = j0; j < j1; j++) { acc += bitcast<vec4<f32>>(src4[(row0 + csr_pos[j]) * p.inner + c]); }
      dst4[r * p.inner + c] = bitcast<vec4<u32>>(acc);
    }
  }
}
