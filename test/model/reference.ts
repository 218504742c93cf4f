// Independent float64 Llama / Qwen2 forward in plain TypeScript, written from the model's equations
// (not from the engine's ops or refs), for checking the engine's logits, lens logits and gradients.
import type { LlamaLikeConfig } from '../../engine/io/hf.js';
import { Rng } from '../../engine/index.js';
import { expectedTensors } from '../../engine/io/hf.js';

export type Weights = Map<string, Float32Array | Float64Array>;

/** Random weights for every HF tensor of a config: matrices U(−a, a) with a = scale/√in, norms 1 ± 0.2, biases U(−0.1, 0.1). */
export function randomWeights(config: LlamaLikeConfig, seed: number, scale = 1): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of expectedTensors(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    const isNorm = name.endsWith('norm.weight');
    const isBias = name.endsWith('.bias');
    const bound = isBias ? 0.1 : isNorm ? 0.2 : shape.length === 2 && !name.includes('embed_tokens') ? scale / Math.sqrt(shape[1]) : 1;
    for (let i = 0; i < n; i++) a[i] = (isNorm ? 1 : 0) + (rng.next() * 2 - 1) * bound;
    out.set(name, a);
  }
  return out;
}

export interface RefOutput {
  /** [B, T, V] row-major. */
  logits: Float64Array;
  /** hidden[l] = HF hidden_states[l] ([B, T, C]); hidden[L] is before the final norm. */
  hidden: Float64Array[];
}

/** y[r, o] = Σ_i x[r, i] W[o, i] + b[o]. */
function lin(x: Float64Array, rows: number, W: ArrayLike<number>, inF: number, outF: number, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * W[o * inF + i];
      y[r * outF + o] = s;
    }
  return y;
}

/** x / sqrt(mean(x²) + eps) · w per row. */
function rms(x: Float64Array, rows: number, C: number, w: ArrayLike<number>, eps: number): Float64Array {
  const y = new Float64Array(rows * C);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] ** 2;
    const inv = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * inv * w[c];
  }
  return y;
}

/**
 * Logits and hidden states for ids [B][T]. attentionMask [B][T] (1 real, 0 padding) masks padding keys
 * and sets positions to cumsum − 1 (HF); invFreq defaults to 1/θ^(2i/hs).
 */
