// The training loop and the stages: DPO-family losses against hand computation, bit-identical
// resume (2N steps straight = N + resume + N) for SFT, ILRec and SPRec, NaN/Inf stops naming the
// step and the term or parameter, and one tiny end-to-end experiment through every stage.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tensor, backward, relu, softplus, sqrt, sum, tensor, neg } from '../../engine/index.js';
import { stateDict, type LlamaForCausalLM } from '../../engine/model/llama.js';
import { resolveConfig, type IlrecConfig } from '../../ilrec/config.js';
import { trainSASRec } from '../../ilrec/cf/sasrec.js';
import { generateSynthetic } from '../../ilrec/data/synthetic.js';
import { itemCodesFromDataset, recData } from '../../ilrec/train/examples.js';
import { dpoFamilyLoss, logSumExp } from '../../ilrec/train/losses.js';
import { buildModel, runExperiment } from '../../ilrec/train/pipeline.js';
import { runDpoFamily, runIlrec, runSft, stageSteps, type SftSelection, type StageRunOptions } from '../../ilrec/train/stages.js';
import { TrainingDivergedError, trainLoop } from '../../ilrec/train/trainer.js';
import { useDevice } from '../helpers.js';

useDevice();

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ilrec-train-'));

const TINY: IlrecConfig = resolveConfig({
  data: { maxHistory: 6, windowStride: 3 },
  model: { hidden: 16, layers: 3, heads: 2, kvHeads: 1, intermediate: 32 },
  cf: { hidden: 16, layers: 1, heads: 1, intermediate: 32, epochs: 1, maxLen: 10 },
  sft: { batch: 4, steps: 4, lr: 1e-2 },
  pref: { batch: 4, steps: 4, lr: 1e-2 },
  ilrec: { layersBelowLast: [1, 2] },
  dpo: { negatives: 2, rounds: 2, beams: 3 },
  eval: { beams: 4, testUsers: 6, validUsers: 4, promptsPerCall: 3 },
  run: { checkpointEvery: 2, logEvery: 1 },
});

const ds = generateSynthetic({ seed: 1, users: 24, branching: [3, 2, 3], minLength: 4, maxLength: 12 });
const codes = itemCodesFromDataset(ds);
const data = recData(ds, codes, TINY.data.maxHistory, TINY.data.windowStride);

async function weights(m: LlamaForCausalLM): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [k, t] of stateDict(m)) out.set(k, (await t.toArray()) as Float32Array);
  return out;
}

function expectSameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [k, x] of a) {
    const y = b.get(k)!;
    const i = x.findIndex((v, j) => !Object.is(v, y[j]));
    if (i >= 0) throw new Error(`${k}[${i}]: ${x[i]} straight vs ${y[i]} resumed`);
  }
}

/** Trains straight, then again with a crash after step N (the checkpoint at N survives) and a resume. */
async function resumeMatches(run: (m: LlamaForCausalLM, o: StageRunOptions) => Promise<unknown>, cfg = TINY): Promise<void> {
  const straight = buildModel(cfg, codes.vocab.size, 64);
  const dir = tmp();
  await run(straight, { checkpoint: path.join(dir, 'a.safetensors'), progress: 'off' });
  const crashed = buildModel(cfg, codes.vocab.size, 64);
  const ck = path.join(dir, 'b.safetensors');
  await expect(run(crashed, { checkpoint: ck, progress: 'off', onStep: (l) => { if (l.step === 3) throw new Error('simulated crash'); } })).rejects.toThrow('simulated crash');
  crashed.dispose();
  const resumed = buildModel(cfg, codes.vocab.size, 64);
  await run(resumed, { checkpoint: ck, resume: true, progress: 'off' });
  expectSameWeights(await weights(straight), await weights(resumed));
  straight.dispose();
  resumed.dispose();
}

