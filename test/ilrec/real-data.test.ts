// Statistics of the real LC-Rec benchmark files (../shared/data/lcrec, never committed):
// user / item / interaction counts of ILREC.md §5, the SID collision counts, and that the
// split, the resolved SIDs, the vocabulary and the trie fit together on real data.

import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { datasetStats, type Dataset } from '../../ilrec/data/dataset.js';
import { readLcRecDir, readSidIndex } from '../../ilrec/data/readers.js';
import { SidVocab, sidsFromTokens } from '../../ilrec/data/sid.js';
import { leaveOneOut } from '../../ilrec/data/split.js';
import { SidTrie } from '../../ilrec/data/trie.js';
import { LCREC_DIR, haveLcRec } from './data-dir.js';

/** Published counts (ILREC.md §5, shared/data/README.md). */
const EXPECTED = {
  Instruments: { users: 24_772, items: 9_922, interactions: 206_153, distinctSids: 9_897, surplus: 25 },
  Games: { users: 50_546, items: 16_859, interactions: 452_989, distinctSids: 16_717, surplus: 142 },
} as const;

function checkDataset(name: keyof typeof EXPECTED): void {
  const exp = EXPECTED[name];
  let ds: Dataset;

  it(`reads ${name} with the published counts and nothing dropped`, () => {
    ds = readLcRecDir(LCREC_DIR, name);
    const st = datasetStats(ds);
    console.log(`${name}: ${st.users} users, ${st.items} items, ${st.interactions} interactions, lengths ${st.minLength}-${st.maxLength} (mean ${st.meanLength.toFixed(2)})`);
    expect({ users: st.users, items: st.items, interactions: st.interactions }).toEqual({
      users: exp.users,
      items: exp.items,
      interactions: exp.interactions,
    });
    expect(ds.report.drops).toEqual([]);
    expect(st.minLength).toBeGreaterThanOrEqual(5); // 5-core
    // LC-Rec ids are 0..n-1, so item index = LC-Rec item id.
    expect(ds.items.every((id, i) => id === String(i))).toBe(true);
  });

  it(`${name}: SID collisions detected and resolved`, () => {
    const set = sidsFromTokens(ds.sids!);
    console.log(`${name}: ${set.collisions.distinct} distinct SIDs, ${set.collisions.surplusItems} surplus items, ${set.collisions.itemsInCollisions} items in ${set.collisions.groups.length} colliding groups (largest ${set.collisions.largestGroup})`);
    expect(set.collisions.distinct).toBe(exp.distinctSids);
    expect(set.collisions.surplusItems).toBe(exp.surplus);
    expect(new Set(set.codes.map((c) => c.join())).size).toBe(exp.items);

    const vocab = SidVocab.forSidSet(set, { codebookSize: 256 });
    expect(vocab.levelSizes.slice(0, 4)).toEqual([256, 256, 256, 256]);
    expect(vocab.levelSizes[4]).toBe(set.collisions.largestGroup);
    const tokenIds = set.codes.map((c) => vocab.encode(c));
    const trie = new SidTrie(tokenIds, { endToken: vocab.eos });
    expect(tokenIds.filter((ids, i) => trie.itemOf(ids) !== i).length).toBe(0);
    const first = trie.allowedNext([]);
    expect(first.every((id) => vocab.levelOf(id) === 0)).toBe(true);

    // The prefix-free variant keeps the published 4 tokens for non-colliding items.
    const only = sidsFromTokens(ds.sids!, { mode: 'collidingOnly' });
    expect(only.codes.filter((c) => c.length === 5).length).toBe(set.collisions.itemsInCollisions);
    expect(() => new SidTrie(only.codes)).not.toThrow();
  });

  it(`${name}: leave-one-out split sizes`, () => {
    const split = leaveOneOut(ds.sequences);
    expect(split.test.length).toBe(exp.users);
    expect(split.valid.length).toBe(exp.users);
    expect(split.train.length).toBe(exp.interactions - 2 * exp.users - exp.users); // n - 3 per user
    expect(split.test.every((s) => s.history.length <= 20)).toBe(true);
  });
}

describe.skipIf(!haveLcRec('Instruments.inter.json', 'Instruments.index.json'))('LC-Rec Instruments', () => {
  checkDataset('Instruments');
});

describe.skipIf(!haveLcRec('Games.inter.json', 'Games.index.json'))('LC-Rec Games', () => {
  checkDataset('Games');
});

describe.skipIf(!haveLcRec('Arts.index.json'))('LC-Rec Arts index', () => {
  it('has 20,956 items with 4-token SIDs', () => {
    const idx = readSidIndex(path.join(LCREC_DIR, 'Arts.index.json'));
    const set = sidsFromTokens(idx.sids);
    console.log(`Arts: ${idx.items.length} items, ${set.collisions.distinct} distinct SIDs, ${set.collisions.surplusItems} surplus`);
    expect(idx.items.length).toBe(20_956);
    expect(set.semanticLevels).toBe(4);
    expect(set.collisions.surplusItems).toBe(20_956 - set.collisions.distinct);
  });
});
