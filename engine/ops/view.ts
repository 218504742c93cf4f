// View and data-movement ops: reshape (no copy), and the strided copies (permute, transpose, slice,
// concat) and gather in shaders/view.wgsl, with gather's deterministic CSR scatter-add backward.
import { isGradEnabled, record } from '../autograd.js';
import { Tensor, numel, shapeStr, type DType, type Shape } from '../tensor.js';
import { MAX_GRID, normAxis, pack8, run, stridesOf } from './common.js';
import { fill } from './elementwise.js';

const SHADER = 'view';

/** Same data, new shape (one dim may be -1). Shares the buffer; the gradient is reshaped back. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(s.filter((_, i) => i !== neg));
    s[neg] = rest === 0 ? 0 : x.size / rest;
  }
  if (numel(s) !== x.size) throw new Error(`reshape: cannot reshape ${shapeStr(x.shape)} (${x.size} elements) to ${shapeStr(shape)}`);
  const out = x.view(s);
  return record(out, 'reshape', [x], (g) => [g.view(x.shape)]);
}

// ---- the strided copy ---------------------------------------------------------------------------

/** A rectangular region copied from one flat buffer to another: element `c` (a multi-index into
 * `shape`) moves from srcBase + Σ c·srcStrides to dstBase + Σ c·dstStrides. */
interface Region {
  shape: number[];
  srcBase: number;
  srcStrides: number[];
  dstBase: number;
  dstStrides: number[];
}

/** Drops unit dims and merges dims that are contiguous in both source and destination, so the
 * kernel's inner dim is as long, and its per-row index arithmetic as short, as possible. */
function simplify(r: Region): Region {
  const out: Region = { shape: [], srcBase: r.srcBase, srcStrides: [], dstBase: r.dstBase, dstStrides: [] };
  for (let d = 0; d < r.shape.length; d++) {
    if (r.shape[d] === 1) continue;
    const last = out.shape.length - 1;
    if (last >= 0 && out.srcStrides[last] === r.srcStrides[d] * r.shape[d] && out.dstStrides[last] === r.dstStrides[d] * r.shape[d]) {
      out.shape[last] *= r.shape[d];
      out.srcStrides[last] = r.srcStrides[d];
      out.dstStrides[last] = r.dstStrides[d];
    } else {
      out.shape.push(r.shape[d]);
      out.srcStrides.push(r.srcStrides[d]);
      out.dstStrides.push(r.dstStrides[d]);
    }
  }
  return out;
}

/** The region in vec4 units when its innermost dim is contiguous on both sides and every offset is a
 * multiple of 4 (pool buffers are 16-byte aligned), else null. */
function asVec4(r: Region): Region | null {
  const k = r.shape.length - 1;
  if (k < 0 || r.srcStrides[k] !== 1 || r.dstStrides[k] !== 1 || r.shape[k] % 4 !== 0) return null;
  if (r.srcBase % 4 || r.dstBase % 4) return null;
  for (let d = 0; d < k; d++) if (r.srcStrides[d] % 4 || r.dstStrides[d] % 4) return null;
  const q = (v: number[]) => v.map((s, d) => (d === k ? s : s / 4));
  return { shape: r.shape.map((s, d) => (d === k ? s / 4 : s)), srcBase: r.srcBase / 4, srcStrides: q(r.srcStrides), dstBase: r.dstBase / 4, dstStrides: q(r.dstStrides) };
}

/** Invocations per workgroup of the data-movement kernels. */
const VIEW_WG = 64;
const MAX_GRID_DIM = 65535;

/** `groups` workgroups folded into x·y (the kernels rebuild the linear id). */
function foldGrid(groups: number): [number, number] {
  const gx = Math.max(1, Math.min(groups, MAX_GRID_DIM));
  return [gx, Math.ceil(groups / gx)];
}

/** Work as rows × inner: lanes per row (a power of two ≤ VIEW_WG), rows per workgroup and the grid. */
function rowsLayout(rows: number, inner: number): { lanesLog2: number; rowsPerGroup: number; grid: [number, number] } {
  let lanesLog2 = 0;
  while (1 << lanesLog2 < Math.min(inner, VIEW_WG)) lanesLog2++;
  const rowStep = VIEW_WG >> lanesLog2;
  // Enough workgroups to fill a large GPU, few enough that lavapipe's per-workgroup cost stays small.
  const rowsPerGroup = Math.ceil(rows / Math.min(MAX_GRID, Math.ceil(rows / rowStep)));
  return { lanesLog2, rowsPerGroup, grid: foldGrid(Math.ceil(rows / rowsPerGroup)) };
}

