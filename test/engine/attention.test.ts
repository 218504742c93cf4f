// Fused attention: forward vs the float64 reference (odd head sizes, GQA, causal / not, padding mask,
// qOffset, kvLength, both forward kernels), gradients vs finite differences, agreement with the
// composite twin (matmul + softmax) in value and gradient, determinism, and KV-cache decoding.
import { afterEach, describe, expect, it } from 'vitest';
import { backward, tensor, tidy, type Tensor } from '../../engine/index.js';
import { ATTENTION_TUNING, KVCache, attention, attentionComposite, type AttentionOptions } from '../../engine/ops/attention.js';
import * as R from '../../engine/ref/attention.js';
import { nd, type ND } from '../../engine/ref/nd.js';
import { checkOp, expectClose, randData, useDevice } from '../helpers.js';

useDevice();

const UNROLL_DEFAULT = ATTENTION_TUNING.unrollMaxHeadSize;
afterEach(() => {
  ATTENTION_TUNING.kernel = 'auto';
  ATTENTION_TUNING.unrollMaxHeadSize = UNROLL_DEFAULT;
});

interface Case {
  B: number;
  NH: number;
  NKV: number;
  T: number;
  hs: number;
  /** Key rows (default T). */
  Tk?: number;
}

function shapesOf(c: Case): number[][] {
  const Tk = c.Tk ?? c.T;
  return [[c.B, c.NH, c.T, c.hs], [c.B, c.NKV, Tk, c.hs], [c.B, c.NKV, Tk, c.hs]];
}

/** A mask as host data; check() uploads it inside the op's scope, so it is freed with it. */
interface Mask {
  data: Float32Array;
  shape: number[];
}

async function check(name: string, c: Case, o: Omit<AttentionOptions, 'mask'> & { mask?: Mask } = {}, grad = true): Promise<void> {
  const { mask, ...rest } = o;
  const refMask: ND | undefined = mask && nd(mask.data, mask.shape);
  await checkOp({
    name,
    shapes: shapesOf(c),
    range: [-1.5, 1.5],
    noGrad: !grad,
    fn: ([q, k, v]) => attention(q, k, v, { ...rest, mask: mask && tensor(mask.data, mask.shape) }),
    ref: ([q, k, v]) => R.attention(q, k, v, { ...rest, mask: refMask }),
    fwd: { atol: 2e-6, rtol: 1e-5 },
  });
}

/** Left padding: batch b's first pad[b] keys get -1e9, as [B, 1, 1, Tk]. A query whose admitted keys
 * are all padding gets, in f32, the plain average of their values (s − 1e9 rounds to −1e9), which
 * the float64 reference does not reproduce: the tests keep at least one admitted key per query. */
function leftPadding(pad: number[], Tk: number): Mask {
  const data = new Float32Array(pad.length * Tk);
  pad.forEach((p, b) => data.fill(-1e9, b * Tk, b * Tk + p));
  return { data, shape: [pad.length, 1, 1, Tk] };
}

/** -1e9 on the given keys of every batch, as [1, 1, 1, Tk] (key 0 stays, so causal rows keep one). */
function dropKeys(keys: number[], Tk: number): Mask {
  const data = new Float32Array(Tk);
  for (const j of keys) data[j] = -1e9;
  return { data, shape: [1, 1, 1, Tk] };
}

