// Readers on small in-memory inputs: the happy path of each format, time sorting, k-core and
// dedupe counts, and malformed input (strict errors with file:line, lenient counts).

import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DataFormatError, datasetStats, formatReport, type Dataset, type FilterReport } from '../../ilrec/data/dataset.js';
import { parseTopLevelObject } from '../../ilrec/data/json.js';
import {
  readAmazon,
  readLcRec,
  readLcRecDir,
  readMovieLens,
  readRecBole,
  readSidIndex,
  splitCsvLine,
} from '../../ilrec/data/readers.js';

/** Sequences as original ids, for readable expectations. */
function seqIds(ds: Dataset): Record<string, string[]> {
  return Object.fromEntries(ds.users.map((u, k) => [u, ds.sequences[k]!.map((i) => ds.items[i]!)]));
}

function dropCount(r: FilterReport, reason: RegExp, unit?: string): number {
  return r.drops.filter((d) => reason.test(d.reason) && (!unit || d.unit === unit)).reduce((s, d) => s + d.count, 0);
}

/** Expects a DataFormatError at file:line whose message matches. */
function expectFormatError(fn: () => unknown, file: string, line: number, msg: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DataFormatError);
    const err = e as DataFormatError;
    expect(err.file).toBe(file);
    expect(err.line).toBe(line);
    expect(err.message).toMatch(msg);
    expect(err.message.startsWith(`${file}:${line}: `)).toBe(true);
    return;
  }
  throw new Error('expected a DataFormatError');
}

async function expectFormatErrorAsync(p: Promise<unknown>, file: string, line: number, msg: RegExp): Promise<void> {
  let err: unknown;
  await p.catch((e: unknown) => (err = e));
  expectFormatError(() => {
    if (err) throw err;
  }, file, line, msg);
}

describe('parseTopLevelObject', () => {
  it('keeps keys in order with lines, duplicates included', () => {
    const text = '{\n  "a": [1,\n    2],\n  "b": {"x": "y\\n"},\n  "a": []\n}\n';
    const e = parseTopLevelObject(text, 'f.json');
    expect(e.map((x) => [x.key, x.line])).toEqual([['a', 2], ['b', 4], ['a', 5]]);
    expect(e[0]!.elementLines).toEqual([2, 3]);
    expect(e[1]!.value).toEqual({ x: 'y\n' });
  });

  it('names the line of a syntax error', () => {
    expectFormatError(() => parseTopLevelObject('{\n "a": [1,\n 2,,]\n}', 'f.json'), 'f.json', 3, /invalid JSON/);
    expectFormatError(() => parseTopLevelObject('[1]', 'g.json'), 'g.json', 1, /object/);
    expectFormatError(() => parseTopLevelObject('{"a": 1}\n\n x', 'g.json'), 'g.json', 3, /after/);
  });
});

