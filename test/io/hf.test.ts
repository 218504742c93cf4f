// Hugging Face config parsing (defaults, validation errors naming the field), RoPE inverse frequencies
// (default and Llama-3 scaling against hand-computed values) and the tensor-name checker.
import { describe, expect, it } from 'vitest';
import { checkTensors, configToJSON, eosIds, expectedTensors, parseConfig, configRopeInvFreq, type LlamaLikeConfig } from '../../engine/io/hf.js';

/** Qwen2-0.5B's published config.json. */
const QWEN2_05B = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643, hidden_act: 'silu',
  hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 131072, max_window_layers: 24,
  model_type: 'qwen2', num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6,
  rope_theta: 1000000.0, sliding_window: 131072, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true,
  use_sliding_window: false, vocab_size: 151936,
};

/** Llama-3.1-8B's rope settings. */
const LLAMA31_8B = {
  model_type: 'llama', hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 8, vocab_size: 128256, max_position_embeddings: 131072, rope_theta: 500000.0, rms_norm_eps: 1e-5,
  bos_token_id: 128000, eos_token_id: [128001, 128008, 128009],
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
};

function throwsWith(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(Error);
  for (const p of parts) expect((err as Error).message).toMatch(p);
}

describe('parseConfig', () => {
  it('Qwen2-0.5B: head_dim derived, q/k/v biases, tied embeddings', () => {
    const c = parseConfig(QWEN2_05B, 'qwen/config.json');
    expect(c).toMatchObject({
      model_type: 'qwen2', hidden_size: 896, num_attention_heads: 14, num_key_value_heads: 2, head_dim: 64,
      intermediate_size: 4864, num_hidden_layers: 24, vocab_size: 151936, rope_theta: 1e6, rms_norm_eps: 1e-6,
      tie_word_embeddings: true, qkv_bias: true, o_bias: false, mlp_bias: false, rope_scaling: null, bos_token_id: 151643,
    });
    const names = expectedTensors(c);
    // embed + 24 × (2 norms + 4 proj + 3 qkv biases + 3 mlp) + final norm, no lm_head (tied)
    expect(names.size).toBe(1 + 24 * 12 + 1);
    expect(names.get('model.layers.3.self_attn.k_proj.weight')).toEqual([128, 896]);
    expect(names.get('model.layers.3.self_attn.k_proj.bias')).toEqual([128]);
    expect(names.has('model.layers.3.self_attn.o_proj.bias')).toBe(false);
    expect(names.has('lm_head.weight')).toBe(false);
  });

  it('transformers defaults fill absent fields (LlamaConfig / Qwen2Config)', () => {
    const l = parseConfig({ model_type: 'llama' });
    expect(l).toMatchObject({
      vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32,
      num_key_value_heads: 32, head_dim: 128, max_position_embeddings: 2048, rms_norm_eps: 1e-6, rope_theta: 10000,
      tie_word_embeddings: false, qkv_bias: false, o_bias: false, bos_token_id: 1, eos_token_id: 2, sliding_window: null,
    });
    const lk = parseConfig({ model_type: 'llama', num_attention_heads: 8 });
    expect(lk.num_key_value_heads).toBe(8); // None ⇒ = heads
    const q = parseConfig({ model_type: 'qwen2' });
    expect(q).toMatchObject({ vocab_size: 151936, intermediate_size: 22016, num_key_value_heads: 32, max_position_embeddings: 32768, rms_norm_eps: 1e-6, tie_word_embeddings: false, qkv_bias: true, bos_token_id: null, sliding_window: 4096 });
    expect(parseConfig({ model_type: 'qwen2', sliding_window: null }).sliding_window).toBe(null);
  });

  it('Llama attention_bias biases q/k/v/o; mlp_bias biases the MLP; explicit head_dim', () => {
    const c = parseConfig({ model_type: 'llama', hidden_size: 48, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, num_hidden_layers: 1, intermediate_size: 20, vocab_size: 11, attention_bias: true, mlp_bias: true });
    const n = expectedTensors(c);
    expect(n.get('model.layers.0.self_attn.q_proj.weight')).toEqual([64, 48]);
    expect(n.get('model.layers.0.self_attn.o_proj.weight')).toEqual([48, 64]);
    expect(n.get('model.layers.0.self_attn.o_proj.bias')).toEqual([48]);
    expect(n.get('model.layers.0.mlp.down_proj.bias')).toEqual([48]);
    expect(n.get('lm_head.weight')).toEqual([11, 48]);
  });

  it('eos lists, JSON text input, config round trip', () => {
    const c = parseConfig(JSON.stringify(LLAMA31_8B));
    expect(eosIds(c)).toEqual([128001, 128008, 128009]);
    expect(c.rope_scaling).toEqual(LLAMA31_8B.rope_scaling);
    expect(parseConfig(configToJSON(c))).toEqual(c);
    expect(parseConfig(configToJSON(parseConfig(QWEN2_05B)))).toEqual(parseConfig(QWEN2_05B));
  });

  it('legacy rope_scaling "type" key and transformers-5 rope_parameters', () => {
    const legacy = parseConfig({ ...LLAMA31_8B, rope_scaling: { ...LLAMA31_8B.rope_scaling, rope_type: undefined, type: 'llama3' } });
    expect(legacy.rope_scaling?.rope_type).toBe('llama3');
    const v5 = parseConfig({ ...LLAMA31_8B, rope_theta: undefined, rope_scaling: undefined, rope_parameters: { rope_theta: 500000.0, ...LLAMA31_8B.rope_scaling } });
    expect(v5.rope_theta).toBe(500000);
    expect(v5.rope_scaling?.rope_type).toBe('llama3');
    expect(parseConfig({ model_type: 'llama', rope_scaling: { rope_type: 'default' } }).rope_scaling).toBe(null);
  });

  it('errors name the file and the field', () => {
    throwsWith(() => parseConfig({ ...QWEN2_05B, hidden_size: '896' }, 'cfg.json'), 'cfg.json', /"hidden_size"/, /integer/);
    throwsWith(() => parseConfig({ ...QWEN2_05B, model_type: 'gpt2' }, 'cfg.json'), /"model_type"/, /"gpt2"/);
    throwsWith(() => parseConfig({ hidden_size: 8 }), /"model_type"/);
    throwsWith(() => parseConfig({ ...QWEN2_05B, num_key_value_heads: 3 }), /"num_key_value_heads"/, /divide/);
    throwsWith(() => parseConfig({ model_type: 'llama', hidden_size: 10, num_attention_heads: 4 }), /"hidden_size"/, /divisible/);
    throwsWith(() => parseConfig({ ...QWEN2_05B, rms_norm_eps: -1 }), /"rms_norm_eps"/);
    throwsWith(() => parseConfig({ ...QWEN2_05B, tie_word_embeddings: 'yes' }), /"tie_word_embeddings"/);
    throwsWith(() => parseConfig({ ...QWEN2_05B, eos_token_id: [1, 'x'] }), /"eos_token_id"/);
    throwsWith(() => parseConfig({ ...QWEN2_05B, hidden_act: 'gelu' }), /"hidden_act"/);
    throwsWith(() => parseConfig({ ...LLAMA31_8B, rope_scaling: { rope_type: 'llama3', factor: 8 } }), /"rope_scaling.low_freq_factor"/, /required/);
    throwsWith(() => parseConfig({ ...LLAMA31_8B, rope_scaling: { ...LLAMA31_8B.rope_scaling, high_freq_factor: 1 } }), /"rope_scaling.high_freq_factor"/);
    throwsWith(() => parseConfig({ ...LLAMA31_8B, rope_scaling: { rope_type: 'yarn', factor: 4 } }), /"rope_scaling.rope_type"/, /"yarn"/);
    throwsWith(() => parseConfig('{not json', 'x.json'), 'x.json', /not valid JSON/);
    throwsWith(() => parseConfig([1]), /not a JSON object/);
  });
});

