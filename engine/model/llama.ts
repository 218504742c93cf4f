// The Llama / Qwen2 causal LM on the engine's nn modules and fused ops, with HF parameter names, a
// KV cache for decoding and intermediate-layer logits (logit lens) at chosen positions in one forward.
import { device } from '../device.js';
import { Module, Linear, Embedding, RMSNorm } from '../nn.js';
import { Tensor, keep, shapeStr } from '../tensor.js';
import { Rng, tensor } from '../ops/create.js';
import { add, dropout, mul, silu } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { rmsNorm } from '../ops/norm.js';
import { rope } from '../ops/rope.js';
import { attention, KVCache } from '../ops/attention.js';
import { gather, permute, reshape, slice } from '../ops/view.js';
import { configRopeInvFreq, type LlamaLikeConfig } from '../io/hf.js';
import { INIT_DEFAULTS, type InitConfig } from './config.js';

/** Additive attention score of a padding key: exp of it underflows to exactly 0 against any real score. */
const MASKED_SCORE = -1e30;

/** Weights to start from, by HF tensor name (undefined: draw it from the init). */
export type WeightSource = (name: string, shape: readonly number[]) => Float32Array | undefined;

export interface LlamaOptions {
  init?: Partial<InitConfig>;
  /** Loaded weights (e.g. from safetensors); every name it answers must have the right size. */
  weights?: WeightSource;
  /**
   * Dropout probability on the embeddings and on each attention and MLP output before its residual
   * add (GPT-2's embd/resid dropout), in training mode only. Default 0. Attention weights are not
   * dropped: the fused attention never materialises them.
   */
  dropout?: number;
  /** Seed of the dropout masks' generator (default: the init seed). */
  dropoutSeed?: number;
}

/** Creates the model's parameters in HF order: loaded where the source has them, else HF's `_init_weights`. */
class ParamFactory {
  private readonly rng: Rng;
  constructor(readonly init: InitConfig, readonly source?: WeightSource) {
    this.rng = new Rng(init.seed);
  }
  private make(name: string, shape: number[], draw: (n: number) => Float32Array): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const loaded = this.source?.(name, shape);
    if (loaded && loaded.length !== n) throw new Error(`weight ${name}: ${loaded.length} values for shape ${shapeStr(shape)}`);
    return keep(tensor(loaded ?? draw(n), shape, 'f32', { requiresGrad: true }));
  }
  normal(name: string, shape: number[]): Tensor {
    return this.make(name, shape, (n) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = this.rng.normal() * this.init.std;
      return a;
    });
  }
  constant(name: string, shape: number[], value: number): Tensor {
    return this.make(name, shape, (n) => new Float32Array(n).fill(value));
  }
  /** A Linear over given tensors (no throw-away init of nn.Linear's own weights). */
  linear(name: string, inF: number, outF: number, bias: boolean): Linear {
    const w = this.normal(`${name}.weight`, [outF, inF]);
    const b = bias ? this.constant(`${name}.bias`, [outF], 0) : null;
    return linearOf(w, b);
  }
}

/** An nn.Linear holding the given weight [out, in] and bias [out] (shared, not copied). */
export function linearOf(weight: Tensor, bias: Tensor | null): Linear {
  const lin = new Linear(0, 0, { bias: false }); // empty tensors: nothing drawn
  lin.weight.dispose();
  return Object.assign(lin, { inFeatures: weight.shape[1], outFeatures: weight.shape[0], weight, bias });
}

/** Per-forward state every layer shares: RoPE positions, the padding mask, the cache slot. */
interface LayerContext {
  invFreq: Float32Array;
  /** i32 [B, T] rotary positions, or undefined for offset + 0..T−1. */
  positionIds?: Tensor;
  offset: number;
  /** Additive f32 [B, 1, 1, Tk] (0 or MASKED_SCORE). */
  mask?: Tensor;
  cache?: KVCache;
  /** Residual dropout (the identity outside training). */
  drop: (x: Tensor) => Tensor;
}

