// SASRec (Kang & McAuley 2018) on the engine: a causal transformer over item ids with tied item
// embeddings, trained with full-softmax cross-entropy (default) or the paper's binary cross-entropy
// with sampled negatives; its next-item logits are the CF scores P_CF. Training can checkpoint its
// whole state after every epoch and resume from it bit-identically.
//
// Our blocks are the engine's Llama-style decoder layers (pre-RMSNorm, fused causal attention with
// RoPE, SwiGLU MLP) rather than the paper's LayerNorm/ReLU blocks; the paper's learned absolute
// positional embedding is added to the item embedding as well.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  AdamW,
  Module,
  Rng,
  Tensor,
  add,
  backward,
  dropout,
  clipGradNorm,
  crossEntropy,
  embedding,
  gather,
  keep,
  linear,
  mean,
  mul,
  noGrad,
  reshape,
  rmsNorm,
  slice,
  softplus,
  sum,
  tensor,
  tidy,
  type AdamWState,
} from '../../engine/index.js';
import { LlamaForCausalLM, loadStateDict, makeConfig, stateArrays } from '../../engine/model/index.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../engine/io/node.js';
import type { LoadedTensor, TensorToWrite } from '../../engine/io/safetensors.js';
import { metricsFromRanks, rankFromScores, DEFAULT_KS, type MetricValues } from '../eval/metrics.js';

/** Additive attention score of a padding key (exp underflows to exactly 0). */
const MASKED_SCORE = -1e30;
/** Item id of padding; dataset item i is id i + 1. */
export const PAD = 0;
/** Users scored per forward in evaluation. */
const EVAL_BATCH = 256;
/** Format tag and version of trainSASRec's training-state file. */
const TRAIN_STATE_FORMAT = 'sasrec-train-state';
const TRAIN_STATE_VERSION = 1;

export interface SASRecConfig {
  /** Embedding / residual width C. */
  hidden: number;
  /** Decoder blocks. */
  layers: number;
  /** Attention heads (head size = hidden / heads). */
  heads: number;
  /** SwiGLU inner width. */
  intermediate: number;
  /** Most recent items a history keeps (sequences are left-truncated to it). */
  maxLen: number;
  /** Inverted dropout on the input embeddings while training (0 = off). */
  dropout: number;
  /** AdamW learning rate. */
  lr: number;
  /** AdamW decoupled weight decay (SASRec uses none). */
  weightDecay: number;
  /** Global gradient-norm clip (0 = off). */
  clip: number;
  /** Training sequences per step. */
  batch: number;
  /** Maximum training epochs. */
  epochs: number;
  /** Stop after this many epochs without a better validation NDCG@10 (0 = never). */
  patience: number;
  /** Validate every this many epochs. */
  evalEvery: number;
  /** Seed of the init, the shuffling, the dropout masks and the sampled negatives. */
  seed: number;
  /**
   * Objective: 'ce' = full-softmax cross-entropy over all items; 'bce' = Kang & McAuley's binary
   * cross-entropy, −log σ(s_pos) − Σ_neg log σ(−s_neg) per position with sampled negatives.
   */
  loss: 'ce' | 'bce';
  /** Negatives per position for loss 'bce', uniform over the items absent from the user's training sequence. */
  negatives: number;
}

export const SASREC_DEFAULTS: SASRecConfig = {
  hidden: 64,
  layers: 2,
  heads: 2,
  intermediate: 128,
  maxLen: 50,
  dropout: 0,
  lr: 1e-3,
  weightDecay: 0,
  clip: 1,
  batch: 128,
  epochs: 50,
  patience: 5,
  evalEvery: 1,
  seed: 0,
  loss: 'ce',
  negatives: 1,
};

