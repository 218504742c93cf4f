// Elementwise kernels: fill, unary ops and their derivatives, broadcasting binary ops, where.
// The op is an `override` constant, so each specialisation compiles to straight-line code.

struct Params {
  n: u32,          // elements of the output
  rank: u32,       // dims used in shape/strides (<= 8)
  scalar: f32,     // fill value, the exponent of pow, or dropout's probability
  seed: u32,       // dropout: state of the mask stream
  shape: array<vec4<u32>, 2>,   // output dims
  sa: array<vec4<u32>, 2>,      // element strides of a (0 on broadcast dims)
  sb: array<vec4<u32>, 2>,      // element strides of b
  sc: array<vec4<u32>, 2>,      // element strides of c (where's condition)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(11) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read> c4: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read_write> out4: array<vec4<f32>>;

override OP: u32 = 0u;
override WG: u32 = 256u;

// Unary op codes (shared with engine/ops/elementwise.ts).
const NEG = 0u; const EXP = 1u; const LOG = 2u; const SQRT = 3u; const RSQRT = 4u; const RELU = 5u;
const SILU = 6u; const GELU = 7u; const SIGMOID = 8u; const TANH = 9u; const POW = 10u; const ABS = 11u;
const SQUARE = 12u; const SOFTPLUS = 13u;

const GELU_C = 0.7978845608028654; // sqrt(2/pi), tanh approximation of GELU

fn sigmoid(x: vec4<f32>) -> vec4<f32> { return 1.0 / (1.0 + exp(-x)); }

// tanh through exp of a negative argument: WGSL's tanh may return NaN for large |x| on some drivers.
fn stable_tanh(x: vec4<f32>) -> vec4<f32> {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

fn unary(x: vec4<f32>) -> vec4<f32> {
  switch OP {
    case NEG: { return -x; }
    case EXP: { return exp(x); }
    case LOG: { return log(x); }
    case SQRT: { return sqrt(x); }
    case RSQRT: { return inverseSqrt(x); }
    case RELU: { return max(x, vec4<f32>(0.0)); }
    case SILU: { return x * sigmoid(x); }
    case GELU: { return 0.5 * x * (1.0 + stable_tanh(GELU_C * (x + 0.044715 * x * x * x))); }
    case SIGMOID: { return sigmoid(x); }
    case TANH: { return stable_tanh(x); }
    case POW: { return pow_s(x, p.scalar); }
    case ABS: { return abs(x); }
    case SQUARE: { return x * x; }
    // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): no overflow for large x, no cancellation for small.
    case SOFTPLUS: { return max(x, vec4<f32>(0.0)) + log(1.0 + exp(-abs(x))); }
    default: { return x; }
  }
}

// x^e for any sign of x where e is an integer; WGSL's pow is undefined for x < 0.
fn pow_s(x: vec4<f32>, e: f32) -> vec4<f32> {
  let m = pow(abs(x), vec4<f32>(e));
  let odd = abs(e - 2.0 * floor(e * 0.5)) == 1.0;
  return select(m, sign(x) * m, odd);
}

// d out / d x given the input x and output y.
fn unary_grad(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
  switch OP {
    case NEG: { return vec4<f32>(-1.0); }
    case EXP: { return y; }
    case LOG: { return 1.0 / x; }
    case SQRT: { return 0.5 / y; }
    case RSQRT: { return -0.5 * y * y * y; }
    case RELU: { return select(vec4<f32>(0.0), vec4<f32>(1.0), x > vec4<f32>(0.0)); }
    case SILU: { let s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
    case GELU: {
      let u = GELU_C * (x + 0.044715 * x * x * x);
      let t = stable_tanh(u);
      let du = GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
    }
    case SIGMOID: { return y * (1.0 - y); }
    case TANH: { return 1.0 - y * y; }
    case POW: { return p.scalar * pow_s(x, p.scalar - 1.0); }
    case ABS: { return sign(x); }
    case SQUARE: { return 2.0 * x; }
    case SOFTPLUS: { return sigmoid(x); }
    default: { return vec4<f32>(1.0); }
  }
}

// Binary op codes.
const ADD = 0u; const SUB = 1u; const MUL = 2u; const DIV = 3u; const MAX = 4u; const MIN = 5u;
const EQ = 6u; const GT = 7u; // comparisons give 1.0 or 0.0

fn binary(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
  switch OP {
    case ADD: { return x + y; }
    case SUB: { return x - y; }
    case MUL: { return x * y; }
    case DIV: { return x / y; }
    case MAX: { return max(x, y); }
    case MIN: { return min(x, y); }
    case EQ: { return select(vec4<f32>(0.0), vec4<f32>(1.0), x == y); }
    case GT: { return select(vec4<f32>(0.0), vec4<f32>(1.0), x > y); }
    default: { return x; }
  }
}

fn dim(arr: array<vec4<u32>, 2>, i: u32) -> u32 { return arr[i / 4u][i % 4u]; }

// Offsets of output element i in a, b and c, following each operand's (broadcast) strides.
fn offsets(i: u32) -> vec3<u32> {
  var rem = i;
  var o = vec3<u32>(0u);
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let k = u32(d);
    let n = dim(p.shape, k);
    let idx = rem % n;
    rem = rem / n;
    o += idx * vec3<u32>(dim(p.sa, k), dim(p.sb, k), dim(p.sc, k));
  }
  return o;
}

// Contiguous kernels work on vec4s: n4 = ceil(n / 4); pool buffers are padded to 16 bytes.
@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n4 = (p.n + 3u) / 4u;
  for (var i = gid.x; i < n4; i += nw.x * WG) { out4[i] = vec4<f32>(p.scalar); }
}

@compute @workgroup_size(WG)
fn unary_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n4 = (p.n + 3u) / 4u;
  for (var i = gid.x; i < n4; i += nw.x * WG) { out4[i] = unary(a4[i]); }
}

