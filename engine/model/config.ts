// Typed configs of the causal LM: the HF architecture config (the io module's LlamaLikeConfig, so a
// config.json round-trips unchanged), plus the engine-side settings for init, LoRA and generation.
import { parseConfig, type LlamaLikeConfig, type ModelType } from '../io/hf.js';

export type { LlamaLikeConfig, ModelType, RopeScaling } from '../io/hf.js';
export { parseConfig, configToJSON, eosIds, configRopeInvFreq } from '../io/hf.js';

/**
 * A full LlamaLikeConfig from config.json-style fields with transformers' defaults filled in
 * (`model_type` picks LlamaConfig or Qwen2Config defaults; Qwen2 gets q/k/v biases).
 */
export function makeConfig(fields: { model_type: ModelType } & Record<string, unknown>): LlamaLikeConfig {
  return parseConfig(fields, '<makeConfig>');
}

/** How a freshly constructed model's weights are drawn (HF `_init_weights`). */
export interface InitConfig {
  /** Seed of the host PRNG that draws every weight, in parameter order. */
  seed: number;
  /** Std of the normal init of linear and embedding weights (HF initializer_range). */
  std: number;
}

export const INIT_DEFAULTS: InitConfig = { seed: 0, std: 0.02 };

/** LoRA adapters (PEFT's LoraConfig fields the engine uses). */
export interface LoRAConfig {
  /** Rank of A [r, in] and B [out, r]. */
  r: number;
  /** Scale of the update: ΔW = B·A · alpha / r. */
  alpha: number;
  /** Dropout probability on the adapter's input (training mode only). */
  dropout: number;
  /** Names of the Linear modules to wrap (the last component of the module path). */
  targetModules: string[];
  /** Seed of A's kaiming-uniform init and of the dropout masks. */
  seed: number;
}

export const LORA_DEFAULTS: LoRAConfig = {
  r: 8,
  alpha: 16,
  dropout: 0.05,
  targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  seed: 0,
};

/** Which next tokens a sequence may take: the generated tokens so far (not the prompt) → allowed ids, or null for any. */
export type AllowedTokensFn = (prefix: number[], promptIndex: number) => number[] | null;

/** Decoding settings shared by greedy and beam search. */
export interface GenerateConfig {
  maxNewTokens: number;
  /** 1 = greedy; K > 1 = beam search with K beams per prompt. */
  numBeams: number;
  /** Tokens that end a sequence (kept in the output); default: none. */
  eosTokenIds: number[];
  /** Beam scores are Σ log p / length^lengthPenalty over generated tokens; 0 (default) = plain sum. */
  lengthPenalty: number;
  /** Returned beams per prompt (≤ numBeams); default numBeams. */
  numReturnSequences?: number;
  /** Candidates taken per beam each step before ranking (≥ 1); default 2·numBeams as in HF. */
  candidatesPerBeam?: number;
  /** Restricts the next token (e.g. a SID prefix trie); applied to every sequence at every step. */
  allowedTokens?: AllowedTokensFn;
  /** Token id used to left-pad prompts of different lengths (masked out; any id < V works). */
  padTokenId: number;
}

export const GENERATE_DEFAULTS: GenerateConfig = { maxNewTokens: 16, numBeams: 1, eosTokenIds: [], lengthPenalty: 0, padTokenId: 0 };