/** The model: Llama trunk (vocab = nItems + 1 ids, tied head) plus a learned positional embedding. */
export class SASRec extends Module {
  readonly config: SASRecConfig;
  readonly nItems: number;
  lm: LlamaForCausalLM;
  /** Learned absolute positions [maxLen, C]; the last history item always sits at row maxLen − 1. */
  pos: Tensor;
  private readonly dropRng: Rng;
  private readonly negRng: Rng;

  constructor(nItems: number, config: Partial<SASRecConfig> = {}) {
    super();
    const c = { ...SASREC_DEFAULTS, ...config };
    if (c.loss !== 'ce' && c.loss !== 'bce') throw new Error(`SASRec: loss must be 'ce' or 'bce', got ${String(c.loss)}`);
    if (!Number.isInteger(c.negatives) || c.negatives < 0) throw new Error(`SASRec: negatives must be a non-negative integer, got ${c.negatives}`);
    this.config = c;
    this.nItems = nItems;
    const lmConfig = makeConfig({
      model_type: 'llama',
      vocab_size: nItems + 1,
      hidden_size: c.hidden,
      intermediate_size: c.intermediate,
      num_hidden_layers: c.layers,
      num_attention_heads: c.heads,
      max_position_embeddings: c.maxLen,
      tie_word_embeddings: true,
    });
    this.lm = new LlamaForCausalLM(lmConfig, { init: { seed: c.seed, std: 0.02 } });
    const rng = new Rng(c.seed + 1);
    const p = new Float32Array(c.maxLen * c.hidden);
    for (let i = 0; i < p.length; i++) p[i] = rng.normal() * 0.02;
    this.pos = keep(tensor(p, [c.maxLen, c.hidden], 'f32', { requiresGrad: true }));
    this.dropRng = new Rng(c.seed + 2);
    this.negRng = new Rng(c.seed + 4);
  }

  /** States of the dropout-mask and negative-sampling generators (for training checkpoints). */
  get rngState(): { dropout: [number, number | null]; negatives: [number, number | null] } {
    return { dropout: this.dropRng.state, negatives: this.negRng.state };
  }
  set rngState(st: { dropout: [number, number | null]; negatives: [number, number | null] }) {
    this.dropRng.state = st.dropout;
    this.negRng.state = st.negatives;
  }

  /** Item embeddings E [nItems + 1, C] (row 0 = padding), also the output head. */
  get itemEmbeddings(): Tensor {
    return this.lm.model.embed_tokens.weight;
  }

  /**
   * ids i32 [B, T] (left-padded with PAD, T ≤ maxLen; host copy needed) → final hidden states [B, T, C].
   * Positions are those of the sequence left-padded to maxLen, so any T gives the same outputs.
   */
  hidden(ids: Tensor): Tensor {
    const [B, T] = ids.shape;
    const { maxLen, hidden: C } = this.config;
    if (T > maxLen) throw new Error(`SASRec: sequence length ${T} > maxLen ${maxLen}`);
    const host = ids.hostInts!;
    let h = add(this.lm.model.embed_tokens.forward(ids), slice(this.pos, [maxLen - T, 0], [maxLen, C]));
    if (this.training && this.config.dropout > 0) h = dropout(h, this.config.dropout, this.dropRng.int(2 ** 32));
    const maskArr = new Float32Array(B * T);
    for (let i = 0; i < maskArr.length; i++) maskArr[i] = host[i] === PAD ? MASKED_SCORE : 0;
    const ctx = { invFreq: this.lm.invFreq, offset: 0, mask: tensor(maskArr, [B, 1, 1, T]), drop: (x: Tensor) => x };
    for (const layer of this.lm.model.layers) h = layer.forward(h, ctx);
    const norm = this.lm.model.norm;
    return rmsNorm(h, norm.weight, norm.eps);
  }

  /** Logits over all ids [R, nItems + 1] of hidden rows [R, C] (column 0 = padding, ignore it). */
  logitsOf(h: Tensor): Tensor {
    return linear(h, this.itemEmbeddings);
  }

