// Decoding with a KV cache: greedy and batched beam search (all beams of all prompts in one forward per
// step), with an allowedTokens hook for constrained decoding; only small top-k arrays are read back.
import { noGrad } from '../autograd.js';
import { Tensor, tidy } from '../tensor.js';
import { tensor } from '../ops/create.js';
import { logSoftmax } from '../ops/softmax.js';
import { topk } from '../ops/topk.js';
import { gather, reshape } from '../ops/view.js';
import { GENERATE_DEFAULTS, type GenerateConfig } from './config.js';
import type { LlamaCache, LlamaForCausalLM } from './llama.js';

/** One decoded sequence (best first in the per-prompt lists). */
export interface GeneratedSequence {
  /** Generated token ids (the prompt excluded; a final eos included). */
  tokens: number[];
  /** Σ log p of the generated tokens. */
  logProb: number;
  /** Ranking score: logProb / tokens.length^lengthPenalty (= logProb with the default penalty 0). */
  score: number;
  /** Ended with an eos token (otherwise it hit maxNewTokens or had no allowed continuation). */
  finished: boolean;
}

/** Left-padded prompts: ids [N, T], the HF attention mask (null when all prompts have one length). */
function leftPad(prompts: readonly (readonly number[])[], pad: number): { ids: number[][]; mask: number[][] | null; T: number } {
  if (prompts.length === 0) throw new Error('generate: no prompts');
  const T = Math.max(...prompts.map((p) => p.length));
  if (prompts.some((p) => p.length === 0)) throw new Error('generate: empty prompt (give at least a BOS token)');
  const same = prompts.every((p) => p.length === T);
  const ids = prompts.map((p) => [...new Array<number>(T - p.length).fill(pad), ...p]);
  const mask = same ? null : prompts.map((p) => [...new Array<number>(T - p.length).fill(0), ...new Array<number>(p.length).fill(1)]);
  return { ids, mask, T };
}

/** What the host needs after a step: per-row top-C log-probs and, for constrained rows, the allowed tokens' log-probs. */
interface StepReadback {
  topValues: Float32Array | null;
  topIndices: Int32Array | null;
  allowedValues: Float32Array | null;
}

/**
 * One decoding forward: appends ids [R, T] to the cache, takes log-softmax at the last position and
 * reads back top-C per row (when `wantTop`) plus log p at flat indices r·V + token (constrained rows).
 */
async function step(
  model: LlamaForCausalLM, ids: number[][], cache: LlamaCache, mask: number[][] | null, C: number, wantTop: boolean, flatAllowed: number[],
): Promise<StepReadback> {
  const V = model.config.vocab_size;
  const R = ids.length;
  const T = ids[0].length;
  const outs = tidy(() => noGrad(() => {
    const { logits } = model.forward(ids, { positions: [T - 1], kvCache: cache, attentionMask: mask ?? undefined });
    const logp = logSoftmax(reshape(logits, [R, V]));
    const res: Tensor[] = [];
    if (wantTop) {
      const tk = topk(logp, C);
      res.push(tk.values, tk.indices);
    }
    if (flatAllowed.length) res.push(gather(reshape(logp, [R * V]), 0, tensor(flatAllowed, [flatAllowed.length], 'i32')));
    return res;
  }));
  const arrays = await Promise.all(outs.map((t) => t.toArray()));
  for (const t of outs) t.dispose();
  let k = 0;
  const topValues = wantTop ? (arrays[k++] as Float32Array) : null;
  const topIndices = wantTop ? (arrays[k++] as Int32Array) : null;
  const allowedValues = flatAllowed.length ? (arrays[k++] as Float32Array) : null;
  return { topValues, topIndices, allowedValues };
}

