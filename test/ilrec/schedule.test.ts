// Learning-rate schedule values at the points that matter: step 0, the end of warm-up, mid-decay,
// the last step, and the degenerate runs (1 step, warm-up as long as the run).
import { describe, expect, it } from 'vitest';
import { lrAt, warmupStepsOf, type LrSchedule } from '../../ilrec/train/schedule.js';

const LR = 2e-3;
const cosine = (over: Partial<LrSchedule> = {}): LrSchedule => ({ kind: 'cosine', warmupSteps: 10, minLrRatio: 0.1, ...over });

describe('lrAt', () => {
  it('warms up linearly from 0 (HF: lr·step/W)', () => {
    expect(lrAt(0, 110, LR, cosine())).toBe(0);
    expect(lrAt(5, 110, LR, cosine())).toBeCloseTo(LR / 2, 15);
    expect(lrAt(9, 110, LR, cosine())).toBeCloseTo(0.9 * LR, 15);
  });

  it('peaks at the end of warm-up, halfway between peak and floor mid-decay, near the floor at the last step', () => {
    const total = 110;
    expect(lrAt(10, total, LR, cosine())).toBeCloseTo(LR, 15);
    // p = 50/100 → cos term ½: lr·(0.1 + 0.9·0.5)
    expect(lrAt(60, total, LR, cosine())).toBeCloseTo(LR * 0.55, 15);
    // p = 99/100, one step short of the floor, as in HF
    const p = 99 / 100;
    expect(lrAt(109, total, LR, cosine())).toBeCloseTo(LR * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * p))), 15);
    expect(lrAt(109, total, LR, cosine())).toBeGreaterThan(0.1 * LR);
  });

  it('is monotone: up during warm-up, down after', () => {
    const lrs = Array.from({ length: 110 }, (_, i) => lrAt(i, 110, LR, cosine()));
    for (let i = 1; i <= 10; i++) expect(lrs[i]!).toBeGreaterThan(lrs[i - 1]!);
    for (let i = 11; i < 110; i++) expect(lrs[i]!).toBeLessThan(lrs[i - 1]!);
  });

  it('linear and constant kinds', () => {
    const lin: LrSchedule = { kind: 'linear', warmupSteps: 10, minLrRatio: 0 };
    expect(lrAt(10, 110, LR, lin)).toBeCloseTo(LR, 15);
    expect(lrAt(60, 110, LR, lin)).toBeCloseTo(LR / 2, 15);
    expect(lrAt(109, 110, LR, lin)).toBeCloseTo(LR / 100, 15);
    const cst: LrSchedule = { kind: 'constant', warmupSteps: 4, minLrRatio: 0 };
    expect(lrAt(2, 20, LR, cst)).toBeCloseTo(LR / 2, 15);
    expect(lrAt(4, 20, LR, cst)).toBe(LR);
    expect(lrAt(19, 20, LR, cst)).toBe(LR);
  });

  it('converts warmupRatio to steps with ceil, and warmupSteps wins over it', () => {
    expect(warmupStepsOf(100, { kind: 'cosine', warmupRatio: 0.05, minLrRatio: 0 })).toBe(5);
    expect(warmupStepsOf(101, { kind: 'cosine', warmupRatio: 0.05, minLrRatio: 0 })).toBe(6);
    expect(warmupStepsOf(100, { kind: 'cosine', warmupRatio: 0.05, warmupSteps: 3, minLrRatio: 0 })).toBe(3);
    expect(warmupStepsOf(100, { kind: 'cosine', minLrRatio: 0 })).toBe(0);
    const s: LrSchedule = { kind: 'cosine', warmupRatio: 0.05, minLrRatio: 0 };
    expect(lrAt(0, 101, LR, s)).toBe(0);
    expect(lrAt(6, 101, LR, s)).toBeCloseTo(LR, 15);
  });

  it('no warm-up starts at the peak', () => {
    expect(lrAt(0, 50, LR, cosine({ warmupSteps: 0 }))).toBe(LR);
  });

  it('a 1-step run trains at the peak rate even with a warm-up ratio', () => {
    expect(lrAt(0, 1, LR, { kind: 'cosine', warmupRatio: 0.05, minLrRatio: 0.1 })).toBe(LR);
    expect(lrAt(0, 1, LR, cosine({ warmupSteps: 0 }))).toBe(LR);
  });

  it('a warm-up at least as long as the run is capped at totalSteps − 1 (last step at the peak)', () => {
    for (const warmupSteps of [5, 8]) {
      const s = cosine({ warmupSteps });
      expect([0, 1, 2, 3, 4].map((i) => lrAt(i, 5, LR, s))).toEqual([0, LR / 4, LR / 2, (3 * LR) / 4, LR]);
    }
  });

  it('rejects bad inputs with the field named', () => {
    expect(() => lrAt(0, 0, LR, cosine())).toThrow(/totalSteps must be a positive integer/);
    expect(() => lrAt(0, 2.5, LR, cosine())).toThrow(/totalSteps/);
    expect(() => lrAt(10, 10, LR, cosine())).toThrow(/step must be an integer in \[0, 10\)/);
    expect(() => lrAt(-1, 10, LR, cosine())).toThrow(/step/);
    expect(() => lrAt(1.5, 10, LR, cosine())).toThrow(/step/);
    expect(() => lrAt(0, 10, NaN, cosine())).toThrow(/baseLr/);
    expect(() => lrAt(0, 10, -1, cosine())).toThrow(/baseLr/);
    expect(() => lrAt(0, 10, LR, cosine({ minLrRatio: 1.5 }))).toThrow(/minLrRatio/);
    expect(() => lrAt(0, 10, LR, cosine({ warmupSteps: -1 }))).toThrow(/warmupSteps/);
    expect(() => lrAt(0, 10, LR, { kind: 'cosine', warmupRatio: 2, minLrRatio: 0 })).toThrow(/warmupRatio/);
    expect(() => lrAt(0, 10, LR, { ...cosine(), kind: 'step' as LrSchedule['kind'] })).toThrow(/kind must be one of cosine, constant, linear/);
  });
});
