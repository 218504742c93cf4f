// Token-level collaborative rewards of ILRec's L_CRR (docs ILREC.md §3.4): the log CF mass of the
// item subtree each candidate token opens under the ground-truth prefix,
//   r_{t,v} = log Σ_{i : SID(i)_{<t} = y_{<t}, SID(i)_t = v} P_CF(i | history),
// computed on the GPU as log-softmax(CF logits) → column gather into code order → one segmented
// log-sum-exp over the child subtrees (contiguous ranges of the code-sorted items).
import { Tensor, gather, logSoftmax, noGrad, reshape, segmentLogSumExp, shapeStr, tensor, tidy } from '../../engine/index.js';

/**
 * The item codes sorted lexicographically, so that every prefix's subtree is a contiguous range of
 * sorted positions and its children are consecutive sub-ranges. Built once per code set.
 */
export class RewardTable {
  readonly nItems: number;
  /** Code length Lc (every item's code has it, e.g. semantic levels + disambiguation token). */
  readonly levels: number;
  /** order[p] = item at sorted position p. */
  readonly order: Int32Array;
  /** position[i] = sorted position of item i. */
  readonly position: Int32Array;
  /** codes[i · Lc + t] = token id of item i at level t. */
  readonly codes: Int32Array;
  /** Per depth d = 1..Lc (index d − 1): the first sorted position of each prefix of length d, plus nItems. */
  private readonly nodeStart: Int32Array[];
  /** Per depth d = 1..Lc (index d − 1): the prefix node of length d of each sorted position. */
  private readonly nodeOf: Int32Array[];

  /** codes[i] = token ids of item i (all the same length; e.g. SidVocab.encode of SidSet.codes). Duplicates share a leaf. */
  constructor(codes: readonly (readonly number[])[]) {
    const n = codes.length;
    if (n === 0) throw new Error('RewardTable: no items');
    const L = codes[0]!.length;
    if (L === 0) throw new Error('RewardTable: empty codes');
    this.nItems = n;
    this.levels = L;
    this.codes = new Int32Array(n * L);
    codes.forEach((c, i) => {
      if (c.length !== L)
        throw new Error(`RewardTable: item ${i} has a code of ${c.length} tokens, item 0 of ${L} (use disambiguation mode "always")`);
      c.forEach((tok, t) => {
        if (!Number.isInteger(tok) || tok < 0) throw new Error(`RewardTable: item ${i} has bad token ${tok} at level ${t}`);
        this.codes[i * L + t] = tok;
      });
    });
    const cmp = (a: number, b: number) => {
      for (let t = 0; t < L; t++) {
        const d = this.codes[a * L + t]! - this.codes[b * L + t]!;
        if (d !== 0) return d;
      }
      return a - b;
    };
    this.order = Int32Array.from({ length: n }, (_, i) => i).sort(cmp);
    this.position = new Int32Array(n);
    this.order.forEach((item, p) => (this.position[item] = p));
    this.nodeStart = [];
    this.nodeOf = [];
    for (let d = 1; d <= L; d++) {
      const starts: number[] = [];
      const of = new Int32Array(n);
      for (let p = 0; p < n; p++) {
        // A new prefix of length d starts where any of its first d tokens changes.
        let fresh = p === 0;
        for (let t = 0; t < d && !fresh; t++) fresh = this.codes[this.order[p]! * L + t] !== this.codes[this.order[p - 1]! * L + t];
        if (fresh) starts.push(p);
        of[p] = starts.length - 1;
      }
      starts.push(n);
      this.nodeStart.push(Int32Array.from(starts));
      this.nodeOf.push(of);
    }
  }

  /**
   * The children of `item`'s prefix of length `level` (the tokens that may follow it at position
   * `level`): child k opens token[k] and covers sorted positions [start[k], end[k]).
   */
  children(item: number, level: number): { token: Int32Array; start: Int32Array; end: Int32Array } {
    if (!Number.isInteger(item) || item < 0 || item >= this.nItems) throw new Error(`RewardTable: item ${item} outside [0, ${this.nItems})`);
    if (!Number.isInteger(level) || level < 0 || level >= this.levels) throw new Error(`RewardTable: level ${level} outside [0, ${this.levels})`);
    const p = this.position[item]!;
    let lo = 0;
    let hi = this.nItems;
    if (level > 0) {
      const node = this.nodeOf[level - 1]![p]!;
      lo = this.nodeStart[level - 1]![node]!;
      hi = this.nodeStart[level - 1]![node + 1]!;
    }
    const starts = this.nodeStart[level]!;
    const k0 = this.nodeOf[level]![lo]!;
    const k1 = this.nodeOf[level]![hi - 1]! + 1;
    const token = new Int32Array(k1 - k0);
    for (let k = k0; k < k1; k++) token[k - k0] = this.codes[this.order[starts[k]!]! * this.levels + level]!;
    return { token, start: starts.slice(k0, k1), end: starts.slice(k0 + 1, k1 + 1) };
  }
}

/**
 * Token rewards [B, Lc, c1 − c0] (f32): at [b, t, v − c0] the reward r_{t,v} of token v for row b's
 * target under its own prefix y_{<t}, for every token v that continues that prefix; −Infinity for
 * all other columns (tokens no item continues the prefix with, and other levels' tokens).
 *
 * logitsCF [B, nItems] are raw CF logits (e.g. SASRec.scoreHistory; P_CF is their softmax over
 * items), targets[b] the ground-truth item of row b, cols = [c0, c1) the vocabulary columns of the
 * output (every token of the code set must lie in it). No gradient: rewards are constants.
 */
export function tokenRewards(logitsCF: Tensor, targets: readonly number[], table: RewardTable, cols: readonly [number, number]): Tensor {
  const [c0, c1] = cols;
  if (logitsCF.ndim !== 2 || logitsCF.shape[1] !== table.nItems)
    throw new Error(`tokenRewards: CF logits must be [B, ${table.nItems}], got ${shapeStr(logitsCF.shape)}`);
  const B = logitsCF.shape[0]!;
  if (targets.length !== B) throw new Error(`tokenRewards: ${targets.length} targets for ${B} rows of CF logits`);
  if (!Number.isInteger(c0) || !Number.isInteger(c1) || c0 < 0 || c1 < c0) throw new Error(`tokenRewards: bad column range [${c0}, ${c1})`);
  const L = table.levels;
  const W = c1 - c0;
  // Host: one segment per (row, level, child) over the code-sorted columns.
  const row: number[] = [];
  const start: number[] = [];
  const end: number[] = [];
  const out: number[] = [];
  targets.forEach((item, b) => {
    for (let t = 0; t < L; t++) {
      const ch = table.children(item, t);
      for (let k = 0; k < ch.token.length; k++) {
        const v = ch.token[k]!;
        if (v < c0 || v >= c1) throw new Error(`tokenRewards: token ${v} (level ${t}) is outside the output columns [${c0}, ${c1})`);
        row.push(b);
        start.push(ch.start[k]!);
        end.push(ch.end[k]!);
        out.push((b * L + t) * W + (v - c0));
      }
    }
  });
  const seg = { row: Int32Array.from(row), start: Int32Array.from(start), end: Int32Array.from(end), out: Int32Array.from(out) };
  return noGrad(() =>
    tidy(() => {
      const logP = logSoftmax(logitsCF); // log P_CF(i | history), [B, nItems]
      const sorted = gather(logP, 1, tensor(table.order, [table.nItems], 'i32')); // columns in code order
      return reshape(segmentLogSumExp(sorted, seg, B * L * W), [B, L, W]);
    }),
  );
}
