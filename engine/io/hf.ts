// Hugging Face Llama / Qwen2 configs (config.json) with transformers' defaults, the RoPE inverse
// frequencies those configs define, and the HF tensor-name scheme with a checker for loaded checkpoints.
import { ropeInvFreq } from '../ops/rope.js';

export type ModelType = 'llama' | 'qwen2';

/** rope_scaling of a Llama-3.x config (HF `_compute_llama3_parameters`). */
export interface RopeScalingLlama3 {
  rope_type: 'llama3';
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
}
/** rope_scaling "linear" (position interpolation): inv_freq / factor. */
export interface RopeScalingLinear {
  rope_type: 'linear';
  factor: number;
}
export type RopeScaling = RopeScalingLlama3 | RopeScalingLinear;

/** The fields of transformers' LlamaConfig / Qwen2Config the engine uses, defaults filled in. */
export interface LlamaLikeConfig {
  model_type: ModelType;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  /** Defaults to num_attention_heads (multi-head attention). */
  num_key_value_heads: number;
  /** Defaults to hidden_size / num_attention_heads. */
  head_dim: number;
  hidden_act: 'silu';
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  tie_word_embeddings: boolean;
  /** Biases on q/k/v projections (Qwen2: always; Llama: attention_bias, which also biases o_proj). */
  qkv_bias: boolean;
  /** Bias on o_proj (Llama attention_bias; never in Qwen2). */
  o_bias: boolean;
  /** Biases on gate/up/down (Llama mlp_bias; never in Qwen2). */
  mlp_bias: boolean;
  bos_token_id: number | null;
  /** An int, or a list for models with several stop tokens (Llama 3 instruct). */
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  /** Qwen2 sliding-window attention; the released checkpoints ship with it off. */
  use_sliding_window: boolean;
  sliding_window: number | null;
}

/**
 * Defaults of transformers' LlamaConfig / Qwen2Config __init__ (fields absent from config.json take
 * these). Both use rms_norm_eps 1e-6, rope_theta 10000 and untied embeddings by default.
 */
export const CONFIG_DEFAULTS: Record<ModelType, Omit<LlamaLikeConfig, 'model_type' | 'num_key_value_heads' | 'head_dim' | 'qkv_bias' | 'o_bias'>> = {
  llama: {
    vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32,
    hidden_act: 'silu', max_position_embeddings: 2048, rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null,
    tie_word_embeddings: false, mlp_bias: false, bos_token_id: 1, eos_token_id: 2, pad_token_id: null,
    use_sliding_window: false, sliding_window: null,
  },
  qwen2: {
    vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32,
    hidden_act: 'silu', max_position_embeddings: 32768, rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null,
    tie_word_embeddings: false, mlp_bias: false, bos_token_id: null, eos_token_id: null, pad_token_id: null,
    use_sliding_window: false, sliding_window: 4096,
  },
};
/** Qwen2Config's own default for num_key_value_heads (LlamaConfig's is None ⇒ = heads). */
const QWEN2_DEFAULT_KV_HEADS = 32;

