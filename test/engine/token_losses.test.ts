// ILRec token-preference loss: the fused kernel's loss, terms and gradients against the float64
// reference on odd shapes (all switches), the reference's analytic gradients against finite
// differences of its frozen-selection form, fused vs composite twin, and the edge cases (empty and
// full negative sets, ties at the threshold, ignored rows, no intermediate layers, nothing counted);
// the same for the log-prob threshold, and what it changes on offset lens logits.
import { describe, expect, it } from 'vitest';
import { Rng, backward, device, noGrad, tensor, tidy } from '../../engine/index.js';
import * as L from '../../engine/ops/token_losses.js';
import * as Ref from '../../engine/ref/token_losses.js';
import { crossEntropy as refCrossEntropy } from '../../engine/ref/losses.js';
import { nd } from '../../engine/ref/nd.js';
import { checkOp, expectClose, useDevice } from '../helpers.js';

useDevice();

type Cfg = Partial<L.TokenPreferenceConfig>;

interface Shape {
  R: number;
  V: number;
  /** Intermediate layers; 0 = zI null. */
  K: number;
  VI: number;
  colOffset: number;
}

interface Data extends Shape {
  zL: Float32Array;
  zI: Float32Array | null;
  targets: number[];
  domain: number[];
  rewards: Float32Array | null;
}

const IGNORE = -100;

/** Random data: logits in ±range, per-row domains of random widths holding the target, every
 *  `ignoreEvery`-th row ignored, rewards with some −Infinity entries and one row without mass. */
function makeData(s: Shape, seed: number, opts: { rewards?: boolean; ignoreEvery?: number; range?: number } = {}): Data {
  const rng = new Rng(seed);
  const { R, V, K, VI, colOffset } = s;
  const range = opts.range ?? 2;
  const rnd = (n: number) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * range);
  const targets: number[] = [];
  const domain: number[] = [];
  for (let r = 0; r < R; r++) {
    const w = r % 3 === 0 ? VI : 1 + rng.int(VI);
    const lo = colOffset + rng.int(VI - w + 1);
    domain.push(lo, lo + w);
    targets.push(opts.ignoreEvery && r % opts.ignoreEvery === opts.ignoreEvery - 1 ? IGNORE : lo + rng.int(w));
  }
  let rewards: Float32Array | null = null;
  if (opts.rewards) {
    rewards = Float32Array.from({ length: R * VI }, () => (rng.next() < 0.2 ? -Infinity : -4 + 5 * rng.next()));
    if (R > 2) rewards.fill(-Infinity, VI, 2 * VI); // row 1: no CF mass anywhere
  }
  return { ...s, zL: rnd(R * V), zI: K ? rnd(K * R * VI) : null, targets, domain, rewards };
}

function refInputs(d: Data, zL = nd(d.zL, [d.R, d.V]), zI = d.zI ? nd(d.zI, [d.K, d.R, d.VI]) : null): Ref.TokenPreferenceInputs {
  return {
    zL, zI, colOffset: d.colOffset, targets: d.targets, domain: d.domain,
    rewards: d.rewards ? nd(d.rewards, [d.R, d.VI]) : null, ignoreIndex: IGNORE,
  };
}

interface Outcome {
  loss: number;
  terms: Float32Array;
  dzL: Float32Array | null;
  dzI: Float32Array | null;
}

type LossFn = typeof L.tokenPreferenceLoss;