describe('attention vs float64 reference (with gradients)', () => {
  const small: Case = { B: 2, NH: 4, NKV: 2, T: 7, hs: 5 };
  const mqa: Case = { B: 1, NH: 3, NKV: 1, T: 13, hs: 12 };
  for (const causal of [true, false]) {
    it(`GQA B=2 NH=4 NKV=2 T=7 hs=5, causal=${causal}`, async () => {
      await check(`gqa-causal${causal}`, small, { causal });
    });
    it(`MQA B=1 NH=3 NKV=1 T=13 hs=12, causal=${causal}`, async () => {
      await check(`mqa-causal${causal}`, mqa, { causal });
    });
  }
  it('custom scale', async () => {
    await check('scale', { B: 1, NH: 2, NKV: 2, T: 5, hs: 8 }, { scale: 0.7 });
  });
  it('padding masks: left padding [B, 1, 1, Tk] (not causal), dropped keys [1, 1, 1, Tk] (causal)', async () => {
    await check('pad-left', small, { causal: false, mask: leftPadding([0, 3], 7) });
    await check('pad-drop', small, { mask: dropKeys([2, 5], 7) });
  });
  it('full additive mask [B, 1, T, Tk] and a broadcast one [T, Tk]', async () => {
    const c: Case = { B: 2, NH: 2, NKV: 1, T: 6, hs: 5 };
    await check('mask-full', c, { mask: { data: randData(2 * 6 * 6, 5, -2, 2), shape: [2, 1, 6, 6] } });
    await check('mask-2d', c, { causal: false, mask: { data: randData(6 * 6, 6, -2, 2), shape: [6, 6] } });
  });
  it('qOffset: T=3 queries against Tk=11 keys (default offset Tk - T, and 4), both kernels', async () => {
    const c: Case = { B: 2, NH: 2, NKV: 1, T: 3, hs: 8, Tk: 11 };
    for (const kernel of ['rows', 'split'] as const) {
      ATTENTION_TUNING.kernel = kernel;
      await check(`qoff-default-${kernel}`, c);
      await check(`qoff4-${kernel}`, c, { qOffset: 4 });
    }
    await check('qoff4-pad-split', c, { qOffset: 4, mask: leftPadding([0, 4], 11) });
  });
  it('kvLength < key rows: keys past it are ignored and get zero gradient', async () => {
    const c: Case = { B: 1, NH: 2, NKV: 1, T: 3, hs: 8, Tk: 9 };
    for (const kernel of ['rows', 'split'] as const) {
      ATTENTION_TUNING.kernel = kernel;
      await check(`kvlen-${kernel}`, c, { kvLength: 6 });
    }
  });
  it('T=37 with dropped keys (several rows per invocation, a partly filled last invocation)', async () => {
    await check('t37', { B: 1, NH: 2, NKV: 1, T: 37, hs: 8 }, { mask: dropKeys([3, 10, 33], 37) });
  });
  it('T=1 and Tk=1', async () => {
    await check('t1', { B: 3, NH: 2, NKV: 2, T: 1, hs: 8 });
  });
  it('rolled row loops (the large-head path) on small heads, with a mask', async () => {
    ATTENTION_TUNING.unrollMaxHeadSize = 0;
    await check('rolled-hs5', { B: 2, NH: 4, NKV: 2, T: 7, hs: 5 }, { mask: dropKeys([1, 4], 7) });
  });
});

describe('attention forward, larger and wider', () => {
  it('T=67 and T=300 hs=16 (several workgroups per head), causal and not', async () => {
    for (const T of [67, 300]) {
      const c: Case = { B: 1, NH: 2, NKV: 1, T, hs: 16 };
      await check(`t${T}-causal`, c, {}, false);
      await check(`t${T}-full`, c, { causal: false }, false);
    }
  });
  it('head sizes 8, 32, 64, 128', async () => {
    for (const hs of [8, 32, 64, 128]) await check(`hs${hs}`, { B: 1, NH: 2, NKV: 1, T: 9, hs }, {}, false);
  });
  it('split kernel: one query row against 300 keys, hs 8 and 128', async () => {
    for (const hs of [8, 128]) await check(`split-hs${hs}`, { B: 2, NH: 2, NKV: 1, T: 1, hs, Tk: 300 }, {}, false);
  });
});

/** Value and the gradients of Σ u·f(q, k, v) for q, k, v. */
async function valueAndGrads(f: (q: Tensor, k: Tensor, v: Tensor) => Tensor, datas: Float32Array[], shapes: number[][], u: Float32Array) {
  const xs = datas.map((d, i) => tensor(d, shapes[i], 'f32', { requiresGrad: true }));
  const y = tidy(() => {
    const y = f(xs[0], xs[1], xs[2]);
    backward(y, tensor(u, y.shape));
    return y;
  });
  const res = [await y.toArray(), ...(await Promise.all(xs.map((x) => x.grad!.toArray())))];
  y.dispose();
  for (const x of xs) {
    x.grad!.dispose();
    x.dispose();
  }
  return res;
}

