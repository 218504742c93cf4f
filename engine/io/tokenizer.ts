// Hugging Face `tokenizer.json` tokenizers (BPE / WordPiece / Unigram, as shipped with Llama and Qwen2)
// through @huggingface/tokenizers (pure JS, browser-safe, no network), plus adding SID tokens as specials.
// The SID-only vocabulary tokenizer lives in ilrec/data/sid.ts (SidVocab); this file does not duplicate it.
import { Tokenizer } from '@huggingface/tokenizers';

/** One entry of tokenizer.json's "added_tokens". */
export interface AddedTokenJSON {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface EncodeOptions {
  /** Apply the post-processor's template (e.g. Llama's BOS). Default true, as in transformers. */
  addSpecialTokens?: boolean;
}
export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

export interface HFTokenizer {
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /**
   * Adds tokens that always encode to one id each (split out before pre-tokenisation), like
   * `tokenizer.add_tokens(..., special_tokens=True)`: existing tokens keep their id, new ones get ids
   * from the end of the vocabulary by transformers' rule. Returns the ids in input order.
   */
  addTokens(tokens: readonly string[], opts?: { special?: boolean }): number[];
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** Largest id + 1 (model vocabulary and added tokens): the embedding rows the model needs at least. */
  readonly vocabSize: number;
  /** The tokenizer.json object, including tokens added since loading. */
  toJSON(): Record<string, unknown>;
}

/** Keys the library requires on tokenizer.json; real files have them all, possibly null. */
const PIPELINE_KEYS = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asObject(input: string | object, what: string, source: string): Record<string, unknown> {
  let v: unknown = input;
  if (typeof input === 'string') {
    try {
      v = JSON.parse(input);
    } catch (e) {
      throw new Error(`${what} ${source}: not valid JSON (${(e as Error).message})`);
    }
  } else {
    // A deep copy: addTokens edits added_tokens, and the caller's object must not change under it.
    v = structuredClone(input);
  }
  if (!isObj(v)) throw new Error(`${what} ${source}: not a JSON object`);
  return v;
}

/** Number of entries and largest id of model.vocab (an object for BPE/WordPiece/WordLevel, a list for Unigram). */
function modelVocabStats(model: Record<string, unknown>): { count: number; maxId: number } {
  const vocab = model.vocab;
  if (Array.isArray(vocab)) return { count: vocab.length, maxId: vocab.length - 1 };
  if (isObj(vocab)) {
    let maxId = -1;
    for (const id of Object.values(vocab)) if (typeof id === 'number' && id > maxId) maxId = id;
    return { count: Object.keys(vocab).length, maxId };
  }
  return { count: 0, maxId: -1 };
}

class HFTokenizerImpl implements HFTokenizer {
  private tok!: Tokenizer;
  private added!: AddedTokenJSON[];
  vocabSize = 0;

  constructor(
    private readonly json: Record<string, unknown>,
    private readonly config: Record<string, unknown>,
    private readonly source: string,
  ) {
    if (!isObj(json.model)) throw new Error(`tokenizer ${source}: missing "model" object`);
    for (const k of PIPELINE_KEYS) if (!(k in json)) json[k] = null;
    json.added_tokens ??= [];
    if (!Array.isArray(json.added_tokens)) throw new Error(`tokenizer ${source}: "added_tokens" is not a list`);
    for (const [i, t] of (json.added_tokens as unknown[]).entries())
      if (!isObj(t) || typeof t.content !== 'string' || typeof t.id !== 'number' || !Number.isSafeInteger(t.id) || t.id < 0)
        throw new Error(`tokenizer ${source}: added_tokens[${i}] needs a string "content" and an integer "id" ≥ 0`);
    this.rebuild();
  }

  private rebuild(): void {
    this.added = this.json.added_tokens as AddedTokenJSON[];
    try {
      this.tok = new Tokenizer(this.json, this.config);
    } catch (e) {
      throw new Error(`tokenizer ${this.source}: ${(e as Error).message}`);
    }
    let maxId = modelVocabStats(this.json.model as Record<string, unknown>).maxId;
    for (const t of this.added) maxId = Math.max(maxId, t.id);
    this.vocabSize = maxId + 1;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
    const missing = ids.findIndex((id) => typeof id !== 'number');
    if (missing >= 0) throw new Error(`tokenizer ${this.source}: piece ${missing} of ${JSON.stringify(text.slice(0, 80))} has no id and the model has no unk token`);
    return ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    // The library throws on an empty list; an empty sequence decodes to the empty string.
    if (ids.length === 0) return '';
    for (const id of ids)
      if (!Number.isSafeInteger(id) || id < 0 || id >= this.vocabSize || this.tok.id_to_token(id) === undefined)
        throw new Error(`tokenizer ${this.source}: id ${id} is not in the vocabulary (size ${this.vocabSize})`);
    return this.tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  addTokens(tokens: readonly string[], opts: { special?: boolean } = {}): number[] {
    const special = opts.special ?? true;
    const modelCount = modelVocabStats(this.json.model as Record<string, unknown>).count;
    const byContent = new Map(this.added.map((t) => [t.content, t]));
    const ids: number[] = [];
    let changed = false;
    for (const content of tokens) {
      if (typeof content !== 'string' || content.length === 0) throw new Error(`tokenizer ${this.source}: cannot add ${JSON.stringify(content)}`);
      const have = byContent.get(content);
      if (have) {
        ids.push(have.id);
        continue;
      }
      // transformers' AddedVocabulary: a token already in the model vocabulary keeps its id; otherwise
      // the next id is the model vocab size, or max added id + 1 once added ids reach past it.
      let id = this.tok.token_to_id(content);
      if (id === undefined) {
        let maxAdded = -1;
        for (const t of this.added) maxAdded = Math.max(maxAdded, t.id);
        id = maxAdded >= modelCount ? maxAdded + 1 : modelCount;
        while (this.tok.id_to_token(id) !== undefined || this.added.some((t) => t.id === id)) id++;
      }
      const entry: AddedTokenJSON = { id, content, single_word: false, lstrip: false, rstrip: false, normalized: !special, special };
      this.added.push(entry);
      byContent.set(content, entry);
      ids.push(id);
      changed = true;
    }
    if (changed) this.rebuild();
    return ids;
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  toJSON(): Record<string, unknown> {
    return structuredClone(this.json);
  }
}

/**
 * Loads a tokenizer from tokenizer.json (text or parsed object) and optionally tokenizer_config.json.
 * Decoding does not apply transformers' clean_up_tokenization_spaces unless the config asks for it, so
 * decode(encode(text)) round-trips like the Rust `tokenizers` library.
 */
export function loadHFTokenizer(json: string | object, tokenizerConfig: string | object = {}, source = '<tokenizer.json>'): HFTokenizer {
  const tj = asObject(json, 'tokenizer', source);
  const cfg = asObject(tokenizerConfig, 'tokenizer config', source);
  cfg.clean_up_tokenization_spaces ??= false;
  // The library runs WordLevel models through its "Legacy" model, which takes the unk token from the
  // tokenizer config rather than from model.unk_token.
  const model = tj.model;
  if (isObj(model) && model.type === 'WordLevel' && typeof model.unk_token === 'string') cfg.unk_token ??= model.unk_token;
  return new HFTokenizerImpl(tj, cfg, source);
}
