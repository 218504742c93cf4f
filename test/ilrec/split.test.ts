// Leave-one-out split exactly as ILREC.md §1, on hand-written sequences.

import { describe, expect, it } from 'vitest';
import { leaveOneOut } from '../../ilrec/data/split.js';

describe('leaveOneOut', () => {
  it('puts the last item in test, the second to last in validation, earlier prefixes in train', () => {
    const { train, valid, test, report } = leaveOneOut([[10, 11, 12, 13, 14]]);
    expect(test).toEqual([{ user: 0, history: [10, 11, 12, 13], target: 14, position: 4 }]);
    expect(valid).toEqual([{ user: 0, history: [10, 11, 12], target: 13, position: 3 }]);
    expect(train).toEqual([
      { user: 0, history: [10], target: 11, position: 1 },
      { user: 0, history: [10, 11], target: 12, position: 2 },
    ]);
    expect(report).toEqual({ users: 1, usersWithoutTrain: 0, usersWithoutValid: 0, usersWithoutTest: 0 });
  });

  it('caps histories at the most recent maxHistory items', () => {
    const seq = Array.from({ length: 30 }, (_, i) => i);
    const { train, test } = leaveOneOut([seq]);
    expect(test[0]!.history).toEqual(seq.slice(9, 29));
    expect(train.at(-1)).toEqual({ user: 0, history: seq.slice(7, 27), target: 27, position: 27 });
    const small = leaveOneOut([seq], { maxHistory: 3 });
    expect(small.test[0]!.history).toEqual([26, 27, 28]);
    expect(small.train[0]!.history).toEqual([0]);
    expect(() => leaveOneOut([seq], { maxHistory: 0 })).toThrow(/maxHistory/);
  });

  it('handles short sequences and counts users without samples', () => {
    const { train, valid, test, report } = leaveOneOut([[1], [1, 2], [1, 2, 3], [1, 2, 3, 4]]);
    expect(test.map((s) => s.user)).toEqual([1, 2, 3]);
    expect(valid.map((s) => s.user)).toEqual([2, 3]);
    expect(train).toEqual([{ user: 3, history: [1], target: 2, position: 1 }]);
    expect(report).toEqual({ users: 4, usersWithoutTrain: 3, usersWithoutValid: 2, usersWithoutTest: 1 });
  });

  it('is deterministic and gives n - 3 training samples per user', () => {
    const seqs = [[5, 6, 7, 8, 9, 1], [2, 3, 4, 5, 6]];
    const a = leaveOneOut(seqs);
    expect(leaveOneOut(seqs)).toEqual(a);
    expect(a.train.length).toBe(3 + 2);
    expect(a.train.map((s) => s.user)).toEqual([0, 0, 0, 1, 1]);
  });
});