  /**
   * P_CF logits for any histories (dataset item indices 0..nItems−1, oldest first; the last maxLen
   * are used): [B, nItems], column i = item i. No gradient.
   */
  scoreHistory(histories: readonly (readonly number[])[]): Tensor {
    return noGrad(() =>
      tidy(() => {
        const wasTraining = this.training;
        this.training = false;
        try {
          const ids = padBatch(histories, this.config.maxLen);
          const [B, T] = ids.shape;
          const last = reshape(slice(this.hidden(ids), [0, T - 1, 0], [B, T, this.config.hidden]), [B, this.config.hidden]);
          const logits = this.logitsOf(last);
          return slice(logits, [0, 1], [B, this.nItems + 1]);
        } finally {
          this.training = wasTraining;
        }
      }),
    );
  }

  /** The next items a sequence is trained on (its last maxLen items after the first), oldest first. */
  trainTargets(s: readonly number[]): number[] {
    return s.slice(Math.max(1, s.length - this.config.maxLen));
  }

  /**
   * Final hidden states h [P, C] at every position that has a next item, and those next items
   * (dataset indices), in loss row order: sequence by sequence, each's trainTargets in order.
   */
  positionStates(sequences: readonly (readonly number[])[]): { h: Tensor; targets: number[] } {
    // Input s[:-1], target s[1:], left-padded to the batch's longest (≤ maxLen): the targets of a
    // sequence fill the last positions of its row.
    const inputs = sequences.map((s) => s.slice(Math.max(0, s.length - 1 - this.config.maxLen), s.length - 1));
    const ids = padBatch(inputs, this.config.maxLen);
    const [B, T] = ids.shape;
    // Hidden rows only where a target exists (padding rows would be ignored anyway): saves most of the V-wide work.
    const rows: number[] = [];
    const targets: number[] = [];
    sequences.forEach((s, b) => {
      const tg = this.trainTargets(s);
      tg.forEach((item, j) => {
        rows.push(b * T + T - tg.length + j);
        targets.push(item);
      });
    });
    const h = reshape(this.hidden(ids), [B * T, this.config.hidden]);
    return { h: gather(h, 0, tensor(rows, [rows.length], 'i32')), targets };
  }

  /** Training loss of the configured objective (SASRecConfig.loss) over the sequences (dataset item indices). */
  loss(sequences: readonly (readonly number[])[]): Tensor {
    return this.config.loss === 'bce' ? this.bceLoss(sequences, this.sampleNegatives(sequences)) : this.ceLoss(sequences);
  }

  /** Mean full-softmax cross-entropy over every non-padding position. */
  ceLoss(sequences: readonly (readonly number[])[]): Tensor {
    const { h, targets } = this.positionStates(sequences);
    return crossEntropy(this.logitsOf(h), tensor(targets.map((i) => i + 1), [targets.length], 'i32'), { ignoreIndex: PAD });
  }

  /**
   * For loss 'bce': config.negatives items per position (loss row order, see positionStates), each
   * uniform over the items that do not occur in that position's sequence (the user's training
   * interactions, as in the paper's code), drawn from the model's negative-sampling generator.
   */
  sampleNegatives(sequences: readonly (readonly number[])[]): number[][] {
    const K = this.config.negatives;
    const out: number[][] = [];
    for (const s of sequences) {
      const tg = this.trainTargets(s);
      if (tg.length === 0) continue;
      const seen = new Set(s);
      if (K > 0 && seen.size >= this.nItems) throw new Error(`SASRec: a sequence contains all ${this.nItems} items; no negative to sample`);
      for (let j = 0; j < tg.length; j++) {
        const neg: number[] = [];
        while (neg.length < K) {
          const i = Math.floor(this.negRng.next() * this.nItems);
          if (!seen.has(i)) neg.push(i);
        }
        out.push(neg);
      }
    }
    return out;
  }

