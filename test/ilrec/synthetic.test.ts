// The synthetic dataset: deterministic by seed, the documented sizes, planted SIDs, and
// sequences predictable well above chance (a bigram model beats random by a wide margin).

import { describe, expect, it } from 'vitest';
import { datasetStats } from '../../ilrec/data/dataset.js';
import { findCollisions, sidsFromTokens } from '../../ilrec/data/sid.js';
import { leaveOneOut } from '../../ilrec/data/split.js';
import { generateSynthetic } from '../../ilrec/data/synthetic.js';
import { metricsFromRanks, rankFromScores } from '../../ilrec/eval/metrics.js';

describe('generateSynthetic', () => {
  it('is deterministic by seed', () => {
    const a = generateSynthetic({ users: 50, seed: 1 });
    const b = generateSynthetic({ users: 50, seed: 1 });
    const c = generateSynthetic({ users: 50, seed: 2 });
    expect(a.sequences).toEqual(b.sequences);
    expect(Array.from(a.planted.vectors)).toEqual(Array.from(b.planted.vectors));
    expect(a.sequences).not.toEqual(c.sequences);
  });

  it('has the default sizes, time order and unique planted SIDs', () => {
    const ds = generateSynthetic();
    const st = datasetStats(ds);
    expect(st.users).toBe(1000);
    expect(st.items).toBe(300);
    expect(st.minLength).toBeGreaterThanOrEqual(5);
    expect(st.maxLength).toBeLessThanOrEqual(20);
    expect(ds.report.kept.interactions).toBe(st.interactions);
    for (const t of ds.times!) for (let k = 1; k < t.length; k++) expect(t[k]!).toBeGreaterThan(t[k - 1]!);
    expect(ds.sids![0]).toEqual(['<a_0>', '<b_0>', '<c_0>']);
    expect(ds.sids![299]).toEqual(['<a_5>', '<b_4>', '<c_9>']);
    expect(findCollisions(sidsFromTokens(ds.sids!).codes).surplusItems).toBe(0);
    expect(sidsFromTokens(ds.sids!).collisions.surplusItems).toBe(0);
  });

  it('is predictable above chance: a bigram model on the train split', () => {
    const ds = generateSynthetic();
    const n = ds.items.length;
    const { train, test } = leaveOneOut(ds.sequences);
    // Count transitions last-history-item -> target on training samples only.
    const counts = new Float64Array(n * n);
    const pop = new Float64Array(n);
    for (const s of train) {
      counts[s.history.at(-1)! * n + s.target]! += 1;
      pop[s.target]! += 1;
    }
    const bigramRanks = test.map((s) => {
      const prev = s.history.at(-1)!;
      // Popularity breaks ties (scaled below one count) so unseen transitions are ordered.
      const scores = Array.from({ length: n }, (_, j) => counts[prev * n + j]! + pop[j]! * 1e-6);
      return rankFromScores(scores, s.target);
    });
    const bigram = metricsFromRanks(bigramRanks);
    const popularity = metricsFromRanks(test.map((s) => rankFromScores(pop, s.target)));
    const chanceHr10 = 10 / n;
    expect(bigram['HR@10']!).toBeGreaterThan(5 * chanceHr10);
    expect(bigram['HR@10']!).toBeGreaterThan(popularity['HR@10']!);
    expect(bigram['NDCG@10']!).toBeGreaterThan(popularity['NDCG@10']!);
  });

  it('validates its options', () => {
    expect(() => generateSynthetic({ pFollow: 0.9, pSibling: 0.2 })).toThrow(/probabilities/);
    expect(() => generateSynthetic({ minLength: 5, maxLength: 4 })).toThrow(/minLength/);
    expect(() => generateSynthetic({ branching: [0] })).toThrow(/branching/);
  });
});
