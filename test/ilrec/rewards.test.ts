// Token-level CF rewards vs a brute-force float64 computation from the definition (ILREC.md §3.4),
// plus the tree's mass conservation: Σ_v exp(r_{0,v}) = 1 and Σ_v exp(r_{t,v}) = exp(r_{t−1,y_{t−1}}).
import { describe, expect, it } from 'vitest';
import { tensor } from '../../engine/index.js';
import { Rng } from '../../ilrec/data/rng.js';
import { SidVocab } from '../../ilrec/data/sid.js';
import { RewardTable, tokenRewards } from '../../ilrec/cf/rewards.js';
import { expectClose, useDevice } from '../helpers.js';

useDevice();

/** n distinct random codes over codebooks `sizes`. */
function randomCodes(n: number, sizes: number[], rng: Rng): number[][] {
  const seen = new Set<string>();
  const codes: number[][] = [];
  while (codes.length < n) {
    const c = sizes.map((s) => rng.int(s));
    if (!seen.has(c.join())) {
      seen.add(c.join());
      codes.push(c);
    }
  }
  return codes;
}

/** r[b, t, v − c0] from the definition, in float64; −Infinity where no item continues the prefix with v. */
function bruteForce(logits: Float32Array, nItems: number, targets: number[], ids: number[][], c0: number, W: number): Float64Array {
  const L = ids[0]!.length;
  const r = new Float64Array(targets.length * L * W).fill(-Infinity);
  targets.forEach((y, b) => {
    const row = Array.from(logits.subarray(b * nItems, (b + 1) * nItems));
    const m = Math.max(...row);
    const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
    const p = row.map((v) => Math.exp(v - m) / z);
    for (let t = 0; t < L; t++) {
      const mass = new Map<number, number>();
      for (let i = 0; i < nItems; i++) {
        let samePrefix = true;
        for (let u = 0; u < t; u++) samePrefix &&= ids[i]![u] === ids[y]![u];
        if (samePrefix) mass.set(ids[i]![t]!, (mass.get(ids[i]![t]!) ?? 0) + p[i]!);
      }
      for (const [v, s] of mass) r[(b * L + t) * W + v - c0] = Math.log(s);
    }
  });
  return r;
}

function logSumExp(xs: ArrayLike<number>): number {
  const m = Math.max(...Array.from(xs));
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += Math.exp(xs[i]! - m);
  return m + Math.log(s);
}

/** −Infinity positions exactly, finite values within tolerance. */
function expectRewards(got: ArrayLike<number>, want: ArrayLike<number>, name: string) {
  const inf = (a: ArrayLike<number>) => Array.from(a, (v) => v === -Infinity);
  expect(inf(got), `${name}: -Infinity positions`).toEqual(inf(want));
  const fin = (a: ArrayLike<number>) => Array.from(a).filter((v) => v !== -Infinity);
  expectClose(fin(got), fin(want), { atol: 2e-5, rtol: 1e-5, name });
}

