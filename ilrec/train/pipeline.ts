// One experiment end to end (what `npm run train` runs): data and SIDs, the CF model (SASRec),
// SFT, the preference stages on the same SFT start (ILRec and its ablations, DPO, S-DPO, SPRec),
// evaluation by constrained beam search, and the report (JSON, markdown table, SVG plots).
// Every stage checkpoints into the output directory, so `resume` picks a run up where it stopped.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LlamaForCausalLM, applyLoRA, loadStateDict, makeConfig, mergeLoRA, stateArrays } from '../../engine/model/index.js';
import { fromHF, saveHF } from '../../engine/model/node.js';
import { readSafetensorsFile, writeFileAtomic } from '../../engine/io/node.js';
import { readLcRecDir } from '../data/readers.js';
import { generateSynthetic } from '../data/synthetic.js';
import { datasetStats, type Dataset, type DatasetStats } from '../data/dataset.js';
import { SASRec, scorerRanks, trainSASRec } from '../cf/sasrec.js';
import { evaluateGenerative } from '../eval/generative.js';
import { gitCommit, makeResultRecord, metricColumns, type ResultRecord } from '../eval/results.js';
import { formatDifference as fmt, hitAt, metricsFromRanks, ndcgAt, pairedBootstrap, type MetricValues } from '../eval/metrics.js';
import { lossCurvesSvg, metricsBarSvg, writeSvg } from '../report/plots.js';
import { comparisonTable } from '../report/table.js';
import { type Ablation, type DataConfig, type IlrecConfig, type Stage } from '../config.js';
import { generativeCases, itemCodesFromDataset, recData, subsetOf, type RecData } from './examples.js';
import { runDpoFamily, runIlrec, runSft, stageSteps, type SelectionLog, type SftSelection } from './stages.js';
import type { StepLog, TrainLoopResult } from './trainer.js';

export interface ExperimentOptions {
  out: string;
  /** Stages to run after the CF model, in order; preference stages start from the SFT model. */
  stages: Stage[];
  /** ILRec variants besides the full method. */
  ablations: Ablation[];
  resume: boolean;
  progress?: boolean | 'off';
  log?: (line: string) => void;
}

export interface ExperimentResult {
  rows: ResultRecord[];
  /** Markdown report with the comparison table and links to the plots. */
  report: string;
}

/** Seed of the evaluation subsets (independent of the training seed, so every seed is tested on the same users). */
const EVAL_SUBSET_SEED = 20_240_101;

/** The dataset a data config names: the synthetic generator or an LC-Rec directory, optionally cut to its first users. */
export function loadDataset(d: Pick<DataConfig, 'source' | 'dataset' | 'maxUsers' | 'syntheticSeed'>): Dataset {
  if (d.source === 'synthetic') return generateSynthetic({ seed: d.syntheticSeed, ...(d.maxUsers > 0 ? { users: d.maxUsers } : {}) });
  if (!fs.existsSync(d.source)) throw new Error(`data.source ${d.source}: no such directory (or use "synthetic")`);
  const ds = readLcRecDir(d.source, d.dataset);
  if (d.maxUsers > 0 && d.maxUsers < ds.users.length) return { ...ds, users: ds.users.slice(0, d.maxUsers), sequences: ds.sequences.slice(0, d.maxUsers) };
  return ds;
}

/** Longest token sequence a model sees: BOS, then up to maxHistory history items and the target, Lc tokens each. */
export function maxSequenceTokens(maxHistory: number, Lc: number): number {
  return 1 + (maxHistory + 1) * Lc;
}

