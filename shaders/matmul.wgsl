// Matmul: C[.., M, N] = op(A)[.., M, K] · op(B)[.., K, N] (+ bias[N]), op = optional transpose,
// batch by workgroup z. Register-tiled: an invocation owns TM rows × 4 adjacent columns of C and
// walks K in blocks of KB steps. Two variants of one kernel: this module as written (GPUs, and
// any device without subgroups), and a subgroup variant that engine/ops/matmul.ts builds from it
// for lavapipe (see the end of the file).
//
// Choices and the device they are for:
// - No workgroup memory or barriers: lavapipe runs a workgroup's invocations as 8-wide SIMD
//   batches one after another (a barrier is a coroutine switch), and workgroup memory is read
//   lane by lane like storage. On a GPU the A values of a row are read by every invocation of a
//   warp (one broadcast L1 load) and B values by the WY row groups of a workgroup (L1 hits).
// - WY = 1 on lavapipe (all lanes of a workgroup share their rows), WY > 1 on GPUs.
// - vec4 loads along whichever dim of an operand is contiguous: lavapipe loads per lane, at about
//   the same cost for 1 or 4 floats; GPUs get 16-byte transactions. Scalar loads when that dim is
//   not a multiple of 4.
// - A block's KB products are summed per accumulator before one add into it: on lavapipe the
//   accumulators live in memory and this cuts their loads and stores by KB, and it keeps LLVM
//   from computing (and spilling) all products of a block first. About 2× there.
// - Subgroup variant (lavapipe): each lane loads one row's A values and subgroupBroadcast shares
//   them, 8× fewer A loads. About 2× again.
// - A values go into the accumulators as they are loaded; an A block returned as an array (by
//   value) made lavapipe 3.5× slower.

