// Prefix trie for constrained decoding: allowed next tokens, item lookup, end token, errors.

import { describe, expect, it } from 'vitest';
import { SidTrie } from '../../ilrec/data/trie.js';

describe('SidTrie', () => {
  const codes = [
    [3, 10, 20],
    [3, 10, 21],
    [3, 12, 20],
    [5, 10, 20],
  ];

  it('lists allowed next tokens in ascending order', () => {
    const t = new SidTrie(codes);
    expect(t.allowedNext([])).toEqual([3, 5]);
    expect(t.allowedNext([3])).toEqual([10, 12]);
    expect(t.allowedNext([3, 10])).toEqual([20, 21]);
    expect(t.allowedNext([5, 10])).toEqual([20]);
    expect(t.allowedNext([3, 10, 21])).toEqual([]); // complete
    expect(t.allowedNext([4])).toEqual([]); // invalid
    expect(t.nodeCount).toBe(1 + 2 + 3 + 4);
  });

  it('maps complete codes to items, partial and unknown codes to undefined', () => {
    const t = new SidTrie(codes);
    codes.forEach((c, i) => expect(t.itemOf(c)).toBe(i));
    expect(t.itemOf([3, 10])).toBeUndefined();
    expect(t.itemOf([3, 10, 22])).toBeUndefined();
    expect(t.itemOf([3, 10, 20, 1])).toBeUndefined();
  });

  it('steps node by node for beam search', () => {
    const t = new SidTrie(codes);
    const n1 = t.step(t.root, 3);
    const n2 = t.step(n1, 12);
    expect(Array.from(t.allowedAt(n2))).toEqual([20]);
    expect(t.itemAt(t.step(n2, 20))).toBe(2);
    expect(t.step(n2, 99)).toBe(-1);
  });

  it('with an end token, accepts codes that are prefixes of others', () => {
    const EOS = 2;
    const t = new SidTrie([[7, 8], [7, 8, 9], [7, 1]], { endToken: EOS });
    expect(t.allowedNext([7])).toEqual([1, 8]);
    expect(t.allowedNext([7, 8])).toEqual([EOS, 9]);
    expect(t.allowedNext([7, 8, 9])).toEqual([EOS]);
    expect(t.allowedNext([7, 8, EOS])).toEqual([]);
    expect(t.itemOf([7, 8])).toBe(0);
    expect(t.itemOf([7, 8, EOS])).toBe(0);
    expect(t.itemOf([7, 8, 9])).toBe(1);
    expect(() => new SidTrie([[2, 4]], { endToken: 2 })).toThrow(/end token/);
  });

  it('rejects duplicate codes and, without an end token, prefix codes', () => {
    expect(() => new SidTrie([[1, 2], [1, 2]])).toThrow(/items 0 and 1 have the same code/);
    expect(() => new SidTrie([[1, 2], [1, 2, 3]])).toThrow(/prefix/);
    expect(() => new SidTrie([[1, 2, 3], [1, 2]])).toThrow(/prefix/);
    expect(() => new SidTrie([[]])).toThrow(/empty/);
  });
});
