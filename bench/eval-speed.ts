// Constrained beam-search evaluation speed (ms per test user) on a config's dataset, with beam search
// reading each prompt once per prompt (ATTENTION_TUNING.sharedPrefix, the default) and once per beam.
// Same model, same users, runs alternated; the two must rank every user identically.
//   npx tsx bench/eval-speed.ts --config configs/instruments.json --users 64 [--model runs/inst/sft/model]
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import * as fs from 'node:fs';
import { device } from '../engine/index.js';
import { initNode } from '../engine/node/index.js';
import { ATTENTION_TUNING } from '../engine/ops/attention.js';
import { loadStateDict } from '../engine/model/index.js';
import { readSafetensorsFile } from '../engine/io/node.js';
import { resolveConfig, type IlrecConfig } from '../ilrec/config.js';
import { evaluateGenerative } from '../ilrec/eval/generative.js';
import { generativeCases, itemCodesFromDataset, recData, subsetOf } from '../ilrec/train/examples.js';
import { buildModel, loadDataset, maxSequenceTokens } from '../ilrec/train/pipeline.js';

const argv = await yargs(hideBin(process.argv))
  .option('config', { type: 'string', default: 'configs/instruments.json', describe: 'experiment config (data, model, eval.beams)' })
  .option('users', { type: 'number', default: 64, describe: 'test users timed (a seeded subset)' })
  .option('model', { type: 'string', describe: 'a saved model directory (model.safetensors); default: the config\'s model, randomly initialised' })
  .option('reps', { type: 'number', default: 2, describe: 'timed runs per setting (after one warm-up each)' })
  .strict().parse();

await initNode();
const cfg: IlrecConfig = resolveConfig(JSON.parse(fs.readFileSync(argv.config, 'utf8')));
const ds = loadDataset(cfg.data);
const codes = itemCodesFromDataset(ds);
const data = recData(ds, codes, cfg.data.maxHistory, cfg.data.windowStride);
const cases = generativeCases(subsetOf(data.test, argv.users, 1), codes, cfg.data.maxHistory);
const model = buildModel(cfg, codes.vocab.size, maxSequenceTokens(cfg.data.maxHistory, codes.Lc));
if (argv.model) loadStateDict(model, readSafetensorsFile(`${argv.model}/model.safetensors`).tensors);
const meanPrompt = cases.reduce((s, c) => s + c.prompt.length, 0) / cases.length;
console.log(`device: ${device().description}; ${ds.name}, ${cases.length} test users, mean prompt ${meanPrompt.toFixed(1)} tokens, ${cfg.eval.beams} beams, ${argv.model ?? 'random weights'}`);

const settings = [{ name: 'prompt once per prompt', shared: true }, { name: 'prompt once per beam', shared: false }];
const times = new Map<string, number[]>();
const ranks = new Map<string, number[]>();
for (let rep = 0; rep <= argv.reps; rep++)
  for (const s of settings) {
    ATTENTION_TUNING.sharedPrefix = s.shared;
    const t0 = performance.now();
    const res = await evaluateGenerative(model, cases, codes.trie, { beams: cfg.eval.beams, ks: cfg.eval.ks, promptsPerCall: cfg.eval.promptsPerCall });
    const ms = performance.now() - t0;
    if (rep > 0) times.set(s.name, [...(times.get(s.name) ?? []), ms / cases.length]); // rep 0 compiles the pipelines
    ranks.set(s.name, res.ranks);
  }
ATTENTION_TUNING.sharedPrefix = true;
const [a, b] = settings.map((s) => ranks.get(s.name)!);
const differ = a.filter((r, i) => r !== b[i]).length;
const best = (n: string) => Math.min(...times.get(n)!);
for (const s of settings) console.log(`${s.name}: ${best(s.name).toFixed(1)} ms/user (best of ${argv.reps}: ${times.get(s.name)!.map((t) => t.toFixed(1)).join(', ')})`);
console.log(`speed-up ${(best(settings[1].name) / best(settings[0].name)).toFixed(2)}×; users ranked differently: ${differ}`);
model.dispose();
