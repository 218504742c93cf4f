// Float64 twins of engine/ops/view.ts, same names and argument order (indices as plain arrays).
import { ndZeros, strides, unravel, type ND } from './nd.js';

const norm = (a: number, rank: number) => (a < 0 ? a + rank : a);

export function reshape(x: ND, shape: readonly number[]): ND {
  return { data: x.data.slice(), shape: [...shape] };
}

export function permute(x: ND, dims: readonly number[]): ND {
  const ds = dims.map((d) => norm(d, x.shape.length));
  const out = ndZeros(ds.map((d) => x.shape[d]));
  const xs = strides(x.shape);
  for (let i = 0; i < out.data.length; i++) {
    const c = unravel(i, out.shape);
    let o = 0;
    for (let k = 0; k < ds.length; k++) o += c[k] * xs[ds[k]];
    out.data[i] = x.data[o];
  }
  return out;
}

export function transpose(x: ND, d0 = -2, d1 = -1): ND {
  const a = norm(d0, x.shape.length);
  const b = norm(d1, x.shape.length);
  return permute(x, x.shape.map((_, i) => (i === a ? b : i === b ? a : i)));
}

export function slice(x: ND, starts: readonly number[], ends: readonly number[]): ND {
  const st = starts.map((s, d) => (s < 0 ? s + x.shape[d] : s));
  const en = ends.map((e, d) => (e < 0 ? e + x.shape[d] : e));
  const out = ndZeros(en.map((e, d) => e - st[d]));
  const xs = strides(x.shape);
  for (let i = 0; i < out.data.length; i++) {
    const c = unravel(i, out.shape);
    out.data[i] = x.data[c.reduce((acc, v, d) => acc + (v + st[d]) * xs[d], 0)];
  }
  return out;
}

export function concat(xs: readonly ND[], axis: number): ND {
  const ax = norm(axis, xs[0].shape.length);
  const shape = [...xs[0].shape];
  shape[ax] = xs.reduce((acc, t) => acc + t.shape[ax], 0);
  const out = ndZeros(shape);
  const os = strides(shape);
  let off = 0;
  for (const t of xs) {
    for (let i = 0; i < t.data.length; i++) {
      const c = unravel(i, t.shape);
      c[ax] += off;
      out.data[c.reduce((acc, v, d) => acc + v * os[d], 0)] = t.data[i];
    }
    off += t.shape[ax];
  }
  return out;
}

export function gather(x: ND, axis: number, idx: ArrayLike<number>): ND {
  const ax = norm(axis, x.shape.length);
  const out = ndZeros(x.shape.map((d, i) => (i === ax ? idx.length : d)));
  const xs = strides(x.shape);
  for (let i = 0; i < out.data.length; i++) {
    const c = unravel(i, out.shape);
    c[ax] = idx[c[ax]];
    out.data[i] = x.data[c.reduce((acc, v, d) => acc + v * xs[d], 0)];
  }
  return out;
}
