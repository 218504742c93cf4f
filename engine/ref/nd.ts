// Float64 reference arrays for tests: a flat Float64Array plus a shape, and the broadcasting and
// indexing helpers the reference ops are written with. Plain TypeScript, no GPU.
export interface ND {
  data: Float64Array;
  shape: number[];
}

export function nd(data: ArrayLike<number>, shape: readonly number[]): ND {
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new Error(`nd: ${data.length} values for shape [${shape}]`);
  return { data: Float64Array.from(data), shape: [...shape] };
}

export function ndZeros(shape: readonly number[]): ND {
  return { data: new Float64Array(shape.reduce((a, b) => a * b, 1)), shape: [...shape] };
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`ref: [${a}] and [${b}] do not broadcast`);
    return Math.max(da, db) === 1 ? 1 : da === 1 ? db : da;
  });
}

/** Index into `x` for output multi-index `idx` of a broadcast result. */
export function bcastIndex(x: ND, idx: number[]): number {
  const off = idx.length - x.shape.length;
  const st = strides(x.shape);
  let o = 0;
  for (let i = 0; i < x.shape.length; i++) o += (x.shape[i] === 1 ? 0 : idx[i + off]) * st[i];
  return o;
}

export function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

/** Elementwise map over broadcast inputs. */
export function zipWith(xs: ND[], f: (...v: number[]) => number): ND {
  const shape = xs.reduce<number[]>((s, x) => broadcastShape(s, x.shape), []);
  const out = ndZeros(shape);
  for (let i = 0; i < out.data.length; i++) {
    const idx = unravel(i, shape);
    out.data[i] = f(...xs.map((x) => x.data[bcastIndex(x, idx)]));
  }
  return out;
}
