// HR@K / NDCG@K checked against values computed by hand, including ties, targets beyond K,
// duplicates in a ranked list, masks, and the results writer.

import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  MetricsAccumulator,
  hitAt,
  metricsFromRanks,
  ndcgAt,
  rankFromList,
  pairedBootstrap,
  pairedBootstrapRuns,
  rankFromScores,
} from '../../ilrec/eval/metrics.js';
import { makeResultRecord, markdownHeader, markdownRow, writeResultJson } from '../../ilrec/eval/results.js';

describe('hitAt / ndcgAt', () => {
  it('match the definitions at and around K', () => {
    expect(hitAt(1, 5)).toBe(1);
    expect(hitAt(5, 5)).toBe(1);
    expect(hitAt(6, 5)).toBe(0);
    expect(ndcgAt(1, 5)).toBe(1);
    expect(ndcgAt(3, 5)).toBeCloseTo(0.5, 15); // 1/log2(4)
    expect(ndcgAt(7, 10)).toBeCloseTo(1 / 3, 15); // 1/log2(8)
    expect(ndcgAt(6, 5)).toBe(0);
    expect(ndcgAt(Infinity, 20)).toBe(0);
  });
});

describe('rankFromScores', () => {
  it('counts strictly higher scores', () => {
    // scores: item 2 is the target (0.5); items 0 and 3 are higher.
    expect(rankFromScores([0.9, 0.1, 0.5, 0.7, 0.2], 2)).toBe(3);
    expect(rankFromScores([0.9, 0.1, 0.5, 0.7, 0.2], 0)).toBe(1);
    expect(rankFromScores([0.9, 0.1, 0.5, 0.7, 0.2], 1)).toBe(5);
  });

  it('puts ties ahead of the target (pessimistic)', () => {
    // target 1 (0.5) ties with items 0 and 3, item 2 is higher: rank = 1 + 1 + 2 = 4.
    expect(rankFromScores([0.5, 0.5, 0.8, 0.5, 0.1], 1)).toBe(4);
    // All equal: the target is last, whichever it is.
    expect(rankFromScores(new Float32Array(7), 0)).toBe(7);
    expect(rankFromScores(new Float32Array(7), 6)).toBe(7);
  });

  it('handles a target beyond K', () => {
    const scores = Array.from({ length: 30 }, (_, i) => 30 - i); // item i has rank i+1
    const r = rankFromScores(scores, 24);
    expect(r).toBe(25);
    expect(metricsFromRanks([r])).toEqual({ 'HR@5': 0, 'HR@10': 0, 'HR@20': 0, 'NDCG@5': 0, 'NDCG@10': 0, 'NDCG@20': 0 });
  });

  it('applies an explicit mask and nothing else', () => {
    const scores = [0.9, 0.1, 0.5, 0.7, 0.5];
    expect(rankFromScores(scores, 2)).toBe(4); // 0.9, 0.7 higher; item 4 ties
    expect(rankFromScores(scores, 2, [1, 0, 0, 0, 1])).toBe(2); // 0.9 and the tie masked out
    expect(() => rankFromScores(scores, 2, [0, 0, 1, 0, 0])).toThrow(/excluded/);
    expect(() => rankFromScores(scores, 2, [0, 0])).toThrow(/mask/);
  });

  it('rejects NaN and out-of-range targets', () => {
    expect(() => rankFromScores([0.1, NaN, 0.2], 0)).toThrow(/NaN/);
    expect(() => rankFromScores([0.1, NaN, 0.2], 1)).toThrow(/NaN/);
    expect(() => rankFromScores([0.1, 0.2], 2)).toThrow(/outside/);
  });

  it('treats -Infinity and Infinity as ordinary scores', () => {
    expect(rankFromScores([-Infinity, Infinity, 0], 2)).toBe(2);
  });
});

describe('rankFromList', () => {
  it('is the 1-based position', () => {
    expect(rankFromList([7, 3, 9], 7)).toBe(1);
    expect(rankFromList([7, 3, 9], 9)).toBe(3);
  });

  it('counts a duplicated item once', () => {
    // distinct order: 7, 3, 9, 4 -> target 4 is rank 4, not 6.
    expect(rankFromList([7, 3, 7, 9, 3, 4], 4)).toBe(4);
    // a duplicate of the target after its first occurrence does not matter
    expect(rankFromList([5, 4, 4], 4)).toBe(2);
  });

  it('returns Infinity for an absent target, so every metric is 0', () => {
    const r = rankFromList([1, 2, 3], 8);
    expect(r).toBe(Infinity);
    expect(metricsFromRanks([r])['HR@20']).toBe(0);
    expect(metricsFromRanks([r])['NDCG@20']).toBe(0);
  });
});

