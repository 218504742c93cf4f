// Readers from the common recommendation file formats into one Dataset: LC-Rec processed
// JSON, RecBole atomic files, Amazon reviews JSON lines (2018 and 2023), MovieLens ratings.
//
// Contract shared by all readers: malformed input throws DataFormatError naming the file
// and the 1-based line, unless { lenient: true }, which skips the record and counts it in
// the FilterReport; every deliberate filter (k-core, dedupe, rating threshold, missing
// title) is counted there too. Nothing is dropped silently. Where timestamps exist,
// sequences are sorted by them stably (ties keep file order).

import { createReadStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip, gunzipSync } from 'node:zlib';
import {
  DataFormatError,
  InteractionLog,
  ReportBuilder,
  runPipeline,
  validateDataset,
  type Dataset,
  type PipelineOptions,
  type PipelineResult,
} from './dataset.js';
import { jsonType, parseTopLevelObject, type JsonValue } from './json.js';
import { parseSidTokens } from './sid.js';

/** A file path, or in-memory text with the name to use in messages (tests, browsers). */
export type Source = string | { file: string; text: string };

export interface ReaderOptions {
  /** Skip malformed records and count them in the report instead of throwing. */
  lenient?: boolean;
}

// ---------------------------------------------------------------------------------------
// Source helpers

function fileOf(s: Source): string {
  return typeof s === 'string' ? s : s.file;
}

function readText(s: Source, encoding: BufferEncoding = 'utf8'): string {
  if (typeof s !== 'string') return s.text;
  const buf = readFileSync(s);
  return (s.endsWith('.gz') ? gunzipSync(buf) : buf).toString(encoding);
}

/** Lines with their 1-based numbers; streams files (and .gz) so large dumps fit in memory. */
async function* linesOf(s: Source, encoding: BufferEncoding = 'utf8'): AsyncGenerator<[string, number]> {
  if (typeof s !== 'string') {
    const lines = s.text.split(/\r?\n/);
    if (lines[lines.length - 1] === '') lines.pop();
    for (let i = 0; i < lines.length; i++) yield [lines[i]!, i + 1];
    return;
  }
  const raw = createReadStream(s);
  const stream = s.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  stream.setEncoding(encoding);
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) yield [line, ++n];
}

function finish(name: string, r: PipelineResult, report: ReportBuilder, extra: Partial<Dataset> = {}): Dataset {
  const interactions = r.sequences.reduce((s, q) => s + q.length, 0);
  const ds: Dataset = {
    name,
    users: r.users,
    items: r.items,
    sequences: r.sequences,
    ...(r.times ? { times: r.times } : {}),
    ...extra,
    report: report.build({ users: r.users.length, items: r.items.length, interactions }),
  };
  validateDataset(ds);
  return ds;
}

/** Non-negative integer written canonically ("0", "17", not "017"): such ids sort numerically. */
const CANONICAL_INT = /^(0|[1-9]\d*)$/;

// ---------------------------------------------------------------------------------------
// (a) LC-Rec processed format

export interface LcRecSources {
  name: string;
  /** X.inter.json: {"user": [item, ...]} in time order. */
  inter: Source;
  /** X.index.json: {"item": ["<a_..>", "<b_..>", ...]}. */
  index?: Source;
  /** X.item.json: {"item": {"title": ..., ...}} (or {"item": "title"}). */
  item?: Source;
}

/**
 * Reads LC-Rec's processed files. Item ids that are all canonical integers (LC-Rec's
 * "0".."n-1") are ordered numerically, so item index = LC-Rec item id; otherwise by first
 * appearance. Users keep file order. With an index, every item must have a SID and every
 * index entry must be an item that occurs in the interactions.
 */
