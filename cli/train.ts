// `npm run train`: with no arguments the embedded demo (synthetic data; SASRec, SFT and ILRec;
// evaluation and the comparison table). `--model ilrec` (default) runs the stages of
// ilrec/train/pipeline.ts with every hyper-parameter of ilrec/config.ts reachable as a flag, from
// --config FILE or via --set; `--model sasrec` trains and evaluates the CF model alone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { initNode } from '../engine/node/index.js';
import { datasetStats } from '../ilrec/data/dataset.js';
import { DEFAULT_KS } from '../ilrec/eval/metrics.js';
import { makeResultRecord, markdownHeader, markdownRow, writeResultJson } from '../ilrec/eval/results.js';
import { SASREC_DEFAULTS, trainSASRec } from '../ilrec/cf/sasrec.js';
import { loadDataset, runExperiment } from '../ilrec/train/pipeline.js';
import { addIlrecOptions, ilrecFromArgs } from './ilrec-options.js';

const fmt = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(4));
/** SASRec's training state inside --out, rewritten after every epoch (for --resume). */
const TRAIN_STATE_FILE = 'sasrec-train-state.safetensors';

const MODELS = ['ilrec', 'sasrec'] as const;

/** The --model value, read before parsing: the two models take different option sets. */
function modelOf(args: string[]): string {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--model') return args[i + 1] ?? '';
    if (args[i]!.startsWith('--model=')) return args[i]!.slice('--model='.length);
  }
  return 'ilrec';
}

async function main(): Promise<void> {
  const args = hideBin(process.argv);
  const model = modelOf(args);
  if (model === 'ilrec') return ilrecMain(args);
  if (model !== 'sasrec') throw new Error(`--model ${model}: not one of ${MODELS.join(', ')}`);
  return sasrecMain(args);
}

async function ilrecMain(args: string[]): Promise<void> {
  const argv = await addIlrecOptions(
    yargs(args)
      .scriptName('npm run train --')
      .usage('$0 [options]\n\nWith no options: the synthetic demo (SASRec + SFT + ILRec, evaluation, comparison table).')
      .option('model', { type: 'string', choices: MODELS, default: 'ilrec', describe: 'ilrec: the generative recommender stages; sasrec: the CF model alone (its own options: --model sasrec --help)' })
      .option('data', { type: 'string', describe: '"synthetic" (generated dataset; the default) or an LC-Rec data directory (DIR/<dataset>.inter.json + .index.json)' })
      .option('out', { type: 'string', describe: 'output directory: config, checkpoints, results.json, report.md, plots/ (default runs/<timestamp>)' })
      .option('resume', { type: 'boolean', default: false, describe: 'continue the run in --out: finished stages are reloaded, an interrupted one resumes bit-identically from its checkpoint' }),
  )
    .check((a) => {
      if (a.resume && a.out === undefined) throw new Error('--resume needs --out DIR (the run to continue)');
      return true;
    })
    .strict()
    .help()
    .parse();
  const out = argv.out ?? path.join('runs', new Date().toISOString().replace(/[:.]/g, '-'));
  const saved = argv.resume ? { config: path.join(out, 'config.json'), run: path.join(out, 'run.json') } : undefined;
  const { config, stages, ablations } = ilrecFromArgs(argv as Record<string, unknown>, argv.data, saved);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'run.json'), JSON.stringify({ stages, ablations, argv: process.argv.slice(2) }, null, 2) + '\n');
  const device = await initNode();
  console.log(`device: ${device.description}; stages ${stages.join(', ')}${ablations.length ? `; ablations ${ablations.join(', ')}` : ''}; output ${out}`);
  const res = await runExperiment(config, { out, stages, ablations, resume: argv.resume, ...(argv.progress === undefined ? {} : { progress: argv.progress as boolean }) });
  const report = fs.readFileSync(res.report, 'utf8');
  console.log(`\n${report.slice(report.indexOf('|'), report.lastIndexOf('|') + 1)}\n`);
  console.log(`report: ${res.report} (results.json, curves.json and plots/ beside it)`);
}

