// LoRA adapters (Hu et al.; PEFT's layout): target Linear modules gain y += (alpha/r)·B·A·dropout(x) with
// A [r, in] kaiming-uniform and B [out, r] zero, the base weights frozen; mergeLoRA folds them back.
import { Module, Linear } from '../nn.js';
import { Tensor, keep } from '../tensor.js';
import { noGrad } from '../autograd.js';
import { Rng, tensor } from '../ops/create.js';
import { add, dropout, scale } from '../ops/elementwise.js';
import { linear, matmul } from '../ops/matmul.js';
import { LORA_DEFAULTS, type LoRAConfig } from './config.js';
import { linearOf, stateDict } from './llama.js';

/** A trainable leaf that outlives every `tidy` scope. */
function parameter(data: Float32Array, shape: number[]): Tensor {
  return keep(tensor(data, shape, 'f32', { requiresGrad: true }));
}

/**
 * A Linear whose own weight/bias are the frozen base (so the HF names `q_proj.weight` stay), plus
 * lora_A [r, in] and lora_B [out, r] sub-modules (PEFT's `q_proj.lora_A.weight` names).
 */
export class LoRALinear extends Linear {
  lora_A: Linear;
  lora_B: Linear;
  /** alpha / r. */
  readonly scaling: number;
  readonly dropoutP: number;
  private readonly dropoutRng: Rng;

  constructor(base: Linear, readonly cfg: LoRAConfig, initRng: Rng) {
    super(0, 0, { bias: false });
    this.weight.dispose();
    Object.assign(this, { inFeatures: base.inFeatures, outFeatures: base.outFeatures, weight: base.weight, bias: base.bias });
    const { inFeatures: inF, outFeatures: outF } = base;
    if (!(Number.isInteger(cfg.r) && cfg.r >= 1)) throw new Error(`LoRA: rank r = ${cfg.r} must be a positive integer`);
    if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new Error(`LoRA: dropout ${cfg.dropout} must be in [0, 1)`);
    // kaiming_uniform_(a = √5) as PEFT: bound = gain·√(3 / fan_in) with gain = √(2 / (1 + 5)) ⇒ 1/√in.
    const bound = 1 / Math.sqrt(inF);
    const a = new Float32Array(cfg.r * inF);
    for (let i = 0; i < a.length; i++) a[i] = (initRng.next() * 2 - 1) * bound;
    this.lora_A = linearOf(parameter(a, [cfg.r, inF]), null);
    this.lora_B = linearOf(parameter(new Float32Array(outF * cfg.r), [outF, cfg.r]), null);
    this.scaling = cfg.alpha / cfg.r;
    this.dropoutP = cfg.dropout;
    // Each module draws its own masks from a stream split off the init stream: reproducible per seed.
    this.dropoutRng = new Rng(Math.floor(initRng.next() * 2 ** 32));
  }

  /** x [..., in] → base(x) + scaling · B·A·dropout(x). */
  override forward(x: Tensor): Tensor {
    const y = super.forward(x);
    let xin = x;
    // Inverted dropout; one draw of the module's generator seeds the mask (the kernel derives the rest).
    if (this.training && this.dropoutP > 0) xin = dropout(x, this.dropoutP, this.dropoutRng.int(2 ** 32));
    const delta = linear(linear(xin, this.lora_A.weight), this.lora_B.weight);
    return add(y, scale(delta, this.scaling));
  }

  /** Generator state of the dropout masks (checkpoint it to resume bit-exactly). */
  get rngState(): [number, number | null] {
    return this.dropoutRng.state;
  }
  set rngState(s: [number, number | null]) {
    this.dropoutRng.state = s;
  }
}

/** Tensors frozen by applyLoRA, per model, with their previous requiresGrad (restored by mergeLoRA). */
const frozenBy = new WeakMap<Module, Map<Tensor, boolean>>();

/** Replaces every Linear child named in cfg.targetModules with a LoRALinear, walking the tree in order. */
function wrapTargets(m: Module, cfg: LoRAConfig, rng: Rng, out: LoRALinear[]): void {
  for (const [key, value] of Object.entries(m)) {
    if (value instanceof Linear && !(value instanceof LoRALinear) && cfg.targetModules.includes(key)) {
      const w = new LoRALinear(value, cfg, rng);
      w.train(m.training);
      (m as unknown as Record<string, unknown>)[key] = w;
      out.push(w);
    } else if (value instanceof Module && !(value instanceof LoRALinear)) wrapTargets(value, cfg, rng, out);
    else if (Array.isArray(value)) for (const c of value) if (c instanceof Module) wrapTargets(c, cfg, rng, out);
  }
}

/**
 * Adds LoRA adapters to the target Linear modules of `model` (in place) and freezes every other
 * weight (requiresGrad false), so `model.parameters()` is then exactly the adapters. Returns them.
 */
export function applyLoRA(model: Module, config: Partial<LoRAConfig> = {}): LoRALinear[] {
  const cfg: LoRAConfig = { ...LORA_DEFAULTS, ...config };
  if (loraModules(model).length) throw new Error('applyLoRA: the model already has LoRA adapters');
  const frozen = new Map<Tensor, boolean>();
  for (const t of stateDict(model).values()) {
    frozen.set(t, t.requiresGrad);
    t.requiresGrad = false;
  }
  frozenBy.set(model, frozen);
  const out: LoRALinear[] = [];
  wrapTargets(model, cfg, new Rng(cfg.seed), out);
  if (out.length === 0) throw new Error(`applyLoRA: no Linear module named ${cfg.targetModules.join(', ')}`);
  return out;
}

/** The LoRA modules of a model, in parameter order. */
export function loraModules(model: Module): LoRALinear[] {
  const out: LoRALinear[] = [];
  const walk = (m: Module) => {
    for (const [, c] of m.namedChildren()) {
      if (c instanceof LoRALinear) out.push(c);
      else walk(c);
    }
  };
  walk(model);
  return out;
}

/** The adapters' trainable tensors (lora_A, lora_B of each module) with their names. */
export function namedLoraParameters(model: Module): [string, Tensor][] {
  return model.namedParameters().filter(([n]) => /\.lora_[AB]\.weight$/.test(n));
}

export function loraParameters(model: Module): Tensor[] {
  return namedLoraParameters(model).map(([, t]) => t);
}

/**
 * Folds every adapter into its base weight, W ← W + (alpha/r)·B·A, replaces the LoRALinear with a plain
 * Linear, frees the adapters and restores the frozen weights' requiresGrad: the model is a plain HF
 * model again (for saveHF), computing what the adapted one computed (up to f32 rounding).
 */
export function mergeLoRA(model: Module): void {
  const frozen = frozenBy.get(model);
  const merge = (m: Module) => {
    for (const [key, value] of Object.entries(m)) {
      if (value instanceof LoRALinear) {
        const merged = keep(noGrad(() => add(value.weight, scale(matmul(value.lora_B.weight, value.lora_A.weight), value.scaling))));
        merged.requiresGrad = frozen?.get(value.weight) ?? true;
        frozen?.delete(value.weight);
        value.weight.dispose();
        value.lora_A.dispose();
        value.lora_B.dispose();
        const lin = linearOf(merged, value.bias);
        lin.train(value.training);
        (m as unknown as Record<string, unknown>)[key] = lin;
      } else if (value instanceof Module) merge(value);
      else if (Array.isArray(value)) for (const c of value) if (c instanceof Module) merge(c);
    }
  };
  merge(model);
  if (frozen) for (const [t, rg] of frozen) if (!t.disposed) t.requiresGrad = rg;
  frozenBy.delete(model);
}
