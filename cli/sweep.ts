// `npm run sweep`: chooses ILRec's loss weights on validation users, never on test users. Each trial
// is one ILRec stage from the same SFT model (a finished `npm run train` run's sft/model and
// cf/sasrec.safetensors), evaluated on the validation split; the table ranks the trials by validation
// NDCG@10 with paired-bootstrap differences against the SFT start on the same users.
import * as fs from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { initNode } from '../engine/node/index.js';
import { SASRec } from '../ilrec/cf/sasrec.js';
import type { IlrecConfig } from '../ilrec/config.js';
import { formatDifference, hitAt, ndcgAt, pairedBootstrap, type MetricValues } from '../ilrec/eval/metrics.js';
import { writeFileAtomic } from '../engine/io/node.js';
import { buildModel, loadInto, prepareRun } from '../ilrec/train/pipeline.js';
import { runIlrec } from '../ilrec/train/stages.js';
import { addIlrecOptions, ilrecFromArgs } from './ilrec-options.js';

interface TrialResult {
  name: string;
  set: Record<string, unknown>;
  metrics: MetricValues;
  users: number;
  /** Per-user validation ranks (null: the target was not among the beams). */
  ranks: (number | null)[];
  trainSeconds: number;
}

/** "alpha1:ilrec.loss.alpha=1,ilrec.loss.b=0.05" → name and --set strings. */
function parseTrial(spec: string): { name: string; sets: string[] } {
  const colon = spec.indexOf(':');
  if (colon < 1) throw new Error(`--trial ${spec}: expected NAME:path=value[,path=value...] (NAME: only letters, digits, - and _)`);
  const name = spec.slice(0, colon);
  if (!/^[\w-]+$/.test(name)) throw new Error(`--trial ${spec}: the name ${name} may hold only letters, digits, - and _`);
  const sets = spec.slice(colon + 1).split(/,(?![^[]*\])/).filter(Boolean); // commas inside [..] belong to a JSON array
  for (const s of sets) if (s.indexOf('=') < 1) throw new Error(`--trial ${spec}: ${s} is not path=value`);
  return { name, sets };
}

async function main(): Promise<void> {
  const argv = await addIlrecOptions(
    yargs(hideBin(process.argv))
      .scriptName('npm run sweep --')
      .usage('$0 --from RUN --out DIR --trial NAME:path=value[,...] ...\n\nTrains one ILRec stage per trial from RUN/sft/model and ranks the trials on validation users.')
      .option('from', { type: 'string', demandOption: true, describe: 'a finished run directory with sft/model and cf/sasrec.safetensors (its config.json is the base config)' })
      .option('out', { type: 'string', demandOption: true, describe: 'sweep directory: one folder per trial (checkpoint, valid.json) and sweep.md' })
      .option('data', { type: 'string', describe: 'LC-Rec data directory (default: the one in the run config)' })
      .option('versus', { type: 'string', describe: 'also give each trial\'s paired difference against this trial (e.g. the cross-entropy-only control)' })
      .option('trial', { type: 'string', array: true, demandOption: true, describe: 'NAME:path=value[,path=value...] — config overrides of one trial, e.g. a1:ilrec.loss.alpha=1; NAME:  alone is the base config' }),
  )
    .strict()
    .help()
    .parse();
  const trials = (argv.trial as string[]).map(parseTrial);
  const names = new Set<string>();
  for (const t of trials) {
    if (names.has(t.name)) throw new Error(`--trial ${t.name}: named twice`);
    names.add(t.name);
  }
  if (argv.versus !== undefined && !names.has(argv.versus)) throw new Error(`--versus ${argv.versus}: not one of the trials (${[...names].join(', ')})`);
  const baseArgs = { ...(argv as Record<string, unknown>), config: argv['config'] ?? path.join(argv.from, 'config.json') };
  const { config: base } = ilrecFromArgs(baseArgs, argv.data);
  if (base.eval.validUsers <= 0) throw new Error('eval.validUsers is 0: a sweep needs validation users (--valid-users N)');
  const device = await initNode();
  console.log(`device: ${device.description}; ${trials.length} trials from ${argv.from}; output ${argv.out}`);
  fs.mkdirSync(argv.out, { recursive: true });

  const run = prepareRun(base, (l) => console.log(l));
  const valid = run.validSamples;
  const sftDir = path.join(argv.from, 'sft', 'model');
  const cfFile = path.join(argv.from, 'cf', 'sasrec.safetensors');
  for (const f of [path.join(sftDir, 'model.safetensors'), cfFile]) if (!fs.existsSync(f)) throw new Error(`--from ${argv.from}: missing ${f}`);
  const cf = SASRec.load(cfFile);
  cf.eval();

  // The SFT start on the same validation users: the reference of every paired difference.
  const sftResult = await cached(path.join(argv.out, 'sft', 'valid.json'), valid.length, {}, async () => {
    const model = buildModel(base, run.codes.vocab.size, run.maxTokens);
    loadInto(model, sftDir);
    const res = await run.evaluate(model, valid);
    model.dispose();
    return { name: 'sft', set: {}, metrics: res.metrics, users: valid.length, ranks: res.ranks.map(nullIfMissed), trainSeconds: 0 };
  });
  console.log(`sft: valid ${fmt(sftResult.metrics)}`);

  const results: TrialResult[] = [];
  for (const t of trials) {
    const { config: cfg } = ilrecFromArgs({ ...baseArgs, set: [...((argv['set'] as string[] | undefined) ?? []), ...t.sets] }, argv.data);
    // The data, the model and the evaluation are prepared once from the base config: a trial varies the stage only.
    for (const section of ['data', 'model', 'eval'] as const)
      if (JSON.stringify(cfg[section]) !== JSON.stringify(base[section])) throw new Error(`--trial ${t.name}: changes ${section}.*; a trial may change only the ILRec stage (ilrec.*, pref.*, run.*)`);
    const set = Object.fromEntries(t.sets.map((s) => [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)]));
    const dir = path.join(argv.out, t.name);
    const r = await cached(path.join(dir, 'valid.json'), valid.length, set, async () => {
      writeFileAtomic(path.join(dir, 'config.json'), [new TextEncoder().encode(JSON.stringify(cfg, null, 2) + '\n')]);
      const model = buildModel(cfg, run.codes.vocab.size, run.maxTokens);
      loadInto(model, sftDir);
      const res = await runIlrec(model, run.data, cfg, cf, run.ds.sequences, {
        checkpoint: path.join(dir, 'state.safetensors'), resume: true, progress: 'off',
      });
      const ev = await run.evaluate(model, valid);
      model.dispose();
      return { name: t.name, set, metrics: ev.metrics, users: valid.length, ranks: ev.ranks.map(nullIfMissed), trainSeconds: res.seconds };
    });
    console.log(`${t.name}: valid ${fmt(r.metrics)}`);
    results.push(r);
    writeReport(argv.out, base, sftResult, results, argv.versus);
  }
  cf.dispose();
  console.log(`report: ${path.join(argv.out, 'sweep.md')}`);
}

