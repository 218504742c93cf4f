// Generative evaluation: with at least as many beams as items, constrained beam search must rank
// every item exactly once, in the order of its sequence log-probability under the model.
import { describe, expect, it } from 'vitest';
import { logSoftmax, tidy } from '../../engine/index.js';
import { LlamaForCausalLM, makeConfig } from '../../engine/model/index.js';
import { SidTrie } from '../../ilrec/data/trie.js';
import { evaluateGenerative } from '../../ilrec/eval/generative.js';
import { useDevice } from '../helpers.js';

useDevice();

const BOS = 1;
const EOS = 2;
const L0 = 3; // level-0 codes 0..2 → ids 3..5
const L1 = 6; // level-1 codes 0..2 → ids 6..8
const CODES = [[0, 0], [0, 1], [1, 0], [1, 2], [2, 1], [2, 2]].map(([a, b]) => [L0 + a, L1 + b]);

/** Σ log p(code tokens, EOS | prompt) by teacher forcing, in float32 from the model. */
async function seqLogProb(model: LlamaForCausalLM, prompt: number[], code: number[]): Promise<number> {
  const seq = [...prompt, ...code, EOS];
  const lp = tidy(() => logSoftmax(model.forward([seq.slice(0, -1)]).logits));
  const v = (await lp.toArray()) as Float32Array;
  lp.dispose();
  const V = model.config.vocab_size;
  let s = 0;
  for (let t = prompt.length - 1; t < seq.length - 1; t++) s += v[t * V + seq[t + 1]!]!;
  return s;
}

describe('evaluateGenerative', () => {
  it('ranks every item once, by sequence log-probability, and scores the target', async () => {
    const cfg = makeConfig({
      model_type: 'llama', vocab_size: 9, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
      num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 16,
    });
    const model = new LlamaForCausalLM(cfg, { init: { seed: 3, std: 0.5 } });
    const trie = new SidTrie(CODES, { endToken: EOS });
    const cases = [
      { prompt: [BOS, L0, L1], target: 0 },
      { prompt: [BOS, L0 + 1, L1 + 2], target: 3 },
      { prompt: [BOS], target: 5 },
    ];
    try {
      const res = await evaluateGenerative(model, cases, trie, { beams: 6, ks: [1, 5], promptsPerCall: 2 });
      for (let i = 0; i < cases.length; i++) {
        const list = res.lists[i]!;
        expect([...list].sort()).toEqual([0, 1, 2, 3, 4, 5]);
        expect(res.ranks[i]).toBe(list.indexOf(cases[i]!.target) + 1);
        const lps = await Promise.all(list.map((item) => seqLogProb(model, cases[i]!.prompt, CODES[item]!)));
        for (let k = 1; k < lps.length; k++) expect(lps[k]!).toBeLessThanOrEqual(lps[k - 1]! + 1e-4);
      }
      const hr5 = res.ranks.filter((r) => r <= 5).length / cases.length;
      expect(res.metrics['HR@5']).toBeCloseTo(hr5, 12);
      const ndcg1 = res.ranks.filter((r) => r === 1).length / cases.length;
      expect(res.metrics['NDCG@1']).toBeCloseTo(ndcg1, 12);
    } finally {
      model.dispose();
    }
  });
});