describe('DPO family', () => {
  it('matches −log σ(β Δ) for one negative and the S-DPO formula for several', async () => {
    const beta = 0.5;
    const pol = [-1.0, -2.5, -0.7, -0.2, -3.0, -1.1, -0.4, -2.2];
    const ref = [-1.2, -2.0, -0.9, -0.5, -2.0, -1.0, -0.6, -2.4];
    const rho = pol.map((p, i) => beta * (p - ref[i]!));
    const sig = (x: number) => 1 / (1 + Math.exp(-x));
    // n = 1: 4 prompts × [chosen, rejected].
    const dpo = [0, 1, 2, 3].map((q) => -Math.log(sig(rho[2 * q]! - rho[2 * q + 1]!)));
    const got1 = dpoFamilyLoss(tensor(pol, [8]), tensor(ref, [8]), 1, beta);
    expect(await got1.loss.item()).toBeCloseTo(dpo.reduce((a, b) => a + b) / 4, 5);
    // n = 3: 2 prompts × [chosen, 3 rejected].
    const sdpo = [0, 1].map((q) => {
      const w = rho[4 * q]!;
      const s = [1, 2, 3].reduce((a, j) => a + Math.exp(rho[4 * q + j]! - w), 0);
      return -Math.log(sig(-Math.log(s)));
    });
    const got3 = dpoFamilyLoss(tensor(pol, [8]), tensor(ref, [8]), 3, beta);
    expect(await got3.loss.item()).toBeCloseTo((sdpo[0]! + sdpo[1]!) / 2, 5);
  });

  it('softplus and logSumExp are stable at large magnitudes', async () => {
    expect(Array.from(await softplus(tensor([-200, 0, 200], [3])).toArray())).toEqual([0, expect.closeTo(Math.log(2), 6), 200]);
    expect(await logSumExp(tensor([1000, 1000], [2])).item()).toBeCloseTo(1000 + Math.log(2), 3);
  });

  it('raises the chosen response over the rejected ones', async () => {
    const x = tensor([0.1, 0.3, -0.2], [3], 'f32', { requiresGrad: true });
    const { loss } = dpoFamilyLoss(x, tensor([0, 0, 0], [3]), 2, 1);
    backward(loss);
    const g = Array.from((await x.grad!.toArray()) as Float32Array);
    expect(g[0]).toBeLessThan(0); // descending the loss raises log π(chosen)
    expect(g[1]).toBeGreaterThan(0);
    expect(g[2]).toBeGreaterThan(0);
  });
});

describe('resume is bit-identical', () => {
  it('SFT', async () => {
    await resumeMatches((m, o) => runSft(m, data, TINY, o));
  });

  it('SFT with residual dropout (the mask generator is checkpointed)', async () => {
    const drop = resolveConfig({ ...TINY, model: { ...TINY.model, dropout: 0.2 } });
    await resumeMatches((m, o) => runSft(m, data, drop, o), drop);
  });

  it('ILRec with CF rewards', async () => {
    const cf = (await trainSASRec(ds.sequences, ds.items.length, { ...TINY.cf })).model;
    await resumeMatches((m, o) => runIlrec(m, data, TINY, cf, ds.sequences, o));
    cf.dispose();
  });

  it('SPRec (self-play negatives regenerated per round)', async () => {
    const ref = buildModel(TINY, codes.vocab.size, 64);
    await resumeMatches((m, o) => runDpoFamily('sprec', m, ref, data, TINY, ds.items.length, 4, o));
    ref.dispose();
  });
});