describe('fused vs composite (matmul + softmax)', () => {
  const cases: [string, Case, AttentionOptions][] = [
    ['GQA causal T=150 hs=16 (several workgroups in every kernel)', { B: 2, NH: 4, NKV: 2, T: 150, hs: 16 }, {}],
    ['decoding rows T=3 Tk=40 hs=8', { B: 2, NH: 2, NKV: 1, T: 3, hs: 8, Tk: 40 }, {}],
  ];
  for (const [name, c, o] of cases)
    it(name, async () => {
      const shapes = shapesOf(c);
      const datas = shapes.map((s, i) => randData(s.reduce((a, b) => a * b, 1), 20 + i, -1.5, 1.5));
      const u = randData(c.B * c.NH * c.T * c.hs, 30);
      const fused = await valueAndGrads((q, k, v) => attention(q, k, v, o), datas, shapes, u);
      const comp = await valueAndGrads((q, k, v) => attentionComposite(q, k, v, o), datas, shapes, u);
      ['value', 'dq', 'dk', 'dv'].forEach((n, i) => expectClose(fused[i], comp[i], { atol: 1e-5, rtol: 1e-4, name: `${name} ${n}` }));
    });
  it('with a left-padding mask (causal: the first rows of batch 1 see only padding)', async () => {
    const c: Case = { B: 2, NH: 2, NKV: 1, T: 9, hs: 8 };
    const shapes = shapesOf(c);
    const datas = shapes.map((s, i) => randData(s.reduce((a, b) => a * b, 1), 40 + i, -1.5, 1.5));
    const u = randData(2 * 2 * 9 * 8, 50);
    const pad = leftPadding([0, 3], 9);
    const run = (f: typeof attention) => valueAndGrads((q, k, v) => f(q, k, v, { mask: tensor(pad.data, pad.shape) }), datas, shapes, u);
    const fused = await run(attention);
    const comp = await run(attentionComposite);
    ['value', 'dq', 'dk', 'dv'].forEach((n, i) => expectClose(fused[i], comp[i], { atol: 1e-5, rtol: 1e-4, name: `padded ${n}` }));
  });
});

describe('determinism', () => {
  it('backward is bit-identical run to run (GQA sums inside the kernel)', async () => {
    const c: Case = { B: 1, NH: 4, NKV: 1, T: 33, hs: 8 };
    const shapes = shapesOf(c);
    const datas = shapes.map((s, i) => randData(s.reduce((a, b) => a * b, 1), 60 + i));
    const u = randData(4 * 33 * 8, 70);
    const a = await valueAndGrads((q, k, v) => attention(q, k, v), datas, shapes, u);
    const b = await valueAndGrads((q, k, v) => attention(q, k, v), datas, shapes, u);
    for (let i = 0; i < 4; i++) expect(Array.from(b[i])).toEqual(Array.from(a[i]));
  });
});

