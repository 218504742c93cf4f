// Semantic IDs (SIDs): parse given SID tokens, detect and resolve collisions, build SIDs by
// residual k-means where a dataset has none, and the token vocabulary a SID-only model uses.
//
// Collision scheme (TIGER, Rajput et al. 2023, §3.1): after the L semantic levels, append
// one extra "disambiguation" level whose token is the item's rank among the items sharing
// its L-level code, in item-index order: <e_0>, <e_1>, ... (letter = next after the last
// semantic level: 4 levels a-d -> e; 3 k-means levels a-c -> d). TIGER appends it to every
// item (mode "always", the default here), so every code has the same length L+1 and
// uniqueness holds by construction. Mode "collidingOnly" appends it only to the items of a
// colliding group (all of them, so the codes stay prefix-free: no full code is a prefix of
// another), leaving the other items with their published L-token code. LC-Rec itself
// avoids collisions at index-building time (uniform semantic mapping), yet its published
// Instruments index still has 25 surplus items, hence this explicit resolution step.

import { Rng } from './rng.js';

// ---------------------------------------------------------------------------------------
// Tokens

const TOKEN_RE = /^<([a-z])_(0|[1-9]\d*)>$/;
const LETTER_A = 'a'.charCodeAt(0);
/** Levels are written with one lower-case letter each. */
export const MAX_SID_LEVELS = 26;

/** "<c_79>" -> { level: 2, code: 79 }; undefined when the string is not a SID token. */
export function parseSidToken(token: string): { level: number; code: number } | undefined {
  const m = TOKEN_RE.exec(token);
  if (!m) return undefined;
  return { level: m[1]!.charCodeAt(0) - LETTER_A, code: Number(m[2]) };
}

/** (2, 79) -> "<c_79>". */
export function sidToken(level: number, code: number): string {
  if (level < 0 || level >= MAX_SID_LEVELS) throw new Error(`SID level ${level} outside [0, ${MAX_SID_LEVELS})`);
  return `<${String.fromCharCode(LETTER_A + level)}_${code}>`;
}

/** Numeric code [c0, c1, ...] -> token strings. */
export function sidTokens(code: readonly number[]): string[] {
  return code.map((c, level) => sidToken(level, c));
}

/**
 * Token strings -> numeric code, checking level letters run a, b, c, ... in order.
 * Returns an error message instead of throwing so callers can attach file and line.
 */
export function parseSidTokens(tokens: readonly unknown[]): number[] | string {
  const code: number[] = [];
  for (let p = 0; p < tokens.length; p++) {
    const t = tokens[p];
    if (typeof t !== 'string') return `SID token ${p} is not a string`;
    const parsed = parseSidToken(t);
    if (!parsed) return `"${t}" is not a SID token like "<a_12>"`;
    if (parsed.level !== p) return `"${t}" at position ${p}: expected level "${sidToken(p, 0)[1]}"`;
    code.push(parsed.code);
  }
  if (code.length === 0) return 'empty SID';
  return code;
}

// ---------------------------------------------------------------------------------------
// Collisions

export interface CollisionReport {
  items: number;
  /** Distinct codes among the items. */
  distinct: number;
  /** items - distinct: items that share a code with an earlier item (Instruments: 25). */
  surplusItems: number;
  /** Items that belong to a colliding group, first members included (Instruments: 48). */
  itemsInCollisions: number;
  largestGroup: number;
  /** Each colliding group's item indices, ascending; groups ordered by first item. */
  groups: number[][];
}

export function findCollisions(codes: readonly (readonly number[])[]): CollisionReport {
  const byCode = new Map<string, number[]>();
  codes.forEach((c, i) => {
    const key = c.join(',');
    const g = byCode.get(key);
    if (g) g.push(i);
    else byCode.set(key, [i]);
  });
  const groups = [...byCode.values()].filter((g) => g.length > 1).sort((a, b) => a[0]! - b[0]!);
  return {
    items: codes.length,
    distinct: byCode.size,
    surplusItems: codes.length - byCode.size,
    itemsInCollisions: groups.reduce((s, g) => s + g.length, 0),
    largestGroup: groups.reduce((m, g) => Math.max(m, g.length), codes.length ? 1 : 0),
    groups,
  };
}