/** Multi-head self-attention with GQA, rotate-half RoPE and optional q/k/v (Qwen2) and o biases. */
export class LlamaAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;

  constructor(readonly config: LlamaLikeConfig, p: ParamFactory, prefix: string) {
    super();
    const { hidden_size: C, num_attention_heads: NH, num_key_value_heads: NKV, head_dim: hs } = config;
    this.q_proj = p.linear(`${prefix}.q_proj`, C, NH * hs, config.qkv_bias);
    this.k_proj = p.linear(`${prefix}.k_proj`, C, NKV * hs, config.qkv_bias);
    this.v_proj = p.linear(`${prefix}.v_proj`, C, NKV * hs, config.qkv_bias);
    this.o_proj = p.linear(`${prefix}.o_proj`, NH * hs, C, config.o_bias);
  }

  /** x [B, T, C] → [B, T, C]. */
  forward(x: Tensor, ctx: LayerContext): Tensor {
    const [B, T] = x.shape;
    const { num_attention_heads: NH, num_key_value_heads: NKV, head_dim: hs } = this.config;
    // [B, T, n·hs] → [B, n, T, hs]: the layout rope and the fused attention expect.
    const heads = (y: Tensor, n: number) => permute(reshape(y, [B, T, n, hs]), [0, 2, 1, 3]);
    const ropeOpts = { invFreq: ctx.invFreq, positions: ctx.positionIds, offset: ctx.offset };
    const q = rope(heads(this.q_proj.forward(x), NH), ropeOpts);
    const k = rope(heads(this.k_proj.forward(x), NKV), ropeOpts);
    const v = heads(this.v_proj.forward(x), NKV);
    let o: Tensor;
    if (ctx.cache) {
      ctx.cache.append(k, v); // no autograd through the cache: decoding only
      o = ctx.cache.attend(q, { causal: true, mask: ctx.mask });
    } else o = attention(q, k, v, { causal: true, mask: ctx.mask });
    return this.o_proj.forward(reshape(permute(o, [0, 2, 1, 3]), [B, T, NH * hs]));
  }
}

/** SwiGLU feed-forward: down(silu(gate(x)) · up(x)). */
export class LlamaMLP extends Module {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;

  constructor(config: LlamaLikeConfig, p: ParamFactory, prefix: string) {
    super();
    const { hidden_size: C, intermediate_size: I, mlp_bias: bias } = config;
    this.gate_proj = p.linear(`${prefix}.gate_proj`, C, I, bias);
    this.up_proj = p.linear(`${prefix}.up_proj`, C, I, bias);
    this.down_proj = p.linear(`${prefix}.down_proj`, I, C, bias);
  }

  forward(x: Tensor): Tensor {
    return this.down_proj.forward(mul(silu(this.gate_proj.forward(x)), this.up_proj.forward(x)));
  }
}

/** RMSNorm over given weights (no throw-away init). */
function rmsNormOf(weight: Tensor, eps: number): RMSNorm {
  const n = new RMSNorm(0, eps);
  n.weight.dispose();
  return Object.assign(n, { dim: weight.shape[0], weight });
}

/** Pre-norm residual block: h = x + attn(norm₁(x)); out = h + mlp(norm₂(h)). */
export class LlamaDecoderLayer extends Module {
  input_layernorm: RMSNorm;
  self_attn: LlamaAttention;
  post_attention_layernorm: RMSNorm;
  mlp: LlamaMLP;

  constructor(config: LlamaLikeConfig, p: ParamFactory, prefix: string) {
    super();
    const C = config.hidden_size;
    this.input_layernorm = rmsNormOf(p.constant(`${prefix}.input_layernorm.weight`, [C], 1), config.rms_norm_eps);
    this.self_attn = new LlamaAttention(config, p, `${prefix}.self_attn`);
    this.post_attention_layernorm = rmsNormOf(p.constant(`${prefix}.post_attention_layernorm.weight`, [C], 1), config.rms_norm_eps);
    this.mlp = new LlamaMLP(config, p, `${prefix}.mlp`);
  }