describe('KV cache', () => {
  const B = 3;
  const NH = 4;
  const NKV = 2;
  const hs = 8;
  const N = 10;
  const qd = randData(B * NH * N * hs, 80);
  const kd = randData(B * NKV * N * hs, 81);
  const vd = randData(B * NKV * N * hs, 82);

  /** Positions [t0, t1) of x [B, H, N, hs] as host data [B, H, t1 - t0, hs]. */
  function rows(x: Float32Array, H: number, t0: number, t1: number): Float32Array {
    const out = new Float32Array(B * H * (t1 - t0) * hs);
    for (let bh = 0; bh < B * H; bh++) out.set(x.subarray((bh * N + t0) * hs, (bh * N + t1) * hs), bh * (t1 - t0) * hs);
    return out;
  }

  it('decoding step by step (a 4-token prompt, then one token at a time) matches full causal attention', async () => {
    const full = R.attention(nd(qd, [B, NH, N, hs]), nd(kd, [B, NKV, N, hs]), nd(vd, [B, NKV, N, hs])).data;
    const cache = new KVCache(B, NKV, N + 5, hs);
    try {
      const steps: [number, number][] = [[0, 4], ...Array.from({ length: N - 4 }, (_, i) => [4 + i, 5 + i] as [number, number])];
      for (const [t0, t1] of steps) {
        const y = tidy(() => {
          cache.append(tensor(rows(kd, NKV, t0, t1), [B, NKV, t1 - t0, hs]), tensor(rows(vd, NKV, t0, t1), [B, NKV, t1 - t0, hs]));
          return cache.attend(tensor(rows(qd, NH, t0, t1), [B, NH, t1 - t0, hs]));
        });
        expect(cache.length).toBe(t1);
        const got = await y.toArray();
        y.dispose();
        const want = new Float64Array(got.length);
        for (let bh = 0; bh < B * NH; bh++) want.set(full.subarray((bh * N + t0) * hs, (bh * N + t1) * hs), bh * (t1 - t0) * hs);
        expectClose(got, want, { atol: 2e-6, rtol: 1e-5, name: `decode step ${t0}..${t1}` });
      }
      const extra = tensor(new Float32Array(B * NKV * 6 * hs), [B, NKV, 6, hs]);
      expect(() => cache.append(extra, extra)).toThrow(/capacity/);
      extra.dispose();
    } finally {
      cache.dispose();
    }
  });

  for (const width of [8, 5])
    it(`reorder gathers sequences along the batch (hs=${width})`, async () => {
      const w = width;
      const L = 6;
      const kk = randData(B * NKV * L * w, 90);
      const vv = randData(B * NKV * L * w, 91);
      const cache = new KVCache(B, NKV, 9, w);
      try {
        tidy(() => cache.append(tensor(kk, [B, NKV, L, w]), tensor(vv, [B, NKV, L, w])));
        const beams = [2, 0, 0];
        tidy(() => cache.reorder(tensor(beams, [B], 'i32')));
        expect(cache.length).toBe(L);
        const [gk, gv] = [await cache.k.toArray(), await cache.v.toArray()];
        const per = NKV * L * w;
        for (let b = 0; b < B; b++)
          for (let h = 0; h < NKV; h++) {
            const at = (b * NKV + h) * 9 * w;
            const from = beams[b] * per + h * L * w;
            expect(Array.from(gk.subarray(at, at + L * w))).toEqual(Array.from(kk.subarray(from, from + L * w)));
            expect(Array.from(gv.subarray(at, at + L * w))).toEqual(Array.from(vv.subarray(from, from + L * w)));
          }
        // Attention over the reordered cache equals attention over the reordered keys.
        const q = randData(B * NH * 1 * w, 92);
        const y = tidy(() => cache.attend(tensor(q, [B, NH, 1, w])));
        const got = await y.toArray();
        y.dispose();
        const gather = (x: Float32Array) => Float32Array.from({ length: B * per }, (_, i) => x[beams[Math.floor(i / per)] * per + (i % per)]);
        const want = R.attention(nd(q, [B, NH, 1, w]), nd(gather(kk), [B, NKV, L, w]), nd(gather(vv), [B, NKV, L, w])).data;
        expectClose(got, want, { atol: 2e-6, rtol: 1e-5, name: 'attention after reorder' });
        const bad = tensor([0, 3, 1], [B], 'i32');
        expect(() => cache.reorder(bad)).toThrow(/beam index 3/);
        bad.dispose();
      } finally {
        cache.dispose();
      }
    });

  for (const width of [8, 5])
    it(`reorder from a shared prefix copies only the positions after it (hs=${width})`, async () => {
      const w = width;
      const [L, from, cap] = [7, 3, 10];
      const kk = randData(B * NKV * L * w, 93);
      const vv = randData(B * NKV * L * w, 94);
      const cache = new KVCache(B, NKV, cap, w);
      try {
        tidy(() => cache.append(tensor(kk, [B, NKV, L, w]), tensor(vv, [B, NKV, L, w])));
        const beams = [1, 2, 1];
        tidy(() => cache.reorder(tensor(beams, [B], 'i32'), from));
        expect(cache.length).toBe(L);
        const [gk, gv] = [await cache.k.toArray(), await cache.v.toArray()];
        // Row b keeps its own positions [0, from) and takes [from, L) from row beams[b].
        const want = (x: Float32Array, b: number, h: number, t: number) => x[(((t < from ? b : beams[b]) * NKV + h) * L + t) * w];
        const bad: string[] = [];
        for (let b = 0; b < B; b++)
          for (let h = 0; h < NKV; h++)
            for (let t = 0; t < L; t++) {
              const at = ((b * NKV + h) * cap + t) * w;
              if (gk[at] !== want(kk, b, h, t) || gv[at] !== want(vv, b, h, t)) bad.push(`b${b} h${h} t${t}`);
            }
        if (bad.length) console.log(`reorder from ${from}: first mismatches ${bad.slice(0, 5).join(', ')}`);
        expect(bad).toEqual([]);
        const idx = tensor([0, 0, 0], [B], 'i32');
        expect(() => cache.reorder(idx, L + 1)).toThrow(/from 8 outside \[0, 7\]/);
        cache.reorder(idx, L); // nothing after the prefix: a no-op
        expect(Array.from(await cache.k.toArray())).toEqual(Array.from(gk));
        idx.dispose();
      } finally {
        cache.dispose();
      }
    });
});