/** See the file header: "always" (TIGER, default) or "collidingOnly". */
export type DisambiguationMode = 'always' | 'collidingOnly';

/** Item codes after collision resolution: unique, and what they were resolved from. */
export interface SidSet {
  /** codes[i] = unique code of item i (semantic levels, then disambiguation where appended). */
  codes: number[][];
  /** Number of semantic levels before the disambiguation level. */
  semanticLevels: number;
  /** levelSizes[l] = 1 + largest code used at level l (disambiguation level included). */
  levelSizes: number[];
  mode: DisambiguationMode;
  /** Collisions of the semantic codes, before resolution. */
  collisions: CollisionReport;
}

export interface DisambiguateOptions {
  mode?: DisambiguationMode;
}

/** Appends the disambiguation level (see the file header) so every item's code is unique. */
export function disambiguate(codes: readonly (readonly number[])[], opts: DisambiguateOptions = {}): SidSet {
  const mode = opts.mode ?? 'always';
  if (codes.length === 0) throw new Error('disambiguate: no items');
  const semanticLevels = codes[0]!.length;
  codes.forEach((c, i) => {
    if (c.length !== semanticLevels)
      throw new Error(`disambiguate: item ${i} has ${c.length} levels, item 0 has ${semanticLevels}`);
  });
  if (semanticLevels + 1 > MAX_SID_LEVELS) throw new Error(`disambiguate: too many levels (${semanticLevels})`);
  const collisions = findCollisions(codes);
  const rankInGroup = new Int32Array(codes.length);
  const inGroup = new Uint8Array(codes.length);
  for (const g of collisions.groups)
    g.forEach((item, k) => {
      rankInGroup[item] = k;
      inGroup[item] = 1;
    });
  const out = codes.map((c, i) => (mode === 'always' || inGroup[i] ? [...c, rankInGroup[i]!] : [...c]));
  return { codes: out, semanticLevels, levelSizes: levelSizesOf(out), mode, collisions };
}

function levelSizesOf(codes: readonly (readonly number[])[]): number[] {
  const sizes: number[] = [];
  for (const c of codes)
    c.forEach((v, l) => {
      sizes[l] = Math.max(sizes[l] ?? 0, v + 1);
    });
  return sizes;
}

/**
 * Given SID token strings per item (e.g. Dataset.sids from an LC-Rec index), returns unique
 * codes. All items must have the same number of levels, letters in order a, b, c, ...
 */
export function sidsFromTokens(tokens: readonly (readonly string[])[], opts: DisambiguateOptions = {}): SidSet {
  const codes = tokens.map((t, i) => {
    const c = parseSidTokens(t);
    if (typeof c === 'string') throw new Error(`item ${i}: ${c}`);
    return c;
  });
  return disambiguate(codes, opts);
}

// ---------------------------------------------------------------------------------------
// Residual k-means SIDs

export interface ResidualKMeansOptions {
  /** Semantic levels (before disambiguation). */
  levels?: number;
  /** Codes per level (k of each k-means); fewer are used where there are fewer distinct points. */
  codebookSize?: number;
  /** Lloyd iterations per level at most. */
  maxIterations?: number;
  /**
   * Stop a level early once at most this fraction of the points change cluster in an
   * iteration. Default 0 (exact convergence or maxIterations): on spread-out residuals
   * Lloyd can move few points for a while yet still be far from balanced clusters, and a
   * 1e-3 threshold once stopped after 2 iterations with 50x more SID collisions.
   */
  stopFraction?: number;
  seed?: number;
  mode?: DisambiguationMode;
}

export const RESIDUAL_KMEANS_DEFAULTS: Required<ResidualKMeansOptions> = {
  levels: 3,
  codebookSize: 256,
  maxIterations: 50,
  stopFraction: 0,
  seed: 0,
  mode: 'always',
};

/**
 * RQ-k-means: level 1 clusters the item vectors, each further level clusters the residuals
 * (vector minus the sum of the chosen centroids so far). Codes are collision-free after
 * the disambiguation level. `vectors` is row-major [nItems × dim].
 */
