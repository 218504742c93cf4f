// Token-level training data for the generative recommender (ILREC.md §1): item codes as token ids
// over a SID vocabulary, training windows (every item of a window after its first is a target, so
// one forward serves many targets), prompt/response examples for the DPO family, and evaluation
// prompts. Everything is a deterministic function of the dataset and the seed.
import type { Dataset } from '../data/dataset.js';
import { Rng } from '../data/rng.js';
import { SidVocab, sidsFromTokens, type SidSet } from '../data/sid.js';
import { SidTrie } from '../data/trie.js';
import { leaveOneOut, type Sample } from '../data/split.js';
import type { GenerativeCase } from '../eval/generative.js';

/** Items as fixed-length token codes: the vocabulary, the codes, and the prefix trie over them. */
export interface ItemCodes {
  vocab: SidVocab;
  sids: SidSet;
  /** tokens[i] = token ids of item i's code (length Lc for every item). */
  tokens: number[][];
  /** Code length Lc (semantic levels + the disambiguation level). */
  Lc: number;
  /** Prefix-free (every code has Lc tokens), so no end token is needed. */
  trie: SidTrie;
}

/** Codes from the dataset's SID tokens, collisions resolved by the 5th (disambiguation) token. */
export function itemCodesFromDataset(ds: Dataset): ItemCodes {
  if (!ds.sids) throw new Error(`${ds.name}: the dataset has no semantic IDs (build them with residualKMeansSids over CF item embeddings)`);
  return itemCodesFromSidSet(sidsFromTokens(ds.sids, { mode: 'always' }));
}

export function itemCodesFromSidSet(sids: SidSet): ItemCodes {
  if (sids.mode !== 'always') throw new Error("itemCodes: codes must have one length (disambiguation mode 'always')");
  const vocab = SidVocab.forSidSet(sids);
  const tokens = sids.codes.map((c) => vocab.encode(c));
  const Lc = tokens[0]!.length;
  return { vocab, sids, tokens, Lc, trie: new SidTrie(tokens) };
}

/** A run of consecutive items of one user's training sequence; items from `firstTarget` on are targets. */
export interface Window {
  user: number;
  /** Position of items[0] in the user's sequence (so items[j]'s full history is sequence[..start + j]). */
  start: number;
  items: number[];
  firstTarget: number;
}

/**
 * Windows over each user's training part (the sequence without its last two items, which are the
 * validation and test targets): maxHistory + 1 items each, advancing by `stride`, so every training
 * target of leaveOneOut appears exactly once, with at least maxHistory − stride + 1 history items
 * (or all of them, near the start).
 */
export function trainWindows(sequences: readonly (readonly number[])[], maxHistory: number, stride: number): Window[] {
  const W = maxHistory + 1;
  const out: Window[] = [];
  sequences.forEach((s, user) => {
    const n = s.length - 2;
    if (n < 2) return;
    if (n <= W) {
      out.push({ user, start: 0, items: s.slice(0, n), firstTarget: 1 });
      return;
    }
    let covered = W;
    out.push({ user, start: 0, items: s.slice(0, W), firstTarget: 1 });
    while (covered < n) {
      const end = Math.min(n, covered + stride);
      const start = end - W;
      out.push({ user, start, items: s.slice(start, end), firstTarget: covered - start });
      covered = end;
    }
  });
  return out;
}

/** Number of training targets in windows (equals leaveOneOut's training samples). */
export function windowTargets(ws: readonly Window[]): number {
  return ws.reduce((a, w) => a + w.items.length - w.firstTarget, 0);
}

/** A padded batch of windows as model input: ids, per-row response positions and their labels. */
export interface WindowBatch {
  /** [B][T] token ids: BOS + the items' codes, minus the last token (inputs), right-padded. */
  ids: number[][];
  /** [B][P] input positions whose next token is a target token (padding: position 0, label ignored). */
  positions: number[][];
  /** [B·P] label token ids (IGNORE on padding). */
  labels: number[];
  /** [B·P] codebook level of each label (−1 on padding). */
  levels: number[];
  /** [B·P] which (window, target item) a row belongs to: index into `targets` (−1 on padding). */
  targetOf: number[];
  /** The batch's target items with their full histories (for the CF rewards). */
  targets: { item: number; user: number; position: number }[];
  /** Real (non-padding) tokens fed to the model. */
  tokens: number;
}