/** Loss, terms and (with grads) u·d loss/d inputs of the engine op on `d`. */
async function evaluate(f: LossFn, d: Data, cfg: Cfg, opts: { gradL?: boolean; gradI?: boolean; u?: number; domain?: boolean } = {}): Promise<Outcome> {
  const gradL = opts.gradL ?? true;
  const gradI = (opts.gradI ?? true) && d.zI !== null;
  const zL = tensor(d.zL, [d.R, d.V], 'f32', { requiresGrad: gradL });
  const zI = d.zI ? tensor(d.zI, [d.K, d.R, d.VI], 'f32', { requiresGrad: gradI }) : null;
  const targets = tensor(d.targets, [d.R], 'i32');
  const domain = opts.domain === false ? undefined : tensor(d.domain, [d.R, 2], 'i32');
  const rewards = d.rewards ? tensor(d.rewards, [d.R, d.VI]) : null;
  const res = tidy(() => {
    const res = f({ zL, zI, colOffset: d.colOffset, targets, domain, rewards, ignoreIndex: IGNORE }, cfg);
    if (gradL || gradI) backward(res.loss, tensor([opts.u ?? 1], []));
    return res;
  });
  const out: Outcome = {
    loss: await res.loss.item(), terms: (await res.terms.toArray()) as Float32Array,
    dzL: zL.grad ? ((await zL.grad.toArray()) as Float32Array) : null,
    dzI: zI?.grad ? ((await zI.grad.toArray()) as Float32Array) : null,
  };
  for (const t of [res.loss, res.terms, zL, zL.grad, zI, zI?.grad, targets, domain, rewards]) t?.dispose();
  return out;
}

const TOL_F = { atol: 2e-5, rtol: 2e-4 };
const TOL_G = { atol: 2e-6, rtol: 1e-3 };

function compareWithRef(name: string, got: Outcome, want: Ref.TokenPreferenceResult, u = 1, tolF = TOL_F, tolG = TOL_G): void {
  expectClose([got.loss], want.loss.data, { ...tolF, name: `${name} loss` });
  expectClose(got.terms, want.terms.data, { ...tolF, name: `${name} terms` });
  if (got.dzL) expectClose(got.dzL, want.dzL.data.map((g) => g * u), { ...tolG, name: `${name} dzL` });
  if (got.dzI) expectClose(got.dzI, want.dzI!.data.map((g) => g * u), { ...tolG, name: `${name} dzI` });
}

// Switches exercised below, beyond the defaults: a strong penalty and CRR weight so their terms
// show in the gradients.
const STRONG: Cfg = { alpha: 0.7, margin: 1.5, lambdaCPD: 0.6, b: 0.3 };