/** A scratch Llama over the SID vocabulary, or a HF directory whose vocabulary is that one. */
export function buildModel(cfg: IlrecConfig, vocabSize: number, maxTokens: number): LlamaForCausalLM {
  const m = cfg.model;
  if (m.init !== 'scratch') {
    const model = fromHF(m.init);
    if (model.config.vocab_size !== vocabSize)
      throw new Error(`model.init ${m.init}: vocabulary of ${model.config.vocab_size} tokens, the SID vocabulary has ${vocabSize}`);
    model.dropout = m.dropout;
    return model;
  }
  const config = makeConfig({
    model_type: 'llama', vocab_size: vocabSize, hidden_size: m.hidden, intermediate_size: m.intermediate,
    num_hidden_layers: m.layers, num_attention_heads: m.heads, num_key_value_heads: m.kvHeads,
    max_position_embeddings: maxTokens, tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
  });
  return new LlamaForCausalLM(config, { init: { seed: cfg.run.seed, std: m.initStd }, dropout: m.dropout });
}

/** Row label of a stage / ablation. */
export function variantName(stage: Stage, ablation: Ablation = 'none'): string {
  return stage === 'ilrec' && ablation !== 'none' ? `ilrec-${ablation}` : stage;
}

/** What every stage of a run shares: the dataset, its SIDs and split, the evaluation users and the evaluator. */
export interface PreparedRun {
  ds: Dataset;
  stats: DatasetStats;
  codes: RecData['codes'];
  data: RecData;
  /** The fixed test (and validation) users: the same for every seed and every row. */
  testSamples: RecData['test'];
  validSamples: RecData['valid'];
  maxTokens: number;
  /** Constrained beam search over the item trie, full ranking (ILREC.md §1). */
  evaluate: (model: LlamaForCausalLM, samples: RecData['test']) => ReturnType<typeof evaluateGenerative>;
}

export function prepareRun(cfg: IlrecConfig, log: (line: string) => void = () => {}): PreparedRun {
  const ds = loadDataset(cfg.data);
  const stats = datasetStats(ds);
  log(`${ds.name}: ${stats.users} users, ${stats.items} items, ${stats.interactions} interactions`);
  const codes = itemCodesFromDataset(ds);
  const data = recData(ds, codes, cfg.data.maxHistory, cfg.data.windowStride);
  log(`codes: ${codes.Lc} tokens per item, vocabulary ${codes.vocab.size}; ${data.windows.length} training windows, ${data.samples.length} training targets`);
  const testSamples = subsetOf(data.test, cfg.eval.testUsers, EVAL_SUBSET_SEED);
  const validSamples = cfg.eval.validUsers > 0 ? subsetOf(data.valid, cfg.eval.validUsers, EVAL_SUBSET_SEED) : [];
  const maxTokens = maxSequenceTokens(cfg.data.maxHistory, codes.Lc);
  const evaluate = (model: LlamaForCausalLM, samples: RecData['test']) =>
    evaluateGenerative(model, generativeCases(samples, codes, cfg.data.maxHistory), codes.trie, {
      beams: cfg.eval.beams, ks: cfg.eval.ks, promptsPerCall: cfg.eval.promptsPerCall,
    });
  return { ds, stats, codes, data, testSamples, validSamples, maxTokens, evaluate };
}

