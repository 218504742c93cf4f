// SASRec (Kang & McAuley 2018) on the engine: a causal transformer over item ids with tied item
// embeddings, trained with full-softmax cross-entropy; its next-item logits are the CF scores P_CF.
//
// Our blocks are the engine's Llama-style decoder layers (pre-RMSNorm, fused causal attention with
// RoPE, SwiGLU MLP) rather than the paper's LayerNorm/ReLU blocks; the paper's learned absolute
// positional embedding is added to the item embedding as well.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  AdamW,
  Module,
  Rng,
  Tensor,
  add,
  backward,
  clipGradNorm,
  crossEntropy,
  gather,
  keep,
  linear,
  mul,
  noGrad,
  reshape,
  rmsNorm,
  slice,
  tensor,
  tidy,
} from '../../engine/index.js';
import { LlamaForCausalLM, loadStateDict, makeConfig, stateDict } from '../../engine/model/index.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../engine/io/node.js';
import type { TensorToWrite } from '../../engine/io/safetensors.js';
import { MetricsAccumulator, rankFromScores, DEFAULT_KS, type MetricValues } from '../eval/metrics.js';

/** Additive attention score of a padding key (exp underflows to exactly 0). */
const MASKED_SCORE = -1e30;
/** Item id of padding; dataset item i is id i + 1. */
export const PAD = 0;
/** Users scored per forward in evaluation. */
const EVAL_BATCH = 256;

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
  /** Seed of the init, the shuffling and the dropout masks. */
  seed: number;
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
};

/** The model: Llama trunk (vocab = nItems + 1 ids, tied head) plus a learned positional embedding. */
export class SASRec extends Module {
  readonly config: SASRecConfig;
  readonly nItems: number;
  lm: LlamaForCausalLM;
  /** Learned absolute positions [maxLen, C]; the last history item always sits at row maxLen − 1. */
  pos: Tensor;
  private readonly dropRng: Rng;

  constructor(nItems: number, config: Partial<SASRecConfig> = {}) {
    super();
    const c = { ...SASREC_DEFAULTS, ...config };
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
    if (this.training && this.config.dropout > 0) {
      const p = this.config.dropout;
      const m = new Float32Array(B * T * C);
      for (let i = 0; i < m.length; i++) m[i] = this.dropRng.next() < p ? 0 : 1 / (1 - p);
      h = mul(h, tensor(m, [B, T, C]));
    }
    const maskArr = new Float32Array(B * T);
    for (let i = 0; i < maskArr.length; i++) maskArr[i] = host[i] === PAD ? MASKED_SCORE : 0;
    const ctx = { invFreq: this.lm.invFreq, offset: 0, mask: tensor(maskArr, [B, 1, 1, T]) };
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

  /** Mean cross-entropy over every non-padding position of the sequences (dataset item indices). */
  loss(sequences: readonly (readonly number[])[]): Tensor {
    // Input s[:-1], target s[1:], both left-padded to the batch's longest (≤ maxLen).
    const inputs = sequences.map((s) => s.slice(Math.max(0, s.length - 1 - this.config.maxLen), s.length - 1));
    const targets = sequences.map((s) => s.slice(Math.max(1, s.length - this.config.maxLen), s.length));
    const ids = padBatch(inputs, this.config.maxLen);
    const [B, T] = ids.shape;
    const tgtIds = padBatch(targets, this.config.maxLen, T).hostInts!;
    // Logits only where a target exists (padding rows would be ignored anyway): saves most of the V-wide work.
    const rows: number[] = [];
    const tgt: number[] = [];
    for (let i = 0; i < B * T; i++)
      if (tgtIds[i] !== PAD) {
        rows.push(i);
        tgt.push(tgtIds[i]!);
      }
    const h = reshape(this.hidden(ids), [B * T, this.config.hidden]);
    const picked = gather(h, 0, tensor(rows, [rows.length], 'i32'));
    return crossEntropy(this.logitsOf(picked), tensor(tgt, [tgt.length], 'i32'), { ignoreIndex: PAD });
  }

  /** Parameters by name (`pos`, `lm.model.*`; the tied head once), as host arrays for a checkpoint. */
  async stateArrays(): Promise<Map<string, TensorToWrite>> {
    const out = new Map<string, TensorToWrite>();
    for (const [name, t] of stateDict(this)) out.set(name, { shape: [...t.shape], data: (await t.toArray()) as Float32Array });
    return out;
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

/** Full-ranking HR/NDCG@K of a scorer over cases (scores read back per batch, ranked on the host). */
export async function evaluateScorer(
  score: (histories: readonly (readonly number[])[]) => Tensor,
  cases: readonly EvalCase[],
  ks: readonly number[] = DEFAULT_KS,
  batch = EVAL_BATCH,
): Promise<MetricValues> {
  const acc = new MetricsAccumulator(ks);
  for (let i = 0; i < cases.length; i += batch) {
    const chunk = cases.slice(i, i + batch);
    const s = score(chunk.map((c) => c.history));
    const arr = (await s.toArray()) as Float32Array;
    s.dispose();
    const n = arr.length / chunk.length;
    chunk.forEach((c, b) => acc.add(rankFromScores(arr.subarray(b * n, (b + 1) * n), c.target)));
  }
  return acc.result();
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
  const history: EpochLog[] = [];
  let best = -Infinity;
  let bestEpoch = 0;
  let bestValid: MetricValues | null = null;
  let bestState: Map<string, TensorToWrite> | null = null;
  let sinceBest = 0;
  const order = train.map((_, i) => i);
  const score = (h: readonly (readonly number[])[]) => model.scoreHistory(h);

  for (let epoch = 1; epoch <= c.epochs; epoch++) {
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
    const log: EpochLog = { epoch, loss: lossSum / Math.max(1, steps), seconds: 0 };
    const last = epoch === c.epochs;
    if (valid.length > 0 && (epoch % c.evalEvery === 0 || last)) {
      log.valid = await evaluateScorer(score, valid);
      const v = log.valid['NDCG@10'] ?? 0;
      if (v > best) {
        best = v;
        bestEpoch = epoch;
        bestValid = log.valid;
        bestState = await model.stateArrays();
        if (opts.checkpoint) await model.save(opts.checkpoint);
        sinceBest = 0;
      } else sinceBest++;
    }
    log.seconds = (performance.now() - t0) / 1000;
    history.push(log);
    opts.onEpoch?.(log);
    if (c.patience > 0 && sinceBest >= c.patience) break;
  }
  if (bestState) loadStateDict(model, bestState);
  model.eval();
  const testMetrics = await evaluateScorer(score, test);
  return { model, bestEpoch, bestValid, test: testMetrics, history };
}
