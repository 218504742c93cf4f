// HF tokenizer.json wrapper: a tiny byte-level BPE (Qwen2 / GPT-2 style) and a WordLevel model built
// in the test (no downloads); SID tokens added as single special tokens.
import { describe, expect, it } from 'vitest';
import { loadHFTokenizer } from '../../engine/io/tokenizer.js';

/** GPT-2's reversible byte → printable-unicode map used by ByteLevel pre-tokenizers. */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const m: string[] = new Array(256);
  bs.forEach((b, i) => (m[b] = String.fromCodePoint(cs[i]!)));
  return m;
}

const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const MERGES = [['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o'], ['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or'], ['l', 'd'], ['Ġwor', 'ld']];

/** A byte-level BPE: ids 0..255 are the bytes, then one id per merge, then <|endoftext|>. */
function byteLevelBPE() {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((c, byte) => (vocab[c] = byte));
  for (const [a, b] of MERGES) vocab[a! + b!] = Object.keys(vocab).length;
  const eot = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: eot, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: BYTE_LEVEL,
    post_processor: BYTE_LEVEL,
    decoder: BYTE_LEVEL,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false,
      byte_fallback: false, ignore_merges: false, vocab, merges: MERGES.map(([a, b]) => `${a} ${b}`),
    },
  };
}
const BASE_VOCAB = 256 + MERGES.length; // 265
const EOT = BASE_VOCAB;

/** The 4 × 256 SID tokens <a_0> .. <d_255>. */
const SID_TOKENS = [...'abcd'].flatMap((l) => Array.from({ length: 256 }, (_, i) => `<${l}_${i}>`));

describe('byte-level BPE tokenizer.json', () => {
  it('encodes with merges, decodes round trip (incl. non-ASCII), handles specials', () => {
    const t = loadHFTokenizer(JSON.stringify(byteLevelBPE()));
    expect(t.vocabSize).toBe(BASE_VOCAB + 1);
    expect(t.encode('hello world')).toEqual([259, 264]); // "hello", "Ġworld"
    expect(t.encode('hello world<|endoftext|>')).toEqual([259, 264, EOT]);
    for (const s of ['hello world', 'hello, world! ünïcödé ✓', '  spaces  and\ttabs\n', ''])
      expect(t.decode(t.encode(s))).toBe(s);
    expect(t.decode([259, 264, EOT], { skipSpecialTokens: true })).toBe('hello world');
    expect(t.tokenToId('hello')).toBe(259);
    expect(t.idToToken(264)).toBe('Ġworld');
    expect(t.decode([])).toBe('');
    expect(() => t.decode([BASE_VOCAB + 5])).toThrow(/id 270 is not in the vocabulary/);
    expect(() => t.decode([1.5])).toThrow(/id 1.5/);
  });

  it('addTokens: SID tokens become single special tokens with ids after the vocabulary', () => {
    const json = byteLevelBPE();
    const t = loadHFTokenizer(json);
    expect(t.encode('<a_12><b_3>').length).toBeGreaterThan(2); // bytes before adding
    const ids = t.addTokens(SID_TOKENS);
    // transformers: new ids start after the largest added id once added tokens sit past the model vocab
    expect(ids[0]).toBe(EOT + 1);
    expect(ids).toEqual(SID_TOKENS.map((_, i) => EOT + 1 + i));
    expect(t.vocabSize).toBe(BASE_VOCAB + 1 + SID_TOKENS.length);
    const a12 = ids[12]!;
    const b3 = ids[256 + 3]!;
    expect(t.encode('<a_12><b_3>')).toEqual([a12, b3]);
    expect(t.encode('hello <a_12><b_3><c_255><d_0> world')).toEqual([259, 32, a12, b3, ids[2 * 256 + 255], ids[3 * 256], 264]);
    expect(t.decode(t.encode('hello <a_12><b_3> world'))).toBe('hello <a_12><b_3> world');
    expect(t.decode([a12, b3], { skipSpecialTokens: true })).toBe('');
    expect(t.encode('<a_256>').length).toBeGreaterThan(1); // not a SID token: stays bytes
    // idempotent, and existing tokens keep their ids
    expect(t.addTokens(['<a_12>', '<|endoftext|>', 'hello'])).toEqual([a12, EOT, 259]);
    expect(t.vocabSize).toBe(BASE_VOCAB + 1 + SID_TOKENS.length);
    // the caller's object is untouched; toJSON carries the added tokens and reloads identically
    expect(json.added_tokens.length).toBe(1);
    const again = loadHFTokenizer(t.toJSON());
    expect(again.encode('x<a_12><b_3>y')).toEqual(t.encode('x<a_12><b_3>y'));
  });

  it('new ids start at the model vocab size when no added token lies past it', () => {
    const json = byteLevelBPE();
    json.added_tokens = [];
    const t = loadHFTokenizer(json);
    expect(t.addTokens(['<a_0>', '<a_1>'])).toEqual([BASE_VOCAB, BASE_VOCAB + 1]);
  });
});

describe('WordLevel tokenizer.json', () => {
  const wl = {
    model: { type: 'WordLevel', vocab: { '[UNK]': 0, hello: 1, world: 2 }, unk_token: '[UNK]' },
    pre_tokenizer: { type: 'Whitespace' },
    added_tokens: [],
  };
  it('maps words, unknowns to [UNK], and adds SID tokens', () => {
    const t = loadHFTokenizer(wl);
    expect(t.encode('hello world foo')).toEqual([1, 2, 0]);
    expect(t.decode([1, 2])).toBe('hello world');
    const [a, b] = t.addTokens(['<a_12>', '<b_3>']);
    expect([a, b]).toEqual([3, 4]);
    expect(t.encode('<a_12><b_3>')).toEqual([3, 4]);
    expect(t.encode('hello <a_12>')).toEqual([1, 3]);
  });
});

describe('errors', () => {
  it('bad tokenizer.json names the source', () => {
    expect(() => loadHFTokenizer('{oops', {}, 'tok.json')).toThrow(/tokenizer tok.json: not valid JSON/);
    expect(() => loadHFTokenizer({ added_tokens: [] }, {}, 'tok.json')).toThrow(/tok.json: missing "model"/);
    expect(() => loadHFTokenizer({ ...byteLevelBPE(), added_tokens: [{ content: 'x' }] }, {}, 'tok.json')).toThrow(/added_tokens\[0\]/);
    expect(() => loadHFTokenizer(byteLevelBPE()).addTokens([''])).toThrow(/cannot add ""/);
  });
});
