// HR@K and NDCG@K under full ranking with one relevant item per user (ILREC.md §1), from a
// score vector over all items (CF models) or from a ranked item list (generative models).
//
// Definitions (rank is 1-based; Infinity when the target is not ranked at all):
//   HR@K   = 1 if rank <= K else 0
//   NDCG@K = 1 / log2(rank + 1) if rank <= K else 0
// With a single relevant item the ideal DCG is 1/log2(2) = 1, so DCG needs no normalising.
// Metrics over a test set are plain means over users.
import { Rng } from '../data/rng.js';

/** The cut-offs reported by default (ILREC.md: 5 and 10, also 20 where cheap). */
export const DEFAULT_KS: readonly number[] = [5, 10, 20];

export function hitAt(rank: number, k: number): number {
  return rank <= k ? 1 : 0;
}

export function ndcgAt(rank: number, k: number): number {
  return rank <= k ? 1 / Math.log2(rank + 1) : 0;
}

/**
 * Rank of `target` given a score per item (higher = better), full ranking over all items.
 *
 *   rank = 1 + #{ j != target : score[j] > score[target] }
 *            + #{ j != target : score[j] == score[target] }
 *
 * Tie policy: pessimistic ("count ties ahead"): every other item with the same score is
 * ranked before the target. It is the conservative choice: a model that scores everything
 * equal gets rank n, not 1, so constant or saturated scores cannot inflate the metrics.
 *
 * `exclude` (optional): items with exclude[j] truthy are removed from the ranking (e.g.
 * already-seen items, if a protocol asks for it; ILREC.md excludes nothing). Excluding the
 * target itself is an error. NaN scores are an error: they usually mean a bug upstream.
 */
export function rankFromScores(
  scores: ArrayLike<number>,
  target: number,
  exclude?: ArrayLike<number | boolean>,
): number {
  const n = scores.length;
  if (!Number.isInteger(target) || target < 0 || target >= n) throw new Error(`rankFromScores: target ${target} outside [0, ${n})`);
  if (exclude && exclude.length !== n) throw new Error(`rankFromScores: mask has ${exclude.length} entries for ${n} scores`);
  if (exclude?.[target]) throw new Error(`rankFromScores: target ${target} is excluded by the mask`);
  const s = scores[target]!;
  if (Number.isNaN(s)) throw new Error(`rankFromScores: score of target ${target} is NaN`);
  let ahead = 0;
  for (let j = 0; j < n; j++) {
    if (j === target || exclude?.[j]) continue;
    const v = scores[j]!;
    if (v >= s) ahead++;
    else if (Number.isNaN(v)) throw new Error(`rankFromScores: score of item ${j} is NaN`);
  }
  return ahead + 1;
}

/**
 * Rank of `target` in a ranked list of item ids (best first), e.g. the items of a beam
 * search's beams ordered by sequence log-probability. Duplicates count once: the rank is
 * the target's position among the distinct items, first occurrence (a repeated item cannot
 * push the target down). Returns Infinity when the target is absent, so every metric is 0.
 * A list of m distinct items only supports K <= m; K beyond it under-counts.
 */
export function rankFromList(ranked: ArrayLike<number>, target: number): number {
  const seen = new Set<number>();
  for (let p = 0; p < ranked.length; p++) {
    const item = ranked[p]!;
    if (item === target) return seen.size + 1;
    seen.add(item);
  }
  return Infinity;
}

/** Metric name -> mean value, e.g. { "HR@5": 0.1, "NDCG@5": 0.07, ... }. */
export type MetricValues = Record<string, number>;

/** Sums per-user metrics for every K and returns means. */
export class MetricsAccumulator {
  private readonly hr: number[];
  private readonly ndcg: number[];
  private n = 0;

  constructor(readonly ks: readonly number[] = DEFAULT_KS) {
    if (ks.some((k) => !Number.isInteger(k) || k < 1)) throw new Error(`MetricsAccumulator: bad K in [${ks}]`);
    this.hr = ks.map(() => 0);
    this.ndcg = ks.map(() => 0);
  }