describe('token CF rewards', () => {
  const rng = new Rng(7);
  const sizes = [3, 4, 5];
  const nItems = 50;
  const codes = randomCodes(nItems, sizes, rng);
  const vocab = new SidVocab(sizes);
  const ids = codes.map((c) => vocab.encode(c));
  const table = new RewardTable(ids);
  const c0 = vocab.levelRange(0).start;
  const c1 = vocab.size;
  const W = c1 - c0;

  it('the table: children are the contiguous sub-ranges of each prefix, in token order', () => {
    for (let item = 0; item < nItems; item++)
      for (let t = 0; t < table.levels; t++) {
        const ch = table.children(item, t);
        expect(ch.start[0]).toBe(t === 0 ? 0 : ch.start[0]);
        for (let k = 0; k < ch.token.length; k++) {
          if (k > 0) {
            expect(ch.start[k]).toBe(ch.end[k - 1]);
            expect(ch.token[k]!).toBeGreaterThan(ch.token[k - 1]!);
          }
          for (let p = ch.start[k]!; p < ch.end[k]!; p++) {
            const other = ids[table.order[p]!]!;
            expect(other.slice(0, t)).toEqual(ids[item]!.slice(0, t));
            expect(other[t]).toBe(ch.token[k]);
          }
        }
        // Every item of the prefix's subtree is in some child.
        const inSubtree = ids.filter((c) => c.slice(0, t).join() === ids[item]!.slice(0, t).join()).length;
        expect(ch.end[ch.token.length - 1]! - ch.start[0]!).toBe(inSubtree);
      }
    expect(table.children(0, 0).end.at(-1)).toBe(nItems);
  });

  for (const [label, scale] of [['unit logits', 1], ['large logits (peaked P_CF)', 30]] as const)
    it(`matches the definition and conserves mass down the tree (${label})`, async () => {
      const B = 5;
      const logits = new Float32Array(B * nItems);
      for (let i = 0; i < logits.length; i++) logits[i] = scale * rng.normal();
      const targets = Array.from({ length: B }, () => rng.int(nItems));
      const x = tensor(logits, [B, nItems]);
      const r = tokenRewards(x, targets, table, [c0, c1]);
      expect(r.shape).toEqual([B, table.levels, W]);
      const got = await r.toArray();
      x.dispose();
      r.dispose();
      expectRewards(got, bruteForce(logits, nItems, targets, ids, c0, W), label);
      const L = table.levels;
      targets.forEach((y, b) => {
        for (let t = 0; t < L; t++) {
          const lse = logSumExp(got.subarray((b * L + t) * W, (b * L + t + 1) * W));
          const parent = t === 0 ? 0 : got[(b * L + t - 1) * W + ids[y]![t - 1]! - c0]!;
          expect(Math.abs(lse - parent), `row ${b} level ${t}: Σ_v exp(r) vs parent mass`).toBeLessThan(1e-4 * Math.max(1, Math.abs(parent)));
          // Only this level's tokens can be finite.
          const { start, end } = vocab.levelRange(t);
          for (let v = c0; v < c1; v++) if (v < start || v >= end) expect(got[(b * L + t) * W + v - c0]).toBe(-Infinity);
        }
      });
    });

  it('a narrower column window, duplicate codes, and clear errors', async () => {
    // Two items with one code share the leaf: their masses add.
    const dup = [[5, 7], [5, 8], [6, 7], [5, 7]];
    const t2 = new RewardTable(dup);
    const logits = new Float32Array([0, 1, 2, 3]);
    const r = tokenRewards(tensor(logits, [1, 4]), [3], t2, [5, 9]);
    const got = await r.toArray();
    const p = Array.from(logits, (v) => Math.exp(v) / Array.from(logits).reduce((s, u) => s + Math.exp(u), 0));
    const want = [Math.log(p[0]! + p[1]! + p[3]!), Math.log(p[2]!), -Infinity, -Infinity, -Infinity, -Infinity, Math.log(p[0]! + p[3]!), Math.log(p[1]!)];
    expectRewards(got, want, 'duplicates');
    r.dispose();
    const x = tensor(logits, [1, 4]);
    expect(() => tokenRewards(x, [3], t2, [6, 9])).toThrow(/token 5 \(level 0\) is outside the output columns \[6, 9\)/);
    expect(() => tokenRewards(x, [3, 1], t2, [5, 9])).toThrow(/2 targets for 1 rows/);
    expect(() => tokenRewards(x, [4], t2, [5, 9])).toThrow(/item 4 outside/);
    expect(() => tokenRewards(tensor(new Float32Array(3), [1, 3]), [0], t2, [5, 9])).toThrow(/must be \[B, 4\]/);
    expect(() => new RewardTable([[1, 2], [3]])).toThrow(/item 1 has a code of 1 tokens/);
    x.dispose();
  });
});
