// Run-report pieces without a GPU: vega SVG charts rendered headless, the markdown comparison table,
// and the progress output's plain (non-TTY) line format.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { lossCurvesSvg, metricCurvesSvg, metricsBarSvg, writeSvg } from '../../ilrec/report/plots.js';
import { TrainProgress, formatDuration } from '../../ilrec/report/progress.js';
import { comparisonTable, type TableRow } from '../../ilrec/report/table.js';

const isSvg = (s: string) => s.startsWith('<svg') && s.trimEnd().endsWith('</svg>');

describe('lossCurvesSvg', () => {
  it('draws several series with a legend and the title', async () => {
    const points = (f: (i: number) => number) => Array.from({ length: 30 }, (_, i) => ({ step: (i + 1) * 10, value: f(i) }));
    const svg = await lossCurvesSvg(
      [{ name: 'sft_loss', points: points((i) => 3 / (i + 1)) }, { name: 'ilrec_pref', points: points((i) => 1 + 1 / (i + 1)) }],
      { title: 'ilrec: training losses', yLabel: 'loss' },
    );
    expect(isSvg(svg)).toBe(true);
    for (const s of ['sft_loss', 'ilrec_pref', 'ilrec: training losses', 'loss', 'step']) expect(svg).toContain(s);
  });

  it('handles a single point and 1,000 points, on linear and log axes', async () => {
    const one = await lossCurvesSvg([{ name: 'only', points: [{ step: 1, value: 0.5 }] }], { title: 'one point' });
    expect(isSvg(one)).toBe(true);
    expect(one).toContain('only');
    const many = Array.from({ length: 1000 }, (_, i) => ({ step: i + 1, value: Math.exp(-i / 300) + 0.01 * Math.sin(i) + 0.05 }));
    const svg = await lossCurvesSvg([{ name: 'long', points: many }], { title: 'thousand', logY: true });
    expect(isSvg(svg)).toBe(true);
    expect(svg).toContain('thousand');
  });

  it('rejects non-finite values naming the series and the step', async () => {
    const bad = [{ name: 'good', points: [{ step: 1, value: 1 }] }, { name: 'dpo', points: [{ step: 1, value: 1 }, { step: 12, value: NaN }] }];
    await expect(lossCurvesSvg(bad, { title: 't' })).rejects.toThrow('lossCurvesSvg: series "dpo" has a non-finite value (NaN) at step 12');
    await expect(lossCurvesSvg([{ name: 'x', points: [{ step: 3, value: Infinity }] }], { title: 't' })).rejects.toThrow(/"x".*Infinity.*step 3/);
    await expect(lossCurvesSvg([{ name: 'x', points: [{ step: 2, value: 0 }] }], { title: 't', logY: true })).rejects.toThrow(/"x".*step 2.*log/);
    await expect(lossCurvesSvg([{ name: 'a', points: [] }], { title: 't' })).rejects.toThrow(/every series is empty/);
    await expect(lossCurvesSvg([{ name: 'a', points: [{ step: 1, value: 1 }] }, { name: 'a', points: [] }], { title: 't' })).rejects.toThrow(/"a" appears twice/);
  });
});