export function readLcRec(src: LcRecSources, opts: ReaderOptions = {}): Dataset {
  const lenient = opts.lenient ?? false;
  const report = new ReportBuilder();

  // Interactions.
  const interFile = fileOf(src.inter);
  report.files.push(interFile);
  const userEntries = parseTopLevelObject(readText(src.inter), interFile);
  const seenUsers = new Map<string, number>();
  const users: { id: string; items: { id: string; line: number }[] }[] = [];
  for (const e of userEntries) {
    report.recordsRead++;
    const first = seenUsers.get(e.key);
    if (first !== undefined) {
      report.malformed(lenient, interFile, e.line, 'duplicate user id', `duplicate user id "${e.key}" (first at line ${first})`, 'user');
      continue;
    }
    seenUsers.set(e.key, e.line);
    if (!Array.isArray(e.value)) {
      report.malformed(lenient, interFile, e.line, 'user value is not an array', `user "${e.key}": expected an array of item ids, got ${jsonType(e.value)}`, 'user');
      continue;
    }
    const items: { id: string; line: number }[] = [];
    e.value.forEach((v, k) => {
      const line = e.elementLines![k]!;
      const id = itemIdOf(v);
      if (id === undefined)
        report.malformed(lenient, interFile, line, 'bad item id', `user "${e.key}": item id must be a string or a non-negative integer, got ${JSON.stringify(v)}`, 'interaction');
      else items.push({ id, line });
    });
    users.push({ id: e.key, items });
  }
  const interItems = new Set<string>();
  for (const u of users) for (const it of u.items) interItems.add(it.id);

  // SID index.
  let sidOf: Map<string, string[]> | undefined;
  if (src.index !== undefined) {
    const indexFile = fileOf(src.index);
    report.files.push(indexFile);
    sidOf = new Map();
    const firstLine = new Map<string, number>();
    let levels = -1;
    for (const e of parseTopLevelObject(readText(src.index), indexFile)) {
      const first = firstLine.get(e.key);
      if (first !== undefined) {
        report.malformed(lenient, indexFile, e.line, 'duplicate item id in index', `duplicate item id "${e.key}" (first at line ${first})`, 'item');
        continue;
      }
      firstLine.set(e.key, e.line);
      if (!interItems.has(e.key)) {
        report.malformed(lenient, indexFile, e.line, 'unknown item id in index (no interactions)', `unknown item id "${e.key}": not in ${interFile}`, 'item');
        continue;
      }
      const tokens = Array.isArray(e.value) ? e.value : undefined;
      const code = tokens ? parseSidTokens(tokens) : `expected an array of SID tokens, got ${jsonType(e.value)}`;
      if (typeof code === 'string') {
        report.malformed(lenient, indexFile, e.line, 'bad SID', `item "${e.key}": ${code}`, 'item');
        continue;
      }
      if (levels < 0) levels = code.length;
      if (code.length !== levels) {
        report.malformed(lenient, indexFile, e.line, 'SID length differs', `item "${e.key}": ${code.length} SID levels, earlier items have ${levels}`, 'item');
        continue;
      }
      sidOf.set(e.key, tokens as string[]);
    }
  } else report.notes.push('no SID index given: Dataset.sids absent');

  // Interactions whose item has no SID cannot be generated: error, or drop and count.
  const sequencesById: { id: string; items: string[] }[] = [];
  for (const u of users) {
    const items: string[] = [];
    for (const it of u.items) {
      if (sidOf && !sidOf.has(it.id)) {
        report.malformed(lenient, interFile, it.line, 'item has no SID in index', `user "${u.id}": item "${it.id}" has no SID in ${fileOf(src.index!)}`, 'interaction');
        continue;
      }
      items.push(it.id);
    }
    if (items.length === 0) {
      report.drop('user with an empty sequence', 'user', 1, `${interFile}: user "${u.id}"`);
      continue;
    }
    sequencesById.push({ id: u.id, items });
  }

  // Item universe and order.
  const firstSeen: string[] = [];
  const seen = new Set<string>();
  for (const u of sequencesById)
    for (const it of u.items)
      if (!seen.has(it)) {
        seen.add(it);
        firstSeen.push(it);
      }
  const items = firstSeen.every((id) => CANONICAL_INT.test(id))
    ? [...firstSeen].sort((a, b) => Number(a) - Number(b))
    : firstSeen;
  const itemIndex = new Map(items.map((id, i) => [id, i]));
  const unused = interItems.size - items.length;
  if (unused > 0) report.drop('item left with no interactions after the drops above', 'item', unused);

  // Titles.
  let titles: (string | undefined)[] | undefined;
  if (src.item !== undefined) {
    const itemFile = fileOf(src.item);
    report.files.push(itemFile);
    titles = new Array<string | undefined>(items.length).fill(undefined);
    for (const e of parseTopLevelObject(readText(src.item), itemFile)) {
      const i = itemIndex.get(e.key);
      if (i === undefined) {
        report.malformed(lenient, itemFile, e.line, 'unknown item id in item file', `unknown item id "${e.key}": not among the items with interactions`, 'item');
        continue;
      }
      const title = titleOf(e.value);
      if (title === undefined) {
        report.malformed(lenient, itemFile, e.line, 'item without a string title', `item "${e.key}": expected "title" to be a string`, 'item');
        continue;
      }
      titles[i] = title;
    }
    const missing = titles.filter((t) => t === undefined).length;
    if (missing) report.notes.push(`${missing} items have no title in ${itemFile}`);
  }

  const result: PipelineResult = {
    users: sequencesById.map((u) => u.id),
    items,
    sequences: sequencesById.map((u) => u.items.map((id) => itemIndex.get(id)!)),
  };
  return finish(src.name, result, report, {
    ...(sidOf ? { sids: items.map((id) => sidOf.get(id)!) } : {}),
    ...(titles ? { titles } : {}),
  });
}