export function residualKMeansSids(
  vectors: Float32Array,
  nItems: number,
  dim: number,
  options: ResidualKMeansOptions = {},
): SidSet & { centroids: Float64Array[]; iterations: number[] } {
  const o = { ...RESIDUAL_KMEANS_DEFAULTS, ...options };
  if (vectors.length !== nItems * dim)
    throw new Error(`residualKMeansSids: ${vectors.length} values, expected nItems*dim = ${nItems * dim}`);
  if (o.levels < 1 || o.levels >= MAX_SID_LEVELS) throw new Error(`residualKMeansSids: bad levels ${o.levels}`);
  const rng = new Rng(o.seed);
  const residual = Float64Array.from(vectors);
  const codes: number[][] = Array.from({ length: nItems }, () => []);
  const centroids: Float64Array[] = [];
  const iterations: number[] = [];
  for (let level = 0; level < o.levels; level++) {
    const km = kMeans(residual, nItems, dim, o.codebookSize, {
      rng,
      maxIterations: o.maxIterations,
      stopFraction: o.stopFraction,
    });
    centroids.push(km.centroids);
    iterations.push(km.iterations);
    for (let i = 0; i < nItems; i++) {
      const c = km.assign[i]!;
      codes[i]!.push(c);
      for (let j = 0; j < dim; j++) residual[i * dim + j]! -= km.centroids[c * dim + j]!;
    }
  }
  return { ...disambiguate(codes, { mode: o.mode }), centroids, iterations };
}

export interface KMeansResult {
  /** [k × dim], k <= requested (fewer when there are fewer distinct points). */
  centroids: Float64Array;
  k: number;
  assign: Int32Array;
  iterations: number;
  /** Sum of squared distances to the assigned centroid. */
  inertia: number;
}

/**
 * Lloyd's k-means with k-means++ initialisation (Arthur & Vassilvitskii 2007). Empty
 * clusters are re-seeded with the point farthest from its centroid, so k stays fixed.
 * Deterministic given the rng state.
 */
export function kMeans(
  data: Float64Array | Float32Array,
  n: number,
  dim: number,
  kRequested: number,
  opts: { rng: Rng; maxIterations: number; stopFraction?: number },
): KMeansResult {
  if (n === 0) throw new Error('kMeans: no points');
  const { centroids, k } = kMeansPlusPlus(data, n, dim, Math.min(kRequested, n), opts.rng);
  const assign = new Int32Array(n).fill(-1);
  const best = new Float64Array(n);
  const sums = new Float64Array(k * dim);
  const counts = new Int32Array(k);
  let iterations = 0;
  for (; iterations < opts.maxIterations; ) {
    iterations++;
    const changed = assignPoints(data, n, dim, centroids, k, assign, best);
    // The first iteration moves every point off -1, so it never stops the loop.
    if (iterations > 1 && changed <= (opts.stopFraction ?? 0) * n) break;
    // Update step.
    sums.fill(0);
    counts.fill(0);
    for (let i = 0; i < n; i++) {
      const c = assign[i]!;
      counts[c]!++;
      const off = c * dim;
      const x = i * dim;
      for (let j = 0; j < dim; j++) sums[off + j]! += data[x + j]!;
    }
    const taken = new Uint8Array(n);
    for (let c = 0; c < k; c++) {
      const off = c * dim;
      if (counts[c]! > 0) {
        for (let j = 0; j < dim; j++) centroids[off + j] = sums[off + j]! / counts[c]!;
        continue;
      }
      // Empty cluster: move it onto the worst-served point not used yet this round.
      let far = -1;
      for (let i = 0; i < n; i++) if (!taken[i] && (far < 0 || best[i]! > best[far]!)) far = i;
      taken[far] = 1;
      best[far] = 0;
      for (let j = 0; j < dim; j++) centroids[off + j] = data[far * dim + j]!;
    }
  }
  assignPoints(data, n, dim, centroids, k, assign, best);
  let inertia = 0;
  for (let i = 0; i < n; i++) inertia += best[i]!;
  return { centroids, k, assign, iterations, inertia };
}