describe('configRopeInvFreq', () => {
  it('default: 1 / theta^(2i/d)', () => {
    const inv = configRopeInvFreq({ head_dim: 8, rope_theta: 10000, rope_scaling: null });
    expect([...inv]).toEqual([1, 0.1, 0.01, 0.001].map(Math.fround));
    const l = configRopeInvFreq({ head_dim: 8, rope_theta: 10000, rope_scaling: { rope_type: 'linear', factor: 4 } });
    expect([...l]).toEqual([0.25, 0.025, 0.0025, 0.00025].map(Math.fround));
  });

  it('llama3 scaling (Llama 3.1 8B) against hand-computed values', () => {
    const c = parseConfig(LLAMA31_8B);
    const inv = configRopeInvFreq(c);
    expect(inv.length).toBe(64);
    // Hand computation in float64, written straight from the paper's rule (orig 8192, low 1, high 4, factor 8):
    // wavelen = 2π / f; < 2048 keep; > 8192 divide by 8; else s = (8192 / wavelen − 1) / 3, (1 − s) f / 8 + s f.
    let kept = 0;
    let scaled = 0;
    let smoothed = 0;
    for (let i = 0; i < 64; i++) {
      const f = 1 / 500000 ** ((2 * i) / 128);
      const wl = (2 * Math.PI) / f;
      let want: number;
      if (wl < 2048) (want = f), kept++;
      else if (wl > 8192) (want = f / 8), scaled++;
      else {
        const s = (8192 / wl - 1) / 3;
        want = ((1 - s) * f) / 8 + s * f;
        smoothed++;
      }
      expect(Math.abs(inv[i]! - want) / want, `i=${i}`).toBeLessThan(1e-6);
    }
    // i = 0..28 have wavelength < 2048 (i = 28: 1956.5), i = 29..34 are blended, i = 35..63 (8218.7+) scaled.
    expect([kept, smoothed, scaled]).toEqual([29, 6, 29]);
    expect(inv[0]).toBe(1);
    expect(inv[28]).toBeCloseTo(0.0032114461, 9); // unchanged: 500000^(-56/128)
    expect(inv[30]).toBeCloseTo(0.0013718936, 9); // blended: f = 0.0021311, s = (8192/2948.30 − 1)/3 = 0.59285
    expect(inv[63]).toBeCloseTo(3.0689259e-7, 13); // 500000^(-126/128) / 8
  });
});