/**
 * A trial's saved result when it covers the same number of users; otherwise runs it and saves it.
 * A saved result of other overrides under the same name is an error, never silently reused.
 */
async function cached(file: string, users: number, set: TrialResult['set'], compute: () => Promise<TrialResult>): Promise<TrialResult> {
  if (fs.existsSync(file)) {
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as TrialResult;
    if (JSON.stringify(saved.set) !== JSON.stringify(set)) throw new Error(`--trial ${saved.name}: ${file} was run with ${JSON.stringify(saved.set)}; give this setting a new name`);
    if (saved.users === users) return saved;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const r = await compute();
  writeFileAtomic(file, [new TextEncoder().encode(JSON.stringify(r) + '\n')]);
  return r;
}

const nullIfMissed = (r: number) => (Number.isFinite(r) ? r : null);
const ranksOf = (r: TrialResult) => r.ranks.map((x) => x ?? Infinity);
const fmt = (m: MetricValues) => ['NDCG@10', 'HR@10'].map((k) => `${k} ${m[k]?.toFixed(4)}`).join(', ');

function writeReport(out: string, base: IlrecConfig, sft: TrialResult, results: TrialResult[], versus?: string): void {
  const refs = [sft, ...results.filter((r) => r.name === versus)];
  const rows = [...results].sort((x, y) => (y.metrics['NDCG@10'] ?? 0) - (x.metrics['NDCG@10'] ?? 0)).map((r) => {
    const b = ranksOf(r);
    const overrides = Object.entries(r.set).map(([k, v]) => `${k}=${v}`).join(', ') || '(base)';
    const diffs = refs.flatMap((ref) => (ref === r ? ['-', '-'] : [ndcgAt, hitAt].map((m) => formatDifference(pairedBootstrap(ranksOf(ref), b, (x) => m(x, 10))))));
    return `| ${r.name} | ${overrides} | ${r.metrics['NDCG@10']!.toFixed(4)} | ${r.metrics['HR@10']!.toFixed(4)} | ${diffs.join(' | ')} | ${r.trainSeconds.toFixed(0)} |`;
  });
  const md = [
    `# ILRec sweep on validation users (${sft.users} users, ${base.data.dataset})`, '',
    `SFT start: NDCG@10 ${sft.metrics['NDCG@10']!.toFixed(4)}, HR@10 ${sft.metrics['HR@10']!.toFixed(4)}. Base loss: ${JSON.stringify(base.ilrec.loss)}, layers below last ${JSON.stringify(base.ilrec.layersBelowLast)}; budget ${base.pref.epochs} epochs at lr ${base.pref.lr}. Intervals: 95% paired bootstrap over the validation users.`, '',
    `| trial | overrides | NDCG@10 | HR@10 | ${refs.map((ref) => `ΔNDCG@10 vs ${ref.name} | ΔHR@10 vs ${ref.name}`).join(' | ')} | train s |`,
    `|---|---|---|---|${refs.map(() => '---|---|').join('')}---|`,
    ...rows, '',
  ].join('\n');
  writeFileAtomic(path.join(out, 'sweep.md'), [new TextEncoder().encode(md)]);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