/** Nearest-centroid assignment; returns how many points changed cluster. */
function assignPoints(
  data: Float64Array | Float32Array,
  n: number,
  dim: number,
  centroids: Float64Array,
  k: number,
  assign: Int32Array,
  best: Float64Array,
): number {
  // ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is the same for every c, so compare
  // ||c||^2 - 2 x.c and add ||x||^2 back for the distance.
  const cNorm = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += centroids[c * dim + j]! ** 2;
    cNorm[c] = s;
  }
  let changed = 0;
  const xRow = new Float64Array(dim);
  const dots = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    const x = i * dim;
    let xNorm = 0;
    for (let j = 0; j < dim; j++) {
      const v = data[x + j]!;
      xRow[j] = v;
      xNorm += v * v;
    }
    // Four centroids per pass over x: each loaded x[j] is used four times (about 2x faster).
    let c = 0;
    for (; c + 4 <= k; c += 4) {
      const o0 = c * dim;
      const o1 = o0 + dim;
      const o2 = o1 + dim;
      const o3 = o2 + dim;
      let d0 = 0;
      let d1 = 0;
      let d2 = 0;
      let d3 = 0;
      for (let j = 0; j < dim; j++) {
        const v = xRow[j]!;
        d0 += v * centroids[o0 + j]!;
        d1 += v * centroids[o1 + j]!;
        d2 += v * centroids[o2 + j]!;
        d3 += v * centroids[o3 + j]!;
      }
      dots[c] = d0;
      dots[c + 1] = d1;
      dots[c + 2] = d2;
      dots[c + 3] = d3;
    }
    for (; c < k; c++) {
      const off = c * dim;
      let dot = 0;
      for (let j = 0; j < dim; j++) dot += xRow[j]! * centroids[off + j]!;
      dots[c] = dot;
    }
    let bestC = 0;
    let bestD = Infinity;
    for (let c2 = 0; c2 < k; c2++) {
      const d = cNorm[c2]! - 2 * dots[c2]!;
      if (d < bestD) {
        bestD = d;
        bestC = c2;
      }
    }
    if (assign[i] !== bestC) changed++;
    assign[i] = bestC;
    best[i] = Math.max(0, bestD + xNorm);
  }
  return changed;
}

function kMeansPlusPlus(
  data: Float64Array | Float32Array,
  n: number,
  dim: number,
  k: number,
  rng: Rng,
): { centroids: Float64Array; k: number } {
  const chosen: number[] = [rng.int(n)];
  const minD = new Float64Array(n).fill(Infinity);
  const sqDist = (i: number, c: number): number => {
    let s = 0;
    for (let j = 0; j < dim; j++) s += (data[i * dim + j]! - data[c * dim + j]!) ** 2;
    return s;
  };
  while (chosen.length < k) {
    const last = chosen[chosen.length - 1]!;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const d = sqDist(i, last);
      if (d < minD[i]!) minD[i] = d;
      total += minD[i]!;
    }
    // Every point coincides with a centre: fewer distinct points than k.
    if (total === 0) break;
    chosen.push(rng.categorical(minD));
  }
  const centroids = new Float64Array(chosen.length * dim);
  chosen.forEach((p, c) => {
    for (let j = 0; j < dim; j++) centroids[c * dim + j] = data[p * dim + j]!;
  });
  return { centroids, k: chosen.length };
}

// ---------------------------------------------------------------------------------------
// Vocabulary

/** Special tokens first, ids 0.. in this order; a SID-only model needs no others. */
export const DEFAULT_SPECIALS = ['<pad>', '<bos>', '<eos>'] as const;

export interface SidVocabOptions {
  /** Special tokens, ids 0..; must include <pad>, <bos> and <eos>. */
  specials?: readonly string[];
  /**
   * Lower bound on each semantic level's size, so ids are stable across datasets that
   * use a fixed codebook (LC-Rec: 256) even where a code is never used.
   */
  codebookSize?: number;
}

/**
 * Token strings <-> integer ids over specials and SID level tokens: ids
 * [specials | <a_0>..<a_{n0-1}> | <b_0>.. | ...]. Level l's tokens occupy the contiguous
 * range levelRange(l), so a loss can restrict a softmax to one codebook level.
 */
export class SidVocab {
  readonly specials: readonly string[];
  readonly levelSizes: readonly number[];
  readonly size: number;
  readonly pad: number;
  readonly bos: number;
  readonly eos: number;
  private readonly offsets: number[];
  private readonly byToken = new Map<string, number>();

