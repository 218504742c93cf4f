// Writes an evaluation run's results: a JSON record (metrics, config, dataset statistics,
// commit, wall time) and a markdown table row, so runs can be compared and tabulated.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DatasetStats } from '../data/dataset.js';
import type { MetricValues } from './metrics.js';

export interface ResultRecord {
  /** Run / model label, the first column of the markdown row. */
  name: string;
  dataset: string;
  metrics: MetricValues;
  /** Users evaluated (the denominator of the means). */
  users: number;
  config: unknown;
  datasetStats?: DatasetStats;
  /** `git rev-parse HEAD`, null outside a repository or before the first commit. */
  commit: string | null;
  /** True when the working tree had uncommitted changes at write time (null: unknown). */
  dirty: boolean | null;
  wallTimeSeconds: number;
  /** ISO time the record was written. */
  writtenAt: string;
}

/** HEAD commit of the repository holding `cwd`, or null (no git, no repo, no commit yet). */
export function gitCommit(cwd = process.cwd()): string | null {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return null;
  }
}

function gitDirty(cwd: string): boolean | null {
  try {
    const out = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] });
    return out.toString().trim().length > 0;
  } catch {
    return null;
  }
}

export interface MakeRecordInput {
  name: string;
  dataset: string;
  metrics: MetricValues;
  users: number;
  config: unknown;
  datasetStats?: DatasetStats;
  /** performance.now() (ms) when the run started. */
  startedAtMs: number;
  cwd?: string;
}

export function makeResultRecord(r: MakeRecordInput): ResultRecord {
  const cwd = r.cwd ?? process.cwd();
  return {
    name: r.name,
    dataset: r.dataset,
    metrics: r.metrics,
    users: r.users,
    config: r.config,
    ...(r.datasetStats ? { datasetStats: r.datasetStats } : {}),
    commit: gitCommit(cwd),
    dirty: gitDirty(cwd),
    wallTimeSeconds: (performance.now() - r.startedAtMs) / 1000,
    writtenAt: new Date().toISOString(),
  };
}

/** Writes the record as pretty JSON (creating the directory) and returns the path. */
export function writeResultJson(file: string, record: ResultRecord): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
  return file;
}

/** Metric columns in table order: HR@K, NDCG@K for each K. */
export function metricColumns(ks: readonly number[]): string[] {
  return ks.flatMap((k) => [`HR@${k}`, `NDCG@${k}`]);
}

/** Decimals printed in the markdown table (the papers print 4). */
const TABLE_DECIMALS = 4;

/** `| name | dataset | HR@5 | NDCG@5 | ... |` header and separator lines. */
export function markdownHeader(ks: readonly number[]): string {
  const cols = ['name', 'dataset', ...metricColumns(ks), 'users', 'commit'];
  return `| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|`;
}

/** One markdown row matching markdownHeader(ks); a metric absent from the record prints "-". */
export function markdownRow(record: ResultRecord, ks: readonly number[]): string {
  const metrics = metricColumns(ks).map((c) => {
    const v = record.metrics[c];
    return v === undefined ? '-' : v.toFixed(TABLE_DECIMALS);
  });
  const commit = record.commit ? record.commit.slice(0, 7) + (record.dirty ? '+' : '') : '-';
  return `| ${[record.name, record.dataset, ...metrics, String(record.users), commit].join(' | ')} |`;
}
