// RMSNorm (Hugging Face LlamaRMSNorm, f32): y = x · rsqrt(mean(x²) + eps) · w over rows of C.
// `fwd` and `bwd_dx` run one workgroup per row; `bwd_dw` sums dweight column-parallel over chunks
// of rows and `dw_final` adds the chunks in a fixed order, so dweight is deterministic.

struct Params {
  rows: u32,
  C: u32,
  eps: f32,
  chunk_rows: u32,   // bwd_dw: rows per chunk
  n_chunks: u32,     // bwd_dw, dw_final: chunks of rows
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [rows, C]
@group(0) @binding(2) var<storage, read> w: array<f32>;        // [C]
@group(0) @binding(3) var<storage, read> dy: array<f32>;       // [rows, C]
@group(0) @binding(4) var<storage, read> rstd: array<f32>;     // [rows], saved by fwd
@group(0) @binding(5) var<storage, read_write> out: array<f32>;       // y, dx, dw or dw partials
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;  // [rows]
@group(0) @binding(7) var<storage, read> partial: array<f32>;  // [n_chunks, C]

override WG: u32 = 64u;       // row kernels: invocations per row (a power of two)
override DW_COLS: u32 = 32u;  // bwd_dw: columns per workgroup (one coalesced run)
override DW_LANES: u32 = 8u;  // bwd_dw: row lanes per column (a power of two)

var<workgroup> red: array<f32, WG>;
var<workgroup> tile: array<f32, DW_COLS * DW_LANES>;

// Sum of v over the workgroup in a fixed tree order; every invocation gets the result.
fn wg_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  return red[0];
}

// The grid is folded into x/y so that more than 65535 rows fit.
@compute @workgroup_size(WG)
fn fwd(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.y * nw.x + wid.x;
  if (row >= p.rows) { return; }  // uniform per workgroup
  let base = row * p.C;
  var ss = 0.0;
  for (var c = lid.x; c < p.C; c += WG) { let v = x[base + c]; ss += v * v; }
  let r = inverseSqrt(wg_sum(lid.x, ss) / f32(p.C) + p.eps);
  for (var c = lid.x; c < p.C; c += WG) { out[base + c] = (x[base + c] * r) * w[c]; }
  if (lid.x == 0u) { rstd_out[row] = r; }
}

// dx = r·g − r³·x·(g·x)/C with g = dy·w (the rstd chain rule through mean(x²)).
@compute @workgroup_size(WG)
fn bwd_dx(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let row = wid.y * nw.x + wid.x;
  if (row >= p.rows) { return; }
  let base = row * p.C;
  var dot = 0.0;
  for (var c = lid.x; c < p.C; c += WG) { dot += dy[base + c] * w[c] * x[base + c]; }
  let r = rstd[row];
  let k = r * r * wg_sum(lid.x, dot) / f32(p.C);
  for (var c = lid.x; c < p.C; c += WG) {
    let i = base + c;
    out[i] = r * (dy[i] * w[c] - x[i] * k);
  }
}

// dw[c] over one chunk of rows: Σ_row dy·x·r. Workgroup = DW_COLS columns × DW_LANES row lanes;
// grid = (column blocks, chunks). Writes partial[chunk, c] (or dw itself when n_chunks == 1).
@compute @workgroup_size(DW_COLS * DW_LANES)
fn bwd_dw(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let col = wid.x * DW_COLS + lid.x % DW_COLS;
  let lane = lid.x / DW_COLS;
  let r0 = wid.y * p.chunk_rows;
  let r1 = min(p.rows, r0 + p.chunk_rows);
  var acc = 0.0;
  if (col < p.C) {
    for (var row = r0 + lane; row < r1; row += DW_LANES) {
      let i = row * p.C + col;
      acc += dy[i] * x[i] * rstd[row];
    }
  }
  tile[lid.x] = acc;
  workgroupBarrier();
  for (var s = DW_LANES / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { tile[lid.x] += tile[lid.x + s * DW_COLS]; }
    workgroupBarrier();
  }
  if (lane == 0u && col < p.C) { out[wid.y * p.C + col] = tile[lid.x]; }
}

// dw[c] = Σ_chunk partial[chunk, c], chunks in order.
@compute @workgroup_size(WG)
fn dw_final(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var c = gid.x; c < p.C; c += nw.x * WG) {
    var acc = 0.0;
    for (var k = 0u; k < p.n_chunks; k++) { acc += partial[k * p.C + c]; }
    out[c] = acc;
  }
}