describe('readLcRec', () => {
  const inter = { file: 'T.inter.json', text: '{\n "0": [0, 1, 2],\n "1": [2, 3, 1, 0],\n "2": [10, 3]\n}' };
  const index = {
    file: 'T.index.json',
    text: JSON.stringify({
      '0': ['<a_1>', '<b_2>'],
      '1': ['<a_1>', '<b_3>'],
      '2': ['<a_0>', '<b_2>'],
      '3': ['<a_1>', '<b_2>'],
      '10': ['<a_5>', '<b_0>'],
    }),
  };
  const item = { file: 'T.item.json', text: JSON.stringify({ '0': { title: 'zero' }, '3': { title: 'three', brand: 'x' } }) };

  it('reads interactions, SIDs and titles; numeric ids keep their order', () => {
    const ds = readLcRec({ name: 'T', inter, index, item });
    expect(ds.users).toEqual(['0', '1', '2']);
    expect(ds.items).toEqual(['0', '1', '2', '3', '10']);
    expect(ds.sequences).toEqual([[0, 1, 2], [2, 3, 1, 0], [4, 3]]);
    expect(ds.sids![4]).toEqual(['<a_5>', '<b_0>']);
    expect(ds.titles).toEqual(['zero', undefined, undefined, 'three', undefined]);
    expect(ds.report.kept).toEqual({ users: 3, items: 5, interactions: 9 });
    expect(ds.report.drops).toEqual([]);
    expect(ds.report.notes.join()).toMatch(/3 items have no title/);
  });

  it('orders non-numeric item ids by first appearance', () => {
    const ds = readLcRec({ name: 'S', inter: { file: 's', text: '{"u": ["x", "b"], "v": ["a", "x"]}' } });
    expect(ds.items).toEqual(['x', 'b', 'a']);
    expect(ds.sids).toBeUndefined();
  });

  it('rejects a duplicate user with file and line', () => {
    const dup = { file: 'D.inter.json', text: '{\n "0": [0, 1],\n "1": [1],\n "0": [2]\n}' };
    expectFormatError(() => readLcRec({ name: 'D', inter: dup }), 'D.inter.json', 4, /duplicate user id "0" \(first at line 2\)/);
    const ds = readLcRec({ name: 'D', inter: dup }, { lenient: true });
    expect(ds.users).toEqual(['0', '1']);
    expect(dropCount(ds.report, /duplicate user/, 'user')).toBe(1);
    expect(ds.report.drops[0]!.examples[0]).toMatch(/^D\.inter\.json:4: /);
  });

  it('rejects an index entry for an unknown item', () => {
    const idx = { file: 'U.index.json', text: '{\n"0": ["<a_1>"],\n"1": ["<a_2>"],\n"99": ["<a_3>"],\n"2": ["<a_0>"], "3": ["<a_4>"], "10": ["<a_9>"]\n}' };
    expectFormatError(() => readLcRec({ name: 'U', inter, index: idx }), 'U.index.json', 4, /unknown item id "99"/);
    const ds = readLcRec({ name: 'U', inter, index: idx }, { lenient: true });
    expect(dropCount(ds.report, /unknown item id in index/, 'item')).toBe(1);
    expect(ds.items.length).toBe(5);
  });

  it('rejects an interaction whose item has no SID, at the line of the element', () => {
    const idx = { file: 'M.index.json', text: JSON.stringify({ '0': ['<a_1>'], '1': ['<a_2>'], '2': ['<a_0>'], '3': ['<a_4>'] }) };
    expectFormatError(() => readLcRec({ name: 'M', inter, index: idx }), 'T.inter.json', 4, /item "10" has no SID/);
    const ds = readLcRec({ name: 'M', inter, index: idx }, { lenient: true });
    expect(dropCount(ds.report, /no SID/, 'interaction')).toBe(1);
    expect(dropCount(ds.report, /no interactions after/, 'item')).toBe(1);
    expect(seqIds(ds)['2']).toEqual(['3']);
    expect(ds.report.kept.interactions).toBe(8);
  });

  it('rejects malformed SIDs and values', () => {
    const bad = (text: string) => ({ file: 'B.index.json', text });
    const four = '"1": ["<a_1>"], "2": ["<a_1>"], "3": ["<a_1>"], "10": ["<a_1>"]';
    expectFormatError(() => readLcRec({ name: 'B', inter, index: bad(`{"0": ["<b_1>"], ${four}}`) }), 'B.index.json', 1, /expected level "a"/);
    expectFormatError(() => readLcRec({ name: 'B', inter, index: bad(`{"0": ["a_1"], ${four}}`) }), 'B.index.json', 1, /not a SID token/);
    expectFormatError(() => readLcRec({ name: 'B', inter, index: bad(`{${four},\n"0": ["<a_1>", "<b_1>"]}`) }), 'B.index.json', 2, /2 SID levels/);
    expectFormatError(() => readLcRec({ name: 'B', inter: { file: 'x', text: '{"u": 5}' } }), 'x', 1, /expected an array/);
    expectFormatError(() => readLcRec({ name: 'B', inter: { file: 'x', text: '{"u": [1,\n -1]}' } }), 'x', 2, /item id/);
  });

  it('drops a user left empty and says so', () => {
    const ds = readLcRec({ name: 'E', inter: { file: 'e', text: '{"a": [], "b": [1]}' } });
    expect(ds.users).toEqual(['b']);
    expect(dropCount(ds.report, /empty sequence/, 'user')).toBe(1);
  });

  it('reads a directory and a standalone index', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ilrec-lcrec-'));
    writeFileSync(path.join(dir, 'T.inter.json'), inter.text);
    writeFileSync(path.join(dir, 'T.index.json'), index.text);
    const ds = readLcRecDir(dir, 'T');
    expect(ds.sids!.length).toBe(5);
    expect(ds.report.files).toEqual([path.join(dir, 'T.inter.json'), path.join(dir, 'T.index.json')]);
    expect(ds.report.notes.join()).toMatch(/titles absent/);
    const idx = readSidIndex(path.join(dir, 'T.index.json'));
    expect(idx.items).toEqual(['0', '1', '2', '3', '10']);
    expect(idx.sids[0]).toEqual(['<a_1>', '<b_2>']);
  });
});

