// The training stages (ILREC.md §3-§4) as micro-batch builders for the shared loop: SFT, ILRec
// (and its ablations), and the preference baselines DPO, S-DPO and SPRec on the same SFT start.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { add, mean, noGrad, scale } from '../../engine/index.js';
import { loadStateDict, stateArrays, type LlamaForCausalLM } from '../../engine/model/llama.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../engine/io/node.js';
import { beamSearch } from '../../engine/model/generate.js';
import { ablated, type IlrecConfig, type OptimConfig } from '../config.js';
import type { SASRec } from '../cf/sasrec.js';
import { RewardTable } from '../cf/rewards.js';
import { DataOrder, promptOf, sampleNegatives, stepRng, windowBatch, type RecData, type WindowBatch } from './examples.js';
import { dpoFamilyLoss, ilrecLoss, type LossOutput, layerSet, scoredSequences, sequenceLogProbs, sftLoss, type IlrecLossContext } from './losses.js';
import { trainLoop, type ExtraState, type MicroBatch, type StepLog, type TrainLoopResult } from './trainer.js';

/** Where a stage checkpoints, whether it resumes, and how it reports. */
export interface StageRunOptions {
  checkpoint?: string;
  resume?: boolean;
  progress?: boolean | 'off';
  onStep?: (log: StepLog) => void | Promise<void>;
}

/** Optimizer steps of a stage: `steps`, or enough micro-batches for `epochs` passes over n examples. */
export function stageSteps(oc: OptimConfig, n: number): number {
  if (oc.steps > 0) return oc.steps;
  return Math.max(1, Math.ceil(new DataOrder(n, oc.batch, 0).batchesIn(oc.epochs) / oc.accumulate));
}

/** The fused loss's terms vector, in the kernel's order. */
const PREFERENCE_TERMS = { terms: ['cpo', 'cpd', 'crr', 'negatives'] };

/** Micro-batch g = step·accumulate + micro of the training windows, in the seed's data order. */
function windowMicroBatches(data: RecData, oc: OptimConfig, seed: number, groups: number, loss: (b: WindowBatch) => LossOutput): (step: number, micro: number) => MicroBatch {
  const order = new DataOrder(data.windows.length, oc.batch, seed, data.windows.map((w) => w.items.length), groups);
  return (step, micro) => {
    const batch = windowBatch(order.microBatch(step * oc.accumulate + micro).map((i) => data.windows[i]!), data.codes);
    return { loss: () => loss(batch), tokens: batch.tokens };
  };
}

/** SFT model selection (config `select`): how runSft scores the model and when. */
export interface SftSelection {
  /** Validation score of the model as it stands (higher is better): NDCG@10 on the selection users. */
  score: (model: LlamaForCausalLM) => Promise<number>;
  everyEpochs: number;
  patience: number;
  /**
   * Score the starting weights too (step 0), so a continued run that never improves on its start
   * keeps the start. For a model that starts from given weights; pointless from a random init.
   */
  scoreStart?: boolean;
  /** Where the best weights are kept for a resumed run (default: the checkpoint's name with .best.safetensors). */
  bestFile?: string;
}

/** What the selection saw: a score per evaluation, the step whose weights became the SFT model. */
export interface SelectionLog {
  history: { step: number; epoch: number; score: number }[];
  bestStep: number;
  bestScore: number | null;
  /** Evaluations since the last new best. */
  stale: number;
  stoppedEarly: boolean;
}