describe('tokenPreferenceLoss vs float64 reference', () => {
  const cases: [string, Shape, Cfg, { rewards: boolean; gradL?: boolean; gradI?: boolean; domain?: boolean }][] = [
    ['R=1 V=7 K=1', { R: 1, V: 7, K: 1, VI: 7, colOffset: 0 }, { ...STRONG }, { rewards: true }],
    ['R=7 V=61 K=3 mean mult undetached, slice', { R: 7, V: 61, K: 3, VI: 50, colOffset: 5 }, { ...STRONG, aggregator: 'mean', cpoForm: 'multiplicative', detachTeacher: false }, { rewards: true }],
    ['R=37 V=61 K=4 no rewards', { R: 37, V: 61, K: 4, VI: 61, colOffset: 0 }, { ...STRONG, b: 0, phi: 0.5 }, { rewards: false }],
    ['R=7 V=1031 K=3 mult, slice', { R: 7, V: 1031, K: 3, VI: 300, colOffset: 17 }, { ...STRONG, cpoForm: 'multiplicative' }, { rewards: true }],
    ['R=37 V=1031 K=1 mean undetached', { R: 37, V: 1031, K: 1, VI: 1031, colOffset: 0 }, { ...STRONG, aggregator: 'mean', detachTeacher: false }, { rewards: true }],
    ['R=7 V=61 zI null', { R: 7, V: 61, K: 0, VI: 40, colOffset: 11 }, { ...STRONG }, { rewards: true }],
    ['R=37 V=7 K=4 defaults, whole slice', { R: 37, V: 7, K: 4, VI: 5, colOffset: 2 }, {}, { rewards: true, domain: false }],
    ['R=7 V=61 K=3 only zI needs grad', { R: 7, V: 61, K: 3, VI: 61, colOffset: 0 }, { ...STRONG, detachTeacher: false }, { rewards: true, gradL: false }],
    ['R=7 V=61 K=8 only zL needs grad', { R: 7, V: 61, K: 8, VI: 33, colOffset: 28 }, { ...STRONG, aggregator: 'mean' }, { rewards: true, gradI: false }],
  ];
  cases.forEach(([name, shape, cfg, o], i) =>
    it(name, async () => {
      const d = makeData(shape, 100 + i, { rewards: o.rewards, ignoreEvery: 5 });
      if (o.domain === false) for (let r = 0; r < d.R; r++) [d.domain[2 * r], d.domain[2 * r + 1]] = [d.colOffset, d.colOffset + d.VI];
      const u = 0.5 + i / 7;
      const got = await evaluate(L.tokenPreferenceLoss, d, cfg, { gradL: o.gradL, gradI: o.gradI, u, domain: o.domain });
      const want = Ref.tokenPreferenceLoss(refInputs(d), cfg);
      expect(want.terms.data[3]).toBeGreaterThan(0); // some negatives
      compareWithRef(name, got, want, u);
      expect(got.dzL === null).toBe(o.gradL === false);
      expect(got.dzI === null).toBe(o.gradI === false || shape.K === 0);
    }),
  );

  it('large, forward only (V = 150001, a slice of 600, several workgroups)', async () => {
    for (const [shape, seed] of [[{ R: 5, V: 150001, K: 3, VI: 600, colOffset: 100003 }, 7], [{ R: 300, V: 37, K: 2, VI: 37, colOffset: 0 }, 8]] as const) {
      const d = makeData(shape, seed, { rewards: true, ignoreEvery: 4 });
      const got = await evaluate(L.tokenPreferenceLoss, d, STRONG, { gradL: false, gradI: false });
      compareWithRef(`large ${shape.R}x${shape.V}`, got, Ref.tokenPreferenceLoss(refInputs(d), STRONG));
    }
  });

  const BOTH: Cfg[] = [STRONG, { ...STRONG, threshold: 'logprob', aggregator: 'mean' }];

  it('gives the same loss with and without the gradient pass', async () => {
    const d = makeData({ R: 9, V: 61, K: 3, VI: 61, colOffset: 0 }, 5, { rewards: true, ignoreEvery: 4 });
    for (const cfg of BOTH) {
      const a = await evaluate(L.tokenPreferenceLoss, d, cfg);
      const b = await evaluate((inp, c) => noGrad(() => L.tokenPreferenceLoss(inp, c)), d, cfg, { gradL: false, gradI: false });
      expect(a.loss).toBe(b.loss);
      expect(Array.from(a.terms)).toEqual(Array.from(b.terms));
    }
  });

  it('frees its temporaries and is bit-identical run to run', async () => {
    const d = makeData({ R: 9, V: 37, K: 3, VI: 30, colOffset: 4 }, 6, { rewards: true, ignoreEvery: 4 });
    const pool = device().pool;
    for (const cfg of BOTH)
      for (const f of [L.tokenPreferenceLoss, L.tokenPreferenceComposite]) {
        const before = pool.snapshot().inUseBytes;
        const a = await evaluate(f, d, cfg);
        expect(pool.snapshot().inUseBytes).toBe(before);
        if (f !== L.tokenPreferenceLoss) continue;
        const b = await evaluate(f, d, cfg);
        expect(b.loss).toBe(a.loss);
        expect(Array.from(b.dzL!)).toEqual(Array.from(a.dzL!));
        expect(Array.from(b.dzI!)).toEqual(Array.from(a.dzI!));
      }
  });

  it('rejects bad inputs', () => {
    tidy(() => {
      const zL = tensor(new Float32Array(12), [2, 6]);
      const t = tensor([1, 2], [2], 'i32');
      expect(() => L.tokenPreferenceLoss({ zL, zI: null, targets: t, rewards: null })).toThrow(/needs rewards/);
      expect(() => L.tokenPreferenceLoss({ zL, zI: null, targets: tensor([1, 6], [2], 'i32') }, { b: 0 })).toThrow(/outside \[0, 6\)/);
      expect(() => L.tokenPreferenceLoss({ zL, zI: null, targets: t, domain: tensor([0, 2, 3, 5], [2, 2], 'i32') }, { b: 0 })).toThrow(/contain the target 2/);
      expect(() => L.tokenPreferenceLoss({ zL, zI: tensor(new Float32Array(9 * 2 * 6), [9, 2, 6]), targets: t }, { b: 0 })).toThrow(/1\.\.8 are supported/);
      expect(() => L.tokenPreferenceLoss({ zL, zI: tensor(new Float32Array(2 * 2 * 5), [2, 2, 5]), colOffset: 2, targets: t }, { b: 0 })).toThrow(/do not fit/);
    });
  });
});

