// A synthetic sequential-recommendation dataset with planted structure, for tests and quick
// training runs on a CPU: items are leaves of a category tree (their SIDs are the tree
// path), users have latent category tastes, and sequences follow a planted Markov chain.

import { ReportBuilder, validateDataset, type Dataset } from './dataset.js';
import { Rng } from './rng.js';
import { sidToken } from './sid.js';

export interface SyntheticOptions {
  seed?: number;
  users?: number;
  /** Children per node at each tree level; items = product. [6, 5, 10] -> 300 items, 3-token SIDs. */
  branching?: number[];
  /** Sequence length drawn uniformly from [minLength, maxLength]. */
  minLength?: number;
  maxLength?: number;
  /** Top-level categories each user favours (its "taste"). */
  tastesPerUser?: number;
  /**
   * Next-item moves inside a session, as probabilities (the rest is uniform noise):
   * follow the current item's planted successor (same top-level category) ...
   */
  pFollow?: number;
  /** ... or a popularity-weighted sibling (same second-to-last-level group) ... */
  pSibling?: number;
  /** ... or a fresh item from one of the user's favoured categories. */
  pTaste?: number;
  /** Mean session length (geometric); a session starts from the user's tastes, not the last item. */
  meanSessionLength?: number;
  /** Zipf exponent of item popularity within a sibling group. */
  zipf?: number;
  /** Dimension of the planted item vectors (for testing residual k-means SIDs). */
  vectorDim?: number;
  /** Std of the per-item noise added to the summed path vectors. */
  vectorNoise?: number;
}

export const SYNTHETIC_DEFAULTS: Required<SyntheticOptions> = {
  seed: 0,
  users: 1000,
  branching: [6, 5, 10],
  minLength: 5,
  maxLength: 20,
  tastesPerUser: 2,
  pFollow: 0.5,
  pSibling: 0.2,
  pTaste: 0.2,
  meanSessionLength: 6,
  zipf: 1,
  vectorDim: 32,
  vectorNoise: 0.05,
};

/** Seconds between sessions (about a day) and between items in a session (a few minutes). */
const SESSION_GAP_S = 86_400;
const ITEM_GAP_S = 300;
/** Each deeper tree level's node vectors are this much shorter, so the top split dominates. */
const LEVEL_SCALE_DECAY = 0.5;

export interface PlantedStructure {
  /** paths[i] = tree path of item i (one child index per level) = its SID code. */
  paths: number[][];
  /** The planted Markov successor of each item. */
  successor: Int32Array;
  /** Favoured top-level categories per user. */
  tastes: number[][];
  /** Item vectors [items × dim]: sum of the path's node vectors plus noise. */
  vectors: Float32Array;
  dim: number;
  options: Required<SyntheticOptions>;
}

export interface SyntheticDataset extends Dataset {
  planted: PlantedStructure;
}