// ---------------------------------------------------------------------------------------------
// Parsing

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class Fields {
  constructor(
    readonly json: Record<string, unknown>,
    readonly source: string,
    readonly prefix = '',
  ) {}
  fail(field: string, msg: string): never {
    throw new Error(`config ${this.source}: field "${this.prefix}${field}" ${msg}`);
  }
  has(f: string): boolean {
    return this.json[f] !== undefined && this.json[f] !== null;
  }
  int(f: string, def: number | undefined, min = 1): number {
    const v = this.json[f];
    if (v === undefined || v === null) {
      if (def === undefined) this.fail(f, 'is required');
      return def;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.fail(f, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v;
  }
  num(f: string, def: number | undefined, positive = true): number {
    const v = this.json[f];
    if (v === undefined || v === null) {
      if (def === undefined) this.fail(f, 'is required');
      return def;
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || (positive && v <= 0)) this.fail(f, `must be a finite${positive ? ' positive' : ''} number, got ${JSON.stringify(v)}`);
    return v;
  }
  bool(f: string, def: boolean): boolean {
    const v = this.json[f];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') this.fail(f, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
  tokenId(f: string, def: number | null): number | null {
    const v = this.json[f];
    if (v === undefined) return def;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(f, `must be a token id (integer ≥ 0) or null, got ${JSON.stringify(v)}`);
    return v;
  }
  tokenIds(f: string, def: number | number[] | null): number | number[] | null {
    const v = this.json[f];
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) this.fail(f, `must hold token ids, got ${JSON.stringify(v)}`);
      return [...(v as number[])];
    }
    return this.tokenId(f, def as number | null);
  }
}

function parseRopeScaling(raw: unknown, source: string, field: string): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (!isObj(raw)) throw new Error(`config ${source}: field "${field}" must be an object or null`);
  const f: Fields = new Fields(raw, source, `${field}.`);
  // "type" is the pre-4.45 spelling of "rope_type".
  const type = raw.rope_type ?? raw.type ?? 'default';
  if (type === 'default') return null;
  if (type === 'linear') return { rope_type: 'linear', factor: f.num('factor', undefined) };
  if (type === 'llama3') {
    const s: RopeScalingLlama3 = {
      rope_type: 'llama3',
      factor: f.num('factor', undefined),
      low_freq_factor: f.num('low_freq_factor', undefined),
      high_freq_factor: f.num('high_freq_factor', undefined),
      original_max_position_embeddings: f.int('original_max_position_embeddings', undefined),
    };
    // HF only warns here, but equal factors divide by zero in the smoothing step.
    if (s.high_freq_factor <= s.low_freq_factor)
      f.fail('high_freq_factor', `(${s.high_freq_factor}) must be greater than low_freq_factor (${s.low_freq_factor})`);
    return s;
  }
  throw new Error(`config ${source}: field "${field}.rope_type" ${JSON.stringify(type)} is not supported (supported: default, linear, llama3)`);
}

/**
 * Parses a config.json (object or JSON text) into a LlamaLikeConfig, filling transformers' defaults and
 * checking types and consistency; errors name the file and the field.
 */