  /**
   * Binary cross-entropy with given negatives (one list per position, all the same length K, in
   * loss row order): mean over positions of −log σ(s_pos) − Σ_k log σ(−s_neg_k), s = h · E[item].
   * With −log σ(s) = softplus(−s): softplus of the scores times (−1 for the positive, +1 for negatives).
   */
  bceLoss(sequences: readonly (readonly number[])[], negatives: readonly (readonly number[])[]): Tensor {
    const { h, targets } = this.positionStates(sequences);
    const P = targets.length;
    if (negatives.length !== P) throw new Error(`SASRec.bceLoss: ${negatives.length} negative lists for ${P} positions`);
    const K = P > 0 ? negatives[0]!.length : 0;
    const ids = new Int32Array(P * (K + 1));
    targets.forEach((item, r) => {
      if (negatives[r]!.length !== K) throw new Error(`SASRec.bceLoss: position ${r} has ${negatives[r]!.length} negatives, position 0 has ${K}`);
      ids[r * (K + 1)] = item + 1;
      negatives[r]!.forEach((n, k) => (ids[r * (K + 1) + 1 + k] = n + 1));
    });
    const C = this.config.hidden;
    const cand = embedding(this.itemEmbeddings, tensor(ids, [P, K + 1], 'i32')); // [P, K+1, C]
    const scores = sum(mul(cand, reshape(h, [P, 1, C])), -1); // [P, K+1]
    const sign = tensor(Array.from({ length: K + 1 }, (_, k) => (k === 0 ? -1 : 1)), [1, K + 1]);
    return mean(sum(softplus(mul(scores, sign)), -1));
  }

  /** Parameters by name (`pos`, `lm.model.*`; the tied head once), as host arrays for a checkpoint. */
  async stateArrays(): Promise<Map<string, TensorToWrite>> {
    return stateArrays(this);
  }

  /** Atomic safetensors checkpoint of every parameter, the config in the metadata. */
  async save(file: string): Promise<void> {
    mkdirSync(path.dirname(file), { recursive: true });
    writeSafetensorsFile(file, await this.stateArrays(), { format: 'sasrec', config: JSON.stringify(this.config), nItems: String(this.nItems) });
  }

  /** Overwrites the parameters from a checkpoint written by save() (same shapes). */
  loadWeights(file: string): void {
    loadStateDict(this, readSafetensorsFile(file).tensors);
  }

  /** A model built from a checkpoint's metadata and weights. */
  static load(file: string): SASRec {
    const { metadata } = readSafetensorsFile(file);
    if (metadata['format'] !== 'sasrec') throw new Error(`SASRec.load ${file}: not a SASRec checkpoint`);
    const m = new SASRec(Number(metadata['nItems']), JSON.parse(metadata['config']!) as SASRecConfig);
    m.loadWeights(file);
    return m;
  }
}

/**
 * Item-index sequences → i32 [B, T] of ids (index + 1), left-padded with PAD to T (default: the
 * longest, at most maxLen); longer sequences keep their last T items.
 */
function padBatch(seqs: readonly (readonly number[])[], maxLen: number, width?: number): Tensor {
  const T = width ?? Math.max(1, Math.min(maxLen, Math.max(...seqs.map((s) => s.length))));
  const data = new Int32Array(seqs.length * T);
  seqs.forEach((s, b) => {
    const tail = s.slice(Math.max(0, s.length - T));
    const off = b * T + T - tail.length;
    tail.forEach((x, j) => (data[off + j] = x + 1));
  });
  return tensor(data, [seqs.length, T], 'i32');
}

/** One evaluation case: the history (item indices) and the held-out target. */
export interface EvalCase {
  history: readonly number[];
  target: number;
}

/** Validation / test cases of leave-one-out: valid = (s[..n−3], s[n−2]), test = (s[..n−2], s[n−1]). */
export function evalCases(sequences: readonly (readonly number[])[]): { valid: EvalCase[]; test: EvalCase[]; train: number[][] } {
  const valid: EvalCase[] = [];
  const test: EvalCase[] = [];
  const train: number[][] = [];
  for (const s of sequences) {
    const n = s.length;
    if (n >= 2) test.push({ history: s.slice(0, n - 1), target: s[n - 1]! });
    if (n >= 3) valid.push({ history: s.slice(0, n - 2), target: s[n - 2]! });
    if (n >= 4) train.push(s.slice(0, n - 2));
  }
  return { valid, test, train };
}