describe('MetricsAccumulator', () => {
  it('averages over users (hand-computed)', () => {
    // ranks 1, 3, 7, 12, absent
    const acc = new MetricsAccumulator([5, 10, 20]);
    for (const r of [1, 3, 7, 12, Infinity]) acc.add(r);
    const m = acc.result();
    expect(acc.count).toBe(5);
    expect(m['HR@5']).toBeCloseTo(2 / 5, 15);
    expect(m['HR@10']).toBeCloseTo(3 / 5, 15);
    expect(m['HR@20']).toBeCloseTo(4 / 5, 15);
    expect(m['NDCG@5']).toBeCloseTo((1 + 0.5) / 5, 15);
    expect(m['NDCG@10']).toBeCloseTo((1 + 0.5 + 1 / 3) / 5, 15);
    expect(m['NDCG@20']).toBeCloseTo((1 + 0.5 + 1 / 3 + 1 / Math.log2(13)) / 5, 15);
    expect(Object.keys(m)).toEqual(['HR@5', 'HR@10', 'HR@20', 'NDCG@5', 'NDCG@10', 'NDCG@20']);
  });

  it('rejects ranks below 1', () => {
    expect(() => new MetricsAccumulator().add(0)).toThrow();
    expect(() => new MetricsAccumulator().add(NaN)).toThrow();
  });
});

describe('results writer', () => {
  it('writes JSON and a matching markdown row', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ilrec-results-'));
    const metrics = metricsFromRanks([1, 3], [5, 10]);
    const rec = makeResultRecord({
      name: 'bigram',
      dataset: 'synthetic',
      metrics,
      users: 2,
      config: { beams: 20 },
      startedAtMs: performance.now() - 1500,
    });
    expect(rec.wallTimeSeconds).toBeGreaterThan(1.4);
    expect(rec.commit === null || /^[0-9a-f]{40}$/.test(rec.commit)).toBe(true);
    const file = writeResultJson(path.join(dir, 'sub', 'r.json'), rec);
    const back = JSON.parse(readFileSync(file, 'utf8'));
    expect(back.metrics).toEqual(metrics);
    expect(back.config).toEqual({ beams: 20 });
    const header = markdownHeader([5, 10]);
    expect(header.split('\n')[0]).toBe('| name | dataset | HR@5 | NDCG@5 | HR@10 | NDCG@10 | users | commit |');
    const row = markdownRow(rec, [5, 10]);
    expect(row.startsWith('| bigram | synthetic | 1.0000 | 0.7500 | 1.0000 | 0.7500 | 2 |')).toBe(true);
    expect(row.split('|').length).toBe(header.split('\n')[0]!.split('|').length);
  });
});

describe('pairedBootstrap', () => {
  it('gives the paired mean difference and an interval that contains it', () => {
    const a = [1, 3, Infinity, 2, 8, 1, 15, 4];
    const b = [1, 1, 5, Infinity, 2, 1, 3, 4];
    const hit10 = (r: number) => (r <= 10 ? 1 : 0);
    const res = pairedBootstrap(a, b, hit10, 1);
    const want = (b.filter((r) => r <= 10).length - a.filter((r) => r <= 10).length) / a.length;
    expect(res.diff).toBeCloseTo(want, 12);
    expect(res.lo).toBeLessThanOrEqual(res.diff);
    expect(res.hi).toBeGreaterThanOrEqual(res.diff);
    expect(pairedBootstrap(a, b, hit10, 1)).toEqual(res);
    // Identical rankings: no difference and a zero-width interval.
    expect(pairedBootstrap(a, a, hit10, 2)).toEqual({ diff: 0, lo: 0, hi: 0 });
    expect(() => pairedBootstrap(a, b.slice(1), hit10)).toThrow(/same users/);
  });

  it('over several runs of B, differences are of the run-averaged metric per user', () => {
    const a = [1, 3, 12, 2];
    const runs = [[1, 11, 5, 2], [20, 1, 5, 2], [1, 1, 30, 2]];
    const ndcg = (r: number) => (r <= 10 ? 1 / Math.log2(r + 1) : 0);
    const res = pairedBootstrapRuns([a], runs, ndcg, 3);
    let want = 0;
    for (let u = 0; u < a.length; u++) want += runs.reduce((s, r) => s + ndcg(r[u]), 0) / runs.length - ndcg(a[u]);
    expect(res.diff).toBeCloseTo(want / a.length, 12);
    expect(res.lo).toBeLessThanOrEqual(res.diff);
    expect(res.hi).toBeGreaterThanOrEqual(res.diff);
    // One run is the plain paired bootstrap; identical runs change nothing.
    expect(pairedBootstrapRuns([a], [runs[0]], ndcg, 3)).toEqual(pairedBootstrap(a, runs[0], ndcg, 3));
    expect(pairedBootstrapRuns([a], [runs[1], runs[1]], ndcg, 3)).toEqual(pairedBootstrap(a, runs[1], ndcg, 3));
    expect(() => pairedBootstrapRuns([a], [runs[0], [1, 2]], ndcg)).toThrow(/against runs of 4, 2/);
    // Both sides seed-averaged (a control trained with the same seeds): the difference of the means.
    const both = pairedBootstrapRuns([a, runs[1]], runs, ndcg, 3);
    let want2 = 0;
    for (let u = 0; u < a.length; u++) want2 += runs.reduce((s, r) => s + ndcg(r[u]), 0) / runs.length - (ndcg(a[u]) + ndcg(runs[1][u])) / 2;
    expect(both.diff).toBeCloseTo(want2 / a.length, 12);
    expect(() => pairedBootstrapRuns([a, [1]], runs, ndcg)).toThrow(/runs of 4, 1 ranks/);
  });
});
