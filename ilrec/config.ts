// Every ILRec hyper-parameter in one typed config (ILREC.md §1-§4), with defaults and one line of
// meaning each. The CLI, the JSON config files and the tests all go through `resolveConfig`.
import type { LrSchedule } from './train/schedule.js';
import { TOKEN_PREFERENCE_DEFAULTS, type TokenPreferenceConfig } from '../engine/ops/token_losses.js';
import { SASREC_DEFAULTS, type SASRecConfig } from './cf/sasrec.js';

/** Training stages: SFT, the method, and the paper's preference baselines on the same SFT start. */
export const STAGES = ['sft', 'ilrec', 'dpo', 'sdpo', 'sprec'] as const;
export type Stage = (typeof STAGES)[number];

/** ILRec ablations (ILREC.md §4): each switches one part of the method off. */
/**
 * ILRec variants: the paper's four ablations, and `ceOnly`, the control that keeps only the
 * cross-entropy inside L_CPO (α = λ_CPD = b = 0): continued SFT with ILRec's optimizer and budget,
 * which separates what the preference terms add from what more training adds.
 */
export const ABLATIONS = ['none', 'noCPO', 'noCPD', 'noCRR', 'finalLayerNegatives', 'ceOnly'] as const;
export type Ablation = (typeof ABLATIONS)[number];

export interface DataConfig {
  /** "synthetic" or an LC-Rec directory holding <dataset>.inter.json and <dataset>.index.json. */
  source: string;
  /** Dataset name inside an LC-Rec directory. */
  dataset: string;
  /** Use only the first N users (0 = all); synthetic: generate N users. */
  maxUsers: number;
  /** Most recent history items a prompt keeps (ILREC.md §1: 20). */
  maxHistory: number;
  /**
   * Training windows advance by this many items: each window holds maxHistory + 1 consecutive items
   * and every item after the window's first is a target, so a target sees between
   * maxHistory − stride + 1 and maxHistory history items (all of them near a sequence's start).
   */
  windowStride: number;
  /**
   * Training batches are cut from pools of this many batches sorted by length, then shuffled
   * (group_by_length; 0 = plain shuffle). Padding, not the data, changes: the examples of an epoch
   * are the same.
   */
  lengthGroups: number;
  /** Seed of the synthetic data. */
  syntheticSeed: number;
}

export interface ModelConfig {
  /** "scratch" (a small Llama over the SID vocabulary, TIGER-style) or a Hugging Face model directory in the same vocabulary. */
  init: string;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  /** Std of the normal init of a scratch model. */
  initStd: number;
  /**
   * Dropout on the embeddings and on each attention and MLP output before its residual add, in every
   * training stage (0 = off; TIGER uses 0.1). Lets SFT run longer before it overfits.
   */
  dropout: number;
  /** Full fine-tuning or LoRA adapters on q,k,v,o,gate,up,down (ILREC.md §2). */
  finetune: 'full' | 'lora';
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
}

export interface OptimConfig {
  lr: number;
  weightDecay: number;
  /** Global gradient-norm clip (0 = off); the released code uses 0.3. */
  clip: number;
  /** Examples (SFT/ILRec: windows; DPO family: prompts) per micro-batch. */
  batch: number;
  /** Micro-batches per optimizer step (effective batch = batch × accumulate). */
  accumulate: number;
  /** Passes over the training windows (SFT) or the budget in epochs (preference stages, when steps = 0). */
  epochs: number;
  /** Optimizer steps; 0 = derived from epochs. */
  steps: number;
  schedule: LrSchedule;
}

export interface PreferenceConfig {
  /**
   * Logit-lens layers S, as offsets below the last layer L: [1, 2, 3, 4] = L−1..L−4 (ILREC.md §3
   * default); the released code's L..L−3 is [0, 1, 2, 3]. Layers below 1 are dropped.
   */
  layersBelowLast: number[];
  /** The fused kernel's switches: aggregator, threshold rule, φ, α, m, CPO form, teacher detach, λ_CPD, b. */
  loss: TokenPreferenceConfig;
  /** Restrict negatives and the CPD/CRR softmaxes to the SID tokens of the position's codebook level. */
  restrictToLevel: boolean;
  ablation: Ablation;
}

