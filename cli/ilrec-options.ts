// The ILRec side of `npm run train`: yargs options mapped onto the typed IlrecConfig (defaults <
// --config FILE < named flags < --set path=value), so every hyper-parameter is reachable.
import * as fs from 'node:fs';
import type { Argv } from 'yargs';
import { ABLATIONS, DEFAULT_CONFIG, STAGES, resolveConfig, type Ablation, type DeepPartial, type IlrecConfig, type Stage } from '../ilrec/config.js';

const D = DEFAULT_CONFIG;

/** Flag → config path; the flag's type and default come from the default config. */
const FLAG_PATHS: Record<string, { path: string; describe: string }> = {
  dataset: { path: 'data.dataset', describe: 'dataset name inside an LC-Rec --data directory' },
  'max-users': { path: 'data.maxUsers', describe: 'use only the first N users (synthetic: generate N users); 0 = all' },
  'max-history': { path: 'data.maxHistory', describe: 'history items per prompt' },
  'length-groups': { path: 'data.lengthGroups', describe: 'batches cut from pools of this many batches sorted by length (0 = plain shuffle)' },
  init: { path: 'model.init', describe: '"scratch" or a Hugging Face model directory over the same SID vocabulary' },
  hidden: { path: 'model.hidden', describe: 'LLM width' },
  layers: { path: 'model.layers', describe: 'LLM decoder layers L' },
  heads: { path: 'model.heads', describe: 'attention heads' },
  'kv-heads': { path: 'model.kvHeads', describe: 'key/value heads (GQA)' },
  intermediate: { path: 'model.intermediate', describe: 'SwiGLU width' },
  finetune: { path: 'model.finetune', describe: 'full | lora' },
  'sft-epochs': { path: 'sft.epochs', describe: 'SFT passes over the training windows' },
  'sft-steps': { path: 'sft.steps', describe: 'SFT optimizer steps (0 = from --sft-epochs)' },
  'sft-lr': { path: 'sft.lr', describe: 'SFT peak learning rate (cosine schedule with warm-up)' },
  'pref-epochs': { path: 'pref.epochs', describe: 'budget of every preference stage, in passes over the training windows' },
  'pref-steps': { path: 'pref.steps', describe: 'budget of every preference stage in optimizer steps (0 = from --pref-epochs)' },
  'pref-lr': { path: 'pref.lr', describe: 'preference stages peak learning rate' },
  batch: { path: 'sft.batch', describe: 'examples per micro-batch (SFT; --set pref.batch=N for the preference stages)' },
  accumulate: { path: 'sft.accumulate', describe: 'micro-batches per optimizer step (SFT)' },
  clip: { path: 'pref.clip', describe: 'gradient-norm clip of the preference stages (0 = off)' },
  'layers-below-last': { path: 'ilrec.layersBelowLast', describe: 'intermediate layers S as offsets below L (1 2 3 4 = L−1..L−4)' },
  aggregator: { path: 'ilrec.loss.aggregator', describe: 'sum | mean of the intermediate logits' },
  threshold: { path: 'ilrec.loss.threshold', describe: 'logit: z~ ≥ φ·z^L_y (ILREC.md); logprob: the same on log-softmaxes over the level (shift-invariant)' },
  phi: { path: 'ilrec.loss.phi', describe: 'negative threshold factor φ' },
  alpha: { path: 'ilrec.loss.alpha', describe: 'CPO penalty α' },
  margin: { path: 'ilrec.loss.margin', describe: 'CPO additive margin scale m' },
  'cpo-form': { path: 'ilrec.loss.cpoForm', describe: 'additive | multiplicative (released code)' },
  'detach-teacher': { path: 'ilrec.loss.detachTeacher', describe: 'stop the CPD gradient into the final layer' },
  'lambda-cpd': { path: 'ilrec.loss.lambdaCPD', describe: 'weight λ of L_CPD' },
  b: { path: 'ilrec.loss.b', describe: 'weight b of L_CRR' },
  'restrict-to-level': { path: 'ilrec.restrictToLevel', describe: "restrict negatives and the CPD/CRR softmaxes to the position's codebook level" },
  beta: { path: 'dpo.beta', describe: 'DPO β' },
  'dpo-negatives': { path: 'dpo.negatives', describe: 'S-DPO negatives per prompt' },
  rounds: { path: 'dpo.rounds', describe: 'SPRec self-play rounds' },
  'select-every': { path: 'select.everyEpochs', describe: 'SFT: evaluate validation NDCG@10 every N epochs and keep the best weights (0 = off, keep the last)' },
  'select-users': { path: 'select.users', describe: 'validation users of the SFT model selection (0 = all)' },
  'select-patience': { path: 'select.patience', describe: 'SFT stops after N selection evaluations without a new best (0 = never early)' },
  'eval-beams': { path: 'eval.beams', describe: 'beams (= ranked list length) in evaluation' },
  'test-users': { path: 'eval.testUsers', describe: 'test users evaluated (0 = all)' },
  'valid-users': { path: 'eval.validUsers', describe: 'validation users evaluated after each stage (0 = none)' },
  'cf-epochs': { path: 'cf.epochs', describe: 'SASRec epochs (early-stopped on validation NDCG@10)' },
  seed: { path: 'run.seed', describe: 'seed of the init, the data order and the sampled negatives' },
  'checkpoint-every': { path: 'run.checkpointEvery', describe: 'checkpoint every N optimizer steps' },
};