export const IGNORE = -100;

export function windowBatch(ws: readonly Window[], codes: ItemCodes): WindowBatch {
  const { vocab, tokens: codeOf, Lc } = codes;
  const ids: number[][] = [];
  const positions: number[][] = [];
  const rowLabels: number[][] = [];
  const rowLevels: number[][] = [];
  const rowTargets: number[][] = [];
  const targets: WindowBatch['targets'] = [];
  let real = 0;
  for (const w of ws) {
    const seq = [vocab.bos, ...w.items.flatMap((i) => codeOf[i]!)];
    ids.push(seq.slice(0, -1));
    real += seq.length - 1;
    const pos: number[] = [];
    const lab: number[] = [];
    const lev: number[] = [];
    const tg: number[] = [];
    for (let j = w.firstTarget; j < w.items.length; j++) {
      const t = targets.length;
      targets.push({ item: w.items[j]!, user: w.user, position: w.start + j });
      for (let k = 0; k < Lc; k++) {
        // Token k of item j sits at sequence index 1 + j·Lc + k and is predicted at the input position before it.
        pos.push(j * Lc + k);
        lab.push(codeOf[w.items[j]!]![k]!);
        lev.push(k);
        tg.push(t);
      }
    }
    positions.push(pos);
    rowLabels.push(lab);
    rowLevels.push(lev);
    rowTargets.push(tg);
  }
  const T = Math.max(...ids.map((r) => r.length));
  const P = Math.max(...positions.map((r) => r.length));
  const labels: number[] = [];
  const levels: number[] = [];
  const targetOf: number[] = [];
  ids.forEach((r, b) => {
    while (r.length < T) r.push(vocab.pad);
    const pad = P - positions[b]!.length;
    positions[b]!.push(...new Array<number>(pad).fill(0));
    labels.push(...rowLabels[b]!, ...new Array<number>(pad).fill(IGNORE));
    levels.push(...rowLevels[b]!, ...new Array<number>(pad).fill(-1));
    targetOf.push(...rowTargets[b]!, ...new Array<number>(pad).fill(-1));
  });
  return { ids, positions, labels, levels, targetOf, targets, tokens: real };
}

/** Prompt tokens: BOS + the codes of the last maxHistory history items. */
export function promptOf(history: readonly number[], codes: ItemCodes, maxHistory: number): number[] {
  return [codes.vocab.bos, ...history.slice(Math.max(0, history.length - maxHistory)).flatMap((i) => codes.tokens[i]!)];
}

/** Evaluation cases of the generative model: prompt = BOS + the capped history's codes. */
export function generativeCases(samples: readonly Sample[], codes: ItemCodes, maxHistory: number): GenerativeCase[] {
  return samples.map((s) => ({ prompt: promptOf(s.history, codes, maxHistory), target: s.target }));
}

/** A deterministic random subset of n samples (all when n is 0 or ≥ the count), in their original order. */
export function subsetOf<T>(xs: readonly T[], n: number, seed: number): T[] {
  if (n <= 0 || n >= xs.length) return [...xs];
  const idx = new Rng(seed).shuffle(Array.from({ length: xs.length }, (_, i) => i));
  return idx.slice(0, n).sort((a, b) => a - b).map((i) => xs[i]!);
}

/** Everything a run needs from the split: windows, prompt examples and evaluation cases. */
export interface RecData {
  codes: ItemCodes;
  windows: Window[];
  /** Training samples of leaveOneOut (prompt/response examples of the DPO family). */
  samples: Sample[];
  valid: Sample[];
  test: Sample[];
  /** Items each user interacted with (anywhere in the sequence): excluded from sampled negatives. */
  seen: Set<number>[];
}