export interface DpoConfig {
  /** DPO temperature β. */
  beta: number;
  /** Sampled negative items per prompt: DPO uses 1, S-DPO this many. */
  negatives: number;
  /** SPRec: self-play rounds (negatives regenerated from the current model at each round's start). */
  rounds: number;
  /** SPRec: beams searched for the model's own top predictions. */
  beams: number;
  /** SPRec: weight of the SFT cross-entropy on the positives added to the DPO loss. */
  sftWeight: number;
}

export interface EvalConfig {
  /** Beams per prompt (ILREC.md §1: 20); also the ranked list length. */
  beams: number;
  ks: number[];
  /** Test users evaluated (0 = all). */
  testUsers: number;
  /** Validation users evaluated after each stage (0 = none: validation is reported, never used for selection). */
  validUsers: number;
  /** Prompts decoded together. */
  promptsPerCall: number;
}

/**
 * SFT model selection on validation users (never test users): evaluate every `everyEpochs` epochs,
 * keep the weights with the best validation NDCG@10 as the SFT model (the start of every
 * preference stage), and stop after `patience` evaluations in a row without a new best.
 */
export interface SelectConfig {
  /** Evaluate every this many epochs (fractions allowed; 0 = off: the last weights are the SFT model). */
  everyEpochs: number;
  /** Validation users evaluated (a fixed seeded subset; 0 = all). */
  users: number;
  /** Evaluations in a row without a new best before SFT stops (0 = never stop early). */
  patience: number;
}

export interface RunConfig {
  seed: number;
  /** Checkpoint every N optimizer steps (0 = only at the end of each stage). */
  checkpointEvery: number;
  /** Log the loss curves every N optimizer steps. */
  logEvery: number;
}

export interface IlrecConfig {
  data: DataConfig;
  model: ModelConfig;
  /** The CF model behind the token rewards (and the SASRec baseline row). */
  cf: SASRecConfig;
  sft: OptimConfig;
  /** Optimizer settings of every preference stage (ilrec, dpo, sdpo, sprec): same budget for all. */
  pref: OptimConfig;
  ilrec: PreferenceConfig;
  dpo: DpoConfig;
  /** SFT model selection on validation users. */
  select: SelectConfig;
  eval: EvalConfig;
  run: RunConfig;
}

export const DEFAULT_CONFIG: IlrecConfig = {
  data: { source: 'synthetic', dataset: 'Instruments', maxUsers: 0, maxHistory: 20, windowStride: 10, lengthGroups: 50, syntheticSeed: 0 },
  model: {
    init: 'scratch', hidden: 128, layers: 6, heads: 4, kvHeads: 4, intermediate: 256, initStd: 0.02, dropout: 0,
    finetune: 'full', loraRank: 64, loraAlpha: 32, loraDropout: 0.05,
  },
  cf: { ...SASREC_DEFAULTS, epochs: 20, patience: 3 },
  sft: {
    lr: 2e-3, weightDecay: 0.01, clip: 1, batch: 32, accumulate: 1, epochs: 8, steps: 0,
    schedule: { kind: 'cosine', warmupRatio: 0.05, minLrRatio: 0.1 },
  },
  pref: {
    lr: 2e-4, weightDecay: 0.01, clip: 0.3, batch: 32, accumulate: 1, epochs: 1, steps: 0,
    schedule: { kind: 'cosine', warmupRatio: 0.05, minLrRatio: 0 },
  },
  // Mean over S (the released code sums): the aggregate stays on the scale of the one final logit it
  // is compared with. On a half-trained Instruments SFT model the mean selects ~13 of a level's ~205
  // tokens, the sum ~85.
  ilrec: { layersBelowLast: [1, 2, 3, 4], loss: { ...TOKEN_PREFERENCE_DEFAULTS, aggregator: 'mean' }, restrictToLevel: true, ablation: 'none' },
  dpo: { beta: 0.1, negatives: 4, rounds: 2, beams: 5, sftWeight: 1 },
  select: { everyEpochs: 0, users: 1000, patience: 0 },
  eval: { beams: 20, ks: [5, 10, 20], testUsers: 0, validUsers: 500, promptsPerCall: 16 },
  run: { seed: 0, checkpointEvery: 200, logEvery: 10 },
};

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends (infer U)[] ? U[] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

