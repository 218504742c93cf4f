// The training objectives of every stage, in ILREC.md's symbols: SFT cross-entropy on the response
// tokens, the ILRec loss (L_CPO + λ·L_CPD + L_CRR, one fused kernel over the final and the
// intermediate layers' logits, CF token rewards from SASRec), and the DPO family on sequence
// log-probabilities (DPO, S-DPO, SPRec) against a frozen reference model.
import {
  Tensor,
  concat,
  crossEntropy,
  exp,
  gather,
  log,
  max,
  mean,
  neg,
  noGrad,
  reshape,
  scale,
  sub,
  softplus,
  sum,
  add,
  tensor,
  tokenPreferenceLoss,
  type TokenPreferenceConfig,
} from '../../engine/index.js';
import type { LlamaForCausalLM } from '../../engine/model/llama.js';
import type { SASRec } from '../cf/sasrec.js';
import { tokenRewards, type RewardTable } from '../cf/rewards.js';
import { IGNORE, type ItemCodes, type WindowBatch } from './examples.js';

/** Loss terms read back for logging: name → tensor (scalar or [n]). */
export interface LossOutput {
  loss: Tensor;
  /** Per-term scalars for the progress bar and the curves (not differentiated). */
  terms: Record<string, Tensor>;
}

/** SFT: mean cross-entropy over the response tokens of every target in the windows. */
export function sftLoss(model: LlamaForCausalLM, batch: WindowBatch): LossOutput {
  const { logits } = model.forward(batch.ids, { positions: batch.positions });
  const V = model.config.vocab_size;
  const R = batch.labels.length;
  const loss = crossEntropy(reshape(logits, [R, V]), tensor(batch.labels, [R], 'i32'), { ignoreIndex: IGNORE });
  return { loss, terms: { ce: loss } };
}

/** Logit-lens layers S = {L − o : o ∈ layersBelowLast}, layers below 1 (the embeddings) dropped, ascending. */
export function layerSet(model: LlamaForCausalLM, layersBelowLast: readonly number[]): number[] {
  const L = model.numLayers;
  return [...new Set(layersBelowLast.map((o) => L - o))].filter((l) => l >= 1 && l <= L).sort((a, b) => a - b);
}

/** Everything the ILRec loss needs besides the model and the batch. */
export interface IlrecLossContext {
  codes: ItemCodes;
  /** The CF model whose P_CF gives the token rewards (null: no CRR term, b must be 0). */
  cf: SASRec | null;
  rewardTable: RewardTable | null;
  /** Full user sequences: a target's CF history is everything before it. */
  sequences: readonly (readonly number[])[];
  loss: TokenPreferenceConfig;
  /** Intermediate layers S (empty: negatives from the final layer). */
  layers: number[];
  restrictToLevel: boolean;
}

/**
 * ILRec (ILREC.md §3): one forward gives the final logits z^L and the lens logits z^(l), l ∈ S, at
 * every response position; the fused kernel computes N_t, w, L_CPO, L_CPD, L_CRR and their gradients.
 */
export function ilrecLoss(model: LlamaForCausalLM, batch: WindowBatch, ctx: IlrecLossContext): LossOutput {
  const V = model.config.vocab_size;
  const R = batch.labels.length;
  const out = model.forward(batch.ids, { positions: batch.positions, layers: ctx.layers });
  const zL = reshape(out.logits, [R, V]); // [R, V]
  const K = out.layerLogitsList.length;
  // z^(l) for l ∈ S stacked: [K, R, V] (the layer list is ascending; the kernel only aggregates it).
  const zI = K === 0 ? null : concat(out.layerLogitsList.map((z) => reshape(z, [1, R, V])), 0);
  const { vocab } = ctx.codes;
  const sidStart = vocab.specials.length;
  const domain = new Int32Array(2 * R);
  batch.levels.forEach((lev, r) => {
    const range = ctx.restrictToLevel ? vocab.levelRange(Math.max(lev, 0)) : { start: sidStart, end: V };
    domain[2 * r] = range.start;
    domain[2 * r + 1] = range.end;
  });
  let rewards: Tensor | null = null;
  if (ctx.loss.b !== 0) {
    if (!ctx.cf || !ctx.rewardTable) throw new Error('ilrecLoss: the CRR term (b ≠ 0) needs a CF model');
    rewards = noGrad(() => rewardRows(batch, ctx, V));
  }
  const res = tokenPreferenceLoss(
    { zL, zI, targets: tensor(batch.labels, [R], 'i32'), domain: tensor(domain, [R, 2], 'i32'), rewards, ignoreIndex: IGNORE },
    ctx.loss,
  );
  return { loss: res.loss, terms: { loss: res.loss, terms: res.terms } };
}