// dx = dout * f'(x); a4 = x, b4 = y = f(x), c4 = dout.
@compute @workgroup_size(WG)
fn unary_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n4 = (p.n + 3u) / 4u;
  for (var i = gid.x; i < n4; i += nw.x * WG) { out4[i] = c4[i] * unary_grad(a4[i], b4[i]); }
}

// Inverted dropout: element i is kept, scaled by 1/(1-p), unless the (i+1)-th draw of the host's
// Rng(seed) (engine/ops/create.ts: a Weyl sequence through murmur3's finaliser) is below p. A
// counter-based mask: nothing is stored, the backward regenerates it from the seed, and the float64
// reference reproduces it draw for draw.
const GOLDEN = 0x9e3779b9u;

fn mix32(x: vec4<u32>) -> vec4<u32> {
  var z = (x ^ (x >> vec4<u32>(16u))) * 0x85ebca6bu;
  z = (z ^ (z >> vec4<u32>(13u))) * 0xc2b2ae35u;
  return z ^ (z >> vec4<u32>(16u));
}

@compute @workgroup_size(WG)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n4 = (p.n + 3u) / 4u;
  // p·2^32 is exact in f32 (a power-of-two scale); keep iff draw·2^32 >= it.
  let threshold = u32(p.scalar * 4294967296.0);
  let keep_scale = 1.0 / (1.0 - p.scalar);
  for (var i = gid.x; i < n4; i += nw.x * WG) {
    let k = 4u * i + vec4<u32>(1u, 2u, 3u, 4u); // draw numbers of the vec4's elements
    let h = mix32(p.seed + k * GOLDEN);
    out4[i] = select(vec4<f32>(0.0), a4[i] * keep_scale, h >= vec4<u32>(threshold));
  }
}

@compute @workgroup_size(WG)
fn binary_same(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n4 = (p.n + 3u) / 4u;
  for (var i = gid.x; i < n4; i += nw.x * WG) { out4[i] = binary(a4[i], b4[i]); }
}

@compute @workgroup_size(WG)
fn binary_bcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var i = gid.x; i < p.n; i += nw.x * WG) {
    let o = offsets(i);
    out[i] = binary(vec4<f32>(a[o.x]), vec4<f32>(b[o.y])).x;
  }
}

// out = c != 0 ? a : b, all three broadcast to the output shape.
@compute @workgroup_size(WG)
fn where_bcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  for (var i = gid.x; i < p.n; i += nw.x * WG) {
    let o = offsets(i);
    out[i] = select(b[o.y], a[o.x], c[o.z] != 0.0);
  }
}