export function parseConfig(json: unknown, source = '<config>'): LlamaLikeConfig {
  if (typeof json === 'string') {
    try {
      json = JSON.parse(json);
    } catch (e) {
      throw new Error(`config ${source}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isObj(json)) throw new Error(`config ${source}: not a JSON object`);
  const f: Fields = new Fields(json, source);
  const modelType = json.model_type;
  if (modelType !== 'llama' && modelType !== 'qwen2')
    f.fail('model_type', `must be "llama" or "qwen2", got ${JSON.stringify(modelType)}`);
  const d = CONFIG_DEFAULTS[modelType];

  const hidden = f.int('hidden_size', d.hidden_size);
  const heads = f.int('num_attention_heads', d.num_attention_heads);
  const kvHeads = f.int('num_key_value_heads', modelType === 'qwen2' ? QWEN2_DEFAULT_KV_HEADS : heads);
  if (heads % kvHeads !== 0) f.fail('num_key_value_heads', `(${kvHeads}) must divide num_attention_heads (${heads})`);
  if (!f.has('head_dim') && hidden % heads !== 0)
    f.fail('hidden_size', `(${hidden}) must be divisible by num_attention_heads (${heads}) when head_dim is not given`);
  const headDim = f.int('head_dim', hidden / heads);
  if (headDim % 2 !== 0) f.fail('head_dim', `(${headDim}) must be even for rotary embeddings`);
  const act = json.hidden_act ?? d.hidden_act;
  if (act !== 'silu') f.fail('hidden_act', `must be "silu", got ${JSON.stringify(act)}`);

  // transformers ≥ 5 nests rope_theta and the scaling under rope_parameters.
  let ropeTheta = f.num('rope_theta', d.rope_theta);
  let ropeScaling = parseRopeScaling(json.rope_scaling, source, 'rope_scaling');
  if (isObj(json.rope_parameters)) {
    const rp = new Fields(json.rope_parameters, source, 'rope_parameters.');
    ropeTheta = rp.num('rope_theta', ropeTheta);
    ropeScaling = parseRopeScaling(json.rope_parameters, source, 'rope_parameters') ?? ropeScaling;
  }

  const attentionBias = f.bool('attention_bias', false);
  const config: LlamaLikeConfig = {
    model_type: modelType,
    vocab_size: f.int('vocab_size', d.vocab_size),
    hidden_size: hidden,
    intermediate_size: f.int('intermediate_size', d.intermediate_size),
    num_hidden_layers: f.int('num_hidden_layers', d.num_hidden_layers),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    hidden_act: 'silu',
    max_position_embeddings: f.int('max_position_embeddings', d.max_position_embeddings),
    rms_norm_eps: f.num('rms_norm_eps', d.rms_norm_eps),
    rope_theta: ropeTheta,
    rope_scaling: ropeScaling,
    tie_word_embeddings: f.bool('tie_word_embeddings', d.tie_word_embeddings),
    // Qwen2Attention hard-codes bias=True on q/k/v and bias=False on o_proj, ignoring attention_bias.
    qkv_bias: modelType === 'qwen2' ? true : attentionBias,
    o_bias: modelType === 'qwen2' ? false : attentionBias,
    mlp_bias: modelType === 'qwen2' ? false : f.bool('mlp_bias', d.mlp_bias),
    bos_token_id: f.tokenId('bos_token_id', d.bos_token_id),
    eos_token_id: f.tokenIds('eos_token_id', d.eos_token_id),
    pad_token_id: f.tokenId('pad_token_id', d.pad_token_id),
    use_sliding_window: f.bool('use_sliding_window', d.use_sliding_window),
    sliding_window: f.has('sliding_window') ? f.int('sliding_window', undefined) : json.sliding_window === null ? null : d.sliding_window,
  };
  return config;
}

/** The eos id(s) as a list (empty when the config has none). */
export function eosIds(config: LlamaLikeConfig): number[] {
  const e = config.eos_token_id;
  return e === null ? [] : Array.isArray(e) ? [...e] : [e];
}

/** A config.json object for a LlamaLikeConfig (e.g. to save a converted llama2.c model next to its weights). */
export function configToJSON(c: LlamaLikeConfig): Record<string, unknown> {
  return {
    architectures: [c.model_type === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    model_type: c.model_type,
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    head_dim: c.head_dim,
    hidden_act: c.hidden_act,
    max_position_embeddings: c.max_position_embeddings,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: c.rope_theta,
    rope_scaling: c.rope_scaling,
    tie_word_embeddings: c.tie_word_embeddings,
    ...(c.model_type === 'llama' ? { attention_bias: c.qkv_bias, mlp_bias: c.mlp_bias } : {}),
    bos_token_id: c.bos_token_id,
    eos_token_id: c.eos_token_id,
    pad_token_id: c.pad_token_id,
    use_sliding_window: c.use_sliding_window,
    sliding_window: c.sliding_window,
  };
}

// ---------------------------------------------------------------------------------------------
// RoPE

const f32 = Math.fround;

/**
 * RoPE inverse frequencies [head_dim / 2] as transformers computes them in float32:
 * default  inv_freq[i] = 1 / theta^(2i / head_dim);
 * linear   inv_freq / factor;
 * llama3   (`_compute_llama3_parameters`) with wavelen = 2π / inv_freq:
 *   wavelen < orig / high_freq_factor          → inv_freq (high frequencies kept),
 *   wavelen > orig / low_freq_factor           → inv_freq / factor (low frequencies interpolated),
 *   otherwise, smooth = (orig / wavelen − low) / (high − low),
 *             (1 − smooth) · inv_freq / factor + smooth · inv_freq.
 * Every step is rounded to f32 in torch's operation order (`a / tensor` is `tensor.reciprocal() * a`
 * in torch), so results match HF to about 1 ulp (torch's f32 pow may differ from a rounded f64 pow).
 * Pass the result as `invFreq` to the rope op (engine/ops/rope.ts).
 */
export function configRopeInvFreq(config: Pick<LlamaLikeConfig, 'head_dim' | 'rope_theta' | 'rope_scaling'>): Float32Array {
  const dim = config.head_dim;
  const base = f32(config.rope_theta);
  const half = dim / 2;
  const inv = ropeInvFreq(dim, base); // the default table, as the rope op computes it
  const s = config.rope_scaling;
  if (!s) return inv;
  if (s.rope_type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = f32(inv[i]! / s.factor);
    return inv;
  }
  const old = s.original_max_position_embeddings;
  const lowWavelen = old / s.low_freq_factor; // python floats (f64), compared against f32 tensors
  const highWavelen = old / s.high_freq_factor;
  const twoPi = f32(2 * Math.PI);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const f = inv[i]!;
    const wavelen = f32(f32(1 / f) * twoPi);
    let llama = wavelen > lowWavelen ? f32(f / s.factor) : f;
    const mediumFreq = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
    if (mediumFreq) {
      const smooth = f32(f32(f32(f32(1 / wavelen) * old) - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor));
      llama = f32(f32(f32(f32(1 - smooth) * llama) / s.factor) + f32(smooth * llama));
    }
    out[i] = llama;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensor names

/** Expected HF tensor names and shapes, in model order. Shapes are PyTorch Linear [out, in]. */
export function expectedTensors(config: LlamaLikeConfig): Map<string, number[]> {
  const C = config.hidden_size;
  const V = config.vocab_size;
  const I = config.intermediate_size;
  const q = config.num_attention_heads * config.head_dim;
  const kv = config.num_key_value_heads * config.head_dim;
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [V, C]);
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    m.set(`${p}.input_layernorm.weight`, [C]);
    const proj: [string, number, number, boolean][] = [
      ['q_proj', q, C, config.qkv_bias],
      ['k_proj', kv, C, config.qkv_bias],
      ['v_proj', kv, C, config.qkv_bias],
      ['o_proj', C, q, config.o_bias],
    ];
    for (const [n, out, inp, bias] of proj) {
      m.set(`${p}.self_attn.${n}.weight`, [out, inp]);
      if (bias) m.set(`${p}.self_attn.${n}.bias`, [out]);
    }
    m.set(`${p}.post_attention_layernorm.weight`, [C]);
    const mlp: [string, number, number][] = [
      ['gate_proj', I, C],
      ['up_proj', I, C],
      ['down_proj', C, I],
    ];
    for (const [n, out, inp] of mlp) {
      m.set(`${p}.mlp.${n}.weight`, [out, inp]);
      if (config.mlp_bias) m.set(`${p}.mlp.${n}.bias`, [out]);
    }
  }
  m.set('model.norm.weight', [C]);
  if (!config.tie_word_embeddings) m.set('lm_head.weight', [V, C]);
  return m;
}

/** Buffers some older checkpoints saved alongside the weights; transformers ignores them on load. */
const IGNORED_TENSOR = /\.rotary_emb\.inv_freq$/;
/** How many problems one error lists before summarising the rest. */
const MAX_LISTED_PROBLEMS = 10;

/**
 * Checks that a checkpoint holds exactly the tensors a config needs, with the right shapes; throws one
 * Error listing the missing, unexpected and wrong-shaped tensors by name.
 */
export function checkTensors(
  config: LlamaLikeConfig,
  tensors: ReadonlyMap<string, { shape: readonly number[] }> | Record<string, { shape: readonly number[] }>,
  source = '<checkpoint>',
): void {
  const have: [string, readonly number[]][] =
    tensors instanceof Map ? [...tensors.entries()].map(([k, v]) => [k, v.shape]) : Object.entries(tensors).map(([k, v]) => [k, v.shape]);
  const want = expectedTensors(config);
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [name, shape] of have) {
    seen.add(name);
    const w = want.get(name);
    if (!w) {
      if (IGNORED_TENSOR.test(name)) continue;
      const hint = name === 'lm_head.weight' && config.tie_word_embeddings ? ' (tie_word_embeddings is true, so the model uses embed_tokens)' : '';
      problems.push(`unexpected tensor "${name}"${hint}`);
    } else if (shape.length !== w.length || shape.some((d, i) => d !== w[i])) {
      problems.push(`tensor "${name}" has shape [${shape.join(',')}], expected [${w.join(',')}]`);
    }
  }
  for (const name of want.keys()) if (!seen.has(name)) problems.push(`missing tensor "${name}"`);
  if (problems.length === 0) return;
  const listed = problems.slice(0, MAX_LISTED_PROBLEMS).join('; ');
  const more = problems.length > MAX_LISTED_PROBLEMS ? ` (and ${problems.length - MAX_LISTED_PROBLEMS} more)` : '';
  throw new Error(`${source} does not match the ${config.model_type} config: ${listed}${more}`);
}