/** Deterministic by seed; every sequence is time-ordered with synthetic timestamps. */
export function generateSynthetic(options: SyntheticOptions = {}): SyntheticDataset {
  const o = { ...SYNTHETIC_DEFAULTS, ...options };
  checkOptions(o);
  const rng = new Rng(o.seed);
  const levels = o.branching.length;
  const nItems = o.branching.reduce((a, b) => a * b, 1);
  const top = o.branching[0]!;
  const groupSize = o.branching[levels - 1]!;

  // Item i's path: mixed-radix digits of i, so siblings are contiguous index ranges.
  const paths: number[][] = [];
  for (let i = 0; i < nItems; i++) {
    const p: number[] = [];
    let r = i;
    for (let l = levels - 1; l >= 0; l--) {
      p[l] = r % o.branching[l]!;
      r = Math.floor(r / o.branching[l]!);
    }
    paths.push(p);
  }
  const perTop = nItems / top;
  const groupOf = (i: number) => Math.floor(i / groupSize);
  const topOf = (i: number) => Math.floor(i / perTop);

  // Popularity within each sibling group: Zipf over a random order.
  const popularity = new Float64Array(nItems);
  for (let g = 0; g < nItems / groupSize; g++) {
    const order = rng.shuffle(Array.from({ length: groupSize }, (_, k) => k));
    order.forEach((rank, k) => (popularity[g * groupSize + k] = 1 / (rank + 1) ** o.zipf));
  }
  const groupWeights = (g: number) => popularity.subarray(g * groupSize, (g + 1) * groupSize);

  // Planted successor: another item of the same top-level category.
  const successor = new Int32Array(nItems);
  for (let i = 0; i < nItems; i++) {
    const base = topOf(i) * perTop;
    let j = i;
    while (perTop > 1 && j === i) j = base + rng.int(perTop);
    successor[i] = j;
  }

  const fromTaste = (taste: number[]): number => {
    const cat = taste[rng.int(taste.length)]!;
    const groupsPerTop = perTop / groupSize;
    const g = cat * groupsPerTop + rng.int(groupsPerTop);
    return g * groupSize + rng.categorical(groupWeights(g));
  };

  const users: string[] = [];
  const sequences: number[][] = [];
  const times: number[][] = [];
  const tastes: number[][] = [];
  const pEnd = 1 / o.meanSessionLength;
  for (let u = 0; u < o.users; u++) {
    const taste = rng.shuffle(Array.from({ length: top }, (_, c) => c)).slice(0, o.tastesPerUser);
    tastes.push(taste);
    const len = o.minLength + rng.int(o.maxLength - o.minLength + 1);
    const seq: number[] = [];
    const ts: number[] = [];
    let t = rng.int(SESSION_GAP_S * 30);
    let cur = -1;
    for (let k = 0; k < len; k++) {
      const newSession = cur < 0 || rng.next() < pEnd;
      let next: number;
      if (newSession) {
        t += SESSION_GAP_S + rng.int(SESSION_GAP_S);
        next = fromTaste(taste);
      } else {
        t += 1 + rng.int(ITEM_GAP_S);
        const r = rng.next();
        if (r < o.pFollow) next = successor[cur]!;
        else if (r < o.pFollow + o.pSibling) {
          const g = groupOf(cur);
          next = g * groupSize + rng.categorical(groupWeights(g));
        } else if (r < o.pFollow + o.pSibling + o.pTaste) next = fromTaste(taste);
        else next = rng.int(nItems);
      }
      seq.push(next);
      ts.push(t);
      cur = next;
    }
    users.push(`u${u}`);
    sequences.push(seq);
    times.push(ts);
  }

  // Planted vectors: each tree node has a random direction, shorter at deeper levels.
  const dim = o.vectorDim;
  const vectors = new Float32Array(nItems * dim);
  const nodeVec = new Map<string, Float64Array>();
  for (let i = 0; i < nItems; i++) {
    let scale = 1;
    for (let l = 0; l < levels; l++) {
      const key = paths[i]!.slice(0, l + 1).join('/');
      let v = nodeVec.get(key);
      if (!v) {
        v = new Float64Array(dim);
        for (let j = 0; j < dim; j++) v[j] = rng.normal() * scale;
        nodeVec.set(key, v);
      }
      for (let j = 0; j < dim; j++) vectors[i * dim + j]! += v[j]!;
      scale *= LEVEL_SCALE_DECAY;
    }
    for (let j = 0; j < dim; j++) vectors[i * dim + j]! += rng.normal() * o.vectorNoise;
  }

  const report = new ReportBuilder();
  report.files.push(`synthetic(seed=${o.seed})`);
  report.recordsRead = sequences.reduce((s, q) => s + q.length, 0);
  const ds: SyntheticDataset = {
    name: `synthetic-s${o.seed}`,
    users,
    items: paths.map((_, i) => `i${i}`),
    sequences,
    times,
    sids: paths.map((p) => p.map((c, l) => sidToken(l, c))),
    titles: paths.map((p, i) => `item ${i} (category ${p.join('.')})`),
    report: report.build({ users: users.length, items: nItems, interactions: report.recordsRead }),
    planted: { paths, successor, tastes, vectors, dim, options: o },
  };
  validateDataset(ds);
  return ds;
}

function checkOptions(o: Required<SyntheticOptions>): void {
  const bad = (msg: string) => {
    throw new Error(`generateSynthetic: ${msg}`);
  };
  if (!Number.isInteger(o.users) || o.users < 1) bad(`users must be a positive integer, got ${o.users}`);
  if (o.branching.length < 1 || o.branching.some((b) => !Number.isInteger(b) || b < 1))
    bad(`branching must be positive integers, got [${o.branching}]`);
  if (o.minLength < 1 || o.maxLength < o.minLength) bad(`need 1 <= minLength <= maxLength, got ${o.minLength}, ${o.maxLength}`);
  if (o.tastesPerUser < 1 || o.tastesPerUser > o.branching[0]!) bad(`tastesPerUser must be in [1, ${o.branching[0]}]`);
  const moves = [o.pFollow, o.pSibling, o.pTaste];
  if (moves.some((p) => p < 0) || moves.reduce((a, b) => a + b, 0) > 1) bad('pFollow + pSibling + pTaste must be probabilities summing to <= 1');
  if (o.meanSessionLength < 1) bad('meanSessionLength must be >= 1');
}
