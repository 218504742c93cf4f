// Rotary position embeddings (shaders/rope.wgsl) in the Hugging Face rotate-half convention, with
// optional per-batch positions (left padding, KV-cache offsets) and caller-supplied inv_freq.
import { device, type Device } from '../device.js';
import { record } from '../autograd.js';
import { Tensor, keep, shapeStr } from '../tensor.js';
import { assertF32, f32bits, gridFor, run } from './common.js';

const SHADER = 'rope';

export interface RopeOptions {
  /** Positions, i32 [B, T] (per batch row, e.g. left-padded) or [T] / [1, T] (shared); default offset + 0..T-1. */
  positions?: Tensor;
  /** Position of the first token when `positions` is not given (a KV-cache offset). Default 0. */
  offset?: number;
  /** RoPE base (HF rope_theta). Default 10000. Ignored when invFreq is given. */
  theta?: number;
  /** Precomputed inverse frequencies [hs/2], e.g. with rope_scaling applied (engine/io/hf.ts configRopeInvFreq). */
  invFreq?: Float32Array;
  /** Multiplies cos and sin (HF attention_scaling, e.g. for YaRN). Default 1. */
  scaling?: number;
}

/**
 * HF's default inv_freq in f32: 1 / theta^(2i/hs) with the exponent, the power and the
 * reciprocal each rounded to f32 as torch computes them.
 */
export function ropeInvFreq(hs: number, theta = 10000): Float32Array {
  const f = new Float32Array(hs / 2);
  for (let i = 0; i < hs / 2; i++) f[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / hs));
  return f;
}

/** Uploaded inv_freq tables per device, keyed by their f32 bits (a few per model, kept forever). */
const freqCache = new WeakMap<Device, Map<string, Tensor>>();

function invFreqTensor(f: Float32Array): Tensor {
  const dev = device();
  let m = freqCache.get(dev);
  if (!m) freqCache.set(dev, (m = new Map()));
  const key = Array.from(new Uint32Array(f.buffer, f.byteOffset, f.length)).join(',');
  let t = m.get(key);
  if (!t || t.disposed) {
    t = keep(Tensor.fromData(f, [f.length]));
    m.set(key, t);
  }
  return t;
}

/**
 * out[..., i] = x_i·cos(p·f_i) − x_{i+hs/2}·sin(p·f_i) for i < hs/2, x_i·cos + x_{i−hs/2}·sin
 * above, on x [B, NH, T, hs]; p·f_i is rounded to f32 as HF computes it.
 */
export function rope(x: Tensor, opts: RopeOptions = {}): Tensor {
  assertF32(x, 'rope');
  if (x.ndim !== 4) throw new Error(`rope: x must be [B, NH, T, hs], got ${shapeStr(x.shape)}`);
  const [B, NH, T, hs] = x.shape;
  if (hs % 2 !== 0) throw new Error(`rope: head size ${hs} must be even`);
  const half = hs / 2;
  const f = opts.invFreq ?? ropeInvFreq(hs, opts.theta ?? 10000);
  if (f.length !== half) throw new Error(`rope: invFreq has ${f.length} entries, head size ${hs} needs ${half}`);
  const pos = opts.positions;
  let posStride = 0;
  if (pos) {
    if (pos.dtype !== 'i32') throw new Error(`rope: positions must be i32, got ${pos.dtype}`);
    const ok = (pos.ndim === 1 && pos.shape[0] === T) || (pos.ndim === 2 && pos.shape[1] === T && (pos.shape[0] === B || pos.shape[0] === 1));
    if (!ok) throw new Error(`rope: positions ${shapeStr(pos.shape)} must be [${B}, ${T}] or [${T}] for x ${shapeStr(x.shape)}`);
    posStride = pos.ndim === 2 && pos.shape[0] === B && B > 1 ? T : 0;
  }
  const freq = invFreqTensor(f);
  const params = [B * NH * T * half, NH, T, half, posStride, (opts.offset ?? 0) | 0, f32bits(opts.scaling ?? 1), 0];
  const rotate = (src: Tensor, sign: 1 | -1, label: string): Tensor => {
    const out = Tensor.empty(src.shape);
    run({
      shader: SHADER, entry: 'rotate', constants: { SIGN: sign, HAS_POS: pos ? 1 : 0 }, label,
      // Without positions the pos binding is unused but must be bound: any buffer will do.
      buffers: { 1: src.buffer, 2: freq.buffer, 3: pos ? pos.buffer : freq.buffer, 4: out.buffer },
      params, workgroups: [gridFor(params[0])],
    });
    return out;
  };
  const out = rotate(x, 1, 'rope');
  // The rotation R(θ) is orthogonal, so dx = R(θ)ᵀ·dout = R(−θ)·dout (scaled alike).
  return record(out, 'rope', [x], (dout) => [rotate(dout, -1, 'rope_bwd')]);
}
