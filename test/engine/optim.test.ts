// AdamW and gradient clipping vs float64 references over several steps (weight decay, bias
// correction, groups, lr changes, folded clip scale), exact checkpoint resume, and no read-back.
import { describe, expect, it } from 'vitest';
import { device, keep, tensor, type Tensor } from '../../engine/index.js';
import { AdamW, clipGradNorm, gradNorm, type AdamWConfig } from '../../engine/optim.js';
import * as R from '../../engine/ref/optim.js';
import { nd, ndZeros, type ND } from '../../engine/ref/nd.js';
import { expectClose, randData, useDevice } from '../helpers.js';

useDevice();

const SHAPES = [[1], [7], [13, 17], [1001]];

function makeParams(seed: number): { params: Tensor[]; ref: ND[] } {
  const datas = SHAPES.map((s, i) => randData(s.reduce((a, b) => a * b, 1), seed + i));
  return {
    params: datas.map((d, i) => tensor(d, SHAPES[i], 'f32', { requiresGrad: true })),
    ref: datas.map((d, i) => nd(d, SHAPES[i])),
  };
}

/** Gradients for step k: deterministic, of varied magnitude (some tiny, to exercise eps). */
function gradData(k: number, i: number, n: number): Float32Array {
  const scale = [1, 1e-3, 10, 0.1][(k + i) % 4];
  return randData(n, 1000 * k + i, -scale, scale);
}

function setGrads(params: Tensor[], k: number, skip = -1): Float32Array[] {
  return params.map((p, i) => {
    const d = gradData(k, i, p.size);
    if (i !== skip) p.grad = keep(tensor(d, p.shape));
    return d;
  });
}

function disposeAll(ts: Tensor[]): void {
  for (const t of ts) {
    t.grad?.dispose();
    t.dispose();
  }
}

describe('AdamW vs float64 reference', () => {
  it('several steps: weight decay, bias correction, two groups, an lr change, a skipped parameter', async () => {
    const { params, ref } = makeParams(1);
    const base: AdamWConfig = { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 };
    const noDecay: Partial<AdamWConfig> = { weightDecay: 0, lr: 3e-2 };
    const opt = new AdamW([{ params: params.slice(0, 2), ...noDecay }, { params: params.slice(2) }], base);
    const cfgs = [0, 1, 2, 3].map((i) => ({ ...base, ...(i < 2 ? noDecay : {}) }));
    const m = ref.map((r) => ndZeros(r.shape));
    const v = ref.map((r) => ndZeros(r.shape));
    const steps = ref.map(() => 0);
    for (let k = 0; k < 7; k++) {
      if (k === 4) {
        opt.setLr(5e-3);
        for (const c of cfgs) c.lr = 5e-3;
      }
      const skip = k === 2 ? 1 : -1; // parameter 1 has no gradient at step 2: PyTorch skips it
      const grads = setGrads(params, k, skip);
      opt.step();
      opt.zeroGrad();
      grads.forEach((g, i) => {
        if (i === skip) return;
        R.adamwStep(ref[i], nd(g, ref[i].shape), m[i], v[i], ++steps[i], cfgs[i]);
      });
      for (let i = 0; i < params.length; i++)
        expectClose(await params[i].toArray(), ref[i].data, { atol: 1e-6, rtol: 1e-5, name: `step ${k} param ${i}` });
    }
    const st = await opt.state();
    expect(st.step).toEqual(steps);
    for (let i = 0; i < params.length; i++) {
      expectClose(st.m[i]!, m[i].data, { atol: 1e-7, rtol: 1e-5, name: `m${i}` });
      expectClose(st.v[i]!, v[i].data, { atol: 1e-9, rtol: 1e-5, name: `v${i}` });
    }
    opt.dispose();
    disposeAll(params);
  });

  it('PyTorch defaults', () => {
    const p = tensor([1], [1], 'f32', { requiresGrad: true });
    const opt = new AdamW([p]);
    expect(opt.groups[0]).toMatchObject({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 });
    expect(() => new AdamW([p, p])).toThrow(/twice/);
    p.dispose();
  });
});