/**
 * r_{t,v} for every response row: P_CF over all items given each target's full history, then the
 * CF mass of each SID subtree under the target's prefix (ILREC.md §3.4), gathered to the rows.
 */
function rewardRows(batch: WindowBatch, ctx: IlrecLossContext, V: number): Tensor {
  const { Lc } = ctx.codes;
  const histories = batch.targets.map((t) => ctx.sequences[t.user]!.slice(0, t.position));
  const logitsCF = ctx.cf!.scoreHistory(histories); // [NT, nItems]
  const r = tokenRewards(logitsCF, batch.targets.map((t) => t.item), ctx.rewardTable!, [0, V]); // [NT, Lc, V]
  const idx = batch.targetOf.map((t, i) => (t < 0 ? 0 : t * Lc + batch.levels[i]!));
  return gather(reshape(r, [batch.targets.length * Lc, V]), 0, tensor(idx, [idx.length], 'i32'));
}

/** Prompt + response sequences, right-padded, scored on their response tokens. */
export interface ScoredSequences {
  ids: number[][];
  /** [N][Lc] input positions predicting the response tokens. */
  positions: number[][];
  /** [N·Lc] response tokens. */
  labels: number[];
  /** Real tokens. */
  tokens: number;
}

export function scoredSequences(prompts: readonly (readonly number[])[], responses: readonly (readonly number[])[], pad: number): ScoredSequences {
  const seqs = prompts.map((p, i) => [...p, ...responses[i]!]);
  const T = Math.max(...seqs.map((s) => s.length)) - 1;
  const ids = seqs.map((s) => {
    const r = s.slice(0, -1);
    while (r.length < T) r.push(pad);
    return r;
  });
  const positions = prompts.map((p, i) => responses[i]!.map((_, k) => p.length - 1 + k));
  return { ids, positions, labels: responses.flat(), tokens: seqs.reduce((a, s) => a + s.length - 1, 0) };
}

/** Σ_k log p(response_k | prompt, response_<k): [N]. */
export function sequenceLogProbs(model: LlamaForCausalLM, s: ScoredSequences): Tensor {
  const N = s.ids.length;
  const Lc = s.positions[0]!.length;
  const V = model.config.vocab_size;
  const { logits } = model.forward(s.ids, { positions: s.positions });
  const nll = crossEntropy(reshape(logits, [N * Lc, V]), tensor(s.labels, [N * Lc], 'i32'), { reduction: 'none' });
  return neg(sum(reshape(nll, [N, Lc]), 1));
}

/** log Σ_j exp(x[..., j]) over the last axis (the shift is a constant: it cancels in the gradient). */
export function logSumExp(x: Tensor): Tensor {
  const m = noGrad(() => max(x, -1, true));
  return add(reshape(m, m.shape.slice(0, -1)), log(sum(exp(sub(x, m)), -1)));
}

/**
 * DPO family on implicit rewards ρ = β·(log π − log π_ref):
 *   one negative:  L = −log σ(ρ_w − ρ_l)                       (DPO, Rafailov et al. 2023)
 *   n negatives:   L = −log σ(−log Σ_j exp(ρ_lj − ρ_w))          (S-DPO, Chen et al. 2024)
 * The second reduces to the first for n = 1. policy/reference: [N·(1+n)] log-probabilities, rows
 * grouped per prompt as [chosen, rejected_1..n].
 */
export function dpoFamilyLoss(policy: Tensor, reference: Tensor, n: number, beta: number): { loss: Tensor; margin: Tensor } {
  const N = policy.size / (1 + n);
  const rho = reshape(scale(sub(policy, reference), beta), [N, 1 + n]);
  const w = gather(rho, 1, tensor([0], [1], 'i32')); // [N, 1]
  const l = gather(rho, 1, tensor(Array.from({ length: n }, (_, j) => j + 1), [n], 'i32')); // [N, n]
  const diff = sub(l, w); // ρ_lj − ρ_w
  const loss = mean(softplus(logSumExp(diff))); // −log σ(−z) = softplus(z)
  return { loss, margin: noGrad(() => neg(mean(diff))) };
}
