// The common in-memory dataset every reader produces, the filter report that says what
// was dropped and why, and the shared interaction pipeline (dedupe, k-core, time sort).

/** A sequential-recommendation dataset: per user, item indices in time order. */
export interface Dataset {
  name: string;
  /** Original user ids; index = user index. */
  users: string[];
  /** Original item ids; index = item index. The item universe for full ranking. */
  items: string[];
  /** sequences[u] = item indices of user u in time order (oldest first). */
  sequences: number[][];
  /** times[u][j] = timestamp of sequences[u][j], when the source has timestamps. */
  times?: number[][];
  /** sids[i] = semantic-ID tokens of item i as given (e.g. ["<a_1>", "<b_7>", ...]). */
  sids?: string[][];
  /** titles[i] = item title, undefined where the source has none for that item. */
  titles?: (string | undefined)[];
  report: FilterReport;
}

/** What a drop counts: a raw input line/record, one interaction, a whole user or item. */
export type DropUnit = 'record' | 'interaction' | 'user' | 'item';

export interface DropCount {
  reason: string;
  unit: DropUnit;
  count: number;
  /** The first few occurrences, "file:line: detail", so a reader of the report can look. */
  examples: string[];
}

/** Everything a reader filtered, with counts; readers never drop silently. */
export interface FilterReport {
  files: string[];
  /** Raw records read (JSON-lines lines, CSV rows, top-level JSON entries). */
  recordsRead: number;
  drops: DropCount[];
  /** Non-dropping observations (e.g. "1,203 interactions were out of time order in the file"). */
  notes: string[];
  kept: { users: number; items: number; interactions: number };
}

/** Malformed input: names the file and the 1-based line. */
export class DataFormatError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly detail: string,
  ) {
    super(`${file}:${line}: ${detail}`);
    this.name = 'DataFormatError';
  }
}

/** How many examples each drop reason keeps; enough to debug, small enough to print. */
const MAX_DROP_EXAMPLES = 5;

/** Accumulates a FilterReport while a reader runs. */
export class ReportBuilder {
  readonly files: string[] = [];
  recordsRead = 0;
  readonly notes: string[] = [];
  private readonly drops = new Map<string, DropCount>();

  drop(reason: string, unit: DropUnit, count = 1, example?: string): void {
    if (count <= 0) return;
    const key = `${unit}\u0000${reason}`;
    let d = this.drops.get(key);
    if (!d) {
      d = { reason, unit, count: 0, examples: [] };
      this.drops.set(key, d);
    }
    d.count += count;
    if (example !== undefined && d.examples.length < MAX_DROP_EXAMPLES) d.examples.push(example);
  }

  /**
   * Malformed record: throw a DataFormatError, or in lenient mode skip and count it.
   * `reason` groups the count in the report; `detail` is the specific message.
   */
  malformed(
    lenient: boolean,
    file: string,
    line: number,
    reason: string,
    detail = reason,
    unit: DropUnit = 'record',
  ): void {
    if (!lenient) throw new DataFormatError(file, line, detail);
    this.drop(reason, unit, 1, `${file}:${line}: ${detail}`);
  }

  build(kept: FilterReport['kept']): FilterReport {
    return {
      files: [...this.files],
      recordsRead: this.recordsRead,
      drops: [...this.drops.values()].map((d) => ({ ...d, examples: [...d.examples] })),
      notes: [...this.notes],
      kept,
    };
  }
}