describe('checkTensors', () => {
  const tiny: LlamaLikeConfig = parseConfig({ model_type: 'qwen2', hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 12, num_hidden_layers: 2, vocab_size: 17, tie_word_embeddings: true });
  const full = () => new Map([...expectedTensors(tiny)].map(([n, s]) => [n, { shape: s }]));

  it('accepts exactly the expected set (ignoring saved rotary buffers)', () => {
    const m = full();
    m.set('model.layers.0.self_attn.rotary_emb.inv_freq', { shape: [2] });
    expect(() => checkTensors(tiny, m)).not.toThrow();
    expect(() => checkTensors(tiny, Object.fromEntries(full()))).not.toThrow();
  });

  it('names missing, unexpected and wrong-shaped tensors', () => {
    const m = full();
    m.delete('model.layers.1.mlp.up_proj.weight');
    throwsWith(() => checkTensors(tiny, m, 'ckpt'), 'ckpt', /missing tensor "model.layers.1.mlp.up_proj.weight"/);
    const u = full();
    u.set('model.layers.0.self_attn.o_proj.bias', { shape: [8] });
    throwsWith(() => checkTensors(tiny, u), /unexpected tensor "model.layers.0.self_attn.o_proj.bias"/);
    const w = full();
    w.set('model.layers.0.self_attn.k_proj.weight', { shape: [8, 8] });
    throwsWith(() => checkTensors(tiny, w), /"model.layers.0.self_attn.k_proj.weight" has shape \[8,8\], expected \[4,8\]/);
    const t = full();
    t.set('lm_head.weight', { shape: [17, 8] });
    throwsWith(() => checkTensors(tiny, t), /unexpected tensor "lm_head.weight" \(tie_word_embeddings is true/);
    throwsWith(() => checkTensors(tiny, new Map()), /missing tensor "model.embed_tokens.weight"/, /and \d+ more/);
  });
});
