// Float64 twin of engine/ops/attention.ts: plain loops over (b, h, i, j), same names and argument order.
import { bcastIndex, ndZeros, type ND } from './nd.js';

export interface AttentionOptions {
  causal?: boolean;
  scale?: number;
  /** Additive mask broadcastable to [B, 1, T, Tk]. */
  mask?: ND;
  qOffset?: number;
  kvLength?: number;
}

/** softmax(scale · q kᵀ + mask, causal) v; q [B, NH, T, hs], k, v [B, NKV, KS, hs] (first kvLength keys). */
export function attention(q: ND, k: ND, v: ND, o: AttentionOptions = {}): ND {
  const [B, NH, T, hs] = q.shape;
  const [, NKV, KS] = k.shape;
  const G = NH / NKV;
  const Tk = o.kvLength ?? KS;
  const causal = o.causal ?? true;
  const qOff = o.qOffset ?? Math.max(0, Tk - T);
  const scale = o.scale ?? 1 / Math.sqrt(hs);
  const out = ndZeros([B, NH, T, hs]);
  const s = new Float64Array(Tk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++) {
      const kh = (b * NKV + Math.floor(h / G)) * KS;
      for (let i = 0; i < T; i++) {
        const qi = ((b * NH + h) * T + i) * hs;
        const end = causal ? Math.min(Tk, qOff + i + 1) : Tk;
        let m = -Infinity;
        for (let j = 0; j < end; j++) {
          let dot = 0;
          for (let d = 0; d < hs; d++) dot += q.data[qi + d] * k.data[(kh + j) * hs + d];
          s[j] = scale * dot + (o.mask ? o.mask.data[bcastIndex(o.mask, [b, 0, i, j])] : 0);
          m = Math.max(m, s[j]);
        }
        let l = 0;
        for (let j = 0; j < end; j++) l += Math.exp(s[j] - m);
        for (let j = 0; j < end; j++) {
          const p = Math.exp(s[j] - m) / l;
          for (let d = 0; d < hs; d++) out.data[qi + d] += p * v.data[(kh + j) * hs + d];
        }
      }
    }
  return out;
}

export const attentionComposite = attention;
