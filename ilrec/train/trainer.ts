// The one training loop every stage uses: learning-rate schedule, gradient accumulation, global
// norm clipping, AdamW, loss curves, a progress bar, atomic checkpoints and bit-identical resume,
// and a stop with the step, the loss term and the parameter at fault on NaN/Inf.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AdamW, Tensor, backward, gradNorm, scale, tidy } from '../../engine/index.js';
import { loadStateDict, stateArrays, type LlamaForCausalLM } from '../../engine/model/llama.js';
import { loraModules } from '../../engine/model/lora.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../engine/io/node.js';
import type { TensorToWrite } from '../../engine/io/safetensors.js';
import type { OptimConfig } from '../config.js';
import { TrainProgress } from '../report/progress.js';
import { lrAt } from './schedule.js';
import type { LossOutput } from './losses.js';

/** One micro-batch: its loss (built inside the loop's tidy scope) and the tokens it feeds. */
export interface MicroBatch {
  loss: () => LossOutput;
  tokens: number;
}

/** Losses and throughput at one optimizer step. */
export interface StepLog {
  step: number;
  lr: number;
  /** Mean over the step's micro-batches of each scalar term (vector terms are spread as name[i]). */
  losses: Record<string, number>;
  gradNorm: number;
  tokensPerSec: number;
}

/** State a stage keeps besides weights and optimizer (e.g. SPRec's negatives of the current round). */
export interface ExtraState {
  save(): unknown;
  load(state: unknown): void;
}

export interface TrainLoopSpec {
  stage: string;
  model: LlamaForCausalLM;
  optim: OptimConfig;
  totalSteps: number;
  /** Micro-batch `micro` of optimizer step `step`: must depend on nothing but (step, micro) and the model. */
  microBatch: (step: number, micro: number) => MicroBatch | Promise<MicroBatch>;
  /** Checkpoint file (written atomically); with `resume`, training continues from it when it exists. */
  checkpoint?: string;
  checkpointEvery: number;
  resume?: boolean;
  logEvery: number;
  /** Names of the vector entries of a `terms` tensor, e.g. the fused loss's [CPO, CPD, CRR, |N|]. */
  termNames?: Record<string, string[]>;
  extra?: ExtraState;
  /** Called once before the first step of a run that starts fresh (not when it resumes from a checkpoint). */
  onStart?: () => void | Promise<void>;
  /** Called after every optimizer step (before a checkpoint is written). */
  onStep?: (log: StepLog) => void | Promise<void>;
  /**
   * Asked after each step's onStep (and before the first step, so a resumed stopped run stays
   * stopped): true ends the stage early, with a checkpoint. Its answer must live in `extra`.
   */
  shouldStop?: () => boolean;
  /** true: a progress bar on a terminal; false: plain log lines; 'off': nothing (tests). Default: bar when stderr is a TTY. */
  progress?: boolean | 'off';
}

export interface TrainLoopResult {
  /** Logged steps (every logEvery and the last). */
  curve: StepLog[];
  steps: number;
  seconds: number;
  tokens: number;
  /** Step the run resumed from (0 when it started fresh). */
  resumedFrom: number;
  /** The step the stage ended at: totalSteps, or earlier when shouldStop ended it. */
  endStep: number;
}

/** Raised on a non-finite loss term or gradient; the last checkpoint on disk stays the last good one. */
export class TrainingDivergedError extends Error {
  constructor(readonly stage: string, readonly step: number, readonly what: string) {
    super(`${stage}: step ${step}: ${what} is not finite; stopped (the last checkpoint on disk is the last good state)`);
    this.name = 'TrainingDivergedError';
  }
}

const CHECKPOINT_FORMAT = 'ilrec-train-state';

