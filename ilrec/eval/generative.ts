// Evaluation of generative recommenders (ILREC.md §1): trie-constrained beam search over SID tokens
// (20 beams by default), beams ranked by sequence log-probability, mapped to items with
// duplicates removed, then HR@K / NDCG@K of the held-out item.
import { beamSearch } from '../../engine/model/generate.js';
import type { LlamaForCausalLM } from '../../engine/model/llama.js';
import type { SidTrie } from '../data/trie.js';
import { MetricsAccumulator, rankFromList, type MetricValues } from './metrics.js';

export interface GenerativeCase {
  /** Prompt token ids (e.g. BOS + the SID tokens of the history items). */
  prompt: number[];
  /** Index of the held-out item (the trie's item numbering). */
  target: number;
}

export interface GenerativeEvalOptions {
  /** Beams per prompt; also the length of each ranked list. */
  beams: number;
  /** Cut-offs for HR/NDCG. */
  ks: number[];
  /** Prompts decoded together in one beam search (all their beams share each forward). */
  promptsPerCall: number;
}

export const GENERATIVE_EVAL_DEFAULTS: GenerativeEvalOptions = { beams: 20, ks: [5, 10, 20], promptsPerCall: 16 };

export interface GenerativeEvalResult {
  metrics: MetricValues;
  /** Rank of each case's target (1-based; Infinity when no beam produced it). */
  ranks: number[];
  /** Ranked, deduplicated item lists, one per case. */
  lists: number[][];
}

/**
 * Ranks items for each case by constrained beam search. Either the trie was built with `endToken` =
 * the model's EOS, so a beam ends exactly when it completes a valid item code, or it has no end
 * token and every code has the same length (TIGER-style fixed-length codes), so beams stop there.
 */
export async function evaluateGenerative(
  model: LlamaForCausalLM,
  cases: readonly GenerativeCase[],
  trie: SidTrie,
  opts: Partial<GenerativeEvalOptions> = {},
): Promise<GenerativeEvalResult> {
  const o = { ...GENERATIVE_EVAL_DEFAULTS, ...opts };
  const eos = trie.endToken;
  const { min, max } = codeLengths(trie);
  if (eos === undefined && min !== max)
    throw new Error(`evaluateGenerative: codes of lengths ${min}..${max} need a trie with endToken = EOS`);
  const maxNewTokens = eos === undefined ? max : max + 1;
  const acc = new MetricsAccumulator(o.ks);
  const ranks: number[] = new Array(cases.length);
  const lists: number[][] = new Array(cases.length);
  // Prompts of similar length share a call (beam search pads a call to its longest prompt);
  // results go back to the cases' order.
  const order = cases.map((_, i) => i).sort((a, b) => cases[a]!.prompt.length - cases[b]!.prompt.length || a - b);
  for (let start = 0; start < cases.length; start += o.promptsPerCall) {
    const idx = order.slice(start, start + o.promptsPerCall);
    const beams = await beamSearch(model, idx.map((c) => cases[c]!.prompt), {
      numBeams: o.beams, numReturnSequences: o.beams, maxNewTokens, eosTokenIds: eos === undefined ? [] : [eos],
      allowedTokens: (prefix) => trie.allowedNext(prefix),
    });
    beams.forEach((seqs, i) => {
      // Beams come sorted by score (= log-probability, no length penalty); an item counts once.
      const list: number[] = [];
      const seen = new Set<number>();
      for (const s of seqs) {
        const item = trie.itemOf(s.tokens);
        if (item === undefined || seen.has(item)) continue;
        seen.add(item);
        list.push(item);
      }
      const c = idx[i]!;
      ranks[c] = rankFromList(list, cases[c]!.target);
      lists[c] = list;
    });
  }
  for (const r of ranks) acc.add(r);
  return { metrics: acc.result(), ranks, lists };
}

/** Shortest and longest code in the trie (tokens before any end token), by walking it depth-first. */
function codeLengths(trie: SidTrie): { min: number; max: number } {
  let min = Infinity;
  let max = 0;
  const stack: [number, number][] = [[trie.root, 0]];
  while (stack.length) {
    const [node, depth] = stack.pop()!;
    if (trie.itemAt(node) >= 0 && trie.endToken === undefined) {
      min = Math.min(min, depth);
      max = Math.max(max, depth);
    }
    for (const t of trie.allowedAt(node)) {
      if (t === trie.endToken) {
        min = Math.min(min, depth);
        max = Math.max(max, depth);
      } else stack.push([trie.step(node, t), depth + 1]);
    }
  }
  return { min, max };
}