export async function runSft(
  model: LlamaForCausalLM, data: RecData, cfg: IlrecConfig, opts: StageRunOptions = {}, select?: SftSelection,
): Promise<TrainLoopResult & { selection?: SelectionLog }> {
  const oc = cfg.sft;
  const totalSteps = stageSteps(oc, data.windows.length);
  const spec = {
    stage: 'sft', model, optim: oc, totalSteps,
    microBatch: windowMicroBatches(data, oc, cfg.run.seed, cfg.data.lengthGroups, (batch) => sftLoss(model, batch)),
    checkpointEvery: cfg.run.checkpointEvery, logEvery: cfg.run.logEvery, ...loopOpts(opts),
  };
  if (!select || select.everyEpochs <= 0) return trainLoop(spec);

  const stepsPerEpoch = stageSteps({ ...oc, epochs: 1, steps: 0 }, data.windows.length);
  const every = Math.max(1, Math.round(select.everyEpochs * stepsPerEpoch));
  const bestFile = select.bestFile ?? (opts.checkpoint ? opts.checkpoint.replace(/(\.safetensors)?$/, '.best.safetensors') : undefined);
  let log: SelectionLog = { history: [], bestStep: -1, bestScore: null, stale: 0, stoppedEarly: false };
  let best: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array | Int32Array }> | null = null;
  const extra: ExtraState = {
    save: () => log,
    load: (saved) => {
      log = saved as SelectionLog;
      if (log.bestStep < 0) return;
      // The best weights live in their own file (written when they became the best).
      if (!bestFile || !fs.existsSync(bestFile)) throw new Error(`${opts.checkpoint}: SFT selection's best weights (step ${log.bestStep}) are missing: ${bestFile ?? 'no file'}`);
      best = readSafetensorsFile(bestFile).tensors;
    },
  };
  const consider = async (step: number) => {
    const score = await select.score(model);
    model.train(); // evaluation leaves the model in eval mode
    log.history.push({ step, epoch: step / stepsPerEpoch, score });
    if (log.bestScore === null || score > log.bestScore) {
      Object.assign(log, { bestStep: step, bestScore: score, stale: 0 });
      best = await stateArrays(model);
      if (bestFile) {
        fs.mkdirSync(path.dirname(bestFile), { recursive: true });
        writeSafetensorsFile(bestFile, best, { step: String(step) });
      }
    } else if (++log.stale >= select.patience && select.patience > 0 && step < totalSteps) log.stoppedEarly = true; // at the last step there is nothing left to stop
  };
  const res = await trainLoop({
    ...spec, extra,
    // Only on a fresh start: a resumed run restores the log (start score included) from its checkpoint.
    onStart: select.scoreStart ? () => consider(0) : undefined,
    onStep: async (l) => {
      if (l.step % every === 0 || l.step === totalSteps) await consider(l.step);
      await opts.onStep?.(l);
    },
    shouldStop: () => log.stoppedEarly,
  });
  if (best && log.bestStep !== res.endStep) loadStateDict(model, best, { strict: true });
  return { ...res, selection: log };
}

/**
 * ILRec from the SFT model: CPO + CPD + CRR with negatives recomputed at every step from the live
 * model. `cf` (SASRec) is used only when CRR is on (b ≠ 0 after the ablation).
 */
export async function runIlrec(
  model: LlamaForCausalLM, data: RecData, cfg: IlrecConfig, cf: SASRec | null,
  sequences: readonly (readonly number[])[], opts: StageRunOptions = {},
): Promise<TrainLoopResult> {
  const oc = cfg.pref;
  const { loss, layersBelowLast } = ablated(cfg.ilrec);
  const crr = loss.b !== 0;
  const ctx: IlrecLossContext = {
    codes: data.codes, cf: crr ? cf : null, rewardTable: crr && cf ? new RewardTable(data.codes.tokens) : null, sequences, loss, layers: layerSet(model, layersBelowLast), restrictToLevel: cfg.ilrec.restrictToLevel,
  };
  return trainLoop({
    stage: 'ilrec', model, optim: oc, totalSteps: stageSteps(oc, data.windows.length), termNames: PREFERENCE_TERMS,
    microBatch: windowMicroBatches(data, oc, cfg.run.seed, cfg.data.lengthGroups, (batch) => ilrecLoss(model, batch, ctx)),
    checkpointEvery: cfg.run.checkpointEvery, logEvery: cfg.run.logEvery, ...loopOpts(opts),
  });
}

export type DpoKind = 'dpo' | 'sdpo' | 'sprec';

/**
 * The DPO family on prompt/response examples (one leaveOneOut training sample each), all with the
 * same number of optimizer steps as ILRec: DPO with one sampled negative item, S-DPO with
 * `dpo.negatives`, SPRec with the model's own best wrong beam as the negative, regenerated at the
 * start of each of `dpo.rounds` rounds, plus `dpo.sftWeight` × the positives' cross-entropy.
 */