describe('non-finite values stop the run', () => {
  it('names the step and the loss term; the last good checkpoint stays', async () => {
    const model = buildModel(TINY, codes.vocab.size, 64);
    const dir = tmp();
    const ck = path.join(dir, 'state.safetensors');
    const w = model.namedParameters()[0]![1];
    const err = await trainLoop({
      stage: 'nan', model, optim: { ...TINY.sft, steps: 5 }, totalSteps: 5, checkpoint: ck, checkpointEvery: 1, logEvery: 1, progress: 'off',
      microBatch: (step) => ({
        tokens: 1,
        loss: () => {
          const l = sum(relu(w));
          return { loss: l, terms: { ce: step === 2 ? tensor([NaN], [1]) : l } };
        },
      }),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect((err as Error).message).toMatch(/step 2: loss term ce/);
    expect(fs.existsSync(ck)).toBe(true);
    model.dispose();
  });

  it('names the parameter with a non-finite gradient', async () => {
    const model = buildModel(TINY, codes.vocab.size, 64);
    const [name, w] = model.namedParameters()[1]!;
    // d/dw sqrt(relu(−w)) is 0·∞ = NaN where w > 0, while the loss itself stays finite.
    const err = await trainLoop({
      stage: 'nan', model, optim: { ...TINY.sft, steps: 2 }, totalSteps: 2, checkpointEvery: 0, logEvery: 1, progress: 'off',
      microBatch: () => ({ tokens: 1, loss: () => { const l = sum(sqrt(relu(neg(w as Tensor)))); return { loss: l, terms: { l } }; } }),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect((err as Error).message).toContain(`step 0: gradient of ${name}`);
    model.dispose();
  });
});

describe('SFT model selection on validation users', () => {
  // 8 steps, scored every 2: the score is scripted by step, so which weights win is known.
  const cfg = resolveConfig({ ...TINY, sft: { ...TINY.sft, steps: 8 } });
  const everyEpochs = 2 / stageSteps({ ...cfg.sft, epochs: 1, steps: 0 }, data.windows.length);
  /** Runs SFT with `scores[step]` as the validation score; returns the selection log, the final weights and the weights seen after each step. */
  async function selectRun(scores: Record<number, number>, patience: number, scoreStart = false) {
    const model = buildModel(cfg, codes.vocab.size, 64);
    const seen = new Map<number, Map<string, Float32Array>>([[0, await weights(model)]]);
    let step = 0;
    const select: SftSelection = { everyEpochs, patience, scoreStart, score: async () => scores[step]! };
    const res = await runSft(model, data, cfg, { progress: 'off', onStep: async (l) => { step = l.step + 1; seen.set(l.step, await weights(model)); } }, select);
    step = 0;
    const final = await weights(model);
    model.dispose();
    return { res, final, seen };
  }

  it('keeps the weights of the best-scoring evaluation, not the last', async () => {
    // onStep runs after the score, so `step` holds the step being scored: 2, 4, 6, 8.
    const { res, final, seen } = await selectRun({ 2: 0.1, 4: 0.3, 6: 0.2, 8: 0.25 }, 2);
    expect(res.selection!.history.map((h) => [h.step, h.score])).toEqual([[2, 0.1], [4, 0.3], [6, 0.2], [8, 0.25]]);
    expect(res.selection!.bestStep).toBe(4);
    expect(res.endStep).toBe(8);
    // Two evaluations without a new best, but the second is the last step: the run ended, it did not stop early.
    expect(res.selection!.stoppedEarly).toBe(false);
    expectSameWeights(seen.get(4)!, final);
    expect(() => expectSameWeights(seen.get(8)!, final)).toThrow();
  });

  it('with scoreStart, the starting weights are a candidate: kept when no evaluation beats them', async () => {
    const { res, final, seen } = await selectRun({ 0: 0.5, 2: 0.1, 4: 0.3, 6: 0.2, 8: 0.25 }, 0, true);
    expect(res.selection!.history.map((h) => [h.step, h.score])).toEqual([[0, 0.5], [2, 0.1], [4, 0.3], [6, 0.2], [8, 0.25]]);
    expect(res.selection!.bestStep).toBe(0);
    expectSameWeights(seen.get(0)!, final);
    const better = await selectRun({ 0: 0.2, 2: 0.1, 4: 0.3, 6: 0.2, 8: 0.25 }, 0, true);
    expect(better.res.selection!.bestStep).toBe(4);
    expectSameWeights(better.seen.get(4)!, better.final);
  });

  it('stops after `patience` evaluations without a new best', async () => {
    const { res, final, seen } = await selectRun({ 2: 0.5, 4: 0.4, 6: 0.3, 8: 0.6 }, 2);
    expect(res.selection!.stoppedEarly).toBe(true);
    expect(res.endStep).toBe(6);
    expect(res.steps).toBe(6);
    expect([...seen.keys()]).toEqual([0, 1, 2, 3, 4, 5, 6]); // 0: the start
    expectSameWeights(seen.get(2)!, final);
  });

  it('resumes bit-identically, best weights and early stop included', async () => {
    // A score that is a deterministic function of the weights, so the replay after a crash decides the same.
    const score = async (m: LlamaForCausalLM) => {
      const w = [...(await weights(m)).values()][0]!;
      return w.reduce((a, v, i) => a + v * Math.sin(i), 0);
    };
    for (const [patience, scoreStart] of [[0, false], [1, false], [0, true]] as const) {
      const select: SftSelection = { everyEpochs, patience, scoreStart, score };
      await resumeMatches((m, o) => runSft(m, data, cfg, o, select));
    }
  });
});

describe('experiment', () => {
  it('runs every stage and ablation on a tiny synthetic set and writes the report', async () => {
    const out = tmp();
    const cfg = resolveConfig({ ...TINY, data: { ...TINY.data, maxUsers: 24 }, sft: { ...TINY.sft, steps: 3 }, pref: { ...TINY.pref, steps: 2 }, select: { everyEpochs: 0.1, users: 5, patience: 0 } });
    const lines: string[] = [];
    const res = await runExperiment(cfg, {
      out, stages: ['sft', 'ilrec', 'dpo', 'sdpo', 'sprec'], ablations: ['noCPO', 'noCPD', 'noCRR', 'finalLayerNegatives', 'ceOnly'],
      resume: false, progress: 'off', log: (l) => lines.push(l),
    });
    const names = res.rows.map((r) => r.name);
    // SFT selection ran through the pipeline: scored on 5 validation users, the kept step logged and recorded.
    const sel = (res.rows[1]!.config as { selection?: { history: unknown[]; bestStep: number } }).selection!;
    expect(sel.history.length).toBeGreaterThan(0);
    expect(lines.filter((l) => l.startsWith('sft: validation NDCG@10') && l.includes('(5 users)'))).toHaveLength(sel.history.length);
    expect(lines.some((l) => l.startsWith(`sft: kept the weights of step ${sel.bestStep} `))).toBe(true);
    expect(names).toEqual(['sasrec', 'sft', 'ilrec', 'dpo', 'sdpo', 'sprec', 'ilrec-noCPO', 'ilrec-noCPD', 'ilrec-noCRR', 'ilrec-finalLayerNegatives', 'ilrec-ceOnly']);
    // The control keeps only the cross-entropy: its loss is L_CPO with α = 0, nothing added.
    const curves = JSON.parse(fs.readFileSync(path.join(out, 'curves.json'), 'utf8')) as Record<string, { losses: Record<string, number> }[]>;
    expect(curves['ilrec-ceOnly']!.length).toBeGreaterThan(0);
    for (const { losses } of curves['ilrec-ceOnly']!) expect(losses.loss).toBeCloseTo(losses.cpo!, 6);
    expect(curves['ilrec']!.some(({ losses }) => losses.loss! > losses.cpo! + 1e-4)).toBe(true);
    for (const r of res.rows) for (const v of Object.values(r.metrics)) expect(v).toBeGreaterThanOrEqual(0);
    const report = fs.readFileSync(res.report, 'utf8');
    expect(report).toContain('| ilrec |');
    expect(fs.readFileSync(path.join(out, 'plots', 'ilrec-losses.svg'), 'utf8')).toContain('<svg');
    expect(JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'))).toHaveLength(names.length);
    // Resuming a finished run reloads every stage instead of training it again.
    const again = await runExperiment(cfg, { out, stages: ['sft', 'ilrec'], ablations: [], resume: true, progress: 'off', log: (l) => lines.push(l) });
    expect(again.rows.map((r) => r.name)).toEqual(['sasrec', 'sft', 'ilrec']);
    expect(lines.filter((l) => l.includes('loaded the finished model'))).toHaveLength(2);
    expect(again.rows[2]!.metrics).toEqual(res.rows[2]!.metrics);
  }, 300_000);
});

describe('npm run train and npm run sweep (ILRec CLI)', () => {
  it('runs a tiny experiment from flags and --set, rejects unknown fields, and sweeps its ILRec stage', async () => {
    const { execFileSync } = await import('node:child_process');
    const out = tmp();
    const tsx = path.join('node_modules', '.bin', 'tsx');
    const args = [
      'cli/train.ts', '--max-users', '30', '--hidden', '16', '--layers', '2', '--heads', '2', '--kv-heads', '1', '--intermediate', '32',
      '--sft-steps', '2', '--pref-steps', '1', '--test-users', '4', '--valid-users', '0', '--eval-beams', '3', '--cf-epochs', '1',
      '--set', 'cf.hidden=16', '--set', 'cf.layers=1', '--set', 'cf.heads=1', '--set', 'cf.intermediate=32', '--set', 'data.maxHistory=5', '--set', 'data.windowStride=5',
      '--threshold', 'logprob', '--no-progress', '--out', out,
    ];
    const log = execFileSync(tsx, args, { encoding: 'utf8', stdio: 'pipe' });
    expect(log).toMatch(/report: /);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).ilrec.loss.threshold).toBe('logprob');
    expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toMatch(/\| ilrec \|/);
    let err = '';
    try {
      execFileSync(tsx, ['cli/train.ts', '--set', 'ilrec.loss.nope=1', '--out', tmp()], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      err = String((e as { stderr?: string }).stderr);
    }
    expect(err).toMatch(/unknown key ilrec\.loss\.nope/);

    // npm run sweep: ILRec trials from that run's SFT model, ranked on validation users.
    const sweep = tmp();
    const sweepArgs = ['cli/sweep.ts', '--from', out, '--out', sweep, '--valid-users', '4', '--pref-steps', '1', '--trial', 'base:', 'a2:ilrec.loss.alpha=2,ilrec.layersBelowLast=[1]', '--versus', 'base'];
    expect(execFileSync(tsx, sweepArgs, { encoding: 'utf8', stdio: 'pipe' })).toMatch(/report: /);
    const table = fs.readFileSync(path.join(sweep, 'sweep.md'), 'utf8');
    expect(table).toMatch(/ΔNDCG@10 vs sft \| ΔHR@10 vs sft \| ΔNDCG@10 vs base \| ΔHR@10 vs base \|/);
    expect(table).toMatch(/\| base \| \(base\) \|.*\| - \| - \| \d+ \|/);
    expect(table).toMatch(/\| a2 \| ilrec\.loss\.alpha=2, ilrec\.layersBelowLast=\[1\] \|/);
    const a2 = JSON.parse(fs.readFileSync(path.join(sweep, 'a2', 'config.json'), 'utf8'));
    expect([a2.ilrec.loss.alpha, a2.ilrec.layersBelowLast, a2.pref.steps]).toEqual([2, [1], 1]);
    expect(JSON.parse(fs.readFileSync(path.join(sweep, 'a2', 'valid.json'), 'utf8')).ranks).toHaveLength(4);
    err = '';
    try {
      execFileSync(tsx, ['cli/sweep.ts', '--from', out, '--out', tmp(), '--trial', 'x:ilrec.alpha'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      err = String((e as { stderr?: string }).stderr);
    }
    expect(err).toMatch(/--trial x:ilrec\.alpha: ilrec\.alpha is not path=value/);
    err = '';
    try {
      execFileSync(tsx, ['cli/sweep.ts', '--from', out, '--out', sweep, '--valid-users', '4', '--trial', 'a2:ilrec.loss.alpha=3'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      err = String((e as { stderr?: string }).stderr);
    }
    expect(err).toMatch(/--trial a2: .*a2\/valid\.json was run with \{"ilrec\.loss\.alpha":"2",.*give this setting a new name/);
  }, 300_000);
});
