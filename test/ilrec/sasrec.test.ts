// SASRec on the engine: learns a small synthetic dataset well past popularity, checkpoints
// round-trip exactly, the sampled-negative BCE objective matches a float64 hand computation and
// learns, resuming from a training state is bit-identical, and the training CLI runs end to end.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkOp, useDevice } from '../helpers.js';
import { generateSynthetic } from '../../ilrec/data/synthetic.js';
import { SASRec, evalCases, evaluateScorer, popularityScores, trainSASRec, type SASRecConfig } from '../../ilrec/cf/sasrec.js';
import { softplus } from '../../engine/index.js';
import { noGrad, tensor } from '../../engine/index.js';
import { readSafetensorsFile } from '../../engine/io/node.js';
import { zipWith } from '../../engine/ref/nd.js';

useDevice();

describe('SASRec', () => {
  it('beats popularity on synthetic data and checkpoints round-trip', async () => {
    const ds = generateSynthetic({ seed: 1, users: 300, branching: [4, 5, 5] });
    const nItems = ds.items.length;
    const t0 = performance.now();
    const res = await trainSASRec(ds.sequences, nItems, { epochs: 8, batch: 64, lr: 5e-3, hidden: 32, maxLen: 20, patience: 0, evalEvery: 8, seed: 0 });
    const { test, train } = evalCases(ds.sequences);
    const pop = popularityScores(train, nItems);
    const popMetrics = await evaluateScorer((h) => tensor(Array.from({ length: h.length }, () => [...pop]).flat(), [h.length, nItems]), test);
    console.log(`SASRec test ${JSON.stringify(res.test)}; popularity ${JSON.stringify(popMetrics)}; losses ${res.history.map((l) => l.loss.toFixed(3))}; ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(res.history[res.history.length - 1]!.loss).toBeLessThan(res.history[0]!.loss);
    expect(res.test['NDCG@10']!).toBeGreaterThan(1.5 * popMetrics['NDCG@10']! + 0.02);

    const dir = mkdtempSync(path.join(os.tmpdir(), 'sasrec-'));
    try {
      const file = path.join(dir, 'sasrec.safetensors');
      await res.model.save(file);
      const loaded = SASRec.load(file);
      const hist = test.slice(0, 7).map((c) => c.history);
      const a = res.model.scoreHistory(hist);
      const b = loaded.scoreHistory(hist);
      expect(a.shape).toEqual([7, nItems]);
      expect(await b.toArray()).toEqual(await a.toArray());
      a.dispose();
      b.dispose();
      loaded.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      res.model.dispose();
    }
  }, 60_000);

  it('softplus (the BCE building block) is exact at extreme arguments', async () => {
    const ref = (v: number) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)));
    const big = [-200, -90, -30, -1e-3, 0, 1e-3, 19.5, 20.5, 30, 90, 200];
    const x = tensor(big, [big.length]);
    const y = noGrad(() => softplus(x));
    const got = await y.toArray();
    big.forEach((v, i) => expect(Math.abs(got[i]! - ref(v))).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(v))));
    x.dispose();
    y.dispose();
  });

  it('bce: the loss equals a float64 hand computation; negatives avoid the sequence and follow the seed', async () => {
    const nItems = 9;
    const cfg: Partial<SASRecConfig> = { hidden: 8, layers: 1, heads: 2, intermediate: 12, maxLen: 4, loss: 'bce', negatives: 3, seed: 5 };
    const model = new SASRec(nItems, cfg);
    // Lengths 6 (> maxLen + 1: truncated), 2, 4 and 1 (no target at all).
    const seqs = [[0, 1, 2, 3, 4, 5], [6, 7], [2, 8, 1, 3], [4]];
    const negs = model.sampleNegatives(seqs);
    expect(negs).toEqual(new SASRec(nItems, cfg).sampleNegatives(seqs));
    const wantTargets = [[2, 3, 4, 5], [7], [8, 1, 3], []];
    expect(negs.length).toBe(8);
    let r = 0;
    wantTargets.forEach((tg, b) =>
      tg.forEach(() => {
        expect(negs[r]!.length).toBe(3);
        for (const n of negs[r++]!) expect(seqs[b]!.includes(n) || n < 0 || n >= nItems).toBe(false);
      }),
    );
    model.eval();
    const { h, targets } = noGrad(() => model.positionStates(seqs));
    expect(targets).toEqual(wantTargets.flat());
    const H = await h.toArray();
    const E = await model.itemEmbeddings.toArray();
    h.dispose();
    const C = 8;
    const dot = (r: number, item: number) => {
      let s = 0;
      for (let k = 0; k < C; k++) s += H[r * C + k]! * E[(item + 1) * C + k]!;
      return s;
    };
    const logSigmoid = (s: number) => Math.min(s, 0) - Math.log1p(Math.exp(-Math.abs(s)));
    let want = 0;
    targets.forEach((item, r) => {
      want -= logSigmoid(dot(r, item));
      for (const n of negs[r]!) want -= logSigmoid(-dot(r, n));
    });
    want /= targets.length;
    const loss = noGrad(() => model.bceLoss(seqs, negs));
    expect(loss.shape).toEqual([]);
    const got = await loss.item();
    expect(Math.abs(got - want)).toBeLessThan(1e-5 * Math.abs(want));
    loss.dispose();
    expect(() => model.bceLoss(seqs, negs.slice(1))).toThrow(/7 negative lists for 8 positions/);
    expect(() => new SASRec(3, { ...cfg, negatives: 1 }).sampleNegatives([[0, 1, 2]])).toThrow(/contains all 3 items/);
    model.dispose();
  });

  it('bce: a short synthetic run learns well past random', async () => {
    const ds = generateSynthetic({ seed: 2, users: 200, branching: [4, 5, 5] });
    const nItems = ds.items.length;
    const res = await trainSASRec(ds.sequences, nItems, { epochs: 4, batch: 64, lr: 5e-3, hidden: 32, maxLen: 20, patience: 0, evalEvery: 4, seed: 0, loss: 'bce', negatives: 2 });
    const random = 10 / nItems;
    console.log(`SASRec bce test ${JSON.stringify(res.test)}; random HR@10 ${random}; losses ${res.history.map((l) => l.loss.toFixed(3))}`);
    expect(res.history[res.history.length - 1]!.loss).toBeLessThan(res.history[0]!.loss);
    expect(res.test['HR@10']!).toBeGreaterThan(2 * random);
    res.model.dispose();
  }, 60_000);

  it('resume: 1 epoch + resume + 1 epoch is bit-identical to 2 epochs straight', async () => {
    const ds = generateSynthetic({ seed: 3, users: 60, branching: [3, 4, 4], maxLength: 12 });
    const nItems = ds.items.length;
    // Dropout and bce: every generator (shuffle, dropout masks, negatives) has to resume exactly.
    const cfg: Partial<SASRecConfig> = { epochs: 2, batch: 16, lr: 5e-3, hidden: 16, intermediate: 24, layers: 1, maxLen: 8, dropout: 0.2, patience: 0, evalEvery: 1, seed: 4, loss: 'bce', negatives: 2 };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sasrec-resume-'));
    try {
      const straightFile = path.join(dir, 'straight.safetensors');
      const resumedFile = path.join(dir, 'resumed.safetensors');
      const a = await trainSASRec(ds.sequences, nItems, cfg, { stateFile: straightFile });
      const b1 = await trainSASRec(ds.sequences, nItems, { ...cfg, epochs: 1 }, { stateFile: resumedFile });
      b1.model.dispose();
      expect(readSafetensorsFile(resumedFile).metadata['state']).toMatch(/"epoch":1,/);
      const epochs: number[] = [];
      const b = await trainSASRec(ds.sequences, nItems, cfg, { stateFile: resumedFile, resume: true, onEpoch: (l) => epochs.push(l.epoch) });
      expect(epochs).toEqual([2]);
      // Final training state (weights, AdamW moments, best weights, order) bit for bit.
      const ta = readSafetensorsFile(straightFile).tensors;
      const tb = readSafetensorsFile(resumedFile).tensors;
      expect([...tb.keys()].sort()).toEqual([...ta.keys()].sort());
      expect([...ta.keys()].some((k) => k.startsWith('adam.m.'))).toBe(true);
      for (const [k, t] of ta) expect(tb.get(k)!.data, k).toEqual(t.data);
      // The returned (best) model, metrics and history agree too.
      const [wa, wb] = [await a.model.stateArrays(), await b.model.stateArrays()];
      for (const [k, t] of wa) expect(wb.get(k)!.data, k).toEqual(t.data);
      expect(b.test).toEqual(a.test);
      expect(b.bestEpoch).toBe(a.bestEpoch);
      expect(b.history.map((l) => [l.epoch, l.loss, l.valid])).toEqual(a.history.map((l) => [l.epoch, l.loss, l.valid]));
      // Resuming with another config or without a state is refused clearly.
      await expect(trainSASRec(ds.sequences, nItems, { ...cfg, lr: 1e-3 }, { stateFile: resumedFile, resume: true })).rejects.toThrow(/config differs in lr/);
      await expect(trainSASRec(ds.sequences.slice(1), nItems, cfg, { stateFile: resumedFile, resume: true })).rejects.toThrow(/other data/);
      await expect(trainSASRec(ds.sequences, nItems, cfg, { stateFile: path.join(dir, 'none'), resume: true })).rejects.toThrow(/no training state/);
      a.model.dispose();
      b.model.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('CLI: --model sasrec --data synthetic writes results; other models fail clearly', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'sasrec-cli-'));
    const root = path.resolve(import.meta.dirname, '../..');
    const tsx = path.join(root, 'node_modules/.bin/tsx');
    try {
      const args = ['cli/train.ts', '--model', 'sasrec', '--data', 'synthetic', '--max-users', '200', '--loss', 'bce', '--negatives', '2', '--out', out];
      const log = execFileSync(tsx, [...args, '--epochs', '1'], { cwd: root, encoding: 'utf8' });
      expect(log).toMatch(/epoch 1/);
      const rec = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'));
      expect(rec.metrics['NDCG@10']).toBeGreaterThanOrEqual(0);
      expect(rec.config.loss).toBe('bce');
      expect(existsSync(path.join(out, 'results.md'))).toBe(true);
      // --resume continues the run in --out: only epoch 2 is trained.
      const log2 = execFileSync(tsx, [...args, '--epochs', '2', '--resume'], { cwd: root, encoding: 'utf8' });
      expect(log2).toMatch(/resuming from/);
      expect(log2).toMatch(/epoch 2/);
      expect(log2).not.toMatch(/epoch 1:/);
      let err = '';
      try {
        execFileSync(tsx, ['cli/train.ts', '--model', 'caser', '--data', 'synthetic'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
      } catch (e) {
        err = String((e as { stderr?: string }).stderr);
      }
      expect(err).toMatch(/--model caser: not one of ilrec, sasrec/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 60_000);
});