  forward(x: Tensor, ctx: LayerContext): Tensor {
    const h = add(x, ctx.drop(this.self_attn.forward(this.input_layernorm.forward(x), ctx)));
    return add(h, ctx.drop(this.mlp.forward(this.post_attention_layernorm.forward(h))));
  }
}

/** The trunk: embed_tokens, the decoder layers and the final norm (HF LlamaModel, `model.*`). */
export class LlamaModel extends Module {
  embed_tokens: Embedding;
  layers: LlamaDecoderLayer[];
  norm: RMSNorm;

  constructor(config: LlamaLikeConfig, p: ParamFactory) {
    super();
    const { vocab_size: V, hidden_size: C } = config;
    const emb = new Embedding(0, 0);
    emb.weight.dispose();
    this.embed_tokens = Object.assign(emb, { numEmbeddings: V, embeddingDim: C, weight: p.normal('model.embed_tokens.weight', [V, C]) });
    this.layers = Array.from({ length: config.num_hidden_layers }, (_, l) => new LlamaDecoderLayer(config, p, `model.layers.${l}`));
    this.norm = rmsNormOf(p.constant('model.norm.weight', [C], 1), config.rms_norm_eps);
  }
}

/** One KVCache per layer, all at the same length. */
export class LlamaCache {
  constructor(readonly layers: KVCache[]) {}
  get length(): number {
    return this.layers[0]?.length ?? 0;
  }
  get batch(): number {
    return this.layers[0]?.shape[0] ?? 0;
  }
  get maxT(): number {
    return this.layers[0]?.maxT ?? 0;
  }
  /** Rows in groups of `group` hold the same first `length` positions (KVCache.sharePrefix). */
  sharePrefix(group: number, length: number): void {
    for (const c of this.layers) c.sharePrefix(group, length);
  }
  /** Beam search: row b continues from row beamIdx[b] (i32 [B]); positions before `from` are shared (KVCache.reorder). */
  reorder(beamIdx: Tensor, from = 0): void {
    for (const c of this.layers) c.reorder(beamIdx, from);
  }
  /** Row b of a new cache [rows.length, ...] is row rows[b] of this one (e.g. each prompt repeated K times). */
  select(rows: readonly number[]): LlamaCache {
    const idx = tensor(rows, [rows.length], 'i32');
    const out = this.layers.map((c) => {
      const [, NKV, maxT, hs] = c.shape;
      const n = new KVCache(rows.length, NKV, maxT, hs);
      n.k.dispose();
      n.v.dispose();
      n.k = keep(gather(c.k, 0, idx));
      n.v = keep(gather(c.v, 0, idx));
      n.length = c.length;
      return n;
    });
    idx.dispose();
    return new LlamaCache(out);
  }
  dispose(): void {
    for (const c of this.layers) c.dispose();
  }
}

/** Host int data: a flat array with its shape, from a Tensor's host copy or nested arrays. */
type IntsLike = Tensor | ArrayLike<number> | readonly ArrayLike<number>[];

function hostInts(x: IntsLike, what: string): { data: Int32Array; shape: number[] } {
  if (x instanceof Tensor) {
    if (!x.hostInts) throw new Error(`${what}: needs a tensor uploaded from the host (i32 with hostInts) or a host array`);
    return { data: x.hostInts, shape: [...x.shape] };
  }
  const first = (x as ArrayLike<unknown>)[0];
  if (x.length > 0 && typeof first === 'object' && first !== null) {
    const rows = x as readonly ArrayLike<number>[];
    const W = rows[0].length;
    if (rows.some((r) => r.length !== W)) throw new Error(`${what}: rows of different lengths`);
    const data = new Int32Array(rows.length * W);
    rows.forEach((r, i) => data.set(Int32Array.from(r), i * W));
    return { data, shape: [rows.length, W] };
  }
  return { data: Int32Array.from(x as ArrayLike<number>), shape: [x.length] };
}