describe('metric charts', () => {
  it('metricCurvesSvg plots validation metrics against the epoch', async () => {
    const svg = await metricCurvesSvg(
      [{ name: 'HR@10', points: [1, 2, 3].map((e) => ({ step: e, value: 0.05 * e })) }, { name: 'NDCG@10', points: [1, 2, 3].map((e) => ({ step: e, value: 0.03 * e })) }],
      { title: 'validation' },
    );
    expect(isSvg(svg)).toBe(true);
    for (const s of ['HR@10', 'NDCG@10', 'validation', 'epoch']) expect(svg).toContain(s);
  });

  it('metricsBarSvg groups bars per metric with one colour per model', async () => {
    const rows = [{ model: 'sft', metrics: { 'HR@10': 0.08, 'NDCG@10': 0.04 } }, { model: 'ilrec', metrics: { 'HR@10': 0.1, 'NDCG@10': 0.05 } }];
    const svg = await metricsBarSvg(rows, ['HR@10', 'NDCG@10'], 'test metrics');
    expect(isSvg(svg)).toBe(true);
    for (const s of ['sft', 'ilrec', 'HR@10', 'NDCG@10', 'test metrics']) expect(svg).toContain(s);
    expect((svg.match(/role-mark/g) ?? []).length).toBeGreaterThan(0);
    await expect(metricsBarSvg([{ model: 'sft', metrics: { 'HR@10': 0.1 } }], ['HR@10', 'NDCG@10'], 't')).rejects.toThrow('model "sft" has no value for metric "NDCG@10"');
    await expect(metricsBarSvg([{ model: 'sft', metrics: { 'HR@10': NaN } }], ['HR@10'], 't')).rejects.toThrow(/"sft".*HR@10.*NaN/);
  });

  it('writeSvg writes atomically, creating directories', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ilrec-plots-'));
    try {
      const file = path.join(dir, 'a', 'b', 'c.svg');
      writeSvg(file, '<svg></svg>');
      writeSvg(file, '<svg>2</svg>');
      expect(fs.readFileSync(file, 'utf8')).toBe('<svg>2</svg>');
      expect(fs.readdirSync(path.dirname(file))).toEqual(['c.svg']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('comparisonTable', () => {
  const rows: TableRow[] = [
    { model: 'sft', metrics: { 'HR@5': 0.05, 'NDCG@5': 0.03, 'HR@10': 0.08 }, extra: { 'train s': '120' } },
    { model: 'ilrec', metrics: { 'HR@5': 0.06, 'NDCG@5': 0.03, 'HR@10': 0.07 }, extra: { 'train s': '300' } },
    { model: 'a|b', metrics: { 'HR@5': 0.04, 'NDCG@5': 0.02 } },
  ];

  it('bolds the best value per metric (ties included), formats 4 decimals, keeps row order', () => {
    const t = comparisonTable(rows, ['HR@5', 'NDCG@5', 'HR@10']);
    expect(t.split('\n')).toEqual([
      '| model | HR@5 | NDCG@5 | HR@10 | train s |',
      '| --- | ---: | ---: | ---: | --- |',
      '| sft | 0.0500 | **0.0300** | **0.0800** | 120 |',
      '| ilrec | **0.0600** | **0.0300** | 0.0700 | 300 |',
      '| a\\|b | 0.0400 | 0.0200 | - |  |',
    ]);
  });

  it('bestBold: false prints no bold; baseline adds relative changes for the first metric pair', () => {
    const t = comparisonTable(rows, ['HR@5', 'NDCG@5', 'HR@10'], { bestBold: false, baseline: 'sft' });
    expect(t).not.toContain('**');
    expect(t.split('\n')).toEqual([
      '| model | HR@5 | NDCG@5 | HR@10 | train s | HR@5 vs sft | NDCG@5 vs sft |',
      '| --- | ---: | ---: | ---: | --- | ---: | ---: |',
      '| sft | 0.0500 | 0.0300 | 0.0800 | 120 | - | - |',
      '| ilrec | 0.0600 | 0.0300 | 0.0700 | 300 | +20.0% | +0.0% |',
      '| a\\|b | 0.0400 | 0.0200 | - |  | -20.0% | -33.3% |',
    ]);
  });

  it('omits the baseline column when the baseline model is absent', () => {
    expect(comparisonTable(rows, ['HR@5'], { baseline: 'nope' })).not.toContain(' vs ');
  });
});

describe('TrainProgress (non-TTY)', () => {
  function capture() {
    const chunks: string[] = [];
    return { stream: { isTTY: false, write: (s: string) => chunks.push(s) }, lines: () => chunks.join('').split('\n').filter(Boolean) };
  }

  it('prints one plain line at the first step, every logEvery steps and at the end, with its own ETA', () => {
    const out = capture();
    let ms = 0;
    const p = new TrainProgress({ total: 10, label: 'sft', logEvery: 4, stream: out.stream, now: () => ms });
    for (let step = 1; step <= 10; step++) {
      ms = step * 2000; // 2 s per step
      p.update(step, { losses: { loss: 1.23456789, ilrec: 0.000123456 }, tokensPerSec: 12345.6, lr: 2e-4 });
    }
    p.stop();
    expect(out.lines()).toEqual([
      '[sft] step 1/10 (10.0%) | loss=1.235 ilrec=0.0001235 | 12.3k tok/s | lr 2.00e-4 | elapsed 2.0s | ETA 18s',
      '[sft] step 4/10 (40.0%) | loss=1.235 ilrec=0.0001235 | 12.3k tok/s | lr 2.00e-4 | elapsed 8.0s | ETA 12s',
      '[sft] step 8/10 (80.0%) | loss=1.235 ilrec=0.0001235 | 12.3k tok/s | lr 2.00e-4 | elapsed 16s | ETA 4.0s',
      '[sft] step 10/10 (100.0%) | loss=1.235 ilrec=0.0001235 | 12.3k tok/s | lr 2.00e-4 | elapsed 20s | ETA 0.0s',
    ]);
  });

  it('defaults to about 20 lines per run, times a resumed run from its first step, and flushes the last step on stop', () => {
    const out = capture();
    let ms = 0;
    const p = new TrainProgress({ total: 1000, label: 'ilrec', stream: out.stream, now: () => ms, enabled: true /* no TTY: still plain */ });
    for (let step = 401; step <= 1000; step++) {
      ms = (step - 400) * 500;
      p.update(step, { losses: { loss: 2 }, tokensPerSec: 950 });
    }
    const lines = out.lines();
    expect(lines.length).toBe(1 + 12); // step 401, then every 50 from 450 to 1000
    expect(lines[0]).toBe('[ilrec] step 401/1000 (40.1%) | loss=2.000 | 950 tok/s | elapsed 0.5s | ETA 5m 00s');

    const out2 = capture();
    const q = new TrainProgress({ total: 100, label: 'x', logEvery: 10, stream: out2.stream, now: () => 0 });
    q.update(1, { losses: { loss: 1 }, tokensPerSec: 1 });
    q.update(7, { losses: { loss: 0.5 }, tokensPerSec: 1 });
    q.stop();
    q.stop();
    expect(out2.lines().map((l) => l.split(' | ')[0])).toEqual(['[x] step 1/100 (1.0%)', '[x] step 7/100 (7.0%)']);
  });

  it('formatDuration', () => {
    expect(formatDuration(0.42)).toBe('0.4s');
    expect(formatDuration(42)).toBe('42s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(2 * 3600 + 3 * 60 + 10)).toBe('2h 03m');
    expect(formatDuration(86400 + 4 * 3600)).toBe('1d 04h');
    expect(formatDuration(NaN)).toBe('--');
    expect(formatDuration(-1)).toBe('--');
  });
});