/** Full-ranking rank of each case's target under a scorer (scores read back per batch, ranked on the host). */
export async function scorerRanks(
  score: (histories: readonly (readonly number[])[]) => Tensor,
  cases: readonly EvalCase[],
  batch = EVAL_BATCH,
): Promise<number[]> {
  const ranks: number[] = [];
  for (let i = 0; i < cases.length; i += batch) {
    const chunk = cases.slice(i, i + batch);
    const s = score(chunk.map((c) => c.history));
    const arr = (await s.toArray()) as Float32Array;
    s.dispose();
    const n = arr.length / chunk.length;
    chunk.forEach((c, b) => ranks.push(rankFromScores(arr.subarray(b * n, (b + 1) * n), c.target)));
  }
  return ranks;
}

/** Full-ranking HR/NDCG@K of a scorer over cases. */
export async function evaluateScorer(
  score: (histories: readonly (readonly number[])[]) => Tensor,
  cases: readonly EvalCase[],
  ks: readonly number[] = DEFAULT_KS,
  batch = EVAL_BATCH,
): Promise<MetricValues> {
  return metricsFromRanks(await scorerRanks(score, cases, batch), ks);
}

/** Popularity baseline: score of item i = its count in the training sequences. */
export function popularityScores(train: readonly (readonly number[])[], nItems: number): Float32Array {
  const c = new Float32Array(nItems);
  for (const s of train) for (const i of s) c[i]! += 1;
  return c;
}

export interface EpochLog {
  epoch: number;
  loss: number;
  seconds: number;
  valid?: MetricValues;
}

export interface TrainResult {
  model: SASRec;
  bestEpoch: number;
  bestValid: MetricValues | null;
  test: MetricValues;
  history: EpochLog[];
}

export interface TrainOptions {
  /** Called after each epoch (progress printing). */
  onEpoch?: (log: EpochLog) => void;
  /** Where to keep the best checkpoint (default: in memory only). */
  checkpoint?: string;
  /**
   * Training-state file (safetensors), written atomically at the end of every epoch: current
   * weights, AdamW moments and steps, the shuffle order and the states of the shuffle, dropout and
   * negative-sampling generators, early-stopping bookkeeping, best weights and metrics, history.
   */
  stateFile?: string;
  /**
   * Continue from stateFile (which must exist, for the same sequences and config; only epochs and
   * patience may change). The result is bit-identical to an uninterrupted run that evaluated the
   * same epochs (e.g. evalEvery = 1, or the interrupted run stopped on a multiple of evalEvery).
   */
  resume?: boolean;
}

/** Config fields a resumed run may change: they only decide when training stops. */
const RESUMABLE_CHANGES: readonly (keyof SASRecConfig)[] = ['epochs', 'patience'];

/** The JSON part of a training-state file (tensors hold weights, moments, best weights, order). */
interface TrainStateMeta {
  version: number;
  config: SASRecConfig;
  nItems: number;
  data: string;
  /** Epochs completed. */
  epoch: number;
  /** Early stopping fired at `epoch`. */
  stopped: boolean;
  adamSteps: number[];
  rng: { shuffle: [number, number | null]; dropout: [number, number | null]; negatives: [number, number | null] };
  best: number | null;
  bestEpoch: number;
  bestValid: MetricValues | null;
  sinceBest: number;
  history: EpochLog[];
}