export async function runExperiment(cfg: IlrecConfig, opts: ExperimentOptions): Promise<ExperimentResult> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const started = performance.now();
  fs.mkdirSync(opts.out, { recursive: true });
  writeJson(path.join(opts.out, 'config.json'), cfg);

  const { ds, stats, codes, data, testSamples, validSamples, maxTokens, evaluate } = prepareRun(cfg, log);
  const nItems = ds.items.length;
  const rows: ResultRecord[] = [];
  const curves: Record<string, StepLog[]> = {};
  /** Per-user test ranks of each row (same users, same order), for paired comparisons. */
  const ranksOf = new Map<string, number[]>();
  const record = (name: string, metrics: MetricValues, extra: Record<string, unknown>, t0: number): ResultRecord => {
    const r = makeResultRecord({ name, dataset: ds.name, metrics, users: testSamples.length, config: { ...extra }, datasetStats: stats, startedAtMs: t0 });
    rows.push(r);
    writeJson(path.join(opts.out, 'results.json'), rows);
    return r;
  };

  // The CF model: P_CF for the rewards, and the SASRec row of the table.
  const tCf = performance.now();
  const cfFile = path.join(opts.out, 'cf', 'sasrec.safetensors');
  let cf: SASRec;
  if (opts.resume && fs.existsSync(cfFile)) {
    cf = SASRec.load(cfFile);
    log(`cf: loaded ${cfFile}`);
  } else {
    log(`cf: training SASRec (hidden ${cfg.cf.hidden}, ${cfg.cf.layers} blocks, up to ${cfg.cf.epochs} epochs)`);
    const res = await trainSASRec(ds.sequences, nItems, { ...cfg.cf, seed: cfg.run.seed }, {
      checkpoint: cfFile,
      onEpoch: (l) => log(`cf epoch ${l.epoch}: loss ${l.loss.toFixed(4)}, valid NDCG@10 ${l.valid?.['NDCG@10']?.toFixed(4) ?? '-'} (${l.seconds.toFixed(1)} s)`),
    });
    cf = res.model;
    if (!fs.existsSync(cfFile)) await cf.save(cfFile);
  }
  cf.eval();
  const cfRanks = await scorerRanks((h) => cf.scoreHistory(h), testSamples.map((s) => ({ history: ds.sequences[s.user]!.slice(0, s.position), target: s.target })));
  const cfMetrics = metricsFromRanks(cfRanks, cfg.eval.ks);
  ranksOf.set('sasrec', cfRanks);
  record('sasrec', cfMetrics, { model: cfg.cf }, tCf);
  log(`sasrec: ${fmtMetrics(cfMetrics)}`);

  // SFT: from scratch (or the HF start), then the shared start of every preference stage.
  const sftDir = path.join(opts.out, 'sft', 'model');
  const sftModel = buildModel(cfg, codes.vocab.size, maxTokens);
  // Model selection on validation users (config `select`; off by default): the best-scoring weights become the SFT model.
  let selection: SftSelection | undefined;
  if (cfg.select.everyEpochs > 0) {
    const selectSamples = subsetOf(data.valid, cfg.select.users, EVAL_SUBSET_SEED);
    const metric = `NDCG@${cfg.eval.ks.includes(10) ? 10 : cfg.eval.ks[0]}`;
    selection = {
      everyEpochs: cfg.select.everyEpochs, patience: cfg.select.patience,
      scoreStart: cfg.model.init !== 'scratch', // a continued run keeps its start unless training beats it
      score: async (m) => {
        const v = (await evaluate(m, selectSamples)).metrics[metric]!;
        log(`sft: validation ${metric} ${v.toFixed(4)} (${selectSamples.length} users)`);
        return v;
      },
    };
  }
  if (opts.stages.includes('sft')) await runStage('sft', 'none', sftModel, async (model, stageOpts) => runSft(model, data, cfg, stageOpts, selection));
  else {
    if (!fs.existsSync(path.join(sftDir, 'model.safetensors'))) throw new Error(`no SFT model at ${sftDir}: include the sft stage`);
    loadInto(sftModel, sftDir);
    log(`sft: loaded ${sftDir}`);
  }

  const prefStages = opts.stages.filter((s) => s !== 'sft');
  const variants: [Stage, Ablation][] = [];
  for (const s of prefStages) variants.push([s, 'none']);
  if (prefStages.includes('ilrec')) for (const a of opts.ablations) if (a !== 'none') variants.push(['ilrec', a]);
  const prefSteps = stageSteps(cfg.pref, data.windows.length);
  let reference: LlamaForCausalLM | null = null;
  for (const [stage, ablation] of variants) {
    const model = buildModel(cfg, codes.vocab.size, maxTokens);
    await copyWeights(sftModel, model);
    const c: IlrecConfig = { ...cfg, ilrec: { ...cfg.ilrec, ablation } };
    await runStage(stage, ablation, model, async (m, stageOpts) => {
      if (stage === 'ilrec') return runIlrec(m, data, c, cf, ds.sequences, stageOpts);
      if (!reference) {
        reference = buildModel(cfg, codes.vocab.size, maxTokens).eval(); // frozen: scored without dropout
        await copyWeights(sftModel, reference);
      }
      return runDpoFamily(stage as 'dpo' | 'sdpo' | 'sprec', m, reference, data, c, nItems, prefSteps, stageOpts);
    });
    model.dispose();
  }
  (reference as LlamaForCausalLM | null)?.dispose(); // assigned inside the stage closure
  sftModel.dispose();
  cf.dispose();

  // Report: table, plots, JSON.
  // @10 first: the table's "vs sft" columns compare its first metric pair, the paper's headline metrics.
  const metricNames = [...metricColumns(cfg.eval.ks)].sort((a, b) => Number(!a.endsWith('@10')) - Number(!b.endsWith('@10')));
  const table = comparisonTable(rows.map((r) => ({ model: r.name, metrics: r.metrics, extra: { 'train s': (r.config as { trainSeconds?: number }).trainSeconds?.toFixed(0) ?? '-' } })), metricNames, { bestBold: true, baseline: 'sft' });
  const plotDir = path.join(opts.out, 'plots');
  const plotLinks: string[] = [];
  for (const [name, curve] of Object.entries(curves)) {
    if (curve.length === 0) continue;
    const keys = [...new Set(curve.flatMap((p) => Object.keys(p.losses)))].filter((k) => k !== 'negatives');
    const svg = await lossCurvesSvg(keys.map((k) => ({ name: k, points: curve.filter((p) => p.losses[k] !== undefined).map((p) => ({ step: p.step, value: p.losses[k]! })) })), { title: `${name}: training losses (${ds.name})`, yLabel: 'loss' });
    const f = path.join(plotDir, `${name}-losses.svg`);
    writeSvg(f, svg);
    plotLinks.push(`- [${name} losses](plots/${name}-losses.svg)`);
  }
  writeSvg(path.join(plotDir, 'metrics.svg'), await metricsBarSvg(rows.map((r) => ({ model: r.name, metrics: r.metrics })), ['HR@10', 'NDCG@10'].filter((m) => metricNames.includes(m)), `${ds.name}: test metrics (${testSamples.length} users)`));
  plotLinks.push('- [test metrics](plots/metrics.svg)');
  writeJson(path.join(opts.out, 'curves.json'), curves);
  const paired = pairedLines(ranksOf, 'sft', cfg.eval.ks.includes(10) ? 10 : cfg.eval.ks[0]!);
  const report = [
    `# ILRec run: ${ds.name}`, '',
    `${stats.users} users, ${stats.items} items, ${stats.interactions} interactions; test users evaluated: ${testSamples.length}; ${cfg.eval.beams} beams, full ranking over all items.`,
    `Commit ${gitCommit()?.slice(0, 7) ?? '-'}; wall time ${((performance.now() - started) / 1000).toFixed(0)} s; config in config.json.`, '',
    table, '', ...paired, ...plotLinks, '',
  ].join('\n');
  const reportFile = path.join(opts.out, 'report.md');
  writeFileAtomic(reportFile, [new TextEncoder().encode(report)]);
  return { rows, report: reportFile };

  /** Trains (or resumes, or reloads a finished) stage, saves its model, evaluates it and records a row. */
  async function runStage(
    stage: Stage, ablation: Ablation, model: LlamaForCausalLM,
    train: (m: LlamaForCausalLM, o: { checkpoint: string; resume: boolean; progress?: boolean | 'off' }) => Promise<TrainLoopResult & { selection?: SelectionLog }>,
  ): Promise<void> {
    const name = variantName(stage, ablation);
    const dir = path.join(opts.out, name);
    const modelDir = path.join(dir, 'model');
    const evalFile = path.join(dir, 'eval.json');
    const t0 = performance.now();
    let trained: { seconds: number; tokens: number; steps: number; selection?: SelectionLog } | null = null;
    if (opts.resume && fs.existsSync(path.join(modelDir, 'model.safetensors'))) {
      loadInto(model, modelDir);
      log(`${name}: loaded the finished model from ${modelDir}`);
    } else {
      const lora = cfg.model.finetune === 'lora' ? applyLoRA(model, { r: cfg.model.loraRank, alpha: cfg.model.loraAlpha, dropout: cfg.model.loraDropout, seed: cfg.run.seed }) : [];
      const res = await train(model, { checkpoint: path.join(dir, 'state.safetensors'), resume: opts.resume, ...(opts.progress === undefined ? {} : { progress: opts.progress }) });
      if (lora.length) mergeLoRA(model);
      await saveHF(model, modelDir);
      curves[name] = res.curve;
      trained = { seconds: res.seconds, tokens: res.tokens, steps: res.steps, ...(res.selection ? { selection: res.selection } : {}) };
      const last = res.curve[res.curve.length - 1];
      log(`${name}: ${res.steps} steps in ${res.seconds.toFixed(0)} s (${(res.tokens / Math.max(res.seconds, 1e-9)).toFixed(0)} tok/s)${last ? `, last ${Object.entries(last.losses).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}` : ''}`);
      const sel = res.selection;
      if (sel) log(`${name}: kept the weights of step ${sel.bestStep} (validation ${sel.bestScore?.toFixed(4)}) of ${res.endStep}${sel.stoppedEarly ? `, stopped early after ${sel.stale} evaluations without a new best` : ''}`);
    }
    let metrics: MetricValues;
    let valid: MetricValues | undefined;
    let ranks: number[];
    const saved = opts.resume && fs.existsSync(evalFile) && !trained ? (JSON.parse(fs.readFileSync(evalFile, 'utf8')) as { metrics: MetricValues; valid?: MetricValues; ranks?: (number | null)[]; users?: number }) : null;
    if (saved?.ranks && saved.users === testSamples.length) {
      ({ metrics, valid } = saved);
      ranks = saved.ranks.map((r) => r ?? Infinity); // JSON has no Infinity: a missed target is null
    } else {
      valid = validSamples.length ? (await evaluate(model, validSamples)).metrics : undefined;
      const res = await evaluate(model, testSamples);
      ({ metrics, ranks } = res);
      writeJson(evalFile, { metrics, valid, users: testSamples.length, ranks: ranks.map((r) => (Number.isFinite(r) ? r : null)) });
    }
    ranksOf.set(name, ranks);
    log(`${name}: test ${fmtMetrics(metrics)}${valid ? `; valid NDCG@10 ${valid['NDCG@10']?.toFixed(4)}` : ''}`);
    record(name, metrics, { stage, ablation, valid, ...(trained ? { trainSeconds: trained.seconds, trainTokens: trained.tokens, steps: trained.steps, ...(trained.selection ? { selection: trained.selection } : {}) } : {}) }, t0);
  }
}