/** Defaults overlaid with a partial config (section by section); unknown keys are errors naming the path. */
export function resolveConfig(over: DeepPartial<IlrecConfig> = {}, base: IlrecConfig = DEFAULT_CONFIG): IlrecConfig {
  const merged = merge(base, over, '') as IlrecConfig;
  validateConfig(merged);
  return merged;
}

function merge(base: unknown, over: unknown, at: string): unknown {
  if (over === undefined) return structuredClone(base);
  if (base === null || typeof base !== 'object' || Array.isArray(base)) {
    if (Array.isArray(base) !== Array.isArray(over) || (typeof base !== typeof over && !Array.isArray(base)))
      throw new Error(`config ${at || '(root)'}: expected ${Array.isArray(base) ? 'an array' : typeof base}, got ${JSON.stringify(over)}`);
    return structuredClone(over);
  }
  if (over === null || typeof over !== 'object' || Array.isArray(over)) throw new Error(`config ${at || '(root)'}: expected an object, got ${JSON.stringify(over)}`);
  const b = base as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(over as object))
    if (!(k in b) && !OPTIONAL_KEYS.has(k)) throw new Error(`config: unknown key ${at ? `${at}.` : ''}${k}`);
  for (const k of new Set([...Object.keys(b), ...Object.keys(over as object)]))
    out[k] = k in b ? merge(b[k], (over as Record<string, unknown>)[k], at ? `${at}.${k}` : k) : structuredClone((over as Record<string, unknown>)[k]);
  return out;
}

/** Keys a section may carry without a default (the schedule's warm-up is given as steps or a ratio). */
const OPTIONAL_KEYS = new Set(['warmupSteps', 'warmupRatio']);

const positiveInts: [string, (c: IlrecConfig) => number][] = [
  ['data.maxHistory', (c) => c.data.maxHistory], ['data.windowStride', (c) => c.data.windowStride],
  ['model.hidden', (c) => c.model.hidden], ['model.layers', (c) => c.model.layers], ['model.heads', (c) => c.model.heads],
  ['model.kvHeads', (c) => c.model.kvHeads], ['model.intermediate', (c) => c.model.intermediate],
  ['sft.batch', (c) => c.sft.batch], ['sft.accumulate', (c) => c.sft.accumulate], ['pref.batch', (c) => c.pref.batch],
  ['pref.accumulate', (c) => c.pref.accumulate], ['dpo.negatives', (c) => c.dpo.negatives], ['dpo.rounds', (c) => c.dpo.rounds],
  ['dpo.beams', (c) => c.dpo.beams], ['eval.beams', (c) => c.eval.beams], ['eval.promptsPerCall', (c) => c.eval.promptsPerCall],
  ['run.logEvery', (c) => c.run.logEvery],
];

