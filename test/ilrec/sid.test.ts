// Semantic IDs: token parsing, collision detection and resolution, residual k-means codes,
// and the SID token vocabulary.

import { describe, expect, it } from 'vitest';
import { Rng } from '../../ilrec/data/rng.js';
import {
  SidVocab,
  disambiguate,
  findCollisions,
  kMeans,
  parseSidToken,
  parseSidTokens,
  residualKMeansSids,
  sidToken,
  sidTokens,
  sidsFromTokens,
} from '../../ilrec/data/sid.js';
import { generateSynthetic } from '../../ilrec/data/synthetic.js';
import { SidTrie } from '../../ilrec/data/trie.js';

describe('SID tokens', () => {
  it('parse and format', () => {
    expect(parseSidToken('<a_137>')).toEqual({ level: 0, code: 137 });
    expect(parseSidToken('<d_0>')).toEqual({ level: 3, code: 0 });
    for (const bad of ['<a_01>', '<A_1>', '<a_>', 'a_1', '<a_1> ', '<ab_1>']) expect(parseSidToken(bad)).toBeUndefined();
    expect(sidToken(2, 79)).toBe('<c_79>');
    expect(sidTokens([1, 2, 3, 0])).toEqual(['<a_1>', '<b_2>', '<c_3>', '<d_0>']);
    expect(parseSidTokens(['<a_1>', '<b_2>'])).toEqual([1, 2]);
    expect(parseSidTokens(['<a_1>', '<c_2>'])).toMatch(/expected level "b"/);
    expect(parseSidTokens([])).toMatch(/empty/);
    expect(parseSidTokens([3])).toMatch(/not a string/);
  });
});

describe('collisions', () => {
  // items 0, 2, 5 share (1,2); items 3, 4 share (0,0); item 1 is alone.
  const codes = [[1, 2], [1, 3], [1, 2], [0, 0], [0, 0], [1, 2]];

  it('are found with surplus and group counts', () => {
    const c = findCollisions(codes);
    expect(c).toEqual({ items: 6, distinct: 3, surplusItems: 3, itemsInCollisions: 5, largestGroup: 3, groups: [[0, 2, 5], [3, 4]] });
  });

  it('are resolved TIGER-style by an extra level on every item (default)', () => {
    const s = disambiguate(codes);
    expect(s.mode).toBe('always');
    expect(s.codes).toEqual([[1, 2, 0], [1, 3, 0], [1, 2, 1], [0, 0, 0], [0, 0, 1], [1, 2, 2]]);
    expect(s.semanticLevels).toBe(2);
    expect(s.levelSizes).toEqual([2, 4, 3]);
    expect(findCollisions(s.codes).surplusItems).toBe(0);
  });

  it('or only on colliding items, keeping the codes prefix-free', () => {
    const s = disambiguate(codes, { mode: 'collidingOnly' });
    expect(s.codes).toEqual([[1, 2, 0], [1, 3], [1, 2, 1], [0, 0, 0], [0, 0, 1], [1, 2, 2]]);
    expect(() => new SidTrie(s.codes)).not.toThrow();
  });

  it('from token strings', () => {
    const s = sidsFromTokens([['<a_1>', '<b_2>'], ['<a_1>', '<b_2>']]);
    expect(s.codes).toEqual([[1, 2, 0], [1, 2, 1]]);
    expect(sidTokens(s.codes[1]!)).toEqual(['<a_1>', '<b_2>', '<c_1>']);
    expect(() => sidsFromTokens([['<a_1>'], ['<b_1>']])).toThrow(/item 1/);
    expect(() => disambiguate([[1, 2], [1]])).toThrow(/levels/);
  });
});

describe('kMeans', () => {
  function blobs(seed: number, centers: number[][], perCluster: number, noise: number): Float32Array {
    const rng = new Rng(seed);
    const d = centers[0]!.length;
    const out = new Float32Array(centers.length * perCluster * d);
    let k = 0;
    for (const c of centers) for (let p = 0; p < perCluster; p++) for (let j = 0; j < d; j++) out[k++] = c[j]! + noise * rng.normal();
    return out;
  }

  it('recovers well-separated clusters and is deterministic by seed', () => {
    const centers = [[0, 0], [10, 0], [0, 10], [10, 10]];
    const data = blobs(1, centers, 25, 0.5);
    const a = kMeans(data, 100, 2, 4, { rng: new Rng(7), maxIterations: 50 });
    const b = kMeans(data, 100, 2, 4, { rng: new Rng(7), maxIterations: 50 });
    expect(Array.from(a.assign)).toEqual(Array.from(b.assign));
    for (let c = 0; c < 4; c++) {
      const labels = new Set(Array.from(a.assign.subarray(c * 25, (c + 1) * 25)));
      expect(labels.size).toBe(1);
    }
    expect(new Set(Array.from(a.assign)).size).toBe(4);
  });

  it('uses fewer clusters than asked when there are fewer distinct points', () => {
    const data = new Float32Array([1, 1, 1, 1, 2, 2, 2, 2]); // 4 points, 2 distinct, d = 2
    const r = kMeans(data, 4, 2, 8, { rng: new Rng(0), maxIterations: 10 });
    expect(r.k).toBe(2);
    expect(r.inertia).toBe(0);
  });
});

