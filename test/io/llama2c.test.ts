// llama2.c `.bin` reader: the real stories260K checkpoint loads as a standard HF Llama, and a float64
// forward pass in HF layout (rotate-half RoPE, permuted q/k) matches llama2.c's own (interleaved) one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkTensors, configRopeInvFreq, type LlamaLikeConfig } from '../../engine/io/hf.js';
import { LLAMA2C_HEADER_BYTES, parseLlama2c, permuteHalfToInterleaved, permuteInterleavedToHalf } from '../../engine/io/llama2c.js';
import { readLlama2cFile } from '../../engine/io/node.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** shared/ sits beside the checkout (developers, CI) or inside it. */
const STORIES = [process.env.STORIES260K, path.join(ROOT, '../shared/data/models/stories260K.bin'), path.join(ROOT, 'shared/data/models/stories260K.bin')].find(
  (p): p is string => !!p && fs.existsSync(p),
);
if (!STORIES) console.warn('[llama2c.test] stories260K.bin not found beside the repo (shared/data/models/): skipping the real-checkpoint tests');

type W = Map<string, { shape: number[]; data: Float32Array }>;

/** y[out] = W[out, in] · x[in], in float64. */
function matvec(w: Float32Array, x: Float64Array, out: number): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[o * n + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]!);
}

/**
 * Float64 causal forward pass over `tokens`, returning logits per position. `rope` 'interleaved' rotates
 * pairs (2i, 2i+1) like llama2.c's run.c; 'half' rotates (i, i + hs/2) like HF's rotate_half.
 */