export function recData(ds: Dataset, codes: ItemCodes, maxHistory: number, stride: number): RecData {
  const split = leaveOneOut(ds.sequences, { maxHistory });
  return {
    codes,
    windows: trainWindows(ds.sequences, maxHistory, stride),
    samples: split.train,
    valid: split.valid,
    test: split.test,
    seen: ds.sequences.map((s) => new Set(s)),
  };
}

/**
 * Deterministic data order: epoch e is a permutation of 0..n−1 drawn from seed and e alone, and
 * micro-batch g takes the next `batch` indices of the concatenated epochs. A resumed run therefore
 * needs only its step count to continue with the same batches.
 *
 * With `lengths` and `groups` > 0 the permutation is grouped by length (Hugging Face's
 * group_by_length): pools of `groups` batches are sorted by length, and the order of the resulting
 * batches is shuffled. A batch is padded to its longest example, so on Instruments, where most
 * users are far shorter than the 21-item window, this cuts the tokens fed by about 3×.
 */
export class DataOrder {
  private readonly perms = new Map<number, number[]>();
  constructor(
    readonly n: number, readonly batch: number, readonly seed: number,
    private readonly lengths?: readonly number[], private readonly groups = 0,
  ) {
    if (n < 1) throw new Error('DataOrder: no training examples');
    if (lengths && lengths.length !== n) throw new Error(`DataOrder: ${lengths.length} lengths for ${n} examples`);
  }

  private epoch(e: number): number[] {
    let p = this.perms.get(e);
    if (!p) {
      const rng = new Rng(this.seed * 1_000_003 + e);
      p = rng.shuffle(Array.from({ length: this.n }, (_, i) => i));
      if (this.lengths && this.groups > 0) p = this.grouped(p, e, rng);
      this.perms.clear(); // one epoch at a time is enough (batches never straddle more than two)
      this.perms.set(e, p);
    }
    return p;
  }

  /** Length-grouped reordering of epoch e's permutation, aligned to where its batches start. */
  private grouped(p: number[], e: number, rng: Rng): number[] {
    const len = this.lengths!;
    const B = this.batch;
    // The first `lead` indices complete a batch begun at the end of epoch e−1: keep them in place.
    const lead = (B - ((e * this.n) % B)) % B;
    const rest = p.slice(lead);
    const pool = B * this.groups;
    for (let s = 0; s < rest.length; s += pool) {
      const sorted = rest.slice(s, s + pool).sort((a, b) => len[b]! - len[a]! || a - b);
      rest.splice(s, sorted.length, ...sorted);
    }
    const full = Math.floor(rest.length / B);
    const blocks = rng.shuffle(Array.from({ length: full }, (_, i) => i));
    return [...p.slice(0, lead), ...blocks.flatMap((b) => rest.slice(b * B, (b + 1) * B)), ...rest.slice(full * B)];
  }

  /** Example indices of micro-batch g. */
  microBatch(g: number): number[] {
    const out: number[] = [];
    for (let k = g * this.batch; k < (g + 1) * this.batch; k++) {
      const e = Math.floor(k / this.n);
      out.push(this.epoch(e)[k - e * this.n]!);
    }
    return out;
  }

  /** Micro-batches in `epochs` passes (rounded up). */
  batchesIn(epochs: number): number {
    return Math.ceil((epochs * this.n) / this.batch);
  }
}

/** A stream of random numbers keyed by (seed, step, stream): the same at a step whether resumed or not. */
export function stepRng(seed: number, step: number, stream: number): Rng {
  return new Rng(((seed * 7919 + step) * 104_729 + stream) >>> 0);
}

/** `count` items drawn uniformly from those the user never interacted with (distinct). */
export function sampleNegatives(rng: Rng, nItems: number, seen: ReadonlySet<number>, count: number): number[] {
  if (nItems - seen.size < count) throw new Error(`sampleNegatives: only ${nItems - seen.size} unseen items, ${count} asked`);
  const out = new Set<number>();
  while (out.size < count) {
    const i = Math.floor(rng.next() * nItems);
    if (!seen.has(i)) out.add(i);
  }
  return [...out];
}