describe('readRecBole', () => {
  const header = 'user_id:token\titem_id:token\trating:float\ttimestamp:float';
  const text = [header, 'u1\ti1\t5\t300', 'u1\ti2\t3\t100', 'u2\ti1\t4\t50', 'u1\ti3\t4\t100', 'u2\ti3\t1\t60', ''].join('\n');

  it('sorts by timestamp stably and reads titles from the .item file', async () => {
    const ds = await readRecBole(
      { file: 'x.inter', text },
      { itemFile: { file: 'x.item', text: 'item_id:token\ttitle:token_seq\ni1\tFirst Item\ni3\tThird\ni9\tUnused' } },
    );
    // u1: i2 (100) and i3 (100) tie -> file order i2, i3; then i1 (300).
    expect(seqIds(ds)).toEqual({ u1: ['i2', 'i3', 'i1'], u2: ['i1', 'i3'] });
    expect(ds.times![0]).toEqual([100, 100, 300]);
    expect(ds.titles![ds.items.indexOf('i1')]).toBe('First Item');
    expect(ds.titles![ds.items.indexOf('i2')]).toBeUndefined();
    expect(ds.report.notes.join('\n')).toMatch(/out of time order/);
    expect(ds.report.notes.join('\n')).toMatch(/1 items in x.item have no interactions/);
    expect(ds.name).toBe('x');
  });

  it('filters by rating and counts it', async () => {
    const ds = await readRecBole({ file: 'x.inter', text }, { minRating: 4 });
    expect(seqIds(ds)).toEqual({ u1: ['i3', 'i1'], u2: ['i1'] });
    expect(dropCount(ds.report, /minRating/, 'interaction')).toBe(2);
  });

  it('works without a timestamp field (file order)', async () => {
    const ds = await readRecBole({ file: 'y.inter', text: 'user_id:token\titem_id:token\na\tx\na\ty\nb\tx' });
    expect(seqIds(ds)).toEqual({ a: ['x', 'y'], b: ['x'] });
    expect(ds.times).toBeUndefined();
  });

  it('reports malformed rows with file and line', async () => {
    const bad = [header, 'u1\ti1\t5\t300', 'u1\ti2\t5', 'u2\ti2\t5\tyesterday'].join('\n');
    await expectFormatErrorAsync(readRecBole({ file: 'b.inter', text: bad }), 'b.inter', 3, /3 tab-separated fields/);
    const ds = await readRecBole({ file: 'b.inter', text: bad }, { lenient: true });
    expect(dropCount(ds.report, /wrong number/, 'record')).toBe(1);
    expect(dropCount(ds.report, /bad timestamp/, 'record')).toBe(1);
    expect(ds.report.kept.interactions).toBe(1);
    await expectFormatErrorAsync(readRecBole({ file: 'h.inter', text: 'user:token\titem_id:token\n' }), 'h.inter', 1, /lacks "user_id"/);
    await expectFormatErrorAsync(readRecBole({ file: 'h.inter', text: 'user_id:tok\n' }), 'h.inter', 1, /bad RecBole header/);
  });
});