function forward(c: LlamaLikeConfig, w: W, tokens: number[], rope: 'interleaved' | 'half', qk: (l: number, which: 'q' | 'k') => Float32Array): Float64Array[] {
  const C = c.hidden_size;
  const hs = c.head_dim;
  const NH = c.num_attention_heads;
  const NKV = c.num_key_value_heads;
  const inv = configRopeInvFreq(c);
  const get = (n: string) => w.get(n)!.data;
  const keys: Float64Array[][] = Array.from({ length: c.num_hidden_layers }, () => []);
  const vals: Float64Array[][] = Array.from({ length: c.num_hidden_layers }, () => []);
  const rotate = (v: Float64Array, heads: number, pos: number) => {
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < hs / 2; i++) {
        const [a, b] = rope === 'interleaved' ? [h * hs + 2 * i, h * hs + 2 * i + 1] : [h * hs + i, h * hs + i + hs / 2];
        const cos = Math.cos(pos * inv[i]!);
        const sin = Math.sin(pos * inv[i]!);
        const v0 = v[a]!;
        const v1 = v[b]!;
        v[a] = v0 * cos - v1 * sin;
        v[b] = v0 * sin + v1 * cos;
      }
  };
  const out: Float64Array[] = [];
  tokens.forEach((tok, pos) => {
    let x = Float64Array.from(get('model.embed_tokens.weight').subarray(tok * C, (tok + 1) * C));
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}`;
      const xb = rmsnorm(x, get(`${p}.input_layernorm.weight`), c.rms_norm_eps);
      const q = matvec(qk(l, 'q'), xb, NH * hs);
      const k = matvec(qk(l, 'k'), xb, NKV * hs);
      const v = matvec(get(`${p}.self_attn.v_proj.weight`), xb, NKV * hs);
      rotate(q, NH, pos);
      rotate(k, NKV, pos);
      keys[l]!.push(k);
      vals[l]!.push(v);
      const att = new Float64Array(NH * hs);
      for (let h = 0; h < NH; h++) {
        const kh = Math.floor(h / (NH / NKV));
        const scores = keys[l]!.map((kt) => {
          let s = 0;
          for (let i = 0; i < hs; i++) s += q[h * hs + i]! * kt[kh * hs + i]!;
          return s / Math.sqrt(hs);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        vals[l]!.forEach((vt, t) => {
          for (let i = 0; i < hs; i++) att[h * hs + i] += (e[t]! / z) * vt[kh * hs + i]!;
        });
      }
      x = x.map((xi, i) => xi + matvec(get(`${p}.self_attn.o_proj.weight`), att, C)[i]!);
      const xf = rmsnorm(x, get(`${p}.post_attention_layernorm.weight`), c.rms_norm_eps);
      const g = matvec(get(`${p}.mlp.gate_proj.weight`), xf, c.intermediate_size);
      const u = matvec(get(`${p}.mlp.up_proj.weight`), xf, c.intermediate_size);
      const hmid = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]!);
      const d = matvec(get(`${p}.mlp.down_proj.weight`), hmid, C);
      x = x.map((xi, i) => xi + d[i]!);
    }
    const xn = rmsnorm(x, get('model.norm.weight'), c.rms_norm_eps);
    const head = c.tie_word_embeddings ? get('model.embed_tokens.weight') : get('lm_head.weight');
    out.push(matvec(head, xn, c.vocab_size));
  });
  return out;
}

describe.skipIf(!STORIES)('stories260K.bin', () => {
  it('loads as a standard HF Llama (config, names, shapes)', () => {
    const m = readLlama2cFile(STORIES!);
    expect(m.config).toMatchObject({
      model_type: 'llama', hidden_size: 64, intermediate_size: 172, num_hidden_layers: 5, num_attention_heads: 8,
      num_key_value_heads: 4, head_dim: 8, vocab_size: 512, max_position_embeddings: 512, tie_word_embeddings: true,
      rms_norm_eps: 1e-5, rope_theta: 10000, bos_token_id: 1, eos_token_id: 2,
    });
    expect(() => checkTensors(m.config, m.tensors, STORIES)).not.toThrow();
    expect(m.tensors.get('model.layers.4.self_attn.k_proj.weight')!.shape).toEqual([32, 64]);
  });

  it("the file's RoPE table equals cos/sin(pos · configRopeInvFreq)", () => {
    const m = readLlama2cFile(STORIES!);
    const inv = configRopeInvFreq(m.config);
    const half = m.config.head_dim / 2;
    for (let pos = 0; pos < m.config.max_position_embeddings; pos += 37)
      for (let i = 0; i < half; i++) {
        expect(m.freqCis.real[pos * half + i]).toBeCloseTo(Math.cos(pos * inv[i]!), 4);
        expect(m.freqCis.imag[pos * half + i]).toBeCloseTo(Math.sin(pos * inv[i]!), 4);
      }
  });

  it('q/k permutation: HF-layout forward with rotate-half == llama2.c forward with interleaved RoPE', () => {
    const bytes = new Uint8Array(fs.readFileSync(STORIES!));
    const m = parseLlama2c(bytes, STORIES);
    const c = m.config;
    const C = c.hidden_size;
    const kvDim = c.num_key_value_heads * c.head_dim;
    // The raw layer-0 wq straight from the file (after embeddings and rms_att) is the un-permuted HF q_proj.
    const wqOffset = LLAMA2C_HEADER_BYTES + 4 * (c.vocab_size * C + c.num_hidden_layers * C);
    const rawWq = new Float32Array(bytes.slice(wqOffset, wqOffset + 4 * C * C).buffer);
    const q0 = m.tensors.get('model.layers.0.self_attn.q_proj.weight')!.data;
    expect(permuteHalfToInterleaved(q0, c.num_attention_heads, C, C)).toEqual(rawWq);
    expect(q0).not.toEqual(rawWq);

    const original = (l: number, which: 'q' | 'k') => {
      const t = m.tensors.get(`model.layers.${l}.self_attn.${which}_proj.weight`)!.data;
      return which === 'q' ? permuteHalfToInterleaved(t, c.num_attention_heads, C, C) : permuteHalfToInterleaved(t, c.num_key_value_heads, kvDim, C);
    };
    const hf = (l: number, which: 'q' | 'k') => m.tensors.get(`model.layers.${l}.self_attn.${which}_proj.weight`)!.data;
    const tokens = [1, 403, 261, 87, 300, 12, 499];
    const a = forward(c, m.tensors, tokens, 'interleaved', original);
    const b = forward(c, m.tensors, tokens, 'half', hf);
    let maxDiff = 0;
    a.forEach((row, t) => row.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - b[t]![i]!)))));
    expect(maxDiff).toBeLessThan(1e-9);
    // and the mismatch is real: rotate-half RoPE on the un-permuted weights gives different logits
    const wrong = forward(c, m.tensors, tokens, 'half', original);
    expect(Math.abs(wrong[3]![0]! - a[3]![0]!)).toBeGreaterThan(1e-6);
  });
});

/** A synthetic legacy llama2.c file with deterministic weights. */
function makeBin(h: number[], extraBytes = 0): Uint8Array {
  const [dim, hidden, L, NH, NKV, vocab, seq] = h as [number, number, number, number, number, number, number];
  const hs = dim / NH;
  const V = Math.abs(vocab);
  const floats = V * dim + L * dim + L * dim * dim + 2 * L * dim * NKV * hs + L * dim * dim + L * dim + 3 * L * hidden * dim + dim + seq * hs + (vocab < 0 ? V * dim : 0);
  const out = new Uint8Array(LLAMA2C_HEADER_BYTES + 4 * floats + extraBytes);
  const dv = new DataView(out.buffer);
  h.forEach((v, i) => dv.setInt32(4 * i, v, true));
  for (let i = 0; i < floats; i++) dv.setFloat32(LLAMA2C_HEADER_BYTES + 4 * i, i, true); // value = flat index
  return out;
}

/** Just a header (plus some bytes), for headers that are rejected before the size check. */
function headerOnly(h: number[]): Uint8Array {
  const out = new Uint8Array(LLAMA2C_HEADER_BYTES + 64);
  h.forEach((v, i) => new DataView(out.buffer).setInt32(4 * i, v, true));
  return out;
}

describe('synthetic llama2.c files', () => {
  it('unshared classifier (negative vocab) → lm_head; permutation is a per-head row shuffle', () => {
    const bin = makeBin([8, 6, 1, 2, 1, -5, 3]);
    const m = parseLlama2c(bin);
    expect(m.config.tie_word_embeddings).toBe(false);
    expect(m.config.vocab_size).toBe(5);
    expect(() => checkTensors(m.config, m.tensors)).not.toThrow();
    const lm = m.tensors.get('lm_head.weight')!;
    expect(lm.shape).toEqual([5, 8]);
    // wcls is the last V·dim floats of the file
    const total = (bin.length - LLAMA2C_HEADER_BYTES) / 4;
    expect(lm.data[0]).toBe(total - 5 * 8);
    // q: 2 heads of size 4; HF row order per head is [0, 2, 1, 3] of the interleaved rows.
    const q = m.tensors.get('model.layers.0.self_attn.q_proj.weight')!.data;
    const wqStart = 5 * 8 + 8; // after embeddings and rms_att
    const rowOf = (r: number) => (q[r * 8]! - wqStart) / 8;
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(rowOf)).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    expect(permuteInterleavedToHalf(permuteHalfToInterleaved(q, 2, 8, 8), 2, 8, 8)).toEqual(q);
  });

  const bad: [string, () => Uint8Array, RegExp][] = [
    ['truncated by one float', () => makeBin([8, 6, 1, 2, 1, 5, 3]).subarray(0, -4), /implies \d+ bytes but the file has/],
    ['trailing bytes', () => makeBin([8, 6, 1, 2, 1, 5, 3], 4), /implies \d+ bytes but the file has/],
    ['shorter than the header', () => new Uint8Array(10), /shorter than the 28-byte header/],
    ['huge dims', () => { const b = makeBin([8, 6, 1, 2, 1, 5, 3]); new DataView(b.buffer).setInt32(0, 2 ** 30, true); new DataView(b.buffer).setInt32(4, 2 ** 30, true); return b; }, /implies/],
    ['zero layers', () => { const b = makeBin([8, 6, 1, 2, 1, 5, 3]); new DataView(b.buffer).setInt32(8, 0, true); return b; }, /n_layers = 0/],
    ['heads not dividing dim', () => headerOnly([9, 6, 1, 2, 1, 5, 3]), /not divisible by n_heads/],
    ['kv heads not dividing heads', () => headerOnly([12, 6, 1, 3, 2, 5, 3]), /not divisible by n_kv_heads/],
    ['odd head size', () => headerOnly([6, 6, 1, 2, 1, 5, 3]), /head size 3 must be even/],
    ['version-1 export', () => { const b = makeBin([8, 6, 1, 2, 1, 5, 3]); new DataView(b.buffer).setUint32(0, 0x616b3432, true); return b; }, /version-1\/2/],
  ];
  for (const [name, make, re] of bad)
    it(`rejects: ${name}`, { timeout: 2000 }, () => {
      expect(() => parseLlama2c(make(), 'x.bin')).toThrow(re);
      expect(() => parseLlama2c(make(), 'x.bin')).toThrow(/llama2.c checkpoint x.bin/);
    });
});