export async function runDpoFamily(
  kind: DpoKind, model: LlamaForCausalLM, reference: LlamaForCausalLM, data: RecData, cfg: IlrecConfig, nItems: number,
  totalSteps: number, opts: StageRunOptions = {},
): Promise<TrainLoopResult> {
  const oc = cfg.pref;
  const n = kind === 'sdpo' ? cfg.dpo.negatives : 1;
  const { maxHistory, lengthGroups } = cfg.data;
  const order = new DataOrder(data.samples.length, oc.batch, cfg.run.seed, data.samples.map((x) => Math.min(maxHistory, x.history.length)), lengthGroups);
  const { codes } = data;
  const promptFor = (i: number) => promptOf(data.samples[i]!.history, codes, maxHistory);

  // SPRec: negatives of the current round, from the model as it was when the round started.
  const stepsPerRound = Math.max(1, Math.ceil(totalSteps / cfg.dpo.rounds));
  let round = -1;
  let selfNegatives = new Map<number, number>();
  const extra: ExtraState | undefined =
    kind === 'sprec'
      ? { save: () => ({ round, negatives: [...selfNegatives] }), load: (s) => { const v = s as { round: number; negatives: [number, number][] }; round = v.round; selfNegatives = new Map(v.negatives); } }
      : undefined;
  const refreshRound = async (step: number) => {
    const r = Math.floor(step / stepsPerRound);
    if (r === round) return;
    round = r;
    const idx = new Set<number>();
    for (let s = r * stepsPerRound; s < Math.min(totalSteps, (r + 1) * stepsPerRound); s++)
      for (let m = 0; m < oc.accumulate; m++) for (const i of order.microBatch(s * oc.accumulate + m)) idx.add(i);
    selfNegatives = await selfPlayNegatives(model, data, [...idx], cfg, nItems);
  };

  return trainLoop({
    stage: kind, model, optim: oc, totalSteps, extra, termNames: {},
    microBatch: async (step, micro): Promise<MicroBatch> => {
      if (kind === 'sprec') await refreshRound(step);
      const ids = order.microBatch(step * oc.accumulate + micro);
      const rng = stepRng(cfg.run.seed, step, micro);
      const prompts: number[][] = [];
      const responses: number[][] = [];
      for (const i of ids) {
        const s = data.samples[i]!;
        const negs = kind === 'sprec' ? [selfNegatives.get(i)!] : sampleNegatives(rng, nItems, data.seen[s.user]!, n);
        const p = promptFor(i);
        for (const item of [s.target, ...negs]) {
          prompts.push(p);
          responses.push(codes.tokens[item]!);
        }
      }
      const seqs = scoredSequences(prompts, responses, codes.vocab.pad);
      return {
        tokens: seqs.tokens,
        loss: (): LossOutput => {
          const ref = noGrad(() => sequenceLogProbs(reference, seqs));
          const pol = sequenceLogProbs(model, seqs);
          const { loss, margin } = dpoFamilyLoss(pol, ref, n, cfg.dpo.beta);
          if (kind !== 'sprec' || cfg.dpo.sftWeight === 0) return { loss, terms: { dpo: loss, margin } };
          // SFT on the positives (every (1+n)-th row is a chosen response).
          const chosen = scoredSequences(ids.map(promptFor), ids.map((i) => codes.tokens[data.samples[i]!.target]!), codes.vocab.pad);
          const ce = scale(mean(sequenceLogProbs(model, chosen)), -1 / codes.Lc); // per-token NLL
          return { loss: add(loss, scale(ce, cfg.dpo.sftWeight)), terms: { dpo: loss, margin, ce } };
        },
      };
    },
    checkpointEvery: cfg.run.checkpointEvery, logEvery: cfg.run.logEvery, ...loopOpts(opts),
  });
}

/** For each sample, the highest-ranked beam that is not the target (SPRec's self-play negative). */
async function selfPlayNegatives(model: LlamaForCausalLM, data: RecData, idx: number[], cfg: IlrecConfig, nItems: number): Promise<Map<number, number>> {
  const { codes } = data;
  const out = new Map<number, number>();
  const per = cfg.eval.promptsPerCall;
  for (let s = 0; s < idx.length; s += per) {
    const chunk = idx.slice(s, s + per);
    const beams = await beamSearch(model, chunk.map((i) => promptOf(data.samples[i]!.history, codes, cfg.data.maxHistory)), {
      numBeams: cfg.dpo.beams, numReturnSequences: cfg.dpo.beams, maxNewTokens: codes.Lc, eosTokenIds: [],
      allowedTokens: (prefix) => codes.trie.allowedNext(prefix),
    });
    chunk.forEach((i, k) => {
      const target = data.samples[i]!.target;
      let neg = -1;
      for (const b of beams[k]!) {
        const item = codes.trie.itemOf(b.tokens);
        if (item !== undefined && item !== target) {
          neg = item;
          break;
        }
      }
      // Fewer valid beams than needed (tiny catalogues): fall back to a deterministic other item.
      out.set(i, neg >= 0 ? neg : (target + 1) % nItems);
    });
  }
  return out;
}

function loopOpts(o: StageRunOptions): Partial<Parameters<typeof trainLoop>[0]> {
  return {
    ...(o.checkpoint ? { checkpoint: o.checkpoint } : {}),
    ...(o.resume ? { resume: true } : {}),
    ...(o.progress === undefined ? {} : { progress: o.progress }),
    ...(o.onStep ? { onStep: o.onStep } : {}),
  };
}