function itemIdOf(v: JsonValue): string | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? String(v) : undefined;
  if (typeof v === 'string' && v.length > 0) return v;
  return undefined;
}

function titleOf(v: JsonValue): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && !Array.isArray(v) && typeof v['title'] === 'string') return v['title'];
  return undefined;
}

export interface LcRecDirOptions extends ReaderOptions {
  /** Read X.index.json when present (default true). */
  index?: boolean;
  /** Read X.item.json when present (default true). */
  titles?: boolean;
}

/** Reads `${dir}/${name}.inter.json` plus `.index.json` / `.item.json` where present. */
export function readLcRecDir(dir: string, name: string, opts: LcRecDirOptions = {}): Dataset {
  const file = (suffix: string) => path.join(dir, `${name}.${suffix}.json`);
  const inter = file('inter');
  if (!existsSync(inter)) throw new Error(`readLcRecDir: ${inter} not found`);
  const index = opts.index !== false && existsSync(file('index')) ? file('index') : undefined;
  const item = opts.titles !== false && existsSync(file('item')) ? file('item') : undefined;
  const ds = readLcRec({ name, inter, ...(index ? { index } : {}), ...(item ? { item } : {}) }, opts);
  if (!item) ds.report.notes.push(`no ${name}.item.json read: titles absent`);
  return ds;
}

/**
 * Reads a SID index on its own (e.g. Arts.index.json, whose interactions are missing):
 * item ids in file order and their tokens, validated like readLcRec does.
 */
export function readSidIndex(src: Source): { items: string[]; sids: string[][] } {
  const file = fileOf(src);
  const items: string[] = [];
  const sids: string[][] = [];
  const firstLine = new Map<string, number>();
  for (const e of parseTopLevelObject(readText(src), file)) {
    const first = firstLine.get(e.key);
    if (first !== undefined) throw new DataFormatError(file, e.line, `duplicate item id "${e.key}" (first at line ${first})`);
    firstLine.set(e.key, e.line);
    const code = Array.isArray(e.value) ? parseSidTokens(e.value) : `expected an array of SID tokens, got ${jsonType(e.value)}`;
    if (typeof code === 'string') throw new DataFormatError(file, e.line, `item "${e.key}": ${code}`);
    if (sids.length && code.length !== sids[0]!.length)
      throw new DataFormatError(file, e.line, `item "${e.key}": ${code.length} SID levels, earlier items have ${sids[0]!.length}`);
    items.push(e.key);
    sids.push(e.value as string[]);
  }
  return { items, sids };
}