/** The hook's answer as sorted unique ids, range-checked; null = unconstrained. */
function allowedFor(cfg: GenerateConfig, prefix: number[], prompt: number, V: number): number[] | null {
  const a = cfg.allowedTokens?.(prefix, prompt) ?? null;
  if (a === null) return null;
  const s = [...new Set(a)].sort((x, y) => x - y);
  for (const t of s) if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`allowedTokens returned token ${t} outside [0, ${V})`);
  return s;
}

function resolve(model: LlamaForCausalLM, config: Partial<GenerateConfig>): GenerateConfig {
  const cfg = { ...GENERATE_DEFAULTS, padTokenId: model.config.pad_token_id ?? GENERATE_DEFAULTS.padTokenId, ...config };
  if (!(Number.isInteger(cfg.maxNewTokens) && cfg.maxNewTokens >= 0)) throw new Error(`generate: maxNewTokens ${cfg.maxNewTokens} must be an integer ≥ 0`);
  if (!(Number.isInteger(cfg.numBeams) && cfg.numBeams >= 1)) throw new Error(`generate: numBeams ${cfg.numBeams} must be an integer ≥ 1`);
  return cfg;
}

/** Decoding runs in eval mode (no LoRA dropout); the previous mode is restored after. */
async function inEvalMode<T>(model: LlamaForCausalLM, fn: () => Promise<T>): Promise<T> {
  const training = model.training;
  model.eval();
  try {
    return await fn();
  } finally {
    model.train(training);
  }
}

const scoreOf = (logProb: number, len: number, lp: number) => (lp === 0 || len === 0 ? logProb : logProb / len ** lp);

/** Greedy decoding (beam search's numBeams = 1 answers the same); one sequence per prompt. */
export async function greedy(model: LlamaForCausalLM, prompts: readonly (readonly number[])[], config: Partial<GenerateConfig> = {}): Promise<GeneratedSequence[]> {
  return inEvalMode(model, () => greedyImpl(model, prompts, config));
}

async function greedyImpl(model: LlamaForCausalLM, prompts: readonly (readonly number[])[], config: Partial<GenerateConfig> = {}): Promise<GeneratedSequence[]> {
  const cfg = resolve(model, config);
  const V = model.config.vocab_size;
  const eos = new Set(cfg.eosTokenIds);
  const { ids, mask, T } = leftPad(prompts, cfg.padTokenId);
  const N = prompts.length;
  const seqs: GeneratedSequence[] = prompts.map(() => ({ tokens: [], logProb: 0, score: 0, finished: false }));
  const active = new Array<boolean>(N).fill(true);
  if (cfg.maxNewTokens === 0) return seqs;
  const cache = model.createCache(N, T + cfg.maxNewTokens);
  try {
    let input = ids;
    for (let t = 0; t < cfg.maxNewTokens && active.some((a) => a); t++) {
      const allowed = seqs.map((s, n) => (active[n] ? allowedFor(cfg, s.tokens, n, V) : null));
      const flat: number[] = [];
      allowed.forEach((a, n) => a?.forEach((tok) => flat.push(n * V + tok)));
      const wantTop = allowed.some((a, n) => active[n] && a === null);
      const rb = await step(model, input, cache, mask && stepMask(mask, t), 1, wantTop, flat);
      let at = 0;
      const next: number[][] = [];
      for (let n = 0; n < N; n++) {
        const a = allowed[n];
        let tok = cfg.padTokenId;
        if (active[n]) {
          let lp = -Infinity;
          if (a === null) {
            tok = rb.topIndices![n];
            lp = rb.topValues![n];
          } else {
            // a is sorted ascending, so the strict > keeps the lower id on ties.
            for (let j = 0; j < a.length; j++) {
              const v = rb.allowedValues![at + j];
              if (j === 0 || v > lp) {
                lp = v;
                tok = a[j];
              }
            }
            if (a.length === 0) active[n] = false; // no allowed continuation: the sequence ends here
          }
          if (active[n]) {
            const s = seqs[n];
            s.tokens.push(tok);
            s.logProb += lp;
            s.score = scoreOf(s.logProb, s.tokens.length, cfg.lengthPenalty);
            if (eos.has(tok)) {
              s.finished = true;
              active[n] = false;
            }
          }
        }
        if (a) at += a.length;
        next.push([tok]);
      }
      input = next;
    }
  } finally {
    cache.dispose();
  }
  return seqs;
}

