// Float64 twin of engine/ops/rope.ts; the angle is rounded to f32 as HF computes it in f32.
import { ndZeros, type ND } from './nd.js';

export interface RopeRefOptions {
  /** [B, T] or [T] (or [1, T]) integer positions. */
  positions?: ND;
  offset?: number;
  theta?: number;
  invFreq?: Float32Array;
  scaling?: number;
}

/** HF's default inv_freq with torch's f32 roundings (twin of ops/rope.ts ropeInvFreq). */
export function ropeInvFreq(hs: number, theta = 10000): Float32Array {
  const f = new Float32Array(hs / 2);
  for (let i = 0; i < hs / 2; i++) f[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / hs));
  return f;
}

export function rope(x: ND, opts: RopeRefOptions = {}): ND {
  const [B, NH, T, hs] = x.shape;
  const half = hs / 2;
  const f = opts.invFreq ?? ropeInvFreq(hs, opts.theta ?? 10000);
  const scaling = opts.scaling ?? 1;
  const out = ndZeros(x.shape);
  const pos = opts.positions;
  const perBatch = pos !== undefined && pos.shape.length === 2 && pos.shape[0] === B && B > 1;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++)
      for (let t = 0; t < T; t++) {
        const p = pos ? pos.data[(perBatch ? b * T : 0) + t] : (opts.offset ?? 0) + t;
        const base = ((b * NH + h) * T + t) * hs;
        for (let i = 0; i < half; i++) {
          const a = Math.fround(p * f[i]);
          const c = Math.cos(a) * scaling;
          const s = Math.sin(a) * scaling;
          const x1 = x.data[base + i];
          const x2 = x.data[base + i + half];
          out.data[base + i] = x1 * c - x2 * s;
          out.data[base + i + half] = x2 * c + x1 * s;
        }
      }
  return out;
}