// ---------------------------------------------------------------------------------------
// (b) RecBole atomic files

export interface RecBoleOptions extends ReaderOptions, PipelineOptions {
  name?: string;
  userField?: string;
  itemField?: string;
  /** Absent from the header = no timestamps: file order is the time order. */
  timeField?: string;
  ratingField?: string;
  /** Keep interactions with rating >= minRating (requires the rating field). */
  minRating?: number;
  /** The .item file; default: the sibling "<base>.item" when it exists; null = none. */
  itemFile?: Source | null;
  titleField?: string;
}

export const RECBOLE_DEFAULTS = {
  userField: 'user_id',
  itemField: 'item_id',
  timeField: 'timestamp',
  ratingField: 'rating',
  titleField: 'title',
} as const;

const RECBOLE_TYPES = new Set(['token', 'token_seq', 'float', 'float_seq']);

interface AtomicHeader {
  names: string[];
  types: string[];
  col(name: string): number;
}

function parseAtomicHeader(line: string, file: string): AtomicHeader {
  const names: string[] = [];
  const types: string[] = [];
  for (const f of line.split('\t')) {
    const m = /^([^:]+):(\w+)$/.exec(f.trim());
    if (!m || !RECBOLE_TYPES.has(m[2]!))
      throw new DataFormatError(file, 1, `bad RecBole header field "${f}": expected name:type, type one of ${[...RECBOLE_TYPES].join(', ')}`);
    names.push(m[1]!);
    types.push(m[2]!);
  }
  return { names, types, col: (n) => names.indexOf(n) };
}

/** Reads a RecBole `.inter` file (and its `.item` for titles). */
export async function readRecBole(inter: Source, opts: RecBoleOptions = {}): Promise<Dataset> {
  const o = { ...RECBOLE_DEFAULTS, ...opts };
  const lenient = opts.lenient ?? false;
  const file = fileOf(inter);
  const report = new ReportBuilder();
  report.files.push(file);
  let header: AtomicHeader | undefined;
  let cUser = -1;
  let cItem = -1;
  let cTime = -1;
  let cRating = -1;
  let log: InteractionLog | undefined;
  let blank = 0;
  for await (const [line, no] of linesOf(inter)) {
    if (!header) {
      header = parseAtomicHeader(line, file);
      cUser = header.col(o.userField);
      cItem = header.col(o.itemField);
      cTime = header.col(o.timeField);
      cRating = header.col(o.ratingField);
      if (cUser < 0 || cItem < 0)
        throw new DataFormatError(file, 1, `header lacks "${o.userField}" or "${o.itemField}" (has ${header.names.join(', ')})`);
      if (opts.minRating !== undefined && cRating < 0)
        throw new DataFormatError(file, 1, `minRating given but the header has no "${o.ratingField}" field`);
      if (cTime < 0) report.notes.push(`no "${o.timeField}" field: file order taken as time order`);
      log = new InteractionLog(cTime >= 0);
      continue;
    }
    if (line.trim() === '') {
      blank++;
      continue;
    }
    report.recordsRead++;
    const f = line.split('\t');
    if (f.length !== header.names.length) {
      report.malformed(lenient, file, no, 'wrong number of fields', `${f.length} tab-separated fields, header has ${header.names.length}`);
      continue;
    }
    const user = f[cUser]!;
    const item = f[cItem]!;
    if (!user || !item) {
      report.malformed(lenient, file, no, 'empty user or item id');
      continue;
    }
    const time = cTime >= 0 ? parseFloatField(f[cTime]!) : 0;
    if (Number.isNaN(time)) {
      report.malformed(lenient, file, no, 'bad timestamp', `${o.timeField} "${f[cTime]}" is not a number`);
      continue;
    }
    if (opts.minRating !== undefined) {
      const r = parseFloatField(f[cRating]!);
      if (Number.isNaN(r)) {
        report.malformed(lenient, file, no, 'bad rating', `${o.ratingField} "${f[cRating]}" is not a number`);
        continue;
      }
      if (r < opts.minRating) {
        report.drop(`rating below minRating ${opts.minRating}`, 'interaction');
        continue;
      }
    }
    log!.add(user, item, time, `${file}:${no}`);
  }
  if (!header || !log) throw new DataFormatError(file, 1, 'empty file: no RecBole header');
  if (blank) report.notes.push(`${blank} blank lines skipped in ${file}`);
  const result = runPipeline(log, opts, report);

  // Titles from the .item file.
  let itemSrc: Source | null | undefined = opts.itemFile;
  if (itemSrc === undefined && typeof inter === 'string') {
    const sibling = inter.replace(/\.inter$/, '.item');
    itemSrc = sibling !== inter && existsSync(sibling) ? sibling : null;
  }
  let titles: (string | undefined)[] | undefined;
  if (itemSrc) titles = await readRecBoleTitles(itemSrc, o.itemField, o.titleField, result.items, lenient, report);
  return finish(opts.name ?? baseName(file), result, report, titles ? { titles } : {});
}