/** Throws on values no run could use, naming the field. */
export function validateConfig(c: IlrecConfig): void {
  for (const [name, get] of positiveInts) {
    const v = get(c);
    if (!Number.isInteger(v) || v < 1) throw new Error(`config ${name} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(c.data.lengthGroups) || c.data.lengthGroups < 0) throw new Error(`config data.lengthGroups must be an integer ≥ 0, got ${c.data.lengthGroups}`);
  if (c.data.windowStride > c.data.maxHistory) throw new Error(`config data.windowStride (${c.data.windowStride}) must be ≤ data.maxHistory (${c.data.maxHistory})`);
  if (c.model.hidden % c.model.heads !== 0) throw new Error(`config model.hidden (${c.model.hidden}) must be a multiple of model.heads (${c.model.heads})`);
  if (!(c.model.dropout >= 0 && c.model.dropout < 1)) throw new Error(`config model.dropout must be in [0, 1), got ${c.model.dropout}`);
  if (c.model.heads % c.model.kvHeads !== 0) throw new Error(`config model.heads (${c.model.heads}) must be a multiple of model.kvHeads (${c.model.kvHeads})`);
  for (const s of ['sft', 'pref'] as const) {
    if (!(c[s].lr > 0)) throw new Error(`config ${s}.lr must be > 0, got ${c[s].lr}`);
    if (!(c[s].epochs > 0) && !(c[s].steps > 0)) throw new Error(`config ${s}: epochs or steps must be > 0`);
    if (!Number.isInteger(c[s].steps) || c[s].steps < 0) throw new Error(`config ${s}.steps must be an integer ≥ 0, got ${c[s].steps}`);
  }
  const l = c.ilrec.loss;
  if (!['sum', 'mean'].includes(l.aggregator)) throw new Error(`config ilrec.loss.aggregator must be sum or mean, got ${l.aggregator}`);
  if (!['logit', 'logprob'].includes(l.threshold)) throw new Error(`config ilrec.loss.threshold must be logit or logprob, got ${l.threshold}`);
  if (!['additive', 'multiplicative'].includes(l.cpoForm)) throw new Error(`config ilrec.loss.cpoForm must be additive or multiplicative, got ${l.cpoForm}`);
  if (!ABLATIONS.includes(c.ilrec.ablation)) throw new Error(`config ilrec.ablation must be one of ${ABLATIONS.join(', ')}, got ${c.ilrec.ablation}`);
  if (c.ilrec.layersBelowLast.some((o) => !Number.isInteger(o) || o < 0)) throw new Error(`config ilrec.layersBelowLast must be integers ≥ 0, got ${c.ilrec.layersBelowLast}`);
  if (c.ilrec.layersBelowLast.length > 8) throw new Error('config ilrec.layersBelowLast: at most 8 layers (the fused kernel keeps one statistic per layer in registers)');
  if (!(c.select.everyEpochs >= 0)) throw new Error(`config select.everyEpochs must be ≥ 0, got ${c.select.everyEpochs}`);
  for (const k of ['users', 'patience'] as const)
    if (!Number.isInteger(c.select[k]) || c.select[k] < 0) throw new Error(`config select.${k} must be an integer ≥ 0, got ${c.select[k]}`);
  if (c.eval.ks.some((k) => !Number.isInteger(k) || k < 1)) throw new Error(`config eval.ks must be positive integers, got ${c.eval.ks}`);
}

/**
 * The fused loss settings and the layer set of an ablation: noCPO = plain cross-entropy (α = 0),
 * noCPD = λ_CPD 0, noCRR = b 0, finalLayerNegatives = N_t from the final layer (no CPD: no
 * intermediate layer is read).
 */
export function ablated(p: PreferenceConfig): { loss: TokenPreferenceConfig; layersBelowLast: number[] } {
  const loss = { ...p.loss };
  let layers = [...p.layersBelowLast];
  switch (p.ablation) {
    case 'none': break;
    case 'noCPO': loss.alpha = 0; break;
    case 'noCPD': loss.lambdaCPD = 0; break;
    case 'noCRR': loss.b = 0; break;
    case 'finalLayerNegatives': layers = []; loss.lambdaCPD = 0; break;
    case 'ceOnly': loss.alpha = 0; loss.lambdaCPD = 0; loss.b = 0; break;
  }
  return { loss, layersBelowLast: layers };
}
