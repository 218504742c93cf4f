// Reader for llama2.c's legacy `.bin` checkpoints (Karpathy's run.c format), converted to a standard
// Hugging Face Llama: HF tensor names, a LlamaLikeConfig, and q/k rows permuted to rotate-half RoPE.
import type { LlamaLikeConfig } from './hf.js';

/** Seven little-endian int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len. */
const HEADER_INTS = 7;
const INT_BYTES = 4;
const F32_BYTES = 4;
export const LLAMA2C_HEADER_BYTES = HEADER_INTS * INT_BYTES;
/** "ak42": the magic of llama2.c's newer (version 1/2) exports, which this reader does not handle. */
const V1_MAGIC = 0x616b3432;
/** run.c's rmsnorm adds 1e-5; its tokenizer uses BOS=1, EOS=2; model.py's rope theta is 10000. */
const LLAMA2C_RMS_EPS = 1e-5;
const LLAMA2C_BOS = 1;
const LLAMA2C_EOS = 2;
const LLAMA2C_ROPE_THETA = 10000;

export interface Llama2cHeader {
  dim: number;
  hidden_dim: number;
  n_layers: number;
  n_heads: number;
  n_kv_heads: number;
  /** Absolute value; the sign in the file says whether the classifier is shared. */
  vocab_size: number;
  seq_len: number;
  /** vocab_size > 0 in the file: the output classifier reuses token_embedding_table. */
  shared_classifier: boolean;
}

export interface Llama2cModel {
  config: LlamaLikeConfig;
  /** HF names → [out, in] row-major f32 weights (q/k already in rotate-half layout). */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  header: Llama2cHeader;
  /** The file's precomputed RoPE table, cos/sin(pos · inv_freq) [seq_len, head_size / 2]; unused by HF. */
  freqCis: { real: Float32Array; imag: Float32Array };
}

function fail(source: string | undefined, msg: string): never {
  throw new Error(`llama2.c checkpoint ${source ?? '<bytes>'}: ${msg}`);
}

/**
 * Meta/GPT-J interleaved RoPE rows → HF rotate-half rows, per head (HF's convert_llama_weights_to_hf
 * `permute`: w.view(n_heads, hs/2, 2, cols).transpose(1, 2)): new row j·hs/2 + i of a head is old
 * row 2i + j, so the pair (2i, 2i+1) that interleaved RoPE rotates becomes the pair (i, i + hs/2).
 */
export function permuteInterleavedToHalf(w: Float32Array, nHeads: number, rows: number, cols: number): Float32Array {
  return permuteRopeRows(w, nHeads, rows, cols, true);
}

/** The inverse of permuteInterleavedToHalf (HF rotate-half rows → interleaved), e.g. to export back. */
export function permuteHalfToInterleaved(w: Float32Array, nHeads: number, rows: number, cols: number): Float32Array {
  return permuteRopeRows(w, nHeads, rows, cols, false);
}

/** Row 2i + j of each head ↔ row j·hs/2 + i: the one bijection between the two layouts, either way. */
function permuteRopeRows(w: Float32Array, nHeads: number, rows: number, cols: number, toHalf: boolean): Float32Array {
  const hs = rows / nHeads;
  const half = hs / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < half; i++) {
        const interleaved = (h * hs + 2 * i + j) * cols;
        const rotateHalf = (h * hs + j * half + i) * cols;
        const [src, dst] = toHalf ? [interleaved, rotateHalf] : [rotateHalf, interleaved];
        out.set(w.subarray(src, src + cols), dst);
      }
  return out;
}

/**
 * Reads and sanity-checks the header against the file size (default: `bytes` is the whole file; a
 * caller holding only the first 28 bytes passes the size), before any weight is allocated.
 */