export interface ForwardOptions {
  /**
   * Logit-lens layers l ∈ [0, L]: h_l is the residual stream after l decoder layers (0 = embeddings; HF
   * hidden_states[l] for l < L). h_L is taken before the final norm, so layer L's lens logits are the
   * model's logits. Negative l counts from L + 1 (−1 = L).
   */
  layers?: readonly number[];
  /**
   * Where to compute logits (final and per layer): [P] time indices shared by every row, or [B, P]
   * per row; an i32 tensor with its host copy, or a host array. Default: every position.
   */
  positions?: IntsLike;
  /** Layer logits over vocabulary rows [start, end) only (the head weight's rows are sliced). */
  vocabSlice?: readonly [number, number];
  /** [B, Tk] 1 = real token, 0 = padding, over the cached and the current tokens (HF attention_mask). */
  attentionMask?: IntsLike;
  /** Rotary positions [B, T]; default from attentionMask (HF: cumsum − 1) or cache length + 0..T−1. */
  positionIds?: IntsLike;
  /** Appends this forward's keys and values (decoding; no gradients through the cache). */
  kvCache?: LlamaCache;
}

export interface ForwardOutput {
  /** [B, T, V], or [B, P, V] at `positions`. */
  logits: Tensor;
  /** layer → lm_head(norm(h_l)) at `positions` over `vocabSlice`: [B, P, end − start]. */
  layerLogits: Map<number, Tensor>;
  /**
   * The same tensors in ascending layer order. `tidy` looks into arrays and plain objects but not
   * Maps, so this list is what keeps them alive in `tidy(() => model.forward(...))`.
   */
  layerLogitsList: Tensor[];
}

/** HF LlamaForCausalLM / Qwen2ForCausalLM: `model.*` trunk plus `lm_head` (tied to embed_tokens when configured). */
export class LlamaForCausalLM extends Module {
  readonly config: LlamaLikeConfig;
  model: LlamaModel;
  lm_head: Linear;
  /** RoPE inverse frequencies [hs / 2] (with the config's rope_scaling). */
  readonly invFreq: Float32Array;
  /** Residual and embedding dropout probability in training mode (LlamaOptions.dropout); may be changed. */
  dropout: number;
  /** One draw per dropout site and forward: the seed of that site's mask. */
  private readonly dropoutRng: Rng;

  constructor(config: LlamaLikeConfig, opts: LlamaOptions = {}) {
    super();
    this.config = config;
    const init = { ...INIT_DEFAULTS, ...opts.init };
    this.dropout = opts.dropout ?? 0;
    this.dropoutRng = new Rng(opts.dropoutSeed ?? init.seed);
    const p = new ParamFactory(init, opts.weights);
    this.model = new LlamaModel(config, p);
    this.lm_head = config.tie_word_embeddings
      ? linearOf(this.model.embed_tokens.weight, null)
      : linearOf(p.normal('lm_head.weight', [config.vocab_size, config.hidden_size]), null);
    this.invFreq = configRopeInvFreq(config);
  }

  get numLayers(): number {
    return this.config.num_hidden_layers;
  }

  /** State of the dropout masks' generator (checkpoint it to resume bit-exactly). */
  get dropoutState(): [number, number | null] {
    return this.dropoutRng.state;
  }
  set dropoutState(s: [number, number | null]) {
    this.dropoutRng.state = s;
  }

  /** A KV cache for B sequences of up to maxT tokens. */
  createCache(B: number, maxT: number): LlamaCache {
    const { num_key_value_heads: NKV, head_dim: hs } = this.config;
    return new LlamaCache(this.model.layers.map(() => new KVCache(B, NKV, maxT, hs)));
  }