describe('readAmazon', () => {
  const l2018 = (u: string, a: string, t: number, overall = 5) => JSON.stringify({ reviewerID: u, asin: a, unixReviewTime: t, overall });
  const l2023 = (u: string, pa: string, t: number) => JSON.stringify({ user_id: u, parent_asin: pa, asin: pa + 'v', timestamp: t, rating: 4 });

  it('reads 2018 reviews, sorts by time, applies 5-core and dedupe by default', async () => {
    // 5 users x 5 items all reviewed (a 5-core), plus: a 6th user with 2 reviews (dropped),
    // an item reviewed by 1 user (dropped), and a duplicate review (deduped).
    const lines: string[] = [];
    for (let u = 0; u < 5; u++) for (let i = 4; i >= 0; i--) lines.push(l2018(`U${u}`, `A${i}`, 1000 + i * 10 + u));
    lines.push(l2018('U6', 'A0', 5), l2018('U6', 'A1', 6));
    lines.push(l2018('U0', 'LONELY', 2000));
    lines.push(l2018('U1', 'A2', 3000)); // duplicate of (U1, A2): later, dropped by dedupe
    const ds = await readAmazon({ file: 'r.json', text: lines.join('\n') });
    expect(ds.users).toEqual(['U0', 'U1', 'U2', 'U3', 'U4']);
    expect(ds.items.length).toBe(5);
    expect(seqIds(ds)['U0']).toEqual(['A0', 'A1', 'A2', 'A3', 'A4']);
    expect(ds.report.kept.interactions).toBe(25);
    expect(dropCount(ds.report, /dedupe/, 'interaction')).toBe(1);
    expect(dropCount(ds.report, /user below/, 'user')).toBe(1);
    expect(dropCount(ds.report, /item below/, 'item')).toBe(1);
    expect(dropCount(ds.report, /interactions of dropped/, 'interaction')).toBe(3);
    expect(ds.report.notes.join()).toMatch(/2018 format/);
    expect(formatReport(ds.report)).toMatch(/dropped 1 user\(s\)/);
  });

  it('k-core iterates until stable', async () => {
    // 2-core: item C has 2 users, but user Z drops (1 review) which leaves C with 1 -> C drops,
    // which leaves Y with 1 -> Y drops.
    const lines = [l2018('X', 'A', 1), l2018('X', 'B', 2), l2018('W', 'A', 1), l2018('W', 'B', 2), l2018('Y', 'C', 1), l2018('Y', 'A', 2), l2018('Z', 'C', 3)];
    const ds = await readAmazon({ file: 'k.json', text: lines.join('\n') }, { kCore: 2 });
    expect(seqIds(ds)).toEqual({ X: ['A', 'B'], W: ['A', 'B'] });
    expect(dropCount(ds.report, /user below/)).toBe(2);
    expect(dropCount(ds.report, /item below/)).toBe(1);
    expect(ds.report.notes.join()).toMatch(/converged after 3 round/);
  });

  it('reads 2023 reviews (parent_asin) and titles from meta', async () => {
    const lines = [l2023('a', 'P1', 2000), l2023('a', 'P2', 1000), l2023('b', 'P1', 5)];
    const meta = { file: 'meta.jsonl', text: [JSON.stringify({ parent_asin: 'P1', title: ' One ' }), JSON.stringify({ parent_asin: 'P2', title: '' })].join('\n') };
    const ds = await readAmazon({ file: 'r23.jsonl', text: lines.join('\n') }, { kCore: 0, meta });
    expect(seqIds(ds)).toEqual({ a: ['P2', 'P1'], b: ['P1'] });
    expect(ds.titles).toEqual(['One', undefined]);
    const kept = await readAmazon({ file: 'r23.jsonl', text: lines.join('\n') }, { kCore: 0, meta, requireTitle: true });
    expect(seqIds(kept)).toEqual({ a: ['P1'], b: ['P1'] });
    expect(dropCount(kept.report, /requireTitle/, 'interaction')).toBe(1);
    const byAsin = await readAmazon({ file: 'r23.jsonl', text: lines.join('\n') }, { kCore: 0, itemKey2023: 'asin' });
    expect(byAsin.items).toEqual(['P1v', 'P2v']); // item order = first appearance in the file
  });

  it('reports bad lines and missing fields with file and line', async () => {
    const text = [l2018('U', 'A', 1), '{"reviewerID": "U", "asin": "B"', JSON.stringify({ reviewerID: 'U', unixReviewTime: 3 })].join('\n');
    await expectFormatErrorAsync(readAmazon({ file: 'bad.json', text }, { kCore: 0 }), 'bad.json', 2, /bad JSON/);
    await expectFormatErrorAsync(
      readAmazon({ file: 'bad.json', text: [l2018('U', 'A', 1), JSON.stringify({ reviewerID: 'U', unixReviewTime: 3 })].join('\n') }, { kCore: 0 }),
      'bad.json',
      2,
      /missing or non-string field "asin"/,
    );
    const ds = await readAmazon({ file: 'bad.json', text }, { kCore: 0, lenient: true });
    expect(ds.report.kept.interactions).toBe(1);
    expect(dropCount(ds.report, /bad JSON/, 'record')).toBe(1);
    expect(dropCount(ds.report, /missing field asin/, 'record')).toBe(1);
    expect(ds.report.recordsRead).toBe(3);
  });

  it('reads a gzipped file from disk', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ilrec-amazon-'));
    const file = path.join(dir, 'Reviews.json.gz');
    writeFileSync(file, gzipSync([l2018('U', 'A', 2), l2018('U', 'B', 1)].join('\n') + '\n'));
    const ds = await readAmazon(file, { kCore: 0 });
    expect(seqIds(ds)).toEqual({ U: ['B', 'A'] });
    expect(ds.name).toBe('Reviews');
  });
});