/** Empty string is NaN here (Number('') would be 0). */
function parseFloatField(s: string): number {
  return s.trim() === '' ? NaN : Number(s);
}

async function readRecBoleTitles(
  src: Source,
  itemField: string,
  titleField: string,
  items: string[],
  lenient: boolean,
  report: ReportBuilder,
): Promise<(string | undefined)[] | undefined> {
  const file = fileOf(src);
  report.files.push(file);
  const index = new Map(items.map((id, i) => [id, i]));
  const titles = new Array<string | undefined>(items.length).fill(undefined);
  let header: AtomicHeader | undefined;
  let cItem = -1;
  let cTitle = -1;
  let extra = 0;
  for await (const [line, no] of linesOf(src)) {
    if (!header) {
      header = parseAtomicHeader(line, file);
      cItem = header.col(itemField);
      cTitle = header.col(titleField);
      if (cItem < 0) throw new DataFormatError(file, 1, `header lacks "${itemField}"`);
      if (cTitle < 0) {
        report.notes.push(`${file} has no "${titleField}" field: titles absent`);
        return undefined;
      }
      continue;
    }
    if (line.trim() === '') continue;
    const f = line.split('\t');
    if (f.length !== header.names.length) {
      report.malformed(lenient, file, no, 'wrong number of fields in item file', `${f.length} tab-separated fields, header has ${header.names.length}`);
      continue;
    }
    const i = index.get(f[cItem]!);
    if (i === undefined) extra++;
    else titles[i] = f[cTitle]!;
  }
  if (extra) report.notes.push(`${extra} items in ${file} have no interactions (ignored)`);
  const missing = titles.filter((t) => t === undefined).length;
  if (missing) report.notes.push(`${missing} items have no title in ${file}`);
  return titles;
}

function baseName(file: string): string {
  return path.basename(file).replace(/\.(gz)$/, '').replace(/\.[^.]+$/, '');
}

// ---------------------------------------------------------------------------------------
// (c) Amazon reviews JSON lines

export type AmazonFormat = '2018' | '2023';

export interface AmazonOptions extends ReaderOptions, PipelineOptions {
  name?: string;
  /** '2018': reviewerID / asin / unixReviewTime (s); '2023': user_id / parent_asin|asin / timestamp (ms). */
  format?: 'auto' | AmazonFormat;
  /** 2023 item key: parent_asin groups variants (the 2023 benchmark's choice) or asin. */
  itemKey2023?: 'parent_asin' | 'asin';
  /** Keep reviews with rating >= minRating (2018 "overall", 2023 "rating"). */
  minRating?: number;
  /**
   * Metadata JSON lines with title, keyed by parent_asin when present, else asin (2018
   * meta has asin, 2023 meta has parent_asin; 2023 reviews keyed by asin get no titles).
   */
  meta?: Source;
  /** Drop interactions with items that have no title in meta before k-core (LC-Rec keeps titled items). */
  requireTitle?: boolean;
}

