// Decoding: KV-cache greedy equals the argmax of full forwards, beam search with one beam equals greedy,
// wide beams equal exhaustive search, beams are distinct, and the allowedTokens hook (a SID trie) is obeyed.
import { describe, expect, it } from 'vitest';
import { logSoftmax, noGrad, reshape, tidy } from '../../engine/index.js';
import { ATTENTION_TUNING } from '../../engine/ops/attention.js';
import { LlamaForCausalLM, beamSearch, greedy, makeConfig, type LlamaLikeConfig } from '../../engine/model/index.js';
import { SidTrie } from '../../ilrec/data/trie.js';
import { expectClose, useDevice } from '../helpers.js';
import { randomWeights } from './reference.js';

useDevice();

const cfg: LlamaLikeConfig = makeConfig({
  model_type: 'llama', vocab_size: 37, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64,
});
const V = cfg.vocab_size;

/** Weights scaled up so next-token distributions are peaked (distinct argmaxes, few near-ties). */
function makeModel(seed: number): LlamaForCausalLM {
  const w = randomWeights(cfg, seed, 3);
  return new LlamaForCausalLM(cfg, { weights: (n) => w.get(n) });
}

/** log p(next | seq) over the vocabulary for each sequence, from one full forward (no cache). */
async function nextLogProbs(model: LlamaForCausalLM, seqs: number[][]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const s of seqs) {
    const t = tidy(() => noGrad(() => logSoftmax(reshape(model.forward([s], { positions: [s.length - 1] }).logits, [1, V]))));
    out.push((await t.toArray()) as Float32Array);
    t.dispose();
  }
  return out;
}

/** Σ log p of `gen` after `prompt`, teacher-forced with full forwards. */
async function seqLogProb(model: LlamaForCausalLM, prompt: number[], gen: number[]): Promise<number> {
  let s = 0;
  for (let t = 0; t < gen.length; t++) s += (await nextLogProbs(model, [[...prompt, ...gen.slice(0, t)]]))[0][gen[t]];
  return s;
}

describe('greedy decoding with the KV cache', () => {
  it('each token is the argmax of a full forward over the prefix; log-probs add up; padding is transparent', async () => {
    const model = makeModel(1);
    try {
      const prompts = [[1, 5, 9, 2], [3, 3, 7, 30], [8, 1]];
      const out = await greedy(model, prompts, { maxNewTokens: 6 });
      for (let n = 0; n < prompts.length; n++) {
        const gen = out[n].tokens;
        expect(gen.length).toBe(6);
        for (let t = 0; t < gen.length; t++) {
          const lp = (await nextLogProbs(model, [[...prompts[n], ...gen.slice(0, t)]]))[0];
          const argmax = lp.indexOf(Math.max(...lp));
          expect(gen[t], `prompt ${n} step ${t}`).toBe(argmax);
        }
        expectClose([out[n].logProb], [await seqLogProb(model, prompts[n], gen)], { atol: 1e-4, rtol: 1e-4, name: 'greedy logProb' });
      }
      // Batched (left-padded) decoding gives what each prompt gives alone.
      for (let n = 0; n < prompts.length; n++) expect((await greedy(model, [prompts[n]], { maxNewTokens: 6 }))[0].tokens).toEqual(out[n].tokens);
      // Deterministic run to run.
      expect((await greedy(model, prompts, { maxNewTokens: 6 })).map((s) => s.tokens)).toEqual(out.map((s) => s.tokens));
    } finally {
      model.dispose();
    }
  });

  it('stops at eos and honours allowedTokens', async () => {
    const model = makeModel(2);
    try {
      const free = (await greedy(model, [[4, 2, 6]], { maxNewTokens: 5 }))[0];
      const eos = free.tokens[2];
      const stopped = (await greedy(model, [[4, 2, 6]], { maxNewTokens: 5, eosTokenIds: [eos] }))[0];
      expect(stopped.tokens).toEqual(free.tokens.slice(0, free.tokens.indexOf(eos) + 1));
      expect(stopped.finished).toBe(true);
      const allowed = [10, 11, 12];
      const cons = (await greedy(model, [[4, 2, 6]], { maxNewTokens: 4, allowedTokens: () => allowed }))[0];
      for (const t of cons.tokens) expect(allowed).toContain(t);
    } finally {
      model.dispose();
    }
  });
});