describe('readMovieLens', () => {
  it('reads ratings.dat with movies.dat titles', async () => {
    const ratings = { file: 'ratings.dat', text: '1::10::5::978300760\n1::20::3::978300700\n2::10::4::978300000\n' };
    const movies = { file: 'movies.dat', text: '10::Toy Story (1995)::Animation\n20::Heat (1995)::Action\n30::Unrated (1999)::Drama\n' };
    const ds = await readMovieLens(ratings, { movies });
    expect(seqIds(ds)).toEqual({ '1': ['20', '10'], '2': ['10'] });
    expect(ds.titles).toEqual(['Toy Story (1995)', 'Heat (1995)']);
    const liked = await readMovieLens(ratings, { minRating: 4 });
    expect(seqIds(liked)).toEqual({ '1': ['10'], '2': ['10'] });
    expect(dropCount(liked.report, /minRating/)).toBe(1);
  });

  it('reads ratings.csv with a header and quoted movies.csv titles', async () => {
    const ratings = { file: 'ratings.csv', text: 'userId,movieId,rating,timestamp\r\n1,2,3.5,20\r\n1,1,4.0,10\r\n' };
    const movies = { file: 'movies.csv', text: 'movieId,title,genres\n1,"American President, The (1995)",Comedy\n2,"Say ""Hi""",Drama\n' };
    const ds = await readMovieLens(ratings, { movies });
    expect(seqIds(ds)).toEqual({ '1': ['1', '2'] });
    // items in first-appearance order: movie 2, then movie 1
    expect(ds.titles).toEqual(['Say "Hi"', 'American President, The (1995)']);
  });

  it('reads u.data (tab-separated) and reports malformed lines', async () => {
    const text = '1\t5\t3\t100\n1\t6\t3\n2\t5\t4\tlater\n';
    await expectFormatErrorAsync(readMovieLens({ file: 'u.data', text }), 'u.data', 2, /3 fields, expected 4/);
    const ds = await readMovieLens({ file: 'u.data', text }, { lenient: true });
    expect(ds.report.kept.interactions).toBe(1);
    expect(ds.report.drops.reduce((s, d) => s + d.count, 0)).toBe(2);
    await expectFormatErrorAsync(readMovieLens({ file: 'r.csv', text: 'user,item\n1,2\n' }), 'r.csv', 1, /CSV header/);
  });

  it('splits CSV lines with quotes', () => {
    expect(splitCsvLine('a,"b,c",,"d""e"')).toEqual(['a', 'b,c', '', 'd"e']);
  });
});

describe('datasetStats', () => {
  it('summarises a dataset', async () => {
    const ds = await readMovieLens({ file: 'ratings.dat', text: '1::10::5::3\n1::20::3::2\n2::10::4::1\n' });
    expect(datasetStats(ds)).toEqual({ users: 2, items: 2, interactions: 3, meanLength: 1.5, minLength: 1, maxLength: 2, density: 0.75 });
  });
});
