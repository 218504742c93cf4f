// Rotary position embedding, Hugging Face rotate-half convention, on x [B, NH, T, hs]: each pair
// (x_i, x_{i+hs/2}) is rotated by angle pos·inv_freq[i]. SIGN = -1 rotates back (the backward).

struct Params {
  n: u32,            // pairs: B·NH·T·(hs/2)
  NH: u32,
  T: u32,
  half: u32,         // hs / 2
  pos_stride: u32,   // positions: elements per batch row (0 when shared by the batch)
  offset: i32,       // without positions: pos = offset + t
  scaling: f32,      // cos and sin are multiplied by this (HF attention_scaling; 1 by default)
  pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [B, NH, T, hs]
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;  // [hs/2]
@group(0) @binding(3) var<storage, read> pos: array<i32>;       // [B, T] or [T]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

override WG: u32 = 256u;
override SIGN: f32 = 1.0;       // 1: rotate by +angle (forward), -1: by -angle (backward)
override HAS_POS: bool = false;

// π/2 split into three 11-bit parts and a remainder (Cody–Waite): k·PIO2_1..3 are exact for
// |k| < 2^13, i.e. |angle| < ~12800, so the reduced argument keeps ~f32 precision at large positions.
const PIO2_1 = 1.5703125;
const PIO2_2 = 0.0004837512969970703;
const PIO2_3 = 7.549533620476723e-08;
const PIO2_4 = 2.5633440682570896e-12;
const TWO_OVER_PI = 0.6366197723675814;

// (sin a, cos a) to about 1 ulp for the f32 angle a, independent of the driver's sin/cos (WGSL
// only promises 2^-11 absolute error on [-π, π]): reduce by π/2, then Cephes' minimax
// polynomials on [-π/4, π/4] and the quadrant's sign/swap.
fn sin_cos(a: f32) -> vec2<f32> {
  let kf = round(a * TWO_OVER_PI);
  var r = a - kf * PIO2_1;
  r = r - kf * PIO2_2;
  r = r - kf * PIO2_3;
  r = r - kf * PIO2_4;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  let q = i32(kf) & 3;
  switch q {
    case 0: { return vec2<f32>(s, c); }
    case 1: { return vec2<f32>(c, -s); }
    case 2: { return vec2<f32>(-s, -c); }
    default: { return vec2<f32>(-c, s); }
  }
}

// One invocation per pair, grid-stride.
@compute @workgroup_size(WG)
fn rotate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var idx = gid.x; idx < p.n; idx += nw.x * WG) {
    let i = idx % p.half;
    let row = idx / p.half;     // (b·NH + h)·T + t
    let t = row % p.T;
    var position: i32;
    if (HAS_POS) {
      let b = row / (p.T * p.NH);
      position = pos[b * p.pos_stride + t];
    } else {
      position = p.offset + i32(t);
    }
    // The angle rounded to f32 exactly as HF computes it (inv_freq ⊗ positions in f32).
    let sc = sin_cos(f32(position) * inv_freq[i]) * p.scaling;
    let sn = SIGN * sc.x;
    let base = row * 2u * p.half + i;
    let x1 = x[base];
    let x2 = x[base + p.half];
    out[base] = x1 * sc.y - x2 * sn;
    out[base + p.half] = x2 * sc.y + x1 * sn;
  }
}