struct Params {
  M: u32,
  K: u32,
  N: u32,
  batch_rank: u32,                 // dims in batch / a_bstride / b_bstride (<= 8)
  batch: array<vec4<u32>, 2>,      // output batch dims
  a_bstride: array<vec4<u32>, 2>,  // A's element stride per output batch dim (0 where broadcast)
  b_bstride: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;   // the same buffer as a
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> b4: array<vec4<f32>>;   // the same buffer as b
@group(0) @binding(5) var<storage, read> bias: array<f32>;       // any buffer when !HAS_BIAS
@group(0) @binding(6) var<storage, read_write> c: array<f32>;

override TRANS_A: bool = false;  // A stored [.., K, M]
override TRANS_B: bool = false;  // B stored [.., N, K]
override VEC_A: bool = true;     // A's contiguous dim (K, or M when TRANS_A) is a multiple of 4
override VEC_B: bool = true;     // B's contiguous dim (N, or K when TRANS_B) is a multiple of 4
override HAS_BIAS: bool = false;
override WX: u32 = 64u;          // invocations per workgroup along N (4 columns each)
override WY: u32 = 1u;           // invocations per workgroup along M (TM rows each)
override TM: u32 = 16u;          // rows of C per invocation: 8, 16 or 24 (<= MAX_TM, a multiple of 8)

const MAX_TM = 32u;  // accumulator arrays are this long; compilers drop the elements past TM
const KB = 4u;       // K steps per block: one vec4 of A per row, one vec4 of B per step

fn dim(v: array<vec4<u32>, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }

// Element offsets of A's and B's matrices for batch index z (NumPy broadcasting via 0 strides).
fn batch_offsets(z: u32) -> vec2<u32> {
  var rem = z;
  var off = vec2<u32>(0u);
  for (var d = i32(p.batch_rank) - 1; d >= 0; d--) {
    let n = dim(p.batch, u32(d));
    let i = rem % n;
    rem /= n;
    off += i * vec2<u32>(dim(p.a_bstride, u32(d)), dim(p.b_bstride, u32(d)));
  }
  return off;
}

fn a_at(ao: u32, row: u32, k: u32) -> f32 {
  if (TRANS_A) { return a[ao + k * p.M + row]; }
  return a[ao + row * p.K + k];
}

fn b_at(bo: u32, k: u32, col: u32) -> f32 {
  if (TRANS_B) { return b[bo + col * p.K + k]; }
  return b[bo + k * p.N + col];
}

// A[row, k .. k+3] for one row (rows already clamped to M-1); steps at or past K read as 0.
fn a_row_block(ao: u32, row: u32, k: u32, tail: bool) -> vec4<f32> {
  if (VEC_A && !TRANS_A && !tail) { return a4[(ao + row * p.K + k) / 4u]; }
  var v = vec4<f32>(0.0);
  for (var kk = 0u; kk < KB; kk++) {
    let kc = min(k + kk, p.K - 1u);
    v[kk] = select(0.0, a_at(ao, row, kc), k + kk < p.K);
  }
  return v;
}

// The KB × 4 block of B: out[kk] = B[k + kk, col .. col+3] (columns clamped to N-1); in the tail
// block steps past K read as 0 (in A too, so no 0 · inf can appear).
fn b_block(bo: u32, k: u32, col: u32, tail: bool) -> array<vec4<f32>, KB> {
  var out: array<vec4<f32>, KB>;
  if (VEC_B && TRANS_B) {
    // B stored [N, K] with K % 4 == 0 (so there is no tail block): a vec4 is 4 k of one column.
    var t: array<vec4<f32>, 4>;
    for (var e = 0u; e < 4u; e++) { t[e] = b4[(bo + min(col + e, p.N - 1u) * p.K + k) / 4u]; }
    for (var kk = 0u; kk < KB; kk++) { out[kk] = vec4<f32>(t[0][kk], t[1][kk], t[2][kk], t[3][kk]); }
    return out;
  }
  for (var kk = 0u; kk < KB; kk++) {
    let kc = min(k + kk, p.K - 1u);
    if (VEC_B) {
      out[kk] = b4[(bo + kc * p.N + min(col, p.N - 4u)) / 4u];
    } else {
      for (var e = 0u; e < 4u; e++) { out[kk][e] = b_at(bo, kc, min(col + e, p.N - 1u)); }
    }
    if (tail) { out[kk] = select(vec4<f32>(0.0), out[kk], k + kk < p.K); }
  }
  return out;
}

// acc[i] += Σ_kk x[kk] · B[kk, :] for row i with A values x: the block's products are summed
// before the one add into the accumulator.
fn madd(acc: ptr<function, array<vec4<f32>, MAX_TM>>, i: u32, x: vec4<f32>, bv: array<vec4<f32>, KB>) {
  (*acc)[i] += fma(vec4<f32>(x.w), bv[3], fma(vec4<f32>(x.z), bv[2], fma(vec4<f32>(x.y), bv[1], vec4<f32>(x.x) * bv[0])));
}

// The whole kernel for one invocation; `lane` is its subgroup lane (used by the subgroup variant).
fn tile(lid: vec3<u32>, wid: vec3<u32>, lane: u32) {
  let off = batch_offsets(wid.z);
  let row0 = (wid.y * WY + lid.y) * TM;
  let col = (wid.x * WX + lid.x) * 4u;
  var acc: array<vec4<f32>, MAX_TM>;
  let kFull = p.K - p.K % KB;
  for (var k = 0u; k < kFull; k += KB) {
    accumulate(&acc, off.x, row0, k, false, lane, b_block(off.y, k, col, false));
  }
  if (kFull < p.K) {
    accumulate(&acc, off.x, row0, kFull, true, lane, b_block(off.y, kFull, col, true));
  }
  let co = wid.z * p.M * p.N;
  for (var i = 0u; i < TM; i++) {
    let r = row0 + i;
    if (r >= p.M) { break; }
    for (var e = 0u; e < 4u; e++) {
      let n = col + e;
      if (n < p.N) {
        var v = acc[i][e];
        if (HAS_BIAS) { v += bias[n]; }
        c[co + r * p.N + n] = v;
      }
    }
  }
}

// <portable> (left out of the subgroup variant)
// One K block into all TM rows: row i takes A[row0 + i, k .. k+3] times the block of B.
fn accumulate(acc: ptr<function, array<vec4<f32>, MAX_TM>>, ao: u32, row0: u32, k: u32, tail: bool, lane: u32,
              bv: array<vec4<f32>, KB>) {
  if (VEC_A && TRANS_A) {
    // A stored [K, M] with M % 4 == 0: a vec4 holds 4 rows at one k; 4 of them are a 4×4 block.
    for (var i = 0u; i < TM; i += 4u) {
      let r = min(row0 + i, p.M - 4u);
      var t: array<vec4<f32>, KB>;
      for (var kk = 0u; kk < KB; kk++) {
        t[kk] = select(vec4<f32>(0.0), a4[(ao + min(k + kk, p.K - 1u) * p.M + r) / 4u], k + kk < p.K);
      }
      for (var e = 0u; e < 4u; e++) { madd(acc, i + e, vec4<f32>(t[0][e], t[1][e], t[2][e], t[3][e]), bv); }
    }
    return;
  }
  for (var i = 0u; i < TM; i++) { madd(acc, i, a_row_block(ao, min(row0 + i, p.M - 1u), k, tail), bv); }
}

@compute @workgroup_size(WX, WY)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  tile(lid, wid, 0u);
}
// </portable>