export function refForward(
  cfg: LlamaLikeConfig, w: Weights, ids: number[][],
  opts: { attentionMask?: number[][]; invFreq?: ArrayLike<number>; drop?: (x: Float64Array) => Float64Array } = {},
): RefOutput {
  const B = ids.length;
  const T = ids[0].length;
  const { hidden_size: C, vocab_size: V, num_attention_heads: NH, num_key_value_heads: NKV, head_dim: hs, intermediate_size: I } = cfg;
  const eps = cfg.rms_norm_eps;
  const rows = B * T;
  const get = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`reference: missing weight ${n}`);
    return t;
  };
  const half = hs / 2;
  const invFreq = opts.invFreq ?? Array.from({ length: half }, (_, i) => 1 / cfg.rope_theta ** ((2 * i) / hs));
  const pos = ids.map((row, b) => {
    const m = opts.attentionMask?.[b];
    let c = 0;
    return row.map((_, t) => (m ? (m[t] ? c++ : 1) : t));
  });

  // Dropout sites, in the engine's order: embeddings, then each layer's attention and MLP outputs.
  const drop = opts.drop ?? ((x: Float64Array) => x);
  const E = get('model.embed_tokens.weight');
  let h: Float64Array = new Float64Array(rows * C);
  ids.forEach((row, b) => row.forEach((id, t) => {
    for (let c = 0; c < C; c++) h[(b * T + t) * C + c] = E[id * C + c];
  }));
  h = drop(h);
  const hidden = [h.slice()];

  // x [B·T, n·hs] with rotate-half RoPE applied per head at each row's position.
  const ropeRows = (x: Float64Array, n: number) => {
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++)
        for (let hd = 0; hd < n; hd++) {
          const o = (b * T + t) * n * hs + hd * hs;
          for (let i = 0; i < half; i++) {
            const a = pos[b][t] * invFreq[i];
            const [c, s] = [Math.cos(a), Math.sin(a)];
            const x1 = x[o + i];
            const x2 = x[o + i + half];
            x[o + i] = x1 * c - x2 * s;
            x[o + i + half] = x2 * c + x1 * s;
          }
        }
  };

  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const bias = (n: string) => (cfg.qkv_bias ? get(`${p}.self_attn.${n}.bias`) : undefined);
    const xn = rms(h, rows, C, get(`${p}.input_layernorm.weight`), eps);
    const q = lin(xn, rows, get(`${p}.self_attn.q_proj.weight`), C, NH * hs, bias('q_proj'));
    const k = lin(xn, rows, get(`${p}.self_attn.k_proj.weight`), C, NKV * hs, bias('k_proj'));
    const v = lin(xn, rows, get(`${p}.self_attn.v_proj.weight`), C, NKV * hs, bias('v_proj'));
    ropeRows(q, NH);
    ropeRows(k, NKV);
    // Causal GQA attention: query head hd reads kv head hd / (NH / NKV); padding keys are skipped.
    const att = new Float64Array(rows * NH * hs);
    const G = NH / NKV;
    const sc = 1 / Math.sqrt(hs);
    for (let b = 0; b < B; b++)
      for (let hd = 0; hd < NH; hd++) {
        const kh = Math.floor(hd / G);
        for (let i = 0; i < T; i++) {
          const s: number[] = [];
          const js: number[] = [];
          for (let j = 0; j <= i; j++) {
            if (opts.attentionMask && !opts.attentionMask[b][j]) continue;
            let d = 0;
            for (let e = 0; e < hs; e++) d += q[(b * T + i) * NH * hs + hd * hs + e] * k[(b * T + j) * NKV * hs + kh * hs + e];
            s.push(d * sc);
            js.push(j);
          }
          if (s.length === 0) continue; // a padding query with no real key before it: output unused
          const m = Math.max(...s);
          const ex = s.map((z) => Math.exp(z - m));
          const Z = ex.reduce((a2, b2) => a2 + b2, 0);
          for (let e = 0; e < hs; e++) {
            let acc = 0;
            js.forEach((j, u) => (acc += (ex[u] / Z) * v[(b * T + j) * NKV * hs + kh * hs + e]));
            att[(b * T + i) * NH * hs + hd * hs + e] = acc;
          }
        }
      }
    const o = drop(lin(att, rows, get(`${p}.self_attn.o_proj.weight`), NH * hs, C, cfg.o_bias ? get(`${p}.self_attn.o_proj.bias`) : undefined));
    for (let i = 0; i < h.length; i++) h[i] += o[i];
    const hn = rms(h, rows, C, get(`${p}.post_attention_layernorm.weight`), eps);
    const mb = (n: string) => (cfg.mlp_bias ? get(`${p}.mlp.${n}.bias`) : undefined);
    const g = lin(hn, rows, get(`${p}.mlp.gate_proj.weight`), C, I, mb('gate_proj'));
    const u = lin(hn, rows, get(`${p}.mlp.up_proj.weight`), C, I, mb('up_proj'));
    const a = g.map((z, i) => (z / (1 + Math.exp(-z))) * u[i]);
    const d = drop(lin(a, rows, get(`${p}.mlp.down_proj.weight`), I, C, mb('down_proj')));
    for (let i = 0; i < h.length; i++) h[i] += d[i];
    hidden.push(h.slice());
  }
  const logits = lensLogits(cfg, w, h, rows);
  return { logits, hidden };
}

/** lm_head(norm(h)) for h [rows, C] → [rows, V] (lm_head = embed_tokens when tied). */
export function lensLogits(cfg: LlamaLikeConfig, w: Weights, h: Float64Array, rows: number): Float64Array {
  const head = cfg.tie_word_embeddings ? w.get('model.embed_tokens.weight')! : w.get('lm_head.weight')!;
  return lin(rms(h, rows, cfg.hidden_size, w.get('model.norm.weight')!, cfg.rms_norm_eps), rows, head, cfg.hidden_size, cfg.vocab_size);
}

/** Mean cross-entropy of logits [R, V] against targets [R]. */
export function refCrossEntropy(logits: Float64Array, targets: readonly number[], V: number): number {
  let total = 0;
  targets.forEach((y, r) => {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[r * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[r * V + v] - m);
    total += m + Math.log(z) - logits[r * V + y];
  });
  return total / targets.length;
}