/** 5-core as in LC-Rec; the 2018 dumps hold literal duplicate reviews, hence dedupe. */
export const AMAZON_DEFAULTS = { kCore: 5, dedupe: true, format: 'auto', itemKey2023: 'parent_asin' } as const;

interface AmazonFields {
  user: string;
  item: string;
  time: string;
  rating: string;
}

function amazonFields(format: AmazonFormat, itemKey2023: 'parent_asin' | 'asin'): AmazonFields {
  return format === '2018'
    ? { user: 'reviewerID', item: 'asin', time: 'unixReviewTime', rating: 'overall' }
    : { user: 'user_id', item: itemKey2023, time: 'timestamp', rating: 'rating' };
}

/** Reads an Amazon reviews dump (JSON lines, optionally .gz). */
export async function readAmazon(reviews: Source, opts: AmazonOptions = {}): Promise<Dataset> {
  const o = { ...AMAZON_DEFAULTS, ...opts };
  const lenient = opts.lenient ?? false;
  const file = fileOf(reviews);
  const report = new ReportBuilder();
  report.files.push(file);
  let format: AmazonFormat | undefined = o.format === 'auto' ? undefined : o.format;
  let fields = format ? amazonFields(format, o.itemKey2023) : undefined;

  // Titles first, so requireTitle can filter before k-core.
  let titleOf: Map<string, string> | undefined;
  if (opts.meta !== undefined) {
    titleOf = await readAmazonMeta(opts.meta, lenient, report);
  } else if (opts.requireTitle) throw new Error('readAmazon: requireTitle needs a meta source');

  const log = new InteractionLog(true);
  let blank = 0;
  for await (const [line, no] of linesOf(reviews)) {
    if (line.trim() === '') {
      blank++;
      continue;
    }
    report.recordsRead++;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      report.malformed(lenient, file, no, 'bad JSON line', `bad JSON: ${(e as Error).message}`);
      continue;
    }
    if (!rec || typeof rec !== 'object' || Array.isArray(rec)) {
      report.malformed(lenient, file, no, 'JSON line is not an object');
      continue;
    }
    const r = rec as Record<string, unknown>;
    if (!fields) {
      format = 'reviewerID' in r ? '2018' : 'user_id' in r ? '2023' : undefined;
      if (!format) {
        report.malformed(lenient, file, no, 'unknown review format', 'neither "reviewerID" (2018) nor "user_id" (2023) present');
        continue;
      }
      fields = amazonFields(format, o.itemKey2023);
      report.notes.push(`Amazon ${format} format detected at ${file}:${no}`);
    }
    const user = r[fields.user];
    const item = r[fields.item];
    const time = r[fields.time];
    if (typeof user !== 'string' || user === '') {
      report.malformed(lenient, file, no, `missing field ${fields.user}`, `missing or non-string field "${fields.user}"`);
      continue;
    }
    if (typeof item !== 'string' || item === '') {
      report.malformed(lenient, file, no, `missing field ${fields.item}`, `missing or non-string field "${fields.item}"`);
      continue;
    }
    if (typeof time !== 'number' || !Number.isFinite(time)) {
      report.malformed(lenient, file, no, `missing field ${fields.time}`, `missing or non-numeric field "${fields.time}"`);
      continue;
    }
    if (opts.minRating !== undefined) {
      const rating = r[fields.rating];
      if (typeof rating !== 'number') {
        report.malformed(lenient, file, no, `missing field ${fields.rating}`, `missing or non-numeric field "${fields.rating}"`);
        continue;
      }
      if (rating < opts.minRating) {
        report.drop(`rating below minRating ${opts.minRating}`, 'interaction');
        continue;
      }
    }
    if (opts.requireTitle && !titleOf!.has(item)) {
      report.drop('item has no title in meta (requireTitle)', 'interaction', 1, `${file}:${no}: item ${item}`);
      continue;
    }
    log.add(user, item, time, `${file}:${no}`);
  }
  if (blank) report.notes.push(`${blank} blank lines skipped in ${file}`);
  const result = runPipeline(log, o, report);
  let titles: (string | undefined)[] | undefined;
  if (titleOf) {
    titles = result.items.map((id) => titleOf.get(id));
    const missing = titles.filter((t) => t === undefined).length;
    if (missing) report.notes.push(`${missing} items have no title in the meta file`);
  }
  return finish(opts.name ?? baseName(file), result, report, titles ? { titles } : {});
}