describe('residualKMeansSids', () => {
  it('gives unique, deterministic codes whose first level recovers the planted top level', () => {
    const ds = generateSynthetic({ users: 10, branching: [6, 5, 10], seed: 3 });
    const { vectors, dim, paths } = ds.planted;
    const opts = { levels: 3, codebookSize: 6, seed: 11 };
    const a = residualKMeansSids(vectors, paths.length, dim, opts);
    const b = residualKMeansSids(vectors, paths.length, dim, opts);
    expect(a.codes).toEqual(b.codes);
    expect(findCollisions(a.codes).surplusItems).toBe(0);
    expect(a.codes[0]!.length).toBe(4); // 3 levels + disambiguation
    // Level 0 is a relabelling of the planted top category.
    const map = new Map<number, number>();
    paths.forEach((p, i) => {
      const c = a.codes[i]![0]!;
      if (!map.has(p[0]!)) map.set(p[0]!, c);
      expect(map.get(p[0]!)).toBe(c);
    });
    expect(new Set(map.values()).size).toBe(6);
  });

  it('handles the default 3 x 256 codebook on a few thousand items quickly', () => {
    const rng = new Rng(5);
    const n = 2000;
    const d = 16;
    const v = new Float32Array(n * d).map(() => rng.normal());
    const t0 = performance.now();
    const s = residualKMeansSids(v, n, d, { maxIterations: 10 });
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(s.levelSizes.slice(0, 3).every((k) => k <= 256)).toBe(true);
    expect(new Set(s.codes.map((c) => c.join())).size).toBe(n);
    expect(() => residualKMeansSids(v, n, d + 1)).toThrow(/nItems\*dim/);
  });
});

describe('SidVocab', () => {
  it('maps specials and level tokens to contiguous ids', () => {
    const v = new SidVocab([4, 3, 2]);
    expect([v.pad, v.bos, v.eos]).toEqual([0, 1, 2]);
    expect(v.size).toBe(3 + 4 + 3 + 2);
    expect(v.levelRange(0)).toEqual({ start: 3, end: 7 });
    expect(v.levelRange(1)).toEqual({ start: 7, end: 10 });
    expect(v.levelRange(2)).toEqual({ start: 10, end: 12 });
    expect(v.id(1, 2)).toBe(9);
    expect(v.tokenToId('<b_2>')).toBe(9);
    expect(v.tokenToId('<eos>')).toBe(2);
    expect(v.tokenToId('<b_3>')).toBeUndefined();
    expect(v.tokenToId('<d_0>')).toBeUndefined();
    for (let id = 0; id < v.size; id++) expect(v.tokenToId(v.idToToken(id))).toBe(id);
    expect(v.levelOf(2)).toBe(-1);
    expect(v.levelOf(3)).toBe(0);
    expect(v.levelOf(11)).toBe(2);
    expect(v.levelOf(12)).toBe(-1);
    expect(v.encode([3, 0, 1])).toEqual([6, 7, 11]);
    expect(v.decode([6, 7, 11])).toEqual([3, 0, 1]);
    expect(() => v.decode([7, 6])).toThrow(/level/);
    expect(() => v.id(0, 4)).toThrow();
    expect(SidVocab.fromJSON(JSON.parse(JSON.stringify(v))).size).toBe(v.size);
  });

  it('pads semantic levels to a fixed codebook, not the disambiguation level', () => {
    const set = disambiguate([[1, 2], [1, 2], [0, 5]]);
    const v = SidVocab.forSidSet(set, { codebookSize: 256 });
    expect(v.levelSizes).toEqual([256, 256, 2]);
    expect(v.size).toBe(3 + 256 + 256 + 2);
    expect(v.idToToken(v.encode(set.codes[1]!)[2]!)).toBe('<c_1>');
    expect(() => new SidVocab([2], { specials: ['<pad>', '<bos>'] })).toThrow(/<eos>/);
  });
});