/** Uniform words of shaders/view.wgsl's Params. */
function viewParams(rows: number, inner: number, extra: { srcBase?: number; dstBase?: number; srcInner?: number; dstInner?: number; rank?: number; a?: number; k?: number; outer?: Region } = {}): number[] {
  const { lanesLog2, rowsPerGroup } = rowsLayout(rows, inner);
  const o = extra.outer;
  return [
    rows, inner, rowsPerGroup, lanesLog2, extra.srcBase ?? 0, extra.dstBase ?? 0, extra.srcInner ?? 1, extra.dstInner ?? 1,
    extra.rank ?? 0, extra.a ?? 0, extra.k ?? 0, 0, ...pack8(o?.shape ?? []), ...pack8(o?.srcStrides ?? []), ...pack8(o?.dstStrides ?? []),
  ];
}

/** Copies a region: its last dim is the kernel's inner dim, the others index rows. */
function copyRegionGPU(src: Tensor, dst: Tensor, region: Region, label: string): void {
  if (numel(region.shape) === 0) return;
  let r = simplify(region);
  if (r.shape.length === 0) r = { ...r, shape: [1], srcStrides: [1], dstStrides: [1] };
  const v4 = asVec4(r);
  if (v4) r = v4;
  const k = r.shape.length - 1;
  const rows = numel(r.shape.slice(0, k));
  const inner = r.shape[k];
  const outer: Region = { shape: r.shape.slice(0, k), srcBase: 0, srcStrides: r.srcStrides.slice(0, k), dstBase: 0, dstStrides: r.dstStrides.slice(0, k) };
  run({
    shader: SHADER, entry: v4 ? 'copy4' : 'copy', label: v4 ? `${label}4` : label, constants: { WG: VIEW_WG },
    buffers: v4 ? { 11: src.buffer, 12: dst.buffer } : { 1: src.buffer, 2: dst.buffer },
    params: viewParams(rows, inner, { srcBase: r.srcBase, dstBase: r.dstBase, srcInner: r.srcStrides[k], dstInner: r.dstStrides[k], rank: k, outer }),
    workgroups: rowsLayout(rows, inner).grid,
  });
}

/** Host twin of the copy kernel, for i32 tensors that carry a host copy. */
function copyRegionHost(src: Int32Array, dst: Int32Array, r: Region): void {
  const n = numel(r.shape);
  const rank = r.shape.length;
  const c = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let so = r.srcBase;
    let d0 = r.dstBase;
    for (let d = 0; d < rank; d++) {
      so += c[d] * r.srcStrides[d];
      d0 += c[d] * r.dstStrides[d];
    }
    dst[d0] = src[so];
    for (let d = rank - 1; d >= 0; d--) {
      if (++c[d] < r.shape[d]) break;
      c[d] = 0;
    }
  }
}

/**
 * A new tensor of `shape` assembled from regions of source tensors (over a zero background when
 * `zero`). i32 sources that all carry host copies are assembled on the host and uploaded, so the
 * result keeps `hostInts` (e.g. token ids sliced into inputs and targets can still feed the
 * CSR-building backward of embedding and the cross-entropy check).
 */
function assemble(shape: Shape, dtype: DType, parts: { src: Tensor; region: Region }[], label: string, zero = false): Tensor {
  if (dtype === 'i32' && parts.every((pt) => pt.src.hostInts)) {
    const host = new Int32Array(numel(shape));
    for (const pt of parts) copyRegionHost(pt.src.hostInts!, host, pt.region);
    return Tensor.fromData(host, shape, 'i32');
  }
  const out = zero ? fill(shape, 0) : Tensor.empty(shape, dtype);
  for (const pt of parts) copyRegionGPU(pt.src, out, pt.region, label);
  return out;
}

// ---- permute / transpose -------------------------------------------------------------------------

function permuteRaw(x: Tensor, dims: readonly number[]): Tensor {
  const xs = stridesOf(x.shape);
  const shape = dims.map((d) => x.shape[d]);
  const region: Region = { shape, srcBase: 0, srcStrides: dims.map((d) => xs[d]), dstBase: 0, dstStrides: stridesOf(shape) };
  return assemble(shape, x.dtype, [{ src: x, region }], 'permute');
}

/** Reorders the axes: out.shape[i] = x.shape[dims[i]] (negative dims count from the end). */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const rank = x.ndim;
  const ds = dims.map((d) => normAxis(d, rank, 'permute'));
  if (ds.length !== rank || new Set(ds).size !== rank)
    throw new Error(`permute: dims [${dims}] are not a permutation of the ${rank} axes of ${shapeStr(x.shape)}`);
  const out = permuteRaw(x, ds);
  const inv = new Array<number>(rank);
  ds.forEach((d, i) => (inv[d] = i));
  // out = P(x) moves data only, so dx = P⁻¹(dout).
  return record(out, 'permute', [x], (g) => [permuteRaw(g, inv)]);
}