  /**
   * ids i32 [B, T] → logits, plus lens logits of the requested layers; the trunk runs once and
   * every output is differentiable (hidden states are gathered at `positions`).
   */
  forward(ids: Tensor | readonly ArrayLike<number>[], opts: ForwardOptions = {}): ForwardOutput {
    const idT = ids instanceof Tensor ? ids : tensor(hostInts(ids, 'forward ids').data, [ids.length, (ids[0] as ArrayLike<number> | undefined)?.length ?? 0], 'i32');
    if (idT.dtype !== 'i32' || idT.ndim !== 2) throw new Error(`forward: ids must be i32 [B, T], got ${idT.dtype} ${shapeStr(idT.shape)}`);
    const [B, T] = idT.shape;
    const L = this.numLayers;
    const V = this.config.vocab_size;
    const cache = opts.kvCache;
    const past = cache?.length ?? 0;
    if (cache && cache.batch !== B) throw new Error(`forward: cache holds ${cache.batch} rows, ids have ${B}`);

    const layers = [...new Set((opts.layers ?? []).map((l) => (l < 0 ? l + L + 1 : l)))];
    for (const l of layers) if (!Number.isInteger(l) || l < 0 || l > L) throw new Error(`forward: layer ${l} outside [0, ${L}] (or [−${L + 1}, −1])`);
    const [v0, v1] = opts.vocabSlice ?? [0, V];
    if (!(Number.isInteger(v0) && Number.isInteger(v1) && 0 <= v0 && v0 < v1 && v1 <= V))
      throw new Error(`forward: vocabSlice [${v0}, ${v1}) outside [0, ${V})`);

    const p = this.dropout;
    if (!(p >= 0 && p < 1)) throw new Error(`forward: dropout ${p} must be in [0, 1)`);
    // Training only, never while decoding into a cache; one draw per site and forward seeds its mask.
    const drop = this.training && p > 0 && !cache ? (x: Tensor) => dropout(x, p, this.dropoutRng.int(2 ** 32)) : (x: Tensor) => x;
    const ctx: LayerContext = { invFreq: this.invFreq, offset: past, drop };
    if (opts.attentionMask !== undefined) {
      const m = hostInts(opts.attentionMask, 'attentionMask');
      const Tk = past + T;
      if (m.shape.length !== 2 || m.shape[0] !== B || m.shape[1] !== Tk)
        throw new Error(`forward: attentionMask ${shapeStr(m.shape)} must be [B, past + T] = [${B}, ${Tk}]`);
      const scores = new Float32Array(B * Tk);
      for (let i = 0; i < scores.length; i++) scores[i] = m.data[i] ? 0 : MASKED_SCORE;
      ctx.mask = tensor(scores, [B, 1, 1, Tk]);
      if (opts.positionIds === undefined) {
        // HF: position_ids = cumsum(mask) − 1, and 1 where masked; the current tokens are the last T.
        const pos = new Int32Array(B * T);
        for (let b = 0; b < B; b++) {
          let c = 0;
          for (let j = 0; j < Tk; j++) {
            const on = m.data[b * Tk + j] !== 0;
            if (on) c++;
            if (j >= past) pos[b * T + j - past] = on ? c - 1 : 1;
          }
        }
        ctx.positionIds = tensor(pos, [B, T], 'i32');
      }
    }
    if (opts.positionIds !== undefined) {
      const p = opts.positionIds instanceof Tensor ? opts.positionIds : undefined;
      if (p) ctx.positionIds = p;
      else {
        const h = hostInts(opts.positionIds, 'positionIds');
        ctx.positionIds = tensor(h.data, h.shape.length === 2 ? h.shape : [1, h.shape[0]], 'i32');
      }
    }

    // h_l at the chosen positions: [B, T, C] → [B, P, C].
    let pick = (h: Tensor) => h;
    if (opts.positions !== undefined) {
      const pos = hostOrTensorPositions(opts.positions, B, T);
      pick = pos.perRow
        ? (h) => reshape(gather(reshape(h, [B * T, h.shape[2]]), 0, pos.idx), [B, pos.P, h.shape[2]])
        : (h) => gather(h, 1, pos.idx);
    }
    const norm = this.model.norm;
    const lens = (h: Tensor, w: Tensor) => linear(rmsNorm(pick(h), norm.weight, norm.eps), w);
    const sliced = v0 === 0 && v1 === V;
    let headSlice: Tensor | null = null;
    const layerHead = () => (headSlice ??= sliced ? this.lm_head.weight : slice(this.lm_head.weight, [v0, 0], [v1, this.config.hidden_size]));

    const layerLogits = new Map<number, Tensor>();
    let h = drop(this.model.embed_tokens.forward(idT));
    if (layers.includes(0)) layerLogits.set(0, lens(h, layerHead()));
    this.model.layers.forEach((layer, l) => {
      ctx.cache = cache?.layers[l];
      h = layer.forward(h, ctx);
      if (l + 1 < L && layers.includes(l + 1)) layerLogits.set(l + 1, lens(h, layerHead()));
    });
    const logits = lens(h, this.lm_head.weight);
    if (layers.includes(L) && L > 0) layerLogits.set(L, sliced ? logits : lens(h, layerHead()));
    const sorted = new Map([...layerLogits.entries()].sort((a, b) => a[0] - b[0]));
    return { logits, layerLogits: sorted, layerLogitsList: [...sorted.values()] };
  }
}