describe('beam search', () => {
  it('one beam equals greedy (tokens and log-probs), prompts of different lengths batched', async () => {
    const model = makeModel(3);
    try {
      const prompts = [[1, 2, 3, 4], [9, 8], [20, 21, 22]];
      const g = await greedy(model, prompts, { maxNewTokens: 5, eosTokenIds: [7] });
      const b = await beamSearch(model, prompts, { maxNewTokens: 5, numBeams: 1, eosTokenIds: [7] });
      for (let n = 0; n < prompts.length; n++) {
        expect(b[n].length).toBe(1);
        expect(b[n][0].tokens).toEqual(g[n].tokens);
        expect(b[n][0].logProb).toBeCloseTo(g[n].logProb, 5);
      }
    } finally {
      model.dispose();
    }
  });

  it('with K ≥ V beams over two steps it is exact: the top sequences equal an exhaustive search', async () => {
    const model = makeModel(4);
    try {
      const prompt = [5, 6, 7];
      const K = V;
      const beams = (await beamSearch(model, [prompt], { maxNewTokens: 2, numBeams: K, numReturnSequences: 6 }))[0];
      const first = (await nextLogProbs(model, [prompt]))[0];
      const second = await nextLogProbs(model, Array.from({ length: V }, (_, a) => [...prompt, a]));
      const all: { tokens: number[]; lp: number }[] = [];
      for (let a = 0; a < V; a++) for (let c = 0; c < V; c++) all.push({ tokens: [a, c], lp: first[a] + second[a][c] });
      all.sort((x, y) => y.lp - x.lp);
      expect(beams.length).toBe(6);
      beams.forEach((bm, i) => {
        expect(bm.tokens).toEqual(all[i].tokens);
        expect(bm.logProb).toBeCloseTo(all[i].lp, 4);
      });
    } finally {
      model.dispose();
    }
  });

  it('beams are distinct, sorted, with log-probs of their sequences; the trie hook constrains every beam', async () => {
    const model = makeModel(5);
    try {
      const prompts = [[1, 2, 3], [30, 31, 32, 33]];
      const K = 4;
      const res = await beamSearch(model, prompts, { maxNewTokens: 4, numBeams: K });
      for (let n = 0; n < prompts.length; n++) {
        const keys = res[n].map((s) => s.tokens.join(','));
        expect(new Set(keys).size).toBe(keys.length);
        expect(res[n].length).toBe(K);
        for (let i = 1; i < res[n].length; i++) expect(res[n][i - 1].score).toBeGreaterThanOrEqual(res[n][i].score);
        for (const s of res[n]) expectClose([s.logProb], [await seqLogProb(model, prompts[n], s.tokens)], { atol: 2e-4, rtol: 1e-4, name: 'beam logProb' });
      }

      // Constrained: 3-token item codes ended by eos (36), as ILRec's SID decoding; K ≥ #codes, so the
      // result is every code ranked exactly by its log-probability.
      const EOS = 36;
      const codes = [[10, 11, 12], [10, 11, 13], [10, 14, 12], [15, 11, 12], [15, 16, 17], [18, 19, 20]];
      const trie = new SidTrie(codes, { endToken: EOS });
      const seen: number[][] = [];
      const hook = (prefix: number[]) => {
        seen.push(prefix);
        return trie.allowedNext(prefix);
      };
      const cons = await beamSearch(model, [prompts[0]], { maxNewTokens: 4, numBeams: 8, eosTokenIds: [EOS], allowedTokens: hook });
      expect(seen.length).toBeGreaterThan(0);
      const got = cons[0];
      expect(got.length).toBe(codes.length);
      const ranked = await Promise.all(codes.map(async (c) => ({ tokens: [...c, EOS], lp: await seqLogProb(model, prompts[0], [...c, EOS]) })));
      ranked.sort((a, b) => b.lp - a.lp);
      got.forEach((s, i) => {
        expect(s.finished).toBe(true);
        expect(trie.itemOf(s.tokens)).toBeDefined();
        expect(s.tokens).toEqual(ranked[i].tokens);
        expect(s.logProb).toBeCloseTo(ranked[i].lp, 3);
      });
      // Fewer beams than codes: still valid, distinct codes.
      const narrow = (await beamSearch(model, [prompts[0]], { maxNewTokens: 4, numBeams: 2, eosTokenIds: [EOS], allowedTokens: (p) => trie.allowedNext(p) }))[0];
      expect(narrow.length).toBe(2);
      expect(new Set(narrow.map((s) => s.tokens.join())).size).toBe(2);
      for (const s of narrow) expect(trie.itemOf(s.tokens)).toBeDefined();
    } finally {
      model.dispose();
    }
  });
});

describe('beam search with the prompt read once per prompt', () => {
  it('gives the beams and log-probs of per-row attention (prompts of different lengths)', async () => {
    const model = makeModel(6);
    const prompts = [[1, 2, 3, 4, 5, 6, 7], [9, 8], [20, 21, 22]];
    const opts = { maxNewTokens: 5, numBeams: 5, eosTokenIds: [7] };
    try {
      const shared = await beamSearch(model, prompts, opts);
      ATTENTION_TUNING.sharedPrefix = false;
      const perRow = await beamSearch(model, prompts, opts);
      for (let n = 0; n < prompts.length; n++) {
        expect(shared[n].map((s) => s.tokens)).toEqual(perRow[n].map((s) => s.tokens));
        expectClose(shared[n].map((s) => s.logProb), perRow[n].map((s) => s.logProb), { atol: 1e-5, rtol: 1e-5, name: `prompt ${n} log-probs` });
      }
    } finally {
      ATTENTION_TUNING.sharedPrefix = true;
      model.dispose();
    }
  });
});