export async function trainLoop(spec: TrainLoopSpec): Promise<TrainLoopResult> {
  const { model, optim: oc } = spec;
  const named = model.namedParameters();
  const params = named.map(([, p]) => p);
  const opt = new AdamW(params, { lr: oc.lr, weightDecay: oc.weightDecay });
  let curve: StepLog[] = [];
  let start = 0;
  const resumeFrom = spec.resume && spec.checkpoint && fs.existsSync(spec.checkpoint) ? spec.checkpoint : null;
  if (resumeFrom) {
    const st = loadTrainState(resumeFrom, model, opt, spec.stage, spec.extra);
    start = st.step;
    curve = st.curve;
  }
  const progress = new TrainProgress({
    total: spec.totalSteps, label: spec.stage,
    ...(spec.progress === undefined ? {} : spec.progress === 'off' ? { enabled: false, stream: { write: () => true } } : { enabled: spec.progress }),
  });
  const t0 = performance.now();
  let tokens = 0;
  let windowTokens = 0;
  let windowStart = performance.now();
  let end = start;
  try {
    model.train();
    if (!resumeFrom) await spec.onStart?.();
    for (let step = start; step < spec.totalSteps && !spec.shouldStop?.(); step++) {
      const lr = lrAt(step, spec.totalSteps, oc.lr, oc.schedule);
      opt.setLr(lr);
      const sums: Record<string, number> = {};
      for (let micro = 0; micro < oc.accumulate; micro++) {
        const mb = await spec.microBatch(step, micro);
        const terms = tidy(() => {
          const out = mb.loss();
          backward(oc.accumulate > 1 ? scale(out.loss, 1 / oc.accumulate) : out.loss);
          return out.terms;
        });
        // One read-back for all terms of the micro-batch (each await is a GPU round trip).
        const entries = Object.entries(terms);
        const values = await Promise.all(entries.map(([, t]) => t.toArray()));
        for (const [k, [name, t]] of entries.entries()) {
          const v = Array.from(values[k]!);
          t.dispose();
          const names = spec.termNames?.[name] ?? v.map((_, i) => (v.length === 1 ? name : `${name}[${i}]`));
          v.forEach((x, i) => {
            if (!Number.isFinite(x)) throw new TrainingDivergedError(spec.stage, step, `loss term ${names[i]} (${x})`);
            sums[names[i]!] = (sums[names[i]!] ?? 0) + x / oc.accumulate;
          });
        }
        tokens += mb.tokens;
        windowTokens += mb.tokens;
      }
      const { norm, scale: clipScale } = gradNorm(params, oc.clip > 0 ? oc.clip : undefined);
      const normValue = await norm.item();
      if (!Number.isFinite(normValue)) {
        clipScale.dispose();
        norm.dispose();
        throw new TrainingDivergedError(spec.stage, step, `gradient of ${await firstNonFinite(named)}`);
      }
      opt.step({ gradScale: clipScale });
      opt.zeroGrad();
      clipScale.dispose();
      norm.dispose();

      const now = performance.now();
      const log: StepLog = { step: step + 1, lr, losses: sums, gradNorm: normValue, tokensPerSec: (windowTokens * 1000) / Math.max(1e-9, now - windowStart) };
      progress.update(step + 1, { losses: sums, tokensPerSec: log.tokensPerSec, lr });
      await spec.onStep?.(log);
      end = step + 1;
      // The stage's last step: the planned end, or an early stop decided in onStep.
      const last = end === spec.totalSteps || (spec.shouldStop?.() ?? false);
      if (end % spec.logEvery === 0 || last) {
        curve.push(log);
        windowTokens = 0;
        windowStart = now;
      }
      if (spec.checkpoint && (last || (spec.checkpointEvery > 0 && end % spec.checkpointEvery === 0)))
        await saveTrainState(spec.checkpoint, model, opt, spec.stage, end, curve, spec.extra);
    }
  } finally {
    progress.stop();
    opt.dispose();
    model.eval();
  }
  return { curve, steps: end - start, seconds: (performance.now() - t0) / 1000, tokens, resumedFrom: start, endStep: end };
}

/** Name of the first parameter whose gradient holds a NaN or an Inf (read back: only on failure). */
async function firstNonFinite(named: [string, Tensor][]): Promise<string> {
  for (const [name, p] of named) {
    if (!p.grad) continue;
    const g = await p.grad.toArray();
    const i = g.findIndex((x) => !Number.isFinite(x));
    if (i >= 0) return `${name} (element ${i} = ${g[i]})`;
  }
  return 'an unknown parameter (the norm overflowed)';
}

/**
 * One file holds the whole state (weights, AdamW moments and step counts, the stage's step, the
 * curve, the dropout generators (model and LoRA), the stage's extra state), so the write is a single atomic rename.
 */
export async function saveTrainState(
  file: string, model: LlamaForCausalLM, opt: AdamW, stage: string, step: number, curve: StepLog[], extra?: ExtraState,
): Promise<void> {
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of await stateArrays(model)) tensors.set(`model.${name}`, t);
  const st = await opt.state();
  st.m.forEach((m, i) => {
    if (m) tensors.set(`adam.m.${i}`, { shape: [m.length], data: m });
    const v = st.v[i];
    if (v) tensors.set(`adam.v.${i}`, { shape: [v.length], data: v });
  });
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeSafetensorsFile(file, tensors, {
    format: CHECKPOINT_FORMAT,
    stage,
    step: String(step),
    adamSteps: JSON.stringify(st.step),
    curve: JSON.stringify(curve),
    lora: JSON.stringify(loraModules(model).map((m) => m.rngState)),
    dropout: JSON.stringify(model.dropoutState),
    extra: JSON.stringify(extra?.save() ?? null),
  });
}

/** Restores what saveTrainState wrote; throws naming the file on a stage or shape mismatch. */
export function loadTrainState(
  file: string, model: LlamaForCausalLM, opt: AdamW, stage: string, extra?: ExtraState,
): { step: number; curve: StepLog[] } {
  const { metadata, tensors } = readSafetensorsFile(file);
  if (metadata['format'] !== CHECKPOINT_FORMAT) throw new Error(`${file}: not a training-state checkpoint (format ${metadata['format']})`);
  if (metadata['stage'] !== stage) throw new Error(`${file}: checkpoint of stage ${metadata['stage']}, resuming ${stage}`);
  const weights = new Map<string, { shape: readonly number[]; data: Float32Array | Int32Array }>();
  for (const [name, t] of tensors) if (name.startsWith('model.')) weights.set(name.slice('model.'.length), t);
  try {
    loadStateDict(model, weights, { strict: true });
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const steps = JSON.parse(metadata['adamSteps']!) as number[];
  const pick = (k: string, i: number) => {
    const t = tensors.get(`adam.${k}.${i}`);
    return t ? (t.data as Float32Array) : null;
  };
  opt.loadState({ step: steps, m: steps.map((_, i) => pick('m', i)), v: steps.map((_, i) => pick('v', i)) });
  const lora = JSON.parse(metadata['lora'] ?? '[]') as [number, number | null][];
  const mods = loraModules(model);
  if (lora.length !== mods.length) throw new Error(`${file}: ${lora.length} LoRA generators saved, the model has ${mods.length} adapters`);
  mods.forEach((m, i) => (m.rngState = lora[i]!));
  // Checkpoints from before model dropout existed carry no generator: the model's own start is theirs.
  if (metadata['dropout']) model.dropoutState = JSON.parse(metadata['dropout']) as [number, number | null];
  extra?.load(JSON.parse(metadata['extra'] ?? 'null'));
  return { step: Number(metadata['step']), curve: JSON.parse(metadata['curve'] ?? '[]') as StepLog[] };
}