/** Human-readable report, one line per drop, for logs. */
export function formatReport(r: FilterReport): string {
  const lines = [
    `files: ${r.files.join(', ')}`,
    `records read: ${r.recordsRead}`,
    `kept: ${r.kept.users} users, ${r.kept.items} items, ${r.kept.interactions} interactions`,
  ];
  for (const d of r.drops) {
    lines.push(`dropped ${d.count} ${d.unit}(s): ${d.reason}`);
    for (const e of d.examples) lines.push(`    e.g. ${e}`);
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

export interface DatasetStats {
  users: number;
  items: number;
  interactions: number;
  /** Mean / min / max sequence length over users. */
  meanLength: number;
  minLength: number;
  maxLength: number;
  /** interactions / (users × items). */
  density: number;
}

export function datasetStats(ds: Dataset): DatasetStats {
  let interactions = 0;
  let minLength = Infinity;
  let maxLength = 0;
  for (const s of ds.sequences) {
    interactions += s.length;
    if (s.length < minLength) minLength = s.length;
    if (s.length > maxLength) maxLength = s.length;
  }
  const users = ds.sequences.length;
  const items = ds.items.length;
  return {
    users,
    items,
    interactions,
    meanLength: users ? interactions / users : 0,
    minLength: users ? minLength : 0,
    maxLength,
    density: users && items ? interactions / (users * items) : 0,
  };
}

/** Checks the structural invariants every Dataset must satisfy; throws on the first violation. */
export function validateDataset(ds: Dataset): void {
  const nItems = ds.items.length;
  if (ds.users.length !== ds.sequences.length)
    throw new Error(`${ds.name}: ${ds.users.length} users but ${ds.sequences.length} sequences`);
  ds.sequences.forEach((s, u) => {
    for (const i of s)
      if (!Number.isInteger(i) || i < 0 || i >= nItems)
        throw new Error(`${ds.name}: user ${ds.users[u]} has item index ${i} outside [0, ${nItems})`);
    if (ds.times && ds.times[u]!.length !== s.length)
      throw new Error(`${ds.name}: user ${ds.users[u]} has ${s.length} items but ${ds.times[u]!.length} times`);
  });
  if (ds.sids && ds.sids.length !== nItems)
    throw new Error(`${ds.name}: ${ds.sids.length} SIDs for ${nItems} items`);
  if (ds.titles && ds.titles.length !== nItems)
    throw new Error(`${ds.name}: ${ds.titles.length} titles for ${nItems} items`);
}

// ---------------------------------------------------------------------------------------
// Shared interaction pipeline for the flat formats (RecBole, Amazon, MovieLens).

/** Options shared by the flat-interaction readers. */
export interface PipelineOptions {
  /**
   * Iterative k-core: repeatedly drop users and items with fewer than k interactions
   * until none remain. 0 = no filtering. A number applies to both sides.
   */
  kCore?: number | { user: number; item: number };
  /** Drop repeated (user, item) pairs, keeping the earliest (by time, then file order). */
  dedupe?: boolean;
}

/** Flat interactions in file order, ids interned to dense integers as they were read. */
export class InteractionLog {
  readonly userIds: string[] = [];
  readonly itemIds: string[] = [];
  readonly user: number[] = [];
  readonly item: number[] = [];
  readonly time: number[] = [];
  /** "file:line" of each interaction, for examples in the report. */
  readonly where: string[] = [];
  private readonly userIndex = new Map<string, number>();
  private readonly itemIndex = new Map<string, number>();

  constructor(readonly hasTime: boolean) {}

  get length(): number {
    return this.user.length;
  }

  add(userId: string, itemId: string, time: number, where: string): void {
    this.user.push(intern(this.userIndex, this.userIds, userId));
    this.item.push(intern(this.itemIndex, this.itemIds, itemId));
    this.time.push(time);
    this.where.push(where);
  }
}

function intern(index: Map<string, number>, ids: string[], id: string): number {
  let k = index.get(id);
  if (k === undefined) {
    k = ids.length;
    index.set(id, k);
    ids.push(id);
  }
  return k;
}

export interface PipelineResult {
  users: string[];
  items: string[];
  sequences: number[][];
  times?: number[][];
}

/**
 * Turns a flat log into per-user time-ordered sequences: dedupe, k-core, stable sort by
 * time (ties keep file order). Users and items keep their first-appearance order among
 * the survivors, so the result is a deterministic function of the file.
 */
export function runPipeline(log: InteractionLog, opts: PipelineOptions, report: ReportBuilder): PipelineResult {
  const n = log.length;
  const alive = new Uint8Array(n).fill(1);
  const nUsers = log.userIds.length;
  const nItems = log.itemIds.length;

  // Per-user interaction lists in file order, then stably sorted by time.
  const perUser: number[][] = Array.from({ length: nUsers }, () => []);
  for (let j = 0; j < n; j++) perUser[log.user[j]!]!.push(j);
  if (log.hasTime) {
    let outOfOrder = 0;
    let ties = 0;
    for (const list of perUser) {
      for (let a = 1; a < list.length; a++) {
        const dt = log.time[list[a]!]! - log.time[list[a - 1]!]!;
        if (dt < 0) outOfOrder++;
        else if (dt === 0) ties++;
      }
      // Array.prototype.sort is stable (ES2019), so equal timestamps keep file order.
      list.sort((x, y) => log.time[x]! - log.time[y]!);
    }
    if (outOfOrder) report.notes.push(`${outOfOrder} interactions were out of time order in the file and were re-sorted`);
    if (ties) report.notes.push(`${ties} consecutive interactions share a timestamp; file order kept for ties`);
  }

  if (opts.dedupe) {
    let dropped = 0;
    let example: string | undefined;
    for (const list of perUser) {
      const seen = new Set<number>();
      for (const j of list) {
        const it = log.item[j]!;
        if (seen.has(it)) {
          alive[j] = 0;
          dropped++;
          example ??= `${log.where[j]}: user ${log.userIds[log.user[j]!]} item ${log.itemIds[it]}`;
        } else seen.add(it);
      }
    }
    report.drop('repeated (user, item) pair (dedupe: earliest kept)', 'interaction', dropped, example);
  }

  const kc = opts.kCore ?? 0;
  const kUser = typeof kc === 'number' ? kc : kc.user;
  const kItem = typeof kc === 'number' ? kc : kc.item;
  if (kUser > 0 || kItem > 0) kCoreFilter(log, alive, nUsers, nItems, kUser, kItem, report);

  // Compact the survivors, first-appearance order in the file.
  const newUser = new Int32Array(nUsers).fill(-1);
  const newItem = new Int32Array(nItems).fill(-1);
  const users: string[] = [];
  const items: string[] = [];
  for (let j = 0; j < n; j++) {
    if (!alive[j]) continue;
    const u = log.user[j]!;
    const i = log.item[j]!;
    if (newUser[u] === -1) {
      newUser[u] = users.length;
      users.push(log.userIds[u]!);
    }
    if (newItem[i] === -1) {
      newItem[i] = items.length;
      items.push(log.itemIds[i]!);
    }
  }
  const sequences: number[][] = Array.from({ length: users.length }, () => []);
  const times: number[][] | undefined = log.hasTime ? Array.from({ length: users.length }, () => []) : undefined;
  for (let u = 0; u < nUsers; u++) {
    const nu = newUser[u]!;
    if (nu === -1) continue;
    for (const j of perUser[u]!) {
      if (!alive[j]) continue;
      sequences[nu]!.push(newItem[log.item[j]!]!);
      times?.[nu]!.push(log.time[j]!);
    }
  }
  return times ? { users, items, sequences, times } : { users, items, sequences };
}

function kCoreFilter(
  log: InteractionLog,
  alive: Uint8Array,
  nUsers: number,
  nItems: number,
  kUser: number,
  kItem: number,
  report: ReportBuilder,
): void {
  const n = log.length;
  const userCount = new Int32Array(nUsers);
  const itemCount = new Int32Array(nItems);
  for (let j = 0; j < n; j++) {
    if (!alive[j]) continue;
    userCount[log.user[j]!]!++;
    itemCount[log.item[j]!]!++;
  }
  const userDead = new Uint8Array(nUsers);
  const itemDead = new Uint8Array(nItems);
  // A threshold of at least 1 on both sides, so a user (item) emptied by the other side's
  // removals is counted as dropped rather than vanishing from the compaction silently.
  const minUser = Math.max(kUser, 1);
  const minItem = Math.max(kItem, 1);
  let usersDropped = 0;
  let itemsDropped = 0;
  let interactionsDropped = 0;
  let rounds = 0;
  for (;;) {
    let changed = false;
    for (let u = 0; u < nUsers; u++)
      if (!userDead[u] && userCount[u]! < minUser) {
        userDead[u] = 1;
        usersDropped++;
        changed = true;
      }
    for (let i = 0; i < nItems; i++)
      if (!itemDead[i] && itemCount[i]! < minItem) {
        itemDead[i] = 1;
        itemsDropped++;
        changed = true;
      }
    if (!changed) break;
    rounds++;
    for (let j = 0; j < n; j++) {
      if (!alive[j]) continue;
      const u = log.user[j]!;
      const i = log.item[j]!;
      if (userDead[u] || itemDead[i]) {
        alive[j] = 0;
        interactionsDropped++;
        userCount[u]!--;
        itemCount[i]!--;
      }
    }
  }
  const tag = `${kUser}/${kItem}-core (user/item)`;
  report.drop(`${tag}: user below threshold`, 'user', usersDropped);
  report.drop(`${tag}: item below threshold`, 'item', itemsDropped);
  report.drop(`${tag}: interactions of dropped users/items`, 'interaction', interactionsDropped);
  report.notes.push(`${tag} converged after ${rounds} round(s)`);
}
