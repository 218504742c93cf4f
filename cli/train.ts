// `npm run train -- --model sasrec --data synthetic|DIR [--dataset NAME] [--epochs E] [--out DIR]`:
// trains a recommender, prints per-epoch progress and the test metrics, writes results JSON + markdown.
import * as fs from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { initNode } from '../engine/node/index.js';
import { generateSynthetic } from '../ilrec/data/synthetic.js';
import { readLcRecDir } from '../ilrec/data/readers.js';
import { datasetStats, type Dataset } from '../ilrec/data/dataset.js';
import { DEFAULT_KS } from '../ilrec/eval/metrics.js';
import { makeResultRecord, markdownHeader, markdownRow, writeResultJson } from '../ilrec/eval/results.js';
import { SASREC_DEFAULTS, trainSASRec } from '../ilrec/cf/sasrec.js';

const fmt = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(4));

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('npm run train --')
    .option('model', { type: 'string', demandOption: true, describe: 'model to train: sasrec (sft, ilrec, ...: not implemented yet)' })
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
    .check((a) => {
      for (const k of ['epochs', 'batch', 'hidden', 'layers', 'heads', 'max-len'] as const)
        if (!(Number.isInteger(a[k]) && a[k] >= 1)) throw new Error(`--${k} must be a positive integer`);
      if (a['max-users'] !== undefined && !(Number.isInteger(a['max-users']) && a['max-users'] >= 1)) throw new Error('--max-users must be a positive integer');
      return true;
    })
    .strict()
    .help()
    .parse();

  if (argv.model !== 'sasrec') throw new Error(`--model ${argv.model}: not implemented yet (only sasrec is)`);
  const started = performance.now();
  const maxUsers = argv['max-users'];
  let ds: Dataset;
  if (argv.data === 'synthetic') ds = generateSynthetic({ seed: argv.seed, ...(maxUsers ? { users: maxUsers } : {}) });
  else {
    if (!fs.existsSync(argv.data)) throw new Error(`--data ${argv.data}: no such directory`);
    ds = readLcRecDir(argv.data, argv.dataset);
    if (maxUsers && maxUsers < ds.users.length) ds = { ...ds, users: ds.users.slice(0, maxUsers), sequences: ds.sequences.slice(0, maxUsers) };
  }
  const stats = datasetStats(ds);
  console.log(`${ds.name}: ${stats.users} users, ${stats.items} items, ${stats.interactions} interactions`);

  const out = argv.out ?? path.join('runs', new Date().toISOString().replace(/[:.]/g, '-'));
  fs.mkdirSync(out, { recursive: true });
  const config = {
    ...SASREC_DEFAULTS,
    epochs: argv.epochs, patience: argv.patience, batch: argv.batch, lr: argv.lr, hidden: argv.hidden,
    layers: argv.layers, heads: argv.heads, maxLen: argv['max-len'], dropout: argv.dropout, seed: argv.seed,
  };
  await initNode();
  const res = await trainSASRec(ds.sequences, ds.items.length, config, {
    checkpoint: path.join(out, 'sasrec.safetensors'),
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
