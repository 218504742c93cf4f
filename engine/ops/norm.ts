// RMSNorm (shaders/norm.wgsl): Hugging Face LlamaRMSNorm semantics in f32, a fused one-workgroup-
// per-row forward and backward, plus a composite twin built from elementwise/reduce ops.
import { isGradEnabled, record } from '../autograd.js';
import { Tensor, shapeStr } from '../tensor.js';
import { assertF32, f32bits, run } from './common.js';
import { addScalar, mul, rsqrt, square } from './elementwise.js';
import { mean } from './reduce.js';

const SHADER = 'norm';
/** Row kernels use between ROW_WG_MIN and ROW_WG_MAX invocations per row (powers of two), */
const ROW_WG_MIN = 32;
const ROW_WG_MAX = 256;
/** aiming at this many elements of the row per invocation. */
const ROW_ELEMS_PER_INVOCATION = 4;
/** bwd_dw tile: columns per workgroup (one coalesced run) × row lanes (a power of two). */
const DW_COLS = 32;
const DW_LANES = 8;
/** dweight partials: at least DW_MIN_CHUNK_ROWS rows per chunk and at most DW_MAX_CHUNKS chunks. */
const DW_MIN_CHUNK_ROWS = 64;
const DW_MAX_CHUNKS = 128;
/** Invocations per workgroup of the grid-stride dw_final kernel. */
const FINAL_WG = 256;
/** The per-row grid is folded into x·y under the per-dimension limit. */
const MAX_GRID_DIM = 65535;

function rowWG(C: number): number {
  let wg = ROW_WG_MIN;
  while (wg < ROW_WG_MAX && wg * ROW_ELEMS_PER_INVOCATION < C) wg *= 2;
  return wg;
}

function rowGrid(rows: number): [number, number] {
  const gx = Math.max(1, Math.min(rows, MAX_GRID_DIM));
  return [gx, Math.ceil(rows / gx)];
}

function params(rows: number, C: number, eps: number, chunkRows = 0, nChunks = 0): number[] {
  return [rows, C, f32bits(eps), chunkRows, nChunks, 0, 0, 0];
}

/**
 * RMSNorm over the last dim: x [..., C], weight [C] → x / sqrt(mean(x²) + eps) · weight.
 * Saves rstd [rows] for the backward when a gradient is needed.
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  assertF32(x, 'rmsNorm');
  assertF32(weight, 'rmsNorm');
  const C = x.ndim > 0 ? x.shape[x.ndim - 1] : -1;
  if (weight.ndim !== 1 || weight.shape[0] !== C)
    throw new Error(`rmsNorm: weight ${shapeStr(weight.shape)} does not match the last dim of x ${shapeStr(x.shape)}`);
  const rows = C === 0 ? 0 : x.size / C;
  const y = Tensor.empty(x.shape);
  const rstd = Tensor.empty([rows]);
  const WG = rowWG(C);
  run({
    shader: SHADER, entry: 'fwd', constants: { WG }, label: 'rmsnorm',
    buffers: { 1: x.buffer, 2: weight.buffer, 5: y.buffer, 6: rstd.buffer },
    params: params(rows, C, eps), workgroups: rowGrid(rows),
  });
  if (!(isGradEnabled() && (x.requiresGrad || weight.requiresGrad))) {
    rstd.dispose(); // inference: nothing to save (queue order keeps the recorded kernel's buffer valid)
    return y;
  }
  // With g = dy·w and r = (mean(x²) + eps)^-½:
  //   dx = r·g − r³·x·Σ_c(g·x)/C      dw = Σ_rows dy·x·r
  return record(y, 'rmsNorm', [x, weight], (dy) => {
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    if (x.requiresGrad) {
      dx = Tensor.empty(x.shape);
      run({
        shader: SHADER, entry: 'bwd_dx', constants: { WG }, label: 'rmsnorm_bwd_dx',
        buffers: { 1: x.buffer, 2: weight.buffer, 3: dy.buffer, 4: rstd.buffer, 5: dx.buffer },
        params: params(rows, C, eps), workgroups: rowGrid(rows),
      });
    }
    if (weight.requiresGrad) dw = rmsNormDweight(x, dy, rstd, rows, C);
    return [dx, dw];
  });
}

/** dweight [C] = Σ_rows dy·x·rstd, column-parallel over chunks of rows, chunks summed in order. */
function rmsNormDweight(x: Tensor, dy: Tensor, rstd: Tensor, rows: number, C: number): Tensor {
  const dw = Tensor.empty([C]);
  const nChunks = Math.max(1, Math.min(DW_MAX_CHUNKS, Math.ceil(rows / DW_MIN_CHUNK_ROWS)));
  const chunkRows = Math.max(1, Math.ceil(rows / nChunks));
  const used = Math.max(1, Math.ceil(rows / chunkRows));
  const partial = used === 1 ? dw : Tensor.empty([used, C]);
  run({
    shader: SHADER, entry: 'bwd_dw', constants: { DW_COLS, DW_LANES }, label: 'rmsnorm_bwd_dw',
    buffers: { 1: x.buffer, 3: dy.buffer, 4: rstd.buffer, 5: partial.buffer },
    params: params(rows, C, 0, chunkRows, used), workgroups: [Math.ceil(C / DW_COLS), used],
  });
  if (partial !== dw) {
    run({
      shader: SHADER, entry: 'dw_final', constants: { WG: FINAL_WG }, label: 'rmsnorm_dw_final',
      buffers: { 5: dw.buffer, 7: partial.buffer }, params: params(rows, C, 0, chunkRows, used),
      workgroups: [Math.max(1, Math.min(MAX_GRID_DIM, Math.ceil(C / FINAL_WG)))],
    });
    partial.dispose();
  }
  return dw;
}

/** The same RMSNorm composed from elementwise and reduce ops (for cross-checking and fallback). */
export function rmsNormComposite(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  return mul(mul(x, rsqrt(addScalar(mean(square(x), -1, true), eps))), weight);
}