/** Item -> title from a meta JSON-lines file; keyed by parent_asin when present, else asin. */
async function readAmazonMeta(src: Source, lenient: boolean, report: ReportBuilder): Promise<Map<string, string>> {
  const file = fileOf(src);
  report.files.push(file);
  const titles = new Map<string, string>();
  let noTitle = 0;
  let repeated = 0;
  for await (const [line, no] of linesOf(src)) {
    if (line.trim() === '') continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      report.malformed(lenient, file, no, 'bad JSON line in meta', `bad JSON: ${(e as Error).message}`);
      continue;
    }
    const r = (rec && typeof rec === 'object' ? rec : {}) as Record<string, unknown>;
    const id = typeof r['parent_asin'] === 'string' ? r['parent_asin'] : r['asin'];
    if (typeof id !== 'string' || id === '') {
      report.malformed(lenient, file, no, 'meta line without asin', 'missing field "parent_asin" or "asin"');
      continue;
    }
    const title = r['title'];
    if (typeof title !== 'string' || title.trim() === '') {
      noTitle++;
      continue;
    }
    if (titles.has(id)) repeated++;
    else titles.set(id, title.trim());
  }
  if (noTitle) report.notes.push(`${noTitle} meta records have no title`);
  if (repeated) report.notes.push(`${repeated} repeated meta records (first title kept)`);
  return titles;
}

// ---------------------------------------------------------------------------------------
// (d) MovieLens ratings

export interface MovieLensOptions extends ReaderOptions, PipelineOptions {
  name?: string;
  /** Keep ratings >= minRating (implicit feedback); default: every rating is an interaction. */
  minRating?: number;
  /** movies.dat / movies.csv / u.item, for titles. */
  movies?: Source;
  /** Text encoding for file sources; default latin1 for .dat / u.* (ML-1M, ML-100k), utf8 for .csv. */
  encoding?: BufferEncoding;
}

function movieLensEncoding(s: Source, opts: MovieLensOptions): BufferEncoding {
  if (opts.encoding) return opts.encoding;
  return fileOf(s).replace(/\.gz$/, '').endsWith('.csv') ? 'utf8' : 'latin1';
}

/**
 * Reads MovieLens ratings: ratings.dat (UserID::MovieID::Rating::Timestamp, ML-1M/10M),
 * ratings.csv (header userId,movieId,rating,timestamp, ML-20M/25M/latest) or u.data
 * (tab-separated, ML-100k); the format is detected from the first line.
 */