/** A fingerprint of the sequences (FNV-1a over the items, with separators) so a resume cannot pick up another dataset. */
function dataFingerprint(sequences: readonly (readonly number[])[], nItems: number): string {
  let h = 0x811c9dc5;
  let n = 0;
  const mix = (x: number) => {
    h = Math.imul(h ^ (x & 0xffff), 0x01000193) >>> 0;
    h = Math.imul(h ^ (x >>> 16), 0x01000193) >>> 0;
  };
  for (const s of sequences) {
    for (const i of s) mix(i + 1);
    mix(0);
    n += s.length;
  }
  return `${nItems}:${sequences.length}:${n}:${h.toString(16)}`;
}

function checkResumable(meta: TrainStateMeta, c: SASRecConfig, nItems: number, data: string, file: string): void {
  if (meta.version !== TRAIN_STATE_VERSION) throw new Error(`resume ${file}: training-state version ${meta.version}, expected ${TRAIN_STATE_VERSION}`);
  if (meta.nItems !== nItems || meta.data !== data) throw new Error(`resume ${file}: written for other data (${meta.data}, now ${data})`);
  const differ = (Object.keys(SASREC_DEFAULTS) as (keyof SASRecConfig)[]).filter(
    (k) => !RESUMABLE_CHANGES.includes(k) && JSON.stringify(meta.config[k]) !== JSON.stringify(c[k]),
  );
  if (differ.length)
    throw new Error(`resume ${file}: config differs in ${differ.map((k) => `${k} (${JSON.stringify(meta.config[k])} → ${JSON.stringify(c[k])})`).join(', ')}`);
}

function f32Of(t: LoadedTensor | undefined, name: string, file: string): Float32Array {
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`resume ${file}: tensor ${name} missing or not f32`);
  return t.data;
}

/** Tensors of the map whose names start with `prefix`, the prefix removed. */
function withPrefix<T>(tensors: ReadonlyMap<string, T>, prefix: string): Map<string, T> {
  const out = new Map<string, T>();
  for (const [k, v] of tensors) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), v);
  return out;
}

/**
 * Trains on each user's sequence without its last two items, early-stops on validation NDCG@10
 * (restoring the best weights) and returns the test metrics of the best model.
 */