  /** Adds one user's rank (1-based, Infinity = not ranked). */
  add(rank: number): void {
    if (!(rank >= 1)) throw new Error(`MetricsAccumulator: rank must be >= 1, got ${rank}`);
    this.ks.forEach((k, i) => {
      this.hr[i]! += hitAt(rank, k);
      this.ndcg[i]! += ndcgAt(rank, k);
    });
    this.n++;
  }

  get count(): number {
    return this.n;
  }

  /** Means over the users added so far, HR@K then NDCG@K for each K (0 when empty). */
  result(): MetricValues {
    const out: MetricValues = {};
    const d = this.n || 1;
    this.ks.forEach((k, i) => (out[`HR@${k}`] = this.hr[i]! / d));
    this.ks.forEach((k, i) => (out[`NDCG@${k}`] = this.ndcg[i]! / d));
    return out;
  }
}

/** Means of HR@K / NDCG@K over a list of per-user ranks. */
export function metricsFromRanks(ranks: Iterable<number>, ks: readonly number[] = DEFAULT_KS): MetricValues {
  const acc = new MetricsAccumulator(ks);
  for (const r of ranks) acc.add(r);
  return acc.result();
}

/** A paired difference of a per-user metric between two models, with a bootstrap interval. */
export interface PairedDifference {
  /** mean(metric(ranksB)) − mean(metric(ranksA)). */
  diff: number;
  /** 2.5% and 97.5% quantiles of the difference over bootstrap resamples of the users. */
  lo: number;
  hi: number;
}

/** "+0.0012 [-0.0003, 0.0027]": a paired difference and its interval, as the reports print it. */
export function formatDifference(d: PairedDifference): string {
  return `${d.diff >= 0 ? '+' : ''}${d.diff.toFixed(4)} [${d.lo.toFixed(4)}, ${d.hi.toFixed(4)}]`;
}

/** Bootstrap resamples of a paired comparison (enough for stable 95% quantiles). */
export const BOOTSTRAP_RESAMPLES = 2000;

/**
 * Paired bootstrap over users (the same users ranked by both models, in the same order): the
 * uncertainty of "B beats A" that the test-set sampling alone causes. Deterministic by seed.
 */
export function pairedBootstrap(
  ranksA: readonly number[], ranksB: readonly number[], metric: (rank: number) => number, seed = 0, resamples = BOOTSTRAP_RESAMPLES,
): PairedDifference {
  return pairedBootstrapRuns([ranksA], [ranksB], metric, seed, resamples);
}

/**
 * The same with B trained several times (seeds), each run ranking the same users: a user's difference
 * is B's metric averaged over the runs minus A's, so the interval covers the test-user sampling of
 * the seed-averaged model (not the spread between seeds, which the per-seed rows show). A is one
 * run (a shared base, e.g. the SFT start) or several (a control trained with the same seeds): each
 * side is averaged over its runs.
 */
export function pairedBootstrapRuns(
  runsA: readonly (readonly number[])[], runsB: readonly (readonly number[])[], metric: (rank: number) => number,
  seed = 0, resamples = BOOTSTRAP_RESAMPLES,
): PairedDifference {
  const n = runsA[0]?.length ?? 0;
  if (n === 0 || runsB.length === 0 || [...runsA, ...runsB].some((r) => r.length !== n))
    throw new Error(`pairedBootstrap: runs of ${runsA.map((r) => r.length).join(', ')} ranks against runs of ${runsB.map((r) => r.length).join(', ') || 'none'} (need the same users, at least one run each)`);
  const avg = (runs: readonly (readonly number[])[], i: number) => runs.reduce((s, r) => s + metric(r[i]!), 0) / runs.length;
  const d = Array.from({ length: n }, (_, i) => avg(runsB, i) - avg(runsA, i));
  const mean = d.reduce((a, b) => a + b, 0) / n;
  const rng = new Rng(seed);
  const means = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += d[Math.floor(rng.next() * n)]!;
    means[b] = acc / n;
  }
  means.sort();
  const q = (p: number) => means[Math.min(resamples - 1, Math.floor(p * resamples))]!;
  return { diff: mean, lo: q(0.025), hi: q(0.975) };
}