/** Swaps two axes (the last two by default). */
export function transpose(x: Tensor, d0 = -2, d1 = -1): Tensor {
  const a = normAxis(d0, x.ndim, 'transpose');
  const b = normAxis(d1, x.ndim, 'transpose');
  const dims = x.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return permute(x, dims);
}

// ---- slice ---------------------------------------------------------------------------------------

/**
 * x[starts[0]:ends[0], starts[1]:ends[1], ...]: one [start, end) range per axis, negative values
 * counting from the end of that axis (Python style), steps of 1.
 */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor {
  const rank = x.ndim;
  if (starts.length !== rank || ends.length !== rank)
    throw new Error(`slice: need one start and one end per axis of ${shapeStr(x.shape)}, got starts [${starts}] ends [${ends}]`);
  const st = starts.map((s, d) => (s < 0 ? s + x.shape[d] : s));
  const en = ends.map((e, d) => (e < 0 ? e + x.shape[d] : e));
  for (let d = 0; d < rank; d++)
    if (!Number.isInteger(st[d]) || !Number.isInteger(en[d]) || st[d] < 0 || en[d] > x.shape[d] || st[d] > en[d])
      throw new Error(`slice: range [${starts[d]}, ${ends[d]}) is invalid for axis ${d} of ${shapeStr(x.shape)}`);
  const shape = en.map((e, d) => e - st[d]);
  const xs = stridesOf(x.shape);
  const base = st.reduce((acc, s, d) => acc + s * xs[d], 0);
  const out = assemble(shape, x.dtype, [{ src: x, region: { shape, srcBase: base, srcStrides: xs, dstBase: 0, dstStrides: stridesOf(shape) } }], 'slice');
  // dx is dout placed at the sliced range of a zero tensor of x's shape.
  return record(out, 'slice', [x], (g) => {
    const region: Region = { shape, srcBase: 0, srcStrides: stridesOf(shape), dstBase: base, dstStrides: xs };
    return [assemble(x.shape, 'f32', [{ src: g, region }], 'slice_bwd', true)];
  });
}

// ---- concat --------------------------------------------------------------------------------------

/** Joins tensors along `axis`; all other dims (and the dtype) must agree. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors given');
  const rank = xs[0].ndim;
  const ax = normAxis(axis, rank, 'concat');
  for (const t of xs)
    if (t.ndim !== rank || t.dtype !== xs[0].dtype || t.shape.some((d, i) => i !== ax && d !== xs[0].shape[i]))
      throw new Error(`concat: ${xs.map((t) => `${t.dtype}${shapeStr(t.shape)}`).join(', ')} do not match outside axis ${axis}`);
  const shape = [...xs[0].shape];
  shape[ax] = xs.reduce((acc, t) => acc + t.shape[ax], 0);
  const os = stridesOf(shape);
  const offsets: number[] = [];
  let off = 0;
  for (const t of xs) {
    offsets.push(off * os[ax]);
    off += t.shape[ax];
  }
  const parts = xs.map((t, i) => ({ src: t, region: { shape: [...t.shape], srcBase: 0, srcStrides: stridesOf(t.shape), dstBase: offsets[i], dstStrides: os } }));
  const out = assemble(shape, xs[0].dtype, parts, 'concat');
  // Each input's gradient is its own slab of dout.
  return record(out, 'concat', [...xs], (g) =>
    xs.map((t, i) => {
      if (!t.requiresGrad) return null;
      const region: Region = { shape: [...t.shape], srcBase: offsets[i], srcStrides: os, dstBase: 0, dstStrides: stridesOf(t.shape) };
      return assemble(t.shape, 'f32', [{ src: g, region }], 'concat_bwd');
    }),
  );
}

// ---- gather --------------------------------------------------------------------------------------

/**
 * For each source row a in [0, A): the ascending list of output positions k with idx[k] == a, as
 * CSR (offsets [A + 1], positions [K]). Built on the host from the uploaded indices.
 */
export function buildCSR(idx: Int32Array, a: number): { offsets: Int32Array; positions: Int32Array } {
  const offsets = new Int32Array(a + 1);
  for (const v of idx) offsets[v + 1]++;
  for (let i = 0; i < a; i++) offsets[i + 1] += offsets[i];
  const fillAt = offsets.slice(0, a);
  const positions = new Int32Array(idx.length);
  for (let k = 0; k < idx.length; k++) positions[fillAt[idx[k]]++] = k;
  return { offsets, positions };
}

/**
 * dx [outer, A, inner] = Σ over k with idx[k] == a of dout [outer, K, inner]: each dx element sums
 * its CSR list in ascending k (deterministic, no atomics; rows never indexed get 0). A building
 * block of gather's and embedding's backward; hostIdx must be range-checked.
 */