describe('shared-prompt decoding (beam search: a prompt read once for its beams)', () => {
  for (const hs of [8, 5])
    it(`matches attention over each row's own cache: GQA, padding mask, prompt + generated keys (hs=${hs})`, async () => {
      // N prompts × K beams; rows of a prompt share positions [0, P) and differ after it.
      const [N, K, NH, NKV, P, L, cap] = [2, 3, 4, 2, 7, 10, 12];
      const B = N * K;
      const kk = randData(B * NKV * L * hs, 101);
      const vv = randData(B * NKV * L * hs, 102);
      for (let b = 0; b < B; b++) {
        const src = b - (b % K); // the prompt's first row
        for (let h = 0; h < NKV; h++)
          for (let t = 0; t < P; t++)
            for (let e = 0; e < hs; e++) {
              const to = ((b * NKV + h) * L + t) * hs + e;
              const from = ((src * NKV + h) * L + t) * hs + e;
              kk[to] = kk[from];
              vv[to] = vv[from];
            }
      }
      // Prompt 1 is left-padded by 2 positions (the same for its beams).
      const maskData = Float32Array.from({ length: B * L }, (_, i) => (Math.floor(i / L) >= K && i % L < 2 ? -1e30 : 0));
      const q = randData(B * NH * hs, 103);
      const cache = new KVCache(B, NKV, cap, hs);
      try {
        tidy(() => cache.append(tensor(kk, [B, NKV, L, hs]), tensor(vv, [B, NKV, L, hs])));
        const want = R.attention(nd(q, [B, NH, 1, hs]), nd(kk, [B, NKV, L, hs]), nd(vv, [B, NKV, L, hs]), { mask: nd(maskData, [B, 1, 1, L]) }).data;
        const run = () => tidy(() => cache.attend(tensor(q, [B, NH, 1, hs]), { mask: tensor(maskData, [B, 1, 1, L]) }));
        const plain = run();
        cache.sharePrefix(K, P);
        const shared = run();
        const [a, s] = [await plain.toArray(), await shared.toArray()];
        plain.dispose();
        shared.dispose();
        expectClose(a, want, { atol: 2e-6, rtol: 1e-5, name: 'per-row attention' });
        expectClose(s, want, { atol: 2e-6, rtol: 1e-5, name: 'shared-prompt attention' });
        // Reordering from inside the prompt withdraws the promise; from its end keeps it.
        const idx = tensor([2, 0, 1, 5, 3, 4], [B], 'i32');
        cache.reorder(idx, P);
        expect(cache.shared).toEqual({ group: K, length: P });
        cache.reorder(idx, P - 1);
        expect(cache.shared).toBeNull();
        idx.dispose();
        expect(() => cache.sharePrefix(4, P)).toThrow(/group 4 does not divide the 6 rows/);
        expect(() => cache.sharePrefix(K, L + 1)).toThrow(/length 11 outside \[0, 10\]/);
      } finally {
        cache.dispose();
      }
    });
});