export async function trainSASRec(
  sequences: readonly (readonly number[])[],
  nItems: number,
  config: Partial<SASRecConfig> = {},
  opts: TrainOptions = {},
): Promise<TrainResult> {
  const c = { ...SASREC_DEFAULTS, ...config };
  const model = new SASRec(nItems, c);
  const { valid, test, train } = evalCases(sequences);
  const opt = new AdamW(model.parameters(), { lr: c.lr, weightDecay: c.weightDecay });
  const rng = new Rng(c.seed + 3);
  let history: EpochLog[] = [];
  let best = -Infinity;
  let bestEpoch = 0;
  let bestValid: MetricValues | null = null;
  let bestState: Map<string, TensorToWrite> | null = null;
  let sinceBest = 0;
  let order = train.map((_, i) => i);
  let startEpoch = 1;
  let stopped = false;
  const score = (h: readonly (readonly number[])[]) => model.scoreHistory(h);
  const data = dataFingerprint(sequences, nItems);

  if (opts.resume) {
    const file = opts.stateFile;
    if (!file) throw new Error('trainSASRec: resume needs a stateFile');
    if (!existsSync(file)) throw new Error(`resume: no training state at ${file}`);
    const { metadata, tensors } = readSafetensorsFile(file);
    if (metadata['format'] !== TRAIN_STATE_FORMAT || !metadata['state']) throw new Error(`resume ${file}: not a SASRec training-state file`);
    const meta = JSON.parse(metadata['state']) as TrainStateMeta;
    checkResumable(meta, c, nItems, data, file);
    loadStateDict(model, withPrefix(tensors, 'param.'));
    const n = meta.adamSteps.length;
    const moment = (k: 'm' | 'v', i: number) => (tensors.has(`adam.${k}.${i}`) ? f32Of(tensors.get(`adam.${k}.${i}`), `adam.${k}.${i}`, file) : null);
    opt.loadState({ step: meta.adamSteps, m: Array.from({ length: n }, (_, i) => moment('m', i)), v: Array.from({ length: n }, (_, i) => moment('v', i)) });
    const ord = tensors.get('order');
    if (!ord || !(ord.data instanceof Int32Array) || ord.data.length !== order.length) throw new Error(`resume ${file}: bad shuffle order`);
    order = Array.from(ord.data);
    rng.state = meta.rng.shuffle;
    model.rngState = { dropout: meta.rng.dropout, negatives: meta.rng.negatives };
    best = meta.best ?? -Infinity;
    bestEpoch = meta.bestEpoch;
    bestValid = meta.bestValid;
    const bestTensors = withPrefix(tensors, 'best.');
    bestState = bestTensors.size > 0 ? bestTensors : null;
    sinceBest = meta.sinceBest;
    history = meta.history;
    startEpoch = meta.epoch + 1;
    stopped = meta.stopped;
  }

  const saveState = async (epoch: number) => {
    if (!opts.stateFile) return;
    const tensors = new Map<string, TensorToWrite>();
    for (const [k, v] of await model.stateArrays()) tensors.set(`param.${k}`, v);
    const st: AdamWState = await opt.state();
    st.m.forEach((m, i) => m && tensors.set(`adam.m.${i}`, { shape: [m.length], data: m }));
    st.v.forEach((v, i) => v && tensors.set(`adam.v.${i}`, { shape: [v.length], data: v }));
    if (bestState) for (const [k, v] of bestState) tensors.set(`best.${k}`, v);
    tensors.set('order', { shape: [order.length], data: Int32Array.from(order) });
    const meta: TrainStateMeta = {
      version: TRAIN_STATE_VERSION, config: c, nItems, data, epoch, stopped, adamSteps: st.step,
      rng: { shuffle: rng.state, ...model.rngState },
      best: best === -Infinity ? null : best, bestEpoch, bestValid, sinceBest, history,
    };
    mkdirSync(path.dirname(opts.stateFile), { recursive: true });
    writeSafetensorsFile(opts.stateFile, tensors, { format: TRAIN_STATE_FORMAT, state: JSON.stringify(meta) });
  };

  for (let epoch = startEpoch; epoch <= c.epochs && !stopped; epoch++) {
    const t0 = performance.now();
    model.train();
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    let lossSum = 0;
    let steps = 0;
    for (let i = 0; i < order.length; i += c.batch) {
      const seqs = order.slice(i, i + c.batch).map((k) => train[k]!);
      const loss = tidy(() => {
        const l = model.loss(seqs);
        backward(l);
        if (c.clip > 0) clipGradNorm(model.parameters(), c.clip);
        return l;
      });
      opt.step();
      opt.zeroGrad();
      lossSum += await loss.item();
      loss.dispose();
      steps++;
    }
    model.eval();
    const entry: EpochLog = { epoch, loss: lossSum / Math.max(1, steps), seconds: 0 };
    const last = epoch === c.epochs;
    if (valid.length > 0 && (epoch % c.evalEvery === 0 || last)) {
      entry.valid = await evaluateScorer(score, valid);
      const v = entry.valid['NDCG@10'] ?? 0;
      if (v > best) {
        best = v;
        bestEpoch = epoch;
        bestValid = entry.valid;
        bestState = await model.stateArrays();
        if (opts.checkpoint) await model.save(opts.checkpoint);
        sinceBest = 0;
      } else sinceBest++;
    }
    entry.seconds = (performance.now() - t0) / 1000;
    history.push(entry);
    stopped = c.patience > 0 && sinceBest >= c.patience;
    await saveState(epoch);
    opts.onEpoch?.(entry);
  }
  if (bestState) loadStateDict(model, bestState);
  model.eval();
  const testMetrics = await evaluateScorer(score, test);
  opt.dispose();
  return { model, bestEpoch, bestValid, test: testMetrics, history };
}