/** The attention mask for decoding step t (t tokens generated so far): padding + prompt + t ones + the new token. */
function stepMask(mask: number[][], t: number): number[][] {
  return mask.map((m) => (t === 0 ? m : [...m, ...new Array<number>(t).fill(1)]));
}

interface LiveBeam {
  tokens: number[];
  logProb: number;
  /** Row of this beam in the last step's logits (and in the cache). */
  row: number;
}

interface Candidate {
  beam: number;
  token: number;
  logProb: number;
}

/**
 * Beam search with K = numBeams beams per prompt, all N·K rows in one forward per step. Candidates
 * rank by log-probability (length-normalised only if lengthPenalty ≠ 0), ties to the lower token id,
 * then the lower beam index; beams are distinct sequences (one live beam at the first step). An eos
 * candidate in the top K ends a hypothesis; a prompt is done when K hypotheses are finished and none
 * beats the best live beam (HF's default heuristic). Returns per prompt up to numReturnSequences
 * sequences, best first.
 */
export async function beamSearch(model: LlamaForCausalLM, prompts: readonly (readonly number[])[], config: Partial<GenerateConfig> = {}): Promise<GeneratedSequence[][]> {
  return inEvalMode(model, () => beamSearchImpl(model, prompts, config));
}

async function beamSearchImpl(model: LlamaForCausalLM, prompts: readonly (readonly number[])[], config: Partial<GenerateConfig>): Promise<GeneratedSequence[][]> {
  const cfg = resolve(model, config);
  const V = model.config.vocab_size;
  const K = cfg.numBeams;
  const nRet = Math.min(cfg.numReturnSequences ?? K, K);
  const C = Math.min(V, Math.max(1, cfg.candidatesPerBeam ?? 2 * K));
  const eos = new Set(cfg.eosTokenIds);
  const lp = cfg.lengthPenalty;
  const { ids, mask: promptMask, T } = leftPad(prompts, cfg.padTokenId);
  const N = prompts.length;
  const R = N * K;

  const finished: GeneratedSequence[][] = prompts.map(() => []);
  // Keeps the K best finished hypotheses (HF BeamHypotheses.add).
  const addFinished = (n: number, s: GeneratedSequence) => {
    const f = finished[n];
    f.push(s);
    f.sort((a, b) => b.score - a.score);
    if (f.length > K) f.length = K;
  };
  let live: LiveBeam[][] = prompts.map((_, n) => [{ tokens: [], logProb: 0, row: n }]);
  const done = new Array<boolean>(N).fill(false);
  if (cfg.maxNewTokens === 0) return prompts.map(() => [{ tokens: [], logProb: 0, score: 0, finished: false }]);

  // Prefill once per prompt (N rows); the cache is then expanded to N·K rows.
  let cache = model.createCache(N, T + cfg.maxNewTokens);
  const beamMask = promptMask ? promptMask.flatMap((m) => new Array<number[]>(K).fill(m)) : null;
  try {
    let input: number[][] = ids;
    let mask = promptMask;
    for (let t = 0; t < cfg.maxNewTokens; t++) {
      // Candidate sources: each live beam's row, constrained by the hook when it answers.
      const allowed = live.map((beams, n) => beams.map((b) => (done[n] ? [] : allowedFor(cfg, b.tokens, n, V))));
      const flat: number[] = [];
      allowed.forEach((per, n) => per.forEach((a, j) => a?.forEach((tok) => flat.push(live[n][j].row * V + tok))));
      const wantTop = allowed.some((per, n) => !done[n] && per.some((a) => a === null));
      const rb = await step(model, input, cache, mask, C, wantTop, flat);

      let at = 0;
      const nextLive: LiveBeam[][] = [];
      for (let n = 0; n < N; n++) {
        const cands: Candidate[] = [];
        live[n].forEach((b, j) => {
          const a = allowed[n][j];
          if (a === null) {
            for (let c = 0; c < C; c++) {
              const v = rb.topValues![b.row * C + c];
              if (v > -Infinity) cands.push({ beam: j, token: rb.topIndices![b.row * C + c], logProb: b.logProb + v });
            }
          } else {
            for (let i = 0; i < a.length; i++) {
              const v = rb.allowedValues![at + i];
              if (v > -Infinity) cands.push({ beam: j, token: a[i], logProb: b.logProb + v });
            }
            at += a.length;
          }
        });
        if (done[n]) {
          nextLive.push([]);
          continue;
        }
        const len = t + 1;
        cands.sort((x, y) => scoreOf(y.logProb, len, lp) - scoreOf(x.logProb, len, lp) || x.token - y.token || x.beam - y.beam);
        const beams: LiveBeam[] = [];
        for (let rank = 0; rank < cands.length && beams.length < K; rank++) {
          const c = cands[rank];
          const tokens = [...live[n][c.beam].tokens, c.token];
          if (eos.has(c.token)) {
            if (rank < K) addFinished(n, { tokens, logProb: c.logProb, score: scoreOf(c.logProb, len, lp), finished: true });
          } else beams.push({ tokens, logProb: c.logProb, row: live[n][c.beam].row });
        }
        nextLive.push(beams);
        const f = finished[n];
        const bestLive = beams.length ? scoreOf(beams[0].logProb, len, lp) : -Infinity;
        if (beams.length === 0 || (f.length >= K && f[f.length - 1].score >= bestLive)) done[n] = true;
      }
      live = nextLive;
      if (done.every((d) => d) || t + 1 === cfg.maxNewTokens) break;

      // Row n·K + j of the next step is beam j of prompt n; it continues from its parent's row. Idle
      // rows (fewer than K live beams, or a finished prompt) copy any valid row and are ignored.
      const src = new Array<number>(R).fill(0);
      const next: number[][] = [];
      for (let n = 0; n < N; n++)
        for (let j = 0; j < K; j++) {
          const b = live[n][j];
          src[n * K + j] = b ? b.row : t === 0 ? n : n * K;
          next.push([b ? b.tokens[b.tokens.length - 1] : cfg.padTokenId]);
        }
      live.forEach((beams, n) => beams.forEach((b, j) => (b.row = n * K + j)));
      if (t === 0) {
        const expanded = cache.select(src);
        cache.dispose();
        cache = expanded;
        cache.sharePrefix(K, T); // a prompt's K rows: its T positions, read once per prompt by attention
      } else {
        // Every row's source is a beam of the same prompt, so the T prompt positions already agree.
        const idx = tensor(src, [R], 'i32');
        cache.reorder(idx, T);
        idx.dispose();
      }
      input = next;
      mask = beamMask ? beamMask.map((m) => [...m, ...new Array<number>(t + 1).fill(1)]) : null;
    }
  } finally {
    cache.dispose();
  }
  // Sequences still live at the end count as hypotheses too (HF finalize).
  return prompts.map((_, n) => {
    for (const b of live[n]) addFinished(n, { tokens: b.tokens, logProb: b.logProb, score: scoreOf(b.logProb, b.tokens.length, lp), finished: false });
    return finished[n].slice(0, nRet);
  });
}

/** Greedy (numBeams 1) or beam search, per prompt a list of sequences best first. */
export async function generate(model: LlamaForCausalLM, prompts: readonly (readonly number[])[], config: Partial<GenerateConfig> = {}): Promise<GeneratedSequence[][]> {
  const k = config.numBeams ?? 1;
  return k === 1 ? (await greedy(model, prompts, config)).map((s) => [s]) : beamSearch(model, prompts, config);
}
