// Optimizer kernels: the fused AdamW update (param, m, v in place, one dispatch per parameter) and
// the global gradient norm (per-parameter partial sums of squares, one fixed-order final sum that
// also writes the clip scale, and an in-place gradient scale) — all without read-back.

struct Params {
  n: u32,            // elements of this parameter / gradient
  offset: u32,       // sumsq: first partial slot of this parameter
  n_parts: u32,      // sumsq_final: partial sums in all
  pad0: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  decay: f32,        // 1 − lr·weight_decay (decoupled weight decay)
  step_size: f32,    // lr / (1 − beta1^t)
  bc2_sqrt: f32,     // sqrt(1 − beta2^t)
  max_norm: f32,     // sumsq_final
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;           // [1]: gradient multiplier
@group(0) @binding(3) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> parts_out: array<f32>;
@group(0) @binding(7) var<storage, read> parts: array<f32>;
@group(0) @binding(8) var<storage, read_write> norm_out: array<f32>;  // [1]
@group(0) @binding(9) var<storage, read_write> scale_out: array<f32>; // [1]
@group(0) @binding(10) var<storage, read_write> grad_rw: array<vec4<f32>>;

override WG: u32 = 256u;
override USE_SCALE: bool = false;  // adamw: multiply the gradient by scale[0] (folded clipping)
override CLIP: bool = true;        // sumsq_final: scale = min(1, max_norm / (norm + 1e-6)), else 1

const CLIP_EPS = 1e-6;  // as in torch.nn.utils.clip_grad_norm_

var<workgroup> red: array<f32, WG>;

// Elements 4i..4i+3 that exist (buffers are padded to 16 bytes; padding lanes hold garbage).
fn valid(i: u32) -> vec4<bool> {
  return (vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u)) < vec4<u32>(p.n);
}

// PyTorch's AdamW (single-tensor path): θ ← θ(1 − lr·λ); m ← lerp(m, g, 1 − β1);
// v ← β2·v + (1 − β2)·g²; θ ← θ − step_size · m / (sqrt(v) / sqrt(1 − β2^t) + ε).
@compute @workgroup_size(WG)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n4 = (p.n + 3u) / 4u;
  for (var i = gid.x; i < n4; i += nw.x * WG) {
    var g = select(vec4<f32>(0.0), grad[i], valid(i));
    if (USE_SCALE) { g *= scale[0]; }
    let th = param[i] * p.decay;
    let m0 = m[i];
    let m1 = m0 + (1.0 - p.beta1) * (g - m0);
    let v1 = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = m1;
    v[i] = v1;
    param[i] = th - p.step_size * m1 / (sqrt(v1) / p.bc2_sqrt + p.eps);
  }
}

fn wg_sum(lid: u32, x: f32) -> f32 {
  red[lid] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  return red[0];
}

// Partial Σg² of one gradient: workgroup k writes parts_out[offset + k].
@compute @workgroup_size(WG)
fn sumsq(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n4 = (p.n + 3u) / 4u;
  var acc = vec4<f32>(0.0);
  for (var i = wid.x * WG + lid.x; i < n4; i += nw.x * WG) {
    let g = select(vec4<f32>(0.0), grad[i], valid(i));
    acc += g * g;
  }
  let total = wg_sum(lid.x, (acc.x + acc.y) + (acc.z + acc.w));
  if (lid.x == 0u) { parts_out[p.offset + wid.x] = total; }
}

// One workgroup: norm = sqrt(Σ parts) in a fixed order, and the clip scale.
@compute @workgroup_size(WG)
fn sumsq_final(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = 0.0;
  for (var k = lid.x; k < p.n_parts; k += WG) { acc += parts[k]; }
  let norm = sqrt(wg_sum(lid.x, acc));
  if (lid.x == 0u) {
    norm_out[0] = norm;
    scale_out[0] = select(1.0, min(1.0, p.max_norm / (norm + CLIP_EPS)), CLIP);
  }
}

// g ← g · scale[0], in place.
@compute @workgroup_size(WG)
fn scale_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n4 = (p.n + 3u) / 4u;
  let s = scale[0];
  for (var i = gid.x; i < n4; i += nw.x * WG) { grad_rw[i] *= s; }
}