/** positions → a gather index: [P] along T, or [B, P] flattened to rows b·T + p of [B·T, C]. */
function hostOrTensorPositions(positions: IntsLike, B: number, T: number): { idx: Tensor; P: number; perRow: boolean } {
  if (positions instanceof Tensor && positions.ndim === 1) {
    if (positions.dtype !== 'i32') throw new Error(`forward: positions must be i32, got ${positions.dtype}`);
    return { idx: positions, P: positions.size, perRow: false };
  }
  const h = hostInts(positions, 'positions');
  for (const p of h.data) if (p < 0 || p >= T) throw new Error(`forward: position ${p} outside [0, ${T})`);
  if (h.shape.length === 1) return { idx: tensor(h.data, [h.data.length], 'i32'), P: h.data.length, perRow: false };
  if (h.shape.length !== 2 || h.shape[0] !== B) throw new Error(`forward: positions ${shapeStr(h.shape)} must be [P] or [B, P] with B = ${B}`);
  const P = h.shape[1];
  const flat = new Int32Array(B * P);
  for (let b = 0; b < B; b++) for (let j = 0; j < P; j++) flat[b * P + j] = b * T + h.data[b * P + j];
  return { idx: tensor(flat, [B * P], 'i32'), P, perRow: true };
}

/**
 * Every weight by HF name, frozen ones included (namedParameters lists only trainable tensors); a
 * tied lm_head appears once, as model.embed_tokens.weight.
 */
export function stateDict(m: Module, prefix = '', seen = new Set<Tensor>()): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, v] of Object.entries(m)) {
    if (v instanceof Tensor && !seen.has(v)) {
      seen.add(v);
      out.set(prefix + k, v);
    }
  }
  for (const [k, c] of m.namedChildren()) for (const [n, t] of stateDict(c, `${prefix}${k}.`, seen)) out.set(n, t);
  return out;
}

/** Every weight of stateDict read back to the host (a snapshot, or what a checkpoint writes). */
export async function stateArrays(m: Module): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of stateDict(m)) out.set(name, { shape: [...t.shape], data: (await t.toArray()) as Float32Array });
  return out;
}

/** Overwrites the model's weights in place (optimizer state keeps pointing at the same tensors). */
export function loadStateDict(m: Module, weights: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array | Int32Array }>, opts: { strict?: boolean } = {}): void {
  const sd = stateDict(m);
  const missing = [...sd.keys()].filter((k) => !weights.has(k));
  if ((opts.strict ?? true) && missing.length) throw new Error(`loadStateDict: missing ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  for (const [name, w] of weights) {
    const t = sd.get(name);
    if (!t) {
      if (opts.strict ?? true) throw new Error(`loadStateDict: unexpected tensor ${name}`);
      continue;
    }
    if (w.shape.join() !== t.shape.join()) throw new Error(`loadStateDict: ${name} has shape ${shapeStr(w.shape)}, model has ${shapeStr(t.shape)}`);
    if (!(w.data instanceof Float32Array)) throw new Error(`loadStateDict: ${name} is not floating point`);
    if (t.size > 0) device().write(t.buffer, w.data);
  }
}