async function sasrecMain(args: string[]): Promise<void> {
  const argv = await yargs(args)
    .scriptName('npm run train -- --model sasrec')
    .option('model', { type: 'string', choices: MODELS, demandOption: true, describe: 'sasrec: the CF model alone' })
    .option('data', { type: 'string', demandOption: true, describe: '"synthetic" (generated dataset) or an LC-Rec data directory (DIR/<dataset>.inter.json)' })
    .option('dataset', { type: 'string', default: 'Instruments', describe: 'dataset name inside an LC-Rec --data directory' })
    .option('max-users', { type: 'number', describe: 'use only the first N users (synthetic: generate N users)' })
    .option('epochs', { type: 'number', default: SASREC_DEFAULTS.epochs, describe: 'maximum training epochs' })
    .option('patience', { type: 'number', default: SASREC_DEFAULTS.patience, describe: 'early stopping: epochs without a better validation NDCG@10 (0 = off)' })
    .option('batch', { type: 'number', default: SASREC_DEFAULTS.batch, describe: 'training sequences per step' })
    .option('lr', { type: 'number', default: SASREC_DEFAULTS.lr, describe: 'AdamW learning rate' })
    .option('hidden', { type: 'number', default: SASREC_DEFAULTS.hidden, describe: 'embedding / hidden width' })
    .option('layers', { type: 'number', default: SASREC_DEFAULTS.layers, describe: 'transformer blocks' })
    .option('heads', { type: 'number', default: SASREC_DEFAULTS.heads, describe: 'attention heads' })
    .option('max-len', { type: 'number', default: SASREC_DEFAULTS.maxLen, describe: 'most recent items per history' })
    .option('dropout', { type: 'number', default: SASREC_DEFAULTS.dropout, describe: 'input-embedding dropout while training' })
    .option('seed', { type: 'number', default: 0, describe: 'seed of the init, shuffling and synthetic data' })
    .option('out', { type: 'string', describe: 'output directory for results.json, results.md and the checkpoint (default runs/<timestamp>)' })
    // SASRec objective and resuming.
    .option('loss', { type: 'string', choices: ['ce', 'bce'], default: SASREC_DEFAULTS.loss, describe: 'SASRec objective: ce = full softmax, bce = sampled negatives (Kang & McAuley)' })
    .option('negatives', { type: 'number', default: SASREC_DEFAULTS.negatives, describe: 'negatives per position for --loss bce' })
    .option('resume', { type: 'boolean', default: false, describe: `continue from --out DIR/${TRAIN_STATE_FILE} (written after every epoch)` })
    .check((a) => {
      for (const k of ['epochs', 'batch', 'hidden', 'layers', 'heads', 'max-len'] as const)
        if (!(Number.isInteger(a[k]) && a[k] >= 1)) throw new Error(`--${k} must be a positive integer`);
      if (a['max-users'] !== undefined && !(Number.isInteger(a['max-users']) && a['max-users'] >= 1)) throw new Error('--max-users must be a positive integer');
      if (!(Number.isInteger(a.negatives) && a.negatives >= 0)) throw new Error('--negatives must be a non-negative integer');
      if (a.resume && a.out === undefined) throw new Error('--resume needs --out DIR (the run to continue)');
      return true;
    })
    .strict()
    .help()
    .parse();

  const started = performance.now();
  const ds = loadDataset({ source: argv.data, dataset: argv.dataset, maxUsers: argv['max-users'] ?? 0, syntheticSeed: argv.seed });
  const stats = datasetStats(ds);
  console.log(`${ds.name}: ${stats.users} users, ${stats.items} items, ${stats.interactions} interactions`);

  const out = argv.out ?? path.join('runs', new Date().toISOString().replace(/[:.]/g, '-'));
  fs.mkdirSync(out, { recursive: true });
  const config = {
    ...SASREC_DEFAULTS,
    epochs: argv.epochs, patience: argv.patience, batch: argv.batch, lr: argv.lr, hidden: argv.hidden,
    layers: argv.layers, heads: argv.heads, maxLen: argv['max-len'], dropout: argv.dropout, seed: argv.seed,
    loss: argv.loss as 'ce' | 'bce', negatives: argv.negatives,
  };
  await initNode();
  if (argv.resume) console.log(`resuming from ${path.join(out, TRAIN_STATE_FILE)}`);
  const res = await trainSASRec(ds.sequences, ds.items.length, config, {
    checkpoint: path.join(out, 'sasrec.safetensors'),
    stateFile: path.join(out, TRAIN_STATE_FILE),
    resume: argv.resume,
    onEpoch: (l) => console.log(`epoch ${l.epoch}: loss ${l.loss.toFixed(4)}, val NDCG@10 ${fmt(l.valid?.['NDCG@10'])}, HR@10 ${fmt(l.valid?.['HR@10'])}, ${l.seconds.toFixed(1)} s`),
  });
  console.log(`best epoch ${res.bestEpoch}; test ${Object.entries(res.test).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
  const dataName = argv.data === 'synthetic' ? 'synthetic' : argv.dataset;
  const record = makeResultRecord({
    name: 'sasrec', dataset: dataName, metrics: res.test, users: stats.users,
    config: { ...config, bestEpoch: res.bestEpoch, bestValid: res.bestValid, epochs: res.history }, datasetStats: stats, startedAtMs: started,
  });
  const json = writeResultJson(path.join(out, 'results.json'), record);
  fs.writeFileSync(path.join(out, 'results.md'), `${markdownHeader(DEFAULT_KS)}\n${markdownRow(record, DEFAULT_KS)}\n`);
  res.model.dispose();
  console.log(`wrote ${json} and ${path.join(out, 'results.md')}`);
}

main().catch((e: unknown) => {
  console.error(`train: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