// With a sum over K layers, ℓ~ is about K log-probabilities: φ ≈ K keeps a useful share of negatives.
describe('log-prob threshold: fused vs float64 reference', () => {
  const LP: Cfg = { ...STRONG, threshold: 'logprob' };
  const cases: [string, Shape, Cfg, boolean][] = [
    ['R=1 V=7 K=2 mean', { R: 1, V: 7, K: 2, VI: 7, colOffset: 0 }, { ...LP, aggregator: 'mean' }, true],
    ['R=7 V=61 K=3 sum, slice', { R: 7, V: 61, K: 3, VI: 50, colOffset: 5 }, { ...LP, phi: 2.5 }, true],
    ['R=37 V=61 K=4 mean mult undetached, no rewards', { R: 37, V: 61, K: 4, VI: 61, colOffset: 0 }, { ...LP, aggregator: 'mean', cpoForm: 'multiplicative', detachTeacher: false, b: 0, phi: 0.8 }, false],
    ['R=7 V=1031 K=1 sum, slice', { R: 7, V: 1031, K: 1, VI: 300, colOffset: 17 }, { ...LP, phi: 1.2 }, true],
    ['R=13 V=61 zI null, slice', { R: 13, V: 61, K: 0, VI: 40, colOffset: 11 }, { ...LP }, true],
    ['R=300 V=37 K=2 mean (several workgroups)', { R: 300, V: 37, K: 2, VI: 37, colOffset: 0 }, { ...LP, aggregator: 'mean' }, true],
  ];
  cases.forEach(([name, shape, cfg, rewards], i) =>
    it(name, async () => {
      const d = makeData(shape, 200 + i, { rewards, ignoreEvery: 5 });
      const u = 0.7 + i / 5;
      const got = await evaluate(L.tokenPreferenceLoss, d, cfg, { u });
      const want = Ref.tokenPreferenceLoss(refInputs(d), cfg);
      expect(want.terms.data[3]).toBeGreaterThan(0); // some negatives
      expect(want.terms.data[3]).toBeLessThan(Math.max(...d.domain.map((x, j) => (j % 2 ? x - d.domain[j - 1] : 0))) - 1); // not all
      compareWithRef(name, got, want, u);
    }),
  );

  it('is blind to a row-wide offset of the lens logits, where the logit threshold takes all of D', async () => {
    // zI[k] = zL + c (c large, per row and layer), zL distinct and well apart: with φ = 1 'logit'
    // takes every domain token but the target; 'logprob' (mean, or K = 1) exactly those ranked above it.
    const V = 12;
    const R = 5;
    const rng = new Rng(61);
    const zL = new Float32Array(R * V);
    const targets: number[] = [];
    const domain: number[] = [];
    for (let r = 0; r < R; r++) {
      const perm = Array.from({ length: V }, (_, v) => v).sort(() => rng.next() - 0.5);
      for (let v = 0; v < V; v++) zL[r * V + v] = 0.37 * perm[v] - 2;
      const lo = r % 3;
      const hi = V - (r % 2);
      domain.push(lo, hi);
      targets.push(lo + ((r * 5 + 2) % (hi - lo)));
    }
    for (const K of [3, 1]) {
      const zI = new Float32Array(K * R * V);
      for (let k = 0; k < K; k++) for (let r = 0; r < R; r++) for (let v = 0; v < V; v++) zI[(k * R + r) * V + v] = zL[r * V + v] + 40 + 15 * r + 25 * k;
      const d: Data = { R, V, K, VI: V, colOffset: 0, zL, zI, targets, domain, rewards: null };
      const all: number[][] = [];
      const above: number[][] = [];
      for (let r = 0; r < R; r++) {
        const D = Array.from({ length: domain[2 * r + 1] - domain[2 * r] }, (_, i) => domain[2 * r] + i).filter((v) => v !== targets[r]);
        all.push(D);
        above.push(D.filter((v) => zL[r * V + v] > zL[r * V + targets[r]]));
      }
      const meanSize = (sets: number[][]) => sets.reduce((a, s) => a + s.length, 0) / R;
      expect(meanSize(above)).toBeGreaterThan(0);
      expect(meanSize(above)).toBeLessThan(meanSize(all));
      for (const [threshold, want] of [['logit', all], ['logprob', above]] as const) {
        const cfg: Cfg = { ...STRONG, b: 0, aggregator: 'mean', threshold };
        const ref = Ref.tokenPreferenceLoss(refInputs(d), cfg);
        for (let r = 0; r < R; r++) {
          const neg = Array.from({ length: V }, (_, v) => v).filter((v) => ref.frozen.neg[r * V + v] === 1);
          expect(neg, `K=${K} ${threshold} row ${r}`).toEqual(want[r]);
        }
        const got = await evaluate(L.tokenPreferenceLoss, d, cfg);
        expect(got.terms[3]).toBeCloseTo(meanSize(want), 6);
        compareWithRef(`offset K=${K} ${threshold}`, got, ref);
      }
    }
  });

  it('ties exactly at the threshold are negatives', async () => {
    // D = [2, 7) holds zL = 1, 3, 0, 3, 2 with the target the first 3 (column 3): log p^L is the
    // same at columns 3 and 5, bit for bit, when the lens layers copy zL (log Σ exp is then the
    // same number in every layer, and 3 − lse is exact since lse ≈ 3.94 is within a factor 2 of 3).
    const zL = [[0, 0, 1, 3, 0, 3, 2, 0], [0, 0, 3, 1, 3, 0, 2, 0]];
    const cfg: Cfg = { ...STRONG, threshold: 'logprob' };
    for (const [K, agg] of [[0, 'sum'], [1, 'sum'], [2, 'mean']] as const) {
      const d: Data = {
        R: 2, V: 8, K, VI: 8, colOffset: 0, zL: Float32Array.from(zL.flat()),
        zI: K ? Float32Array.from(Array.from({ length: K }, () => zL.flat()).flat()) : null,
        targets: [3, 4], domain: [2, 7, 2, 7], rewards: Float32Array.from([0, 0, -1, -1, 0, -2, -3, 0, 0, 0, -1, -2, 0, -1, -3, 0]),
      };
      const c = { ...cfg, aggregator: agg };
      const want = Ref.tokenPreferenceLoss(refInputs(d), c);
      // Row 0: the tie at column 5 only; row 1 (target column 4, zL 3): the tie at column 2 only.
      expect(Array.from(want.frozen.neg)).toEqual([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
      for (const f of [L.tokenPreferenceLoss, L.tokenPreferenceComposite]) {
        const got = await evaluate(f, d, c);
        expect(got.terms[3], `K=${K} ${f.name}`).toBe(1);
        compareWithRef(`ties K=${K} ${f.name}`, got, want);
      }
    }
  });

  it('rejects an unknown threshold', () => {
    tidy(() => {
      const zL = tensor(new Float32Array(12), [2, 6]);
      expect(() => L.tokenPreferenceLoss({ zL, zI: null, targets: tensor([1, 2], [2], 'i32') }, { b: 0, threshold: 'prob' as 'logit' })).toThrow(/threshold must be/);
    });
  });
});

describe('float64 reference: analytic gradients vs finite differences of the frozen selection', () => {
  const shape: Shape = { R: 4, V: 9, K: 2, VI: 6, colOffset: 2 };
  const cfgs: [string, Cfg][] = [
    ['additive, detached', { ...STRONG }],
    ['multiplicative, undetached, mean', { ...STRONG, cpoForm: 'multiplicative', detachTeacher: false, aggregator: 'mean' }],
    ['log-prob threshold, undetached', { ...STRONG, threshold: 'logprob', phi: 2, detachTeacher: false }],
  ];
  for (const [name, cfg] of cfgs)
    it(name, () => {
      const d = makeData(shape, 31, { rewards: true, ignoreEvery: 4 });
      d.rewards![1] = -Infinity;
      const base = Ref.tokenPreferenceLoss(refInputs(d), cfg);
      expect(base.frozen.mass.some((m) => m === 1)).toBe(true);
      const u = 0.83; // upstream gradient of the scalar loss
      const zL = nd(d.zL, [d.R, d.V]);
      const zI = nd(d.zI!, [d.K, d.R, d.VI]);
      const f = () => u * Ref.tokenPreferenceLoss(refInputs(d, zL, zI), cfg, base.frozen).loss.data[0];
      const eps = 1e-6;
      for (const [x, g, what] of [[zL, base.dzL, 'dzL'], [zI, base.dzI!, 'dzI']] as const) {
        const fd = new Float64Array(x.data.length);
        for (let k = 0; k < x.data.length; k++) {
          const v = x.data[k];
          x.data[k] = v + eps;
          const lp = f();
          x.data[k] = v - eps;
          const lm = f();
          x.data[k] = v;
          fd[k] = (lp - lm) / (2 * eps);
        }
        expectClose(g.data.map((e) => e * u), fd, { atol: 1e-7, rtol: 1e-5, name: `ref ${name} ${what}` });
      }
    });

  it('fused kernel vs finite differences (checkOp, frozen reference)', async () => {
    const d = makeData(shape, 32, { rewards: true, ignoreEvery: 3 });
    const cfg: Cfg = { ...STRONG, cpoForm: 'multiplicative', detachTeacher: false };
    const frozen = Ref.tokenPreferenceLoss(refInputs(d), cfg).frozen;
    const consts = () => ({ targets: tensor(d.targets, [d.R], 'i32'), domain: tensor(d.domain, [d.R, 2], 'i32'), rewards: tensor(d.rewards!, [d.R, d.VI]) });
    await checkOp({
      name: 'tokenPreference', shapes: [[d.R, d.V], [d.K, d.R, d.VI]], gen: (i) => (i === 0 ? d.zL : d.zI!),
      fn: ([zL, zI]) => L.tokenPreferenceLoss({ zL, zI, colOffset: d.colOffset, ...consts(), ignoreIndex: IGNORE }, cfg).loss,
      ref: ([zL, zI]) => Ref.tokenPreferenceLoss(refInputs(d, zL, zI), cfg, frozen).loss,
      grad: { atol: 2e-5, rtol: 1e-3 },
    });
  });
});

describe('fused vs composite', () => {
  const cases: [string, Shape, Cfg, boolean][] = [
    ['additive, detached, slice', { R: 7, V: 61, K: 3, VI: 40, colOffset: 13 }, { ...STRONG }, true],
    ['multiplicative, undetached, mean', { R: 13, V: 29, K: 4, VI: 29, colOffset: 0 }, { ...STRONG, cpoForm: 'multiplicative', detachTeacher: false, aggregator: 'mean' }, true],
    ['zI null, no rewards', { R: 5, V: 23, K: 0, VI: 20, colOffset: 3 }, { ...STRONG, b: 0 }, false],
    ['log-prob threshold, sum, slice', { R: 7, V: 61, K: 3, VI: 40, colOffset: 13 }, { ...STRONG, threshold: 'logprob', phi: 2.5 }, true],
    ['log-prob threshold, mean, multiplicative, undetached', { R: 13, V: 29, K: 2, VI: 29, colOffset: 0 }, { ...STRONG, threshold: 'logprob', aggregator: 'mean', cpoForm: 'multiplicative', detachTeacher: false }, true],
    ['log-prob threshold, zI null', { R: 5, V: 23, K: 0, VI: 20, colOffset: 3 }, { ...STRONG, threshold: 'logprob', phi: 1.3 }, true],
  ];
  for (const [name, shape, cfg, rewards] of cases)
    it(name, async () => {
      const d = makeData(shape, 41, { rewards, ignoreEvery: 4 });
      const a = await evaluate(L.tokenPreferenceLoss, d, cfg, { u: 1.3 });
      const b = await evaluate(L.tokenPreferenceComposite, d, cfg, { u: 1.3 });
      expectClose([a.loss], [b.loss], { ...TOL_F, name: `${name} loss` });
      expectClose(a.terms, b.terms, { ...TOL_F, name: `${name} terms` });
      expectClose(a.dzL!, b.dzL!, { ...TOL_G, name: `${name} dzL` });
      if (shape.K) expectClose(a.dzI!, b.dzI!, { ...TOL_G, name: `${name} dzI` });
    });
});

describe('edge cases', () => {
  /** One row's worth of hand-made data on V = 8, D = [2, 7), zI = [K, R, V]. */
  function handmade(zL: number[][], zI: number[][][], targets: number[], rewards: number[][] | null = null): Data {
    const R = zL.length;
    const V = zL[0].length;
    return {
      R, V, K: zI.length, VI: V, colOffset: 0, zL: Float32Array.from(zL.flat()), zI: zI.length ? Float32Array.from(zI.flat(2)) : null,
      targets, domain: targets.flatMap(() => [2, 7]), rewards: rewards ? Float32Array.from(rewards.flat()) : null,
    };
  }

  it('empty negative set: loss = cross-entropy + λ·CPD, no CRR', async () => {
    const zL = [[1, -2, 9, 0, 1, -1, 2, 3], [0, 1, -3, 2, 8, 1, 0, -1]];
    const zI = [[[3, 3, 1, 2, 1, 1, 2, 5], [1, 2, 0, 1, 3, 1, 1, 2]], [[3, 3, 1, 2, 1, 1, 2, 5], [1, 2, 0, 1, 3, 1, 1, 2]]];
    const d = handmade(zL, zI, [2, 4], zL.map(() => [0, 0, -1, -2, -3, -1, 0, 0]));
    const cfg = { ...STRONG };
    const got = await evaluate(L.tokenPreferenceLoss, d, cfg);
    const want = Ref.tokenPreferenceLoss(refInputs(d), cfg);
    compareWithRef('empty N', got, want);
    expect(Array.from(got.terms.slice(2))).toEqual([0, 0]);
    const ce = refCrossEntropy(nd(d.zL, [2, 8]), d.targets).data[0];
    expect(got.terms[0]).toBeCloseTo(ce, 5);
    expect(got.loss).toBeCloseTo(ce + cfg.lambdaCPD! * got.terms[1], 5);
  });

  it('every domain token a negative; the target the arg-max of z~', async () => {
    // Row 0: τ = φ·zL[y] = −4, z~ ≥ 0 on D: all four non-targets are negatives. Row 1: z~[y] is
    // the largest z~ yet only the tokens over the threshold are negatives.
    const zL = [[0, 0, 1, -4, 2, 0, 1, 0], [0, 0, 1, 2, 0.5, 1.5, -1, 0]];
    const zI = [[[0, 0, 1, 0, 2, 0, 3, 0], [0, 0, 1, 9, 0, 3, 1, 0]]];
    const d = handmade(zL, zI, [3, 3], [[0, 0, -1, -1, 0, -Infinity, -2, 0], [0, 0, -1, -1, -2, -0.5, -Infinity, 0]]);
    const got = await evaluate(L.tokenPreferenceLoss, d, STRONG);
    const want = Ref.tokenPreferenceLoss(refInputs(d), STRONG);
    compareWithRef('full N', got, want);
    // |N| = 4 (row 0) and 1 (row 1: z~ = 3 at column 5 ≥ 2; the rest below).
    expect(got.terms[3]).toBe(2.5);
  });

  it('ties exactly at the threshold are negatives', async () => {
    // Integer logits, sum of two layers: z~ equals τ = 3 exactly at columns 2 and 5.
    const zL = [[0, 0, 1, 3, 0, 2, 1, 0]];
    const zI = [[[0, 0, 1, 0, 0, 2, 0, 0]], [[0, 0, 2, 0, 1, 1, 2, 0]]];
    const d = handmade(zL, zI, [3], [[0, 0, -1, -1, 0, -2, -3, 0]]);
    const got = await evaluate(L.tokenPreferenceLoss, d, STRONG);
    compareWithRef('ties', got, Ref.tokenPreferenceLoss(refInputs(d), STRONG));
    expect(got.terms[3]).toBe(2);
    // Mean of two layers (exact halves): the same ties with φ = 0.5.
    const cfg: Cfg = { ...STRONG, aggregator: 'mean', phi: 0.5 };
    const got2 = await evaluate(L.tokenPreferenceLoss, d, cfg);
    compareWithRef('ties mean', got2, Ref.tokenPreferenceLoss(refInputs(d), cfg));
    expect(got2.terms[3]).toBe(2);
  });

  it('an ignored row has zero loss and gradient and is not counted', async () => {
    const d = makeData({ R: 3, V: 11, K: 2, VI: 11, colOffset: 0 }, 51, { rewards: true });
    d.targets[1] = IGNORE;
    const got = await evaluate(L.tokenPreferenceLoss, d, STRONG);
    compareWithRef('ignored', got, Ref.tokenPreferenceLoss(refInputs(d), STRONG));
    expect(Array.from(got.dzL!.slice(11, 22)).every((g) => g === 0)).toBe(true);
    for (let k = 0; k < 2; k++) expect(Array.from(got.dzI!.slice(k * 33 + 11, k * 33 + 22)).every((g) => g === 0)).toBe(true);
  });

  it('no row counts: loss, terms and gradients are 0', async () => {
    const d = makeData({ R: 4, V: 9, K: 2, VI: 9, colOffset: 0 }, 52, { rewards: true });
    d.targets.fill(IGNORE);
    for (const f of [L.tokenPreferenceLoss, L.tokenPreferenceComposite]) {
      const got = await evaluate(f, d, STRONG);
      expect(got.loss).toBe(0);
      expect(got.terms.every((t) => t === 0)).toBe(true);
      expect(got.dzL!.every((g) => g === 0) && got.dzI!.every((g) => g === 0)).toBe(true);
    }
  });

  it('α = 0, λ = 0, b = 0 is plain cross-entropy', async () => {
    const d = makeData({ R: 6, V: 13, K: 3, VI: 13, colOffset: 0 }, 53, { ignoreEvery: 4 });
    const got = await evaluate(L.tokenPreferenceLoss, d, { alpha: 0, lambdaCPD: 0, b: 0 });
    const ce = refCrossEntropy(nd(d.zL, [d.R, d.V]), d.targets).data[0];
    expect(got.loss).toBeCloseTo(ce, 5);
    expect(got.dzI!.every((g) => g === 0)).toBe(true);
  });
});