export function parseLlama2cHeader(bytes: Uint8Array, source?: string, fileSize = bytes.length): { header: Llama2cHeader; floats: number } {
  if (fileSize < LLAMA2C_HEADER_BYTES || bytes.length < LLAMA2C_HEADER_BYTES)
    fail(source, `file is ${fileSize} bytes, shorter than the ${LLAMA2C_HEADER_BYTES}-byte header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, LLAMA2C_HEADER_BYTES);
  if (dv.getUint32(0, true) === V1_MAGIC) fail(source, 'this is a version-1/2 llama2.c export (magic "ak42"); only the legacy (version 0) format is supported');
  const [dim, hidden, layers, heads, kvHeads, vocabSigned, seqLen] = Array.from({ length: HEADER_INTS }, (_, i) => dv.getInt32(i * INT_BYTES, true)) as [number, number, number, number, number, number, number];
  const pos: [string, number][] = [['dim', dim], ['hidden_dim', hidden], ['n_layers', layers], ['n_heads', heads], ['n_kv_heads', kvHeads], ['seq_len', seqLen]];
  for (const [n, v] of pos) if (v <= 0) fail(source, `header field ${n} = ${v} must be positive`);
  if (vocabSigned === 0) fail(source, 'header field vocab_size = 0');
  if (dim % heads !== 0) fail(source, `dim ${dim} is not divisible by n_heads ${heads}`);
  if (heads % kvHeads !== 0) fail(source, `n_heads ${heads} is not divisible by n_kv_heads ${kvHeads}`);
  const hs = dim / heads;
  if (hs % 2 !== 0) fail(source, `head size ${hs} must be even for rotary embeddings`);
  const vocab = Math.abs(vocabSigned);
  const shared = vocabSigned > 0;
  const kvDim = kvHeads * hs;
  // Every term is positive: a hostile header whose sum is inexact (> 2^53) is also far larger than any
  // real file, so the exact-size comparison below still rejects it before anything is allocated.
  const floats =
    vocab * dim + // token_embedding_table
    layers * dim + // rms_att_weight
    layers * dim * dim + // wq
    2 * layers * dim * kvDim + // wk, wv
    layers * dim * dim + // wo
    layers * dim + // rms_ffn_weight
    3 * layers * hidden * dim + // w1, w2, w3
    dim + // rms_final_weight
    2 * seqLen * (hs / 2) + // freq_cis_real, freq_cis_imag
    (shared ? 0 : vocab * dim); // wcls
  const expected = LLAMA2C_HEADER_BYTES + floats * F32_BYTES;
  if (expected !== fileSize)
    fail(source, `header (dim ${dim}, hidden ${hidden}, layers ${layers}, heads ${heads}/${kvHeads}, vocab ${vocabSigned}, seq ${seqLen}) implies ${expected} bytes but the file has ${fileSize}`);
  return {
    header: { dim, hidden_dim: hidden, n_layers: layers, n_heads: heads, n_kv_heads: kvHeads, vocab_size: vocab, seq_len: seqLen, shared_classifier: shared },
    floats,
  };
}

/** The HF config equivalent to a llama2.c model. */
export function llama2cConfig(h: Llama2cHeader): LlamaLikeConfig {
  return {
    model_type: 'llama',
    vocab_size: h.vocab_size,
    hidden_size: h.dim,
    intermediate_size: h.hidden_dim,
    num_hidden_layers: h.n_layers,
    num_attention_heads: h.n_heads,
    num_key_value_heads: h.n_kv_heads,
    head_dim: h.dim / h.n_heads,
    hidden_act: 'silu',
    max_position_embeddings: h.seq_len,
    rms_norm_eps: LLAMA2C_RMS_EPS,
    rope_theta: LLAMA2C_ROPE_THETA,
    rope_scaling: null,
    tie_word_embeddings: h.shared_classifier,
    qkv_bias: false,
    o_bias: false,
    mlp_bias: false,
    bos_token_id: LLAMA2C_BOS,
    eos_token_id: LLAMA2C_EOS,
    pad_token_id: null,
    use_sliding_window: false,
    sliding_window: null,
  };
}

/** Parses a legacy llama2.c checkpoint into HF-layout tensors and config. */
export function parseLlama2c(bytes: Uint8Array, source?: string): Llama2cModel {
  const { header: h } = parseLlama2cHeader(bytes, source);
  const { dim, hidden_dim: hidden, n_layers: L, n_heads: NH, n_kv_heads: NKV, vocab_size: V, seq_len: T } = h;
  const hs = dim / NH;
  const kvDim = NKV * hs;
  let at = LLAMA2C_HEADER_BYTES;
  // Each weight is copied into its own aligned Float32Array (the file's bytes may sit at any offset).
  const take = (n: number): Float32Array => {
    const out = new Float32Array(n);
    new Uint8Array(out.buffer).set(bytes.subarray(at, at + n * F32_BYTES));
    at += n * F32_BYTES;
    return out;
  };
  const perLayer = (rows: number, cols: number): Float32Array[] => {
    const all = take(L * rows * cols);
    return Array.from({ length: L }, (_, l) => all.slice(l * rows * cols, (l + 1) * rows * cols));
  };
  const embed = take(V * dim);
  const rmsAtt = perLayer(1, dim);
  const wq = perLayer(dim, dim);
  const wk = perLayer(kvDim, dim);
  const wv = perLayer(kvDim, dim);
  const wo = perLayer(dim, dim);
  const rmsFfn = perLayer(1, dim);
  const w1 = perLayer(hidden, dim);
  const w2 = perLayer(dim, hidden);
  const w3 = perLayer(hidden, dim);
  const rmsFinal = take(dim);
  const real = take((T * hs) / 2);
  const imag = take((T * hs) / 2);
  const wcls = h.shared_classifier ? null : take(V * dim);

  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const put = (name: string, shape: number[], data: Float32Array) => tensors.set(name, { shape, data });
  put('model.embed_tokens.weight', [V, dim], embed);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    put(`${p}.input_layernorm.weight`, [dim], rmsAtt[l]!);
    put(`${p}.self_attn.q_proj.weight`, [dim, dim], permuteInterleavedToHalf(wq[l]!, NH, dim, dim));
    put(`${p}.self_attn.k_proj.weight`, [kvDim, dim], permuteInterleavedToHalf(wk[l]!, NKV, kvDim, dim));
    put(`${p}.self_attn.v_proj.weight`, [kvDim, dim], wv[l]!);
    put(`${p}.self_attn.o_proj.weight`, [dim, dim], wo[l]!);
    put(`${p}.post_attention_layernorm.weight`, [dim], rmsFfn[l]!);
    // llama2.c: w2(silu(w1 x) * w3 x) — w1 is gate, w3 up, w2 down.
    put(`${p}.mlp.gate_proj.weight`, [hidden, dim], w1[l]!);
    put(`${p}.mlp.up_proj.weight`, [hidden, dim], w3[l]!);
    put(`${p}.mlp.down_proj.weight`, [dim, hidden], w2[l]!);
  }
  put('model.norm.weight', [dim], rmsFinal);
  if (wcls) put('lm_head.weight', [V, dim], wcls);
  return { config: llama2cConfig(h), tensors, header: h, freqCis: { real, imag } };
}