/** Each row against `base` on the same users: the NDCG@K and HR@K differences with 95% paired-bootstrap intervals. */
function pairedLines(ranksOf: ReadonlyMap<string, number[]>, base: string, k: number): string[] {
  const a = ranksOf.get(base);
  if (!a) return [];
  const lines = [`Paired differences against ${base} on the same test users (95% bootstrap interval over users):`, ''];
  for (const [name, b] of ranksOf) {
    if (name === base) continue;
    lines.push(`- ${name}: NDCG@${k} ${fmt(pairedBootstrap(a, b, (r) => ndcgAt(r, k)))}, HR@${k} ${fmt(pairedBootstrap(a, b, (r) => hitAt(r, k)))}`);
  }
  return [...lines, ''];
}

function fmtMetrics(m: MetricValues): string {
  return Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ');
}

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, [new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n')]);
}

/** Same architecture: copies every weight (by name) from one model into another. */
async function copyWeights(from: LlamaForCausalLM, to: LlamaForCausalLM): Promise<void> {
  loadStateDict(to, await stateArrays(from), { strict: true });
}

/** Loads a saved model directory (model.safetensors) into a model of the same architecture. */
export function loadInto(model: LlamaForCausalLM, dir: string): void {
  loadStateDict(model, readSafetensorsFile(path.join(dir, 'model.safetensors')).tensors, { strict: true });
}

export type { DatasetStats, RecData };
