// Segmented log-sum-exp (shaders/segment.wgsl): log Σ exp over arbitrary column ranges of the rows
// of a matrix, each written to its own output slot. Used for ILRec's token-level CF rewards (the
// log CF mass of each child subtree of an item-code prefix trie), which are constants: no backward.
import { isGradEnabled } from '../autograd.js';
import { Tensor, shapeStr } from '../tensor.js';
import { assertF32, f32bits, run } from './common.js';
import { fill } from './elementwise.js';
import { rowGrid } from './softmax.js';

const SHADER = 'segment';
/** Invocations per workgroup. */
const SEG_WG = 64;
/** Threads-per-segment classes (powers of two dividing SEG_WG), ascending. */
const TPS_CLASSES = [1, 8, SEG_WG] as const;
/** A segment gets the largest class that still leaves each thread at least this many elements. */
const MIN_PER_THREAD = 4;

/** Segments over the rows of x: segment s covers x[row[s], start[s] .. end[s]) and writes out[out[s]]. */
export interface Segments {
  row: Int32Array;
  start: Int32Array;
  end: Int32Array;
  out: Int32Array;
}

/** Threads per segment for a segment of `len` elements. */
function tpsFor(len: number): number {
  let t: number = TPS_CLASSES[0];
  for (const c of TPS_CLASSES) if (c * MIN_PER_THREAD <= len) t = c;
  return t;
}

/** Range and uniqueness checks; throws naming the first bad segment. */
function validate(B: number, N: number, seg: Segments, outSize: number): number {
  const n = seg.row.length;
  if (seg.start.length !== n || seg.end.length !== n || seg.out.length !== n)
    throw new Error(`segmentLogSumExp: row, start, end, out must have one entry per segment (got ${n}, ${seg.start.length}, ${seg.end.length}, ${seg.out.length})`);
  if (!Number.isInteger(outSize) || outSize < 0) throw new Error(`segmentLogSumExp: outSize ${outSize} must be a non-negative integer`);
  const writer = new Int32Array(outSize).fill(-1);
  for (let s = 0; s < n; s++) {
    const [r, a, b, o] = [seg.row[s], seg.start[s], seg.end[s], seg.out[s]];
    if (r < 0 || r >= B) throw new Error(`segmentLogSumExp: segment ${s} has row ${r} outside [0, ${B})`);
    if (a < 0 || b < a || b > N) throw new Error(`segmentLogSumExp: segment ${s} has range [${a}, ${b}) not inside [0, ${N}]`);
    if (o < 0 || o >= outSize) throw new Error(`segmentLogSumExp: segment ${s} writes out[${o}] outside [0, ${outSize})`);
    if (writer[o] >= 0) throw new Error(`segmentLogSumExp: segments ${writer[o]} and ${s} both write out[${o}]`);
    writer[o] = s;
  }
  return n;
}

/**
 * out [outSize] with out[seg.out[s]] = log Σ_{j ∈ [seg.start[s], seg.end[s])} exp(x[seg.row[s], j])
 * (max-shifted); outputs no segment writes, and empty segments, are −Infinity. x is f32 [B, N].
 *
 * No gradient: its use (CF rewards) is a constant, so x must not need one — call it under noGrad
 * or on a tensor without requiresGrad (it throws otherwise rather than silently dropping it).
 */
export function segmentLogSumExp(x: Tensor, seg: Segments, outSize: number): Tensor {
  assertF32(x, 'segmentLogSumExp');
  if (x.ndim !== 2) throw new Error(`segmentLogSumExp: x must be [B, N], got ${shapeStr(x.shape)}`);
  if (x.requiresGrad && isGradEnabled())
    throw new Error('segmentLogSumExp: has no backward (its outputs are constant rewards); call it under noGrad() or on a detached tensor');
  const [B, N] = x.shape;
  const n = validate(B, N, seg, outSize);
  const out = fill([outSize], -Infinity);
  if (n === 0) return out;
  // Segments grouped by threads-per-segment class, one contiguous block per class (stable order).
  const byClass = TPS_CLASSES.map(() => [] as number[]);
  for (let s = 0; s < n; s++) byClass[TPS_CLASSES.indexOf(tpsFor(seg.end[s] - seg.start[s]) as (typeof TPS_CLASSES)[number])].push(s);
  const packed = new Int32Array(n * 4);
  let k = 0;
  for (const list of byClass)
    for (const s of list) {
      packed.set([seg.row[s], seg.start[s], seg.end[s], seg.out[s]], 4 * k);
      k++;
    }
  const segs = Tensor.fromData(packed, [n, 4], 'i32');
  let first = 0;
  TPS_CLASSES.forEach((tps, c) => {
    const count = byClass[c].length;
    if (count === 0) return;
    run({
      shader: SHADER, entry: 'lse', label: `segment_lse_tps${tps}`, constants: { WG: SEG_WG, TPS: tps },
      buffers: { 1: x.buffer, 2: segs.buffer, 3: out.buffer },
      params: [count, first, N, f32bits(-Infinity)], workgroups: rowGrid(Math.ceil(count / (SEG_WG / tps))),
    });
    first += count;
  });
  segs.dispose();
  return out;
}