export function scatterAddRows(dout: Tensor, hostIdx: Int32Array, outer: number, a: number, inner: number, shape: Shape): Tensor {
  const k = hostIdx.length;
  const dx = Tensor.empty(shape);
  const { offsets, positions } = buildCSR(hostIdx, a);
  const off = Tensor.fromData(offsets, [a + 1], 'i32');
  const pos = Tensor.fromData(positions, [k], 'i32');
  const vec = inner % 4 === 0;
  const iu = vec ? inner / 4 : inner;
  const rows = outer * a;
  if (rows * iu > 0)
    run({
      shader: SHADER, entry: vec ? 'scatter_add4' : 'scatter_add', label: vec ? 'scatter_add4' : 'scatter_add', constants: { WG: VIEW_WG },
      buffers: { 4: off.buffer, 5: pos.buffer, [vec ? 11 : 1]: dout.buffer, [vec ? 12 : 2]: dx.buffer },
      params: viewParams(rows, iu, { a, k }), workgroups: rowsLayout(rows, iu).grid,
    });
  off.dispose();
  pos.dispose();
  return dx;
}

/** out [outer, K, inner] = x [outer, A, inner] at rows idx (no autograd; a building block of gather and embedding). */
export function gatherRows(x: Tensor, idx: Tensor, outer: number, a: number, inner: number, shape: Shape): Tensor {
  const k = idx.size;
  const host = x.hostInts;
  if (x.dtype === 'i32' && host && idx.hostInts) {
    const hi = idx.hostInts;
    const out = new Int32Array(numel(shape));
    for (let o = 0; o < outer; o++)
      for (let j = 0; j < k; j++) out.set(host.subarray((o * a + hi[j]) * inner, (o * a + hi[j] + 1) * inner), (o * k + j) * inner);
    return Tensor.fromData(out, shape, 'i32');
  }
  const out = Tensor.empty(shape, x.dtype);
  const vec = inner % 4 === 0;
  const iu = vec ? inner / 4 : inner;
  const rows = outer * k;
  if (rows * iu > 0)
    run({
      shader: SHADER, entry: vec ? 'gather4' : 'gather', label: vec ? 'gather4' : 'gather', constants: { WG: VIEW_WG },
      buffers: { 3: idx.buffer, [vec ? 11 : 1]: x.buffer, [vec ? 12 : 2]: out.buffer },
      params: viewParams(rows, iu, { a, k }), workgroups: rowsLayout(rows, iu).grid,
    });
  return out;
}

/**
 * The host copy of idx after checking it against [0, a); throws when x will need a gradient and
 * there is no host copy (the CSR of the backward is built from it), since that would only fail
 * later, in backward().
 */
export function checkedHostIndex(x: Tensor, idx: Tensor, a: number, what: string, op: string): Int32Array | undefined {
  const host = idx.hostInts;
  if (host)
    for (let j = 0; j < host.length; j++)
      if (host[j] < 0 || host[j] >= a) throw new Error(`${op}: index ${host[j]} at position ${j} is out of range for ${what} of ${shapeStr(x.shape)}`);
  if (!host && isGradEnabled() && x.requiresGrad)
    throw new Error(`${op}: the backward needs the indices on the host to build its scatter-add lists; upload them with tensor(data, shape, 'i32') (GPU-computed indices carry no host copy)`);
  return host;
}

/**
 * Takes x's slices along `axis` at the positions in idx (i32, 1-D): out.shape[axis] = idx.size.
 * Indices uploaded from the host are range-checked here; others read as 0 when out of range.
 * The backward (a scatter-add into x's shape) needs the host copy of idx to build its CSR.
 */
export function gather(x: Tensor, axis: number, idx: Tensor): Tensor {
  if (idx.dtype !== 'i32' || idx.ndim !== 1) throw new Error(`gather: idx must be a 1-D i32 tensor, got ${idx.dtype} ${shapeStr(idx.shape)}`);
  const ax = normAxis(axis, x.ndim, 'gather');
  const a = x.shape[ax];
  const outer = numel(x.shape.slice(0, ax));
  const inner = numel(x.shape.slice(ax + 1));
  const host = checkedHostIndex(x, idx, a, `axis ${axis}`, 'gather');
  const shape = x.shape.map((d, i) => (i === ax ? idx.size : d));
  const out = gatherRows(x, idx, outer, a, inner, shape);
  // dx[.., a, ..] = Σ_{k: idx[k] = a} dout[.., k, ..]
  return record(out, 'gather', [x], (g) => [scatterAddRows(g, host!, outer, a, inner, x.shape)]);
}
