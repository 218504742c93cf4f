// Stability over seeds: reads several `npm run train` output directories (the same experiment with
// different run.seed, the same test users) and prints a markdown table of each row's metrics per seed,
// their mean and standard deviation, and the paired difference against a base row averaged over seeds.
//   npx tsx scripts/seeds-table.ts --base sft runs/inst runs/inst-s1 runs/inst-s2
import * as fs from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { formatDifference as fmt, hitAt, metricsFromRanks, ndcgAt, pairedBootstrapRuns } from '../ilrec/eval/metrics.js';

const argv = await yargs(hideBin(process.argv))
  .usage('$0 [--base sft] [--k 10] DIR...')
  .option('base', { type: 'string', default: 'sft', describe: 'row the others are compared with' })
  .option('k', { type: 'number', default: 10, describe: 'cut-off of the NDCG and HR columns' })
  .demandCommand(1, 'give the run directories')
  .strict().parse();
const dirs = argv._.map(String);
const k = argv.k;

/** Row name → per-user test ranks (null: target not in the beams), for each run directory. */
function ranksOf(dir: string): Map<string, number[]> {
  const file = path.join(dir, 'results.json');
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file (not a finished run directory)`);
  const rows = JSON.parse(fs.readFileSync(file, 'utf8')) as { name: string }[];
  const out = new Map<string, number[]>();
  for (const { name } of rows) {
    const evalFile = path.join(dir, name, 'eval.json');
    if (!fs.existsSync(evalFile)) continue; // sasrec keeps no per-user file
    const e = JSON.parse(fs.readFileSync(evalFile, 'utf8')) as { ranks?: (number | null)[] };
    if (!e.ranks) throw new Error(`${evalFile}: no per-user ranks`);
    out.set(name, e.ranks.map((r) => r ?? Infinity));
  }
  return out;
}

const runs = dirs.map(ranksOf);
// The base row: one model shared by every run (e.g. the SFT start), or one per seed (e.g. a control
// trained with the same seeds), in which case the paired differences are of seed averages on both sides.
const baseRuns = runs.map((r, i) => {
  const b = r.get(argv.base);
  if (!b) throw new Error(`${dirs[i]}: no row ${argv.base}`);
  if (b.length !== runs[0]!.get(argv.base)!.length) throw new Error(`${dirs[i]}: its ${argv.base} row ranks ${b.length} users, ${dirs[0]}'s ${runs[0]!.get(argv.base)!.length} (the runs must share the test users)`);
  return b;
});
const baseShared = baseRuns.every((b) => b.every((x, u) => x === baseRuns[0]![u]));
const base = baseShared ? [baseRuns[0]!] : baseRuns;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));

const names = [...new Set(runs.flatMap((r) => [...r.keys()]))];
console.log(`| row | seeds | NDCG@${k} per seed | NDCG@${k} mean ± sd | HR@${k} per seed | HR@${k} mean ± sd | vs ${argv.base}, NDCG@${k} (95% paired) | vs ${argv.base}, HR@${k} (95% paired) |`);
console.log('| --- | ---: | --- | --- | --- | --- | --- | --- |');
for (const name of names) {
  const have = runs.map((r) => r.get(name)).filter((x): x is number[] => x !== undefined);
  const m = have.map((r) => metricsFromRanks(r, [k]));
  const nd = m.map((x) => x[`NDCG@${k}`]!);
  const hr = m.map((x) => x[`HR@${k}`]!);
  const vs = name === argv.base ? ['-', '-'] : [fmt(pairedBootstrapRuns(base, have, (r) => ndcgAt(r, k))), fmt(pairedBootstrapRuns(base, have, (r) => hitAt(r, k)))];
  console.log(`| ${name} | ${have.length} | ${nd.map((x) => x.toFixed(4)).join(', ')} | ${mean(nd).toFixed(4)} ± ${sd(nd).toFixed(4)} | ${hr.map((x) => x.toFixed(4)).join(', ')} | ${mean(hr).toFixed(4)} ± ${sd(hr).toFixed(4)} | ${vs[0]} | ${vs[1]} |`);
}
console.log(`\n${baseRuns[0]!.length} test users; runs: ${dirs.join(', ')}${baseShared ? '' : `; the ${argv.base} row differs between runs, so both sides of each paired difference are seed averages`}`);