// The subgroup variant, for devices with subgroups of at least SG lanes (used on lavapipe): the
// module is `enable subgroups;` + this file with the <portable> section replaced by the lines
// below with their `//| ` removed. It lives in comments because a module that names subgroup
// builtins does not compile on a device without the feature. Each lane of a subgroup loads the A
// values of one row (or, with TRANS_A, of 4 rows at one k) and subgroupBroadcast hands them to
// every lane, which all need the same rows.
//| // Rows whose loads one round of broadcasts shares; the subgroup may be wider.
//| const SG = 8u;
//|
//| // v of lanes 0 .. SG-1 (subgroupBroadcast takes constant lane indices only).
//| fn bcast(v: vec4<f32>) -> array<vec4<f32>, SG> {
//|   return array<vec4<f32>, SG>(
//|     subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
//|     subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
//| }
//|
//| // One K block into all TM rows, the A values loaded SG rows per round and broadcast.
//| fn accumulate(acc: ptr<function, array<vec4<f32>, MAX_TM>>, ao: u32, row0: u32, k: u32, tail: bool, lane: u32,
//|               bv: array<vec4<f32>, KB>) {
//|   let ln = lane % SG;
//|   for (var q = 0u; q < TM; q += SG) {
//|     if (!TRANS_A) {
//|       // Lane l loads row q + l.
//|       let bc = bcast(a_row_block(ao, min(row0 + q + ln, p.M - 1u), k, tail));
//|       for (var l = 0u; l < SG; l++) { madd(acc, q + l, bc[l], bv); }
//|     } else {
//|       // A stored [K, M]: lane l loads rows q + 4·(l / 4) .. +3 at step k + l % 4.
//|       let r = row0 + q + 4u * (ln / 4u);
//|       let kk = ln % 4u;
//|       let kc = min(k + kk, p.K - 1u);
//|       var v = vec4<f32>(0.0);
//|       if (VEC_A) {
//|         v = a4[(ao + kc * p.M + min(r, p.M - 4u)) / 4u];
//|       } else {
//|         for (var e = 0u; e < 4u; e++) { v[e] = a_at(ao, min(r + e, p.M - 1u), kc); }
//|       }
//|       let bc = bcast(select(vec4<f32>(0.0), v, k + kk < p.K));
//|       for (var h = 0u; h < 2u; h++) {
//|         for (var e = 0u; e < 4u; e++) {
//|           madd(acc, q + 4u * h + e, vec4<f32>(bc[4u * h][e], bc[4u * h + 1u][e], bc[4u * h + 2u][e], bc[4u * h + 3u][e]), bv);
//|         }
//|       }
//|     }
//|   }
//| }
//|
//| @compute @workgroup_size(WX, WY)
//| fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
//|           @builtin(subgroup_invocation_id) lane: u32) {
//|   tile(lid, wid, lane);
//| }