describe('gradient norm clipping', () => {
  for (const [label, maxNorm] of [['clips', 0.5], ['does not clip', 1e4]] as const) {
    it(`${label} (maxNorm ${maxNorm})`, async () => {
      const { params } = makeParams(2);
      const grads = setGrads(params, 3);
      const refGrads = grads.map((g, i) => nd(g, SHAPES[i]));
      const norm = clipGradNorm(params, maxNorm);
      const want = R.clipGradNorm(refGrads, maxNorm);
      expectClose([await norm.item()], [want], { rtol: 1e-6, name: 'norm' });
      for (let i = 0; i < params.length; i++)
        expectClose(await params[i].grad!.toArray(), refGrads[i].data, { atol: 1e-7, rtol: 1e-5, name: `grad ${i}` });
      if (maxNorm > want) for (let i = 0; i < params.length; i++) expect(Array.from(await params[i].grad!.toArray())).toEqual(Array.from(grads[i]));
      norm.dispose();
      disposeAll(params);
    });
  }

  it('large gradients (many partial sums), bit-identical run to run', async () => {
    const big = [tensor(randData(300001, 5), [300001], 'f32', { requiresGrad: true }), tensor(randData(70000, 6), [700, 100], 'f32', { requiresGrad: true })];
    const gd = [randData(300001, 7), randData(70000, 8)];
    big.forEach((p, i) => (p.grad = keep(tensor(gd[i], p.shape))));
    const runs: number[] = [];
    for (let k = 0; k < 2; k++) {
      const { norm, scale } = gradNorm(big, 1);
      runs.push(await norm.item());
      const want = R.gradNorm(gd.map((g, i) => nd(g, big[i].shape)), 1);
      expectClose([runs[k], await scale.item()], [want.norm, want.scale], { rtol: 1e-5, name: 'norm, scale' });
      norm.dispose();
      scale.dispose();
    }
    expect(runs[1]).toBe(runs[0]);
    disposeAll(big);
  });

  it('no gradients: norm 0', async () => {
    const p = tensor([1, 2], [2], 'f32', { requiresGrad: true });
    const norm = clipGradNorm([p], 1);
    expect(await norm.item()).toBe(0);
    norm.dispose();
    p.dispose();
  });

  it('clip scale folded into AdamW equals clipping then stepping', async () => {
    const cfg: AdamWConfig = { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.05 };
    const a = makeParams(3);
    const b = makeParams(3);
    const optA = new AdamW(a.params, cfg);
    const optB = new AdamW(b.params, cfg);
    for (let k = 0; k < 3; k++) {
      setGrads(a.params, k);
      setGrads(b.params, k);
      clipGradNorm(a.params, 0.3).dispose();
      optA.step();
      const { norm, scale } = gradNorm(b.params, 0.3);
      optB.step({ gradScale: scale });
      norm.dispose();
      scale.dispose();
      optA.zeroGrad();
      optB.zeroGrad();
    }
    for (let i = 0; i < SHAPES.length; i++)
      expectClose(await b.params[i].toArray(), await a.params[i].toArray(), { atol: 1e-7, rtol: 1e-6, name: `param ${i}` });
    optA.dispose();
    optB.dispose();
    disposeAll([...a.params, ...b.params]);
  });
});

describe('checkpoint resume and hygiene', () => {
  it('state/loadState resumes bit-exactly', async () => {
    const cfg: Partial<AdamWConfig> = { lr: 1e-2, weightDecay: 0.1 };
    const a = makeParams(4);
    const optA = new AdamW(a.params, cfg);
    const stepA = (k: number) => {
      setGrads(a.params, k);
      clipGradNorm(a.params, 1).dispose();
      optA.step();
      optA.zeroGrad();
    };
    for (let k = 0; k < 3; k++) stepA(k);
    const saved = await optA.state();
    const savedParams = await Promise.all(a.params.map((p) => p.toArray()));
    for (let k = 3; k < 6; k++) stepA(k);

    const b = SHAPES.map((s, i) => tensor(savedParams[i], s, 'f32', { requiresGrad: true }));
    const optB = new AdamW(b, cfg);
    optB.loadState(saved);
    for (let k = 3; k < 6; k++) {
      setGrads(b, k);
      clipGradNorm(b, 1).dispose();
      optB.step();
      optB.zeroGrad();
    }
    for (let i = 0; i < SHAPES.length; i++) expect(Array.from(await b[i].toArray())).toEqual(Array.from(await a.params[i].toArray()));
    const [sa, sb] = [await optA.state(), await optB.state()];
    expect(sb.step).toEqual(sa.step);
    for (let i = 0; i < SHAPES.length; i++) {
      expect(Array.from(sb.m[i]!)).toEqual(Array.from(sa.m[i]!));
      expect(Array.from(sb.v[i]!)).toEqual(Array.from(sa.v[i]!));
    }
    expect(() => optB.loadState({ step: [1], m: [null], v: [null] })).toThrow(/parameters/);
    optA.dispose();
    optB.dispose();
    disposeAll([...a.params, ...b]);
  });

  it('a step reads nothing back and leaks nothing', async () => {
    const { params } = makeParams(5);
    const opt = new AdamW(params, {});
    const dev = device();
    const pool = dev.pool;
    const read = dev.read.bind(dev);
    let reads = 0;
    dev.read = (...args: Parameters<typeof read>) => {
      reads++;
      return read(...args);
    };
    let inUse = -1;
    try {
      for (let k = 0; k < 4; k++) {
        setGrads(params, k);
        clipGradNorm(params, 1).dispose();
        opt.step();
        opt.zeroGrad();
        if (k === 1) inUse = pool.snapshot().inUseBytes;
        if (k > 1) expect(pool.snapshot().inUseBytes).toBe(inUse);
      }
      await dev.sync();
    } finally {
      dev.read = read;
    }
    expect(reads).toBe(0);
    opt.dispose();
    disposeAll(params);
  });
});