  constructor(levelSizes: readonly number[], opts: SidVocabOptions = {}) {
    this.specials = [...(opts.specials ?? DEFAULT_SPECIALS)];
    const sizes = levelSizes.map((s) => Math.max(s, opts.codebookSize ?? 0));
    if (sizes.length > MAX_SID_LEVELS) throw new Error(`SidVocab: ${sizes.length} levels > ${MAX_SID_LEVELS}`);
    this.levelSizes = sizes;
    this.specials.forEach((t, i) => {
      if (this.byToken.has(t)) throw new Error(`SidVocab: duplicate special ${t}`);
      if (parseSidToken(t)) throw new Error(`SidVocab: special ${t} looks like a SID token`);
      this.byToken.set(t, i);
    });
    const need = (t: string): number => {
      const id = this.byToken.get(t);
      if (id === undefined) throw new Error(`SidVocab: specials must include ${t}`);
      return id;
    };
    this.pad = need('<pad>');
    this.bos = need('<bos>');
    this.eos = need('<eos>');
    this.offsets = [];
    let next = this.specials.length;
    sizes.forEach((s) => {
      this.offsets.push(next);
      next += s;
    });
    this.size = next;
  }

  /** Vocabulary covering a resolved SidSet (semantic levels padded to codebookSize if given). */
  static forSidSet(set: SidSet, opts: SidVocabOptions = {}): SidVocab {
    const cb = opts.codebookSize ?? 0;
    // Pad only the semantic levels; the disambiguation level stays as large as the largest group.
    const sizes = set.levelSizes.map((s, l) => (l < set.semanticLevels ? Math.max(s, cb) : s));
    return new SidVocab(sizes, { ...(opts.specials ? { specials: opts.specials } : {}) });
  }

  get levels(): number {
    return this.levelSizes.length;
  }

  /** Id of the token for `code` at `level`. */
  id(level: number, code: number): number {
    const size = this.levelSizes[level];
    if (size === undefined || !Number.isInteger(code) || code < 0 || code >= size)
      throw new Error(`SidVocab: no token for level ${level} code ${code}`);
    return this.offsets[level]! + code;
  }

  /** Ids of level `level`'s tokens: [start, end). */
  levelRange(level: number): { start: number; end: number } {
    const size = this.levelSizes[level];
    if (size === undefined) throw new Error(`SidVocab: no level ${level}`);
    return { start: this.offsets[level]!, end: this.offsets[level]! + size };
  }

  /** The level of a token id, or -1 for a special. */
  levelOf(id: number): number {
    for (let l = this.offsets.length - 1; l >= 0; l--) if (id >= this.offsets[l]!) return id < this.size ? l : -1;
    return -1;
  }

  tokenToId(token: string): number | undefined {
    const s = this.byToken.get(token);
    if (s !== undefined) return s;
    const p = parseSidToken(token);
    if (!p || p.level >= this.levelSizes.length || p.code >= this.levelSizes[p.level]!) return undefined;
    return this.offsets[p.level]! + p.code;
  }

  idToToken(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.size) throw new Error(`SidVocab: id ${id} outside [0, ${this.size})`);
    if (id < this.specials.length) return this.specials[id]!;
    const level = this.levelOf(id);
    return sidToken(level, id - this.offsets[level]!);
  }

  /** Numeric code -> token ids (position p is level p). */
  encode(code: readonly number[]): number[] {
    return code.map((c, level) => this.id(level, c));
  }

  /** Token ids -> numeric code; throws on a special or a token at the wrong level. */
  decode(ids: readonly number[]): number[] {
    return ids.map((id, p) => {
      const level = this.levelOf(id);
      if (level !== p) throw new Error(`SidVocab: id ${id} at position ${p} is level ${level}`);
      return id - this.offsets[level]!;
    });
  }

  toJSON(): { specials: string[]; levelSizes: number[] } {
    return { specials: [...this.specials], levelSizes: [...this.levelSizes] };
  }

  static fromJSON(j: { specials: string[]; levelSizes: number[] }): SidVocab {
    return new SidVocab(j.levelSizes, { specials: j.specials });
  }
}