function getPath(obj: unknown, p: string): unknown {
  return p.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], obj);
}

function setPath(obj: Record<string, unknown>, p: string, value: unknown): void {
  const keys = p.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[keys[keys.length - 1]!] = value;
}

export function addIlrecOptions<T>(y: Argv<T>): Argv<T> {
  let out = y
    .option('config', { type: 'string', describe: 'JSON file with a (partial) ILRec config; flags override it' })
    .option('stages', { type: 'string', array: true, describe: `stages to run in order (${STAGES.join(', ')}); default sft ilrec` })
    .option('ablations', { type: 'string', array: true, describe: `ILRec ablations to add (${ABLATIONS.filter((a) => a !== 'none').join(', ')}, or all)` })
    .option('set', { type: 'string', array: true, describe: 'any config field: --set ilrec.loss.phi=0.9 --set pref.batch=16 (JSON values)' })
    .option('progress', { type: 'boolean', describe: 'progress bar on a terminal (--no-progress: plain log lines)' }) as Argv<T>;
  for (const [flag, { path: p, describe }] of Object.entries(FLAG_PATHS)) {
    const def = getPath(D, p);
    const type = Array.isArray(def) ? 'number' : typeof def === 'boolean' ? 'boolean' : typeof def === 'number' ? 'number' : 'string';
    out = out.option(flag, { type, ...(Array.isArray(def) ? { array: true } : {}), describe: `${describe} [default ${JSON.stringify(def)}]` }) as Argv<T>;
  }
  return out;
}

export interface IlrecCli {
  config: IlrecConfig;
  stages: Stage[];
  ablations: Ablation[];
}

/** Builds the resolved config from the parsed arguments (data source given separately). */
export function ilrecFromArgs(argv: Record<string, unknown>, data: string | undefined, saved?: { config: string; run: string }): IlrecCli {
  let over: Record<string, unknown> = {};
  // A resumed run starts from its own saved config and stage list; flags still override them.
  const savedRun = saved && fs.existsSync(saved.run) ? (JSON.parse(fs.readFileSync(saved.run, 'utf8')) as { stages: string[]; ablations: string[] }) : null;
  const configFile = typeof argv['config'] === 'string' ? argv['config'] : saved && fs.existsSync(saved.config) ? saved.config : undefined;
  if (configFile !== undefined) {
    const file = configFile;
    try {
      over = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`--config ${file}: ${(e as Error).message}`);
    }
  }
  if (data !== undefined || !configFile) setPath(over, 'data.source', data ?? 'synthetic');
  for (const [flag, { path: p }] of Object.entries(FLAG_PATHS)) if (argv[flag] !== undefined) setPath(over, p, argv[flag]);
  for (const s of (argv['set'] as string[] | undefined) ?? []) {
    const eq = s.indexOf('=');
    if (eq < 1) throw new Error(`--set ${s}: expected path=value`);
    const raw = s.slice(eq + 1);
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      v = raw; // bare strings: --set model.finetune=lora
    }
    setPath(over, s.slice(0, eq), v);
  }
  const config = resolveConfig(over as DeepPartial<IlrecConfig>);
  const stages = ((argv['stages'] as string[] | undefined) ?? savedRun?.stages ?? ['sft', 'ilrec']).flatMap((s) => s.split(','));
  for (const s of stages) if (!STAGES.includes(s as Stage)) throw new Error(`--stages ${s}: not one of ${STAGES.join(', ')}`);
  let ablations = ((argv['ablations'] as string[] | undefined) ?? savedRun?.ablations ?? []).flatMap((s) => s.split(','));
  if (ablations.includes('all')) ablations = ABLATIONS.filter((a) => a !== 'none');
  for (const a of ablations) if (!ABLATIONS.includes(a as Ablation)) throw new Error(`--ablations ${a}: not one of ${ABLATIONS.join(', ')}`);
  return { config, stages: stages as Stage[], ablations: ablations as Ablation[] };
}