export async function readMovieLens(ratings: Source, opts: MovieLensOptions = {}): Promise<Dataset> {
  const lenient = opts.lenient ?? false;
  const file = fileOf(ratings);
  const report = new ReportBuilder();
  report.files.push(file);
  const log = new InteractionLog(true);
  type Layout = { split: (l: string) => string[]; user: number; item: number; rating: number; time: number; width: number };
  let layout: Layout | undefined;
  let blank = 0;
  for await (const [line, no] of linesOf(ratings, movieLensEncoding(ratings, opts))) {
    if (line.trim() === '') {
      blank++;
      continue;
    }
    if (!layout) {
      if (line.includes('::')) layout = { split: (l) => l.split('::'), user: 0, item: 1, rating: 2, time: 3, width: 4 };
      else if (line.includes('\t')) layout = { split: (l) => l.split('\t'), user: 0, item: 1, rating: 2, time: 3, width: 4 };
      else {
        const head = splitCsvLine(line).map((h) => h.trim());
        const col = (n: string) => head.indexOf(n);
        if (col('userId') < 0 || col('movieId') < 0 || col('rating') < 0 || col('timestamp') < 0)
          throw new DataFormatError(file, no, `expected a "::"-separated line, a tab-separated line, or a CSV header with userId,movieId,rating,timestamp; got "${line.slice(0, 80)}"`);
        layout = { split: splitCsvLine, user: col('userId'), item: col('movieId'), rating: col('rating'), time: col('timestamp'), width: head.length };
        continue;
      }
    }
    report.recordsRead++;
    const f = layout.split(line);
    if (f.length !== layout.width) {
      report.malformed(lenient, file, no, 'wrong number of fields', `${f.length} fields, expected ${layout.width}`);
      continue;
    }
    const user = f[layout.user]!.trim();
    const item = f[layout.item]!.trim();
    const rating = parseFloatField(f[layout.rating]!);
    const time = parseFloatField(f[layout.time]!);
    if (!user || !item) {
      report.malformed(lenient, file, no, 'empty user or movie id');
      continue;
    }
    if (Number.isNaN(rating) || Number.isNaN(time)) {
      report.malformed(lenient, file, no, 'bad rating or timestamp', `rating "${f[layout.rating]}" / timestamp "${f[layout.time]}" not numeric`);
      continue;
    }
    if (opts.minRating !== undefined && rating < opts.minRating) {
      report.drop(`rating below minRating ${opts.minRating}`, 'interaction');
      continue;
    }
    log.add(user, item, time, `${file}:${no}`);
  }
  if (blank) report.notes.push(`${blank} blank lines skipped in ${file}`);
  const result = runPipeline(log, opts, report);
  let titles: (string | undefined)[] | undefined;
  if (opts.movies !== undefined) titles = await readMovieTitles(opts.movies, result.items, lenient, report, opts);
  return finish(opts.name ?? baseName(file), result, report, titles ? { titles } : {});
}

async function readMovieTitles(
  src: Source,
  items: string[],
  lenient: boolean,
  report: ReportBuilder,
  opts: MovieLensOptions,
): Promise<(string | undefined)[]> {
  const file = fileOf(src);
  report.files.push(file);
  const index = new Map(items.map((id, i) => [id, i]));
  const titles = new Array<string | undefined>(items.length).fill(undefined);
  let split: ((l: string) => string[]) | undefined;
  for await (const [line, no] of linesOf(src, movieLensEncoding(src, opts))) {
    if (line.trim() === '') continue;
    if (!split) {
      if (line.includes('::')) split = (l) => l.split('::');
      else if (line.includes('|') && !line.startsWith('movieId')) split = (l) => l.split('|');
      else {
        // movies.csv header: movieId,title,genres
        if (!line.startsWith('movieId')) throw new DataFormatError(file, no, 'expected movies.dat, u.item or a movies.csv header');
        split = splitCsvLine;
        continue;
      }
    }
    const f = split(line);
    if (f.length < 2) {
      report.malformed(lenient, file, no, 'movie line without a title', 'expected at least id and title');
      continue;
    }
    const i = index.get(f[0]!.trim());
    if (i !== undefined) titles[i] = f[1]!;
  }
  const missing = titles.filter((t) => t === undefined).length;
  if (missing) report.notes.push(`${missing} movies have no title in ${file}`);
  return titles;
}

/** One CSV line (RFC 4180 quoting: "a, b" and "" for a quote); no multi-line fields. */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}
