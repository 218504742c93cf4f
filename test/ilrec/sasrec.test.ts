// SASRec on the engine: learns a small synthetic dataset well past popularity, checkpoints
// round-trip exactly, and the training CLI runs end to end.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useDevice } from '../helpers.js';
import { generateSynthetic } from '../../ilrec/data/synthetic.js';
import { SASRec, evalCases, evaluateScorer, popularityScores, trainSASRec } from '../../ilrec/cf/sasrec.js';
import { tensor } from '../../engine/index.js';

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

  it('CLI: --model sasrec --data synthetic writes results; other models fail clearly', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'sasrec-cli-'));
    const root = path.resolve(import.meta.dirname, '../..');
    const tsx = path.join(root, 'node_modules/.bin/tsx');
    try {
      const log = execFileSync(tsx, ['cli/train.ts', '--model', 'sasrec', '--data', 'synthetic', '--epochs', '1', '--max-users', '200', '--out', out], { cwd: root, encoding: 'utf8' });
      expect(log).toMatch(/epoch 1/);
      const rec = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'));
      expect(rec.metrics['NDCG@10']).toBeGreaterThanOrEqual(0);
      expect(existsSync(path.join(out, 'results.md'))).toBe(true);
      let err = '';
      try {
        execFileSync(tsx, ['cli/train.ts', '--model', 'ilrec', '--data', 'synthetic'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
      } catch (e) {
        err = String((e as { stderr?: string }).stderr);
      }
      expect(err).toMatch(/not implemented yet/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 60_000);
});
