// Training windows and batches: every leaveOneOut training target appears exactly once, with the
// right label tokens at the right positions; the data order is a pure function of (seed, step).
import { describe, expect, it } from 'vitest';
import { leaveOneOut } from '../../ilrec/data/split.js';
import { generateSynthetic } from '../../ilrec/data/synthetic.js';
import {
  DataOrder,
  IGNORE,
  itemCodesFromDataset,
  promptOf,
  sampleNegatives,
  stepRng,
  subsetOf,
  trainWindows,
  windowBatch,
  windowTargets,
} from '../../ilrec/train/examples.js';

const ds = generateSynthetic({ seed: 3, users: 60, minLength: 3, maxLength: 40 });
const codes = itemCodesFromDataset(ds);

describe('trainWindows', () => {
  for (const [maxHistory, stride] of [[20, 10], [5, 5], [7, 3], [1, 1]] as const)
    it(`covers each training target once (maxHistory ${maxHistory}, stride ${stride})`, () => {
      const ws = trainWindows(ds.sequences, maxHistory, stride);
      const split = leaveOneOut(ds.sequences, { maxHistory });
      expect(windowTargets(ws)).toBe(split.train.length);
      const seen = new Set<string>();
      for (const w of ws) {
        expect(w.items.length).toBeLessThanOrEqual(maxHistory + 1);
        expect(w.firstTarget).toBeGreaterThanOrEqual(1);
        const seq = ds.sequences[w.user]!;
        for (let j = w.firstTarget; j < w.items.length; j++) {
          const pos = w.start + j;
          expect(seq[pos]).toBe(w.items[j]);
          expect(pos).toBeLessThan(seq.length - 2); // never the validation or test target
          const key = `${w.user}:${pos}`;
          expect(seen.has(key)).toBe(false);
          seen.add(key);
          // History seen inside the window: all of it, or at least maxHistory − stride + 1 items.
          expect(j).toBeGreaterThanOrEqual(Math.min(pos, maxHistory - stride + 1));
        }
      }
      for (const s of split.train) expect(seen.has(`${s.user}:${s.position}`)).toBe(true);
    });
});

describe('windowBatch', () => {
  it('labels are the next tokens of the input at the response positions', () => {
    const ws = trainWindows(ds.sequences, 20, 10).slice(0, 7);
    const b = windowBatch(ws, codes);
    const P = b.positions[0]!.length;
    const T = b.ids[0]!.length;
    ws.forEach((w, r) => {
      const full = [codes.vocab.bos, ...w.items.flatMap((i) => codes.tokens[i]!)];
      expect(b.ids[r]!.slice(0, full.length - 1)).toEqual(full.slice(0, -1));
      expect(b.ids[r]!.length).toBe(T);
      for (let p = 0; p < P; p++) {
        const label = b.labels[r * P + p]!;
        if (label === IGNORE) {
          expect(b.targetOf[r * P + p]).toBe(-1);
          continue;
        }
        expect(full[b.positions[r]![p]! + 1]).toBe(label);
        expect(codes.vocab.levelOf(label)).toBe(b.levels[r * P + p]);
        const t = b.targets[b.targetOf[r * P + p]!]!;
        expect(codes.tokens[t.item]![b.levels[r * P + p]!]).toBe(label);
        expect(ds.sequences[t.user]![t.position]).toBe(t.item);
      }
    });
    expect(b.tokens).toBe(ws.reduce((a, w) => a + w.items.length * codes.Lc, 0));
  });

  it('prompts hold BOS and the last maxHistory items', () => {
    expect(promptOf([4, 5, 6], codes, 2)).toEqual([codes.vocab.bos, ...codes.tokens[5]!, ...codes.tokens[6]!]);
  });
});

describe('DataOrder', () => {
  it('visits every example once per epoch, the same way every time', () => {
    const o = new DataOrder(10, 4, 7);
    const first = Array.from({ length: 5 }, (_, g) => o.microBatch(g)).flat();
    expect([...first.slice(0, 10)].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    expect([...first.slice(10, 20)].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    const again = new DataOrder(10, 4, 7);
    expect(again.microBatch(3)).toEqual(o.microBatch(3)); // random access = sequential
    expect(new DataOrder(10, 4, 8).microBatch(0)).not.toEqual(o.microBatch(0));
    expect(o.batchesIn(2)).toBe(5);
  });

  it('grouped by length: every epoch still visits each example once, and batches pad far less', () => {
    const n = 203; // not a multiple of the batch, so batches straddle epochs and the alignment shifts
    const B = 8;
    const lengths = Array.from({ length: n }, (_, i) => ((i * 7919) % 97) % 21 + 1);
    const padded = (o: DataOrder) => Array.from({ length: o.batchesIn(3) }, (_, g) => o.microBatch(g)).reduce((a, b) => a + B * Math.max(...b.map((i) => lengths[i]!)), 0);
    const grouped = new DataOrder(n, B, 3, lengths, 5);
    const seq = Array.from({ length: grouped.batchesIn(3) }, (_, g) => grouped.microBatch(g)).flat();
    for (let e = 0; e < 3; e++) expect([...seq.slice(e * n, (e + 1) * n)].sort((a, b) => a - b)).toEqual([...Array(n).keys()]);
    expect(new DataOrder(n, B, 3, lengths, 5).microBatch(40)).toEqual(grouped.microBatch(40)); // random access = sequential
    const plain = padded(new DataOrder(n, B, 3));
    const tight = padded(grouped);
    expect(tight).toBeLessThan(0.8 * plain);
    expect(() => new DataOrder(n, B, 3, lengths.slice(1), 5)).toThrow(/202 lengths for 203 examples/);
  });

  it('negatives avoid the seen items and depend only on (seed, step, stream)', () => {
    const seen = new Set([0, 1, 2]);
    const a = sampleNegatives(stepRng(1, 5, 0), 10, seen, 4);
    expect(a).toEqual(sampleNegatives(stepRng(1, 5, 0), 10, seen, 4));
    expect(new Set(a).size).toBe(4);
    for (const x of a) expect(seen.has(x)).toBe(false);
    expect(() => sampleNegatives(stepRng(1, 5, 0), 5, seen, 3)).toThrow(/only 2 unseen/);
  });

  it('subsets are deterministic and ordered', () => {
    const xs = [...Array(50).keys()];
    const s = subsetOf(xs, 10, 1);
    expect(s).toEqual(subsetOf(xs, 10, 1));
    expect(s).toEqual([...s].sort((a, b) => a - b));
    expect(subsetOf(xs, 0, 1)).toEqual(xs);
  });
});
