// matmul and linear: forward vs the float64 reference on odd shapes (all four transpose
// combinations, broadcast batches, a multi-workgroup case), backward vs finite differences; the
// same on the subgroup variant of the kernel when the adapter offers one (lavapipe).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeGPU } from '../../engine/node/index.js';
import { device, init, setDevice, wantedLimits, type Device } from '../../engine/device.js';
import * as O from '../../engine/ops/matmul.js';
import * as R from '../../engine/ref/matmul.js';
import { SHADERS } from '../../engine/shaders.gen.js';
import { backward, tensor, tidy } from '../../engine/index.js';
import { checkOp, randData, useDevice, type Tol } from '../helpers.js';

const dev = useDevice();

/** f32 sums over K drift like √K; scale the absolute tolerance with it. */
const tolFor = (K: number): Tol => ({ atol: 2e-6 * Math.sqrt(K) + 1e-6, rtol: 1e-5 });

type Trans = { transA: boolean; transB: boolean };
const TRANS: Trans[] = [
  { transA: false, transB: false },
  { transA: false, transB: true },
  { transA: true, transB: false },
  { transA: true, transB: true },
];
const tag = (t: Trans) => `${t.transA ? 'Aᵀ' : 'A'}·${t.transB ? 'Bᵀ' : 'B'}`;

/** Operand shapes for C [.., M, N] = op(A) · op(B) with the given batch dims. */
function shapes(M: number, K: number, N: number, t: Trans, batchA: number[] = [], batchB: number[] = []): number[][] {
  return [[...batchA, ...(t.transA ? [K, M] : [M, K])], [...batchB, ...(t.transB ? [N, K] : [K, N])]];
}

// M, K, N mixes of 1, primes and sizes that are / are not multiples of 4 (vec4 and scalar paths).
const ODD: [number, number, number][] = [
  [1, 1, 1], [1, 7, 3], [3, 1, 7], [7, 13, 1], [13, 17, 33], [17, 67, 13], [33, 3, 67], [67, 33, 17],
  [8, 12, 16], [5, 8, 12], [12, 16, 7],
];

function suite(label: string): void {
  describe(`${label}: forward on odd shapes`, () => {
    for (const t of TRANS) {
      it(tag(t), async () => {
        for (const [M, K, N] of ODD) {
          await checkOp({
            name: `${tag(t)} ${M}x${K}x${N}`, shapes: shapes(M, K, N, t), noGrad: true, fwd: tolFor(K),
            fn: ([a, b]) => O.matmul(a, b, t), ref: ([a, b]) => R.matmul(a, b, t),
          });
        }
      });
    }
  });

  describe(`${label}: batched with broadcasting`, () => {
    const cases: [string, number[], number[], Trans][] = [
      ['[2,3,5,7]·[7,11] (b shared: batch folded into M)', [2, 3, 5, 7], [7, 11], TRANS[0]],
      ['[2,3,5,7]·[11,7]ᵀ', [2, 3, 5, 7], [11, 7], TRANS[1]],
      ['[3,1,5,7]·[1,4,7,6]', [3, 1, 5, 7], [1, 4, 7, 6], TRANS[0]],
      ['[3,1,7,5]ᵀ·[1,4,6,7]ᵀ', [3, 1, 7, 5], [1, 4, 6, 7], TRANS[3]],
      ['[5,7]·[3,7,6] (a shared)', [5, 7], [3, 7, 6], TRANS[0]],
      ['[2,7,5]ᵀ·[7,6] (transposed a, b shared)', [2, 7, 5], [7, 6], TRANS[2]],
    ];
    for (const [name, sa, sb, t] of cases) {
      it(name, async () => {
        await checkOp({
          name, shapes: [sa, sb], fwd: tolFor(7),
          fn: ([a, b]) => O.matmul(a, b, t), ref: ([a, b]) => R.matmul(a, b, t),
        });
      });
    }
  });

  describe(`${label}: gradients`, () => {
    for (const t of TRANS) {
      it(`${tag(t)} 5x6x7 and 4x8x12`, async () => {
        for (const [M, K, N] of [[5, 6, 7], [4, 8, 12]]) {
          await checkOp({
            name: `${tag(t)} grad ${M}x${K}x${N}`, shapes: shapes(M, K, N, t), fwd: tolFor(K),
            fn: ([a, b]) => O.matmul(a, b, t), ref: ([a, b]) => R.matmul(a, b, t),
          });
        }
      });
    }
    it('linear with bias, x [2,3,5] (fused epilogue; dw folds the batch)', async () => {
      await checkOp({
        name: 'linear', shapes: [[2, 3, 5], [4, 5], [4]], fwd: tolFor(5),
        fn: ([x, w, b]) => O.linear(x, w, b), ref: ([x, w, b]) => R.linear(x, w, b),
      });
    });
    it('linear without bias, 1-D x', async () => {
      await checkOp({
        name: 'linear-1d', shapes: [[6], [3, 6]], fwd: tolFor(6),
        fn: ([x, w]) => O.linear(x, w), ref: ([x, w]) => R.linear(x, w),
      });
    });
  });

  describe(`${label}: larger than one workgroup`, () => {
    for (const t of [TRANS[0], TRANS[3]]) {
      it(`129x257x300 ${tag(t)}`, async () => {
        await checkOp({
          name: `big ${tag(t)}`, shapes: shapes(129, 257, 300, t), noGrad: true, fwd: tolFor(257),
          fn: ([a, b]) => O.matmul(a, b, t), ref: ([a, b]) => R.matmul(a, b, t),
        });
      });
    }
    it('128x256x260 (vec4 paths, several column workgroups)', async () => {
      await checkOp({
        name: 'big-vec4', shapes: [[128, 256], [256, 260]], noGrad: true, fwd: tolFor(256),
        fn: ([a, b]) => O.matmul(a, b), ref: ([a, b]) => R.matmul(a, b),
      });
    });
  });
}

describe('api', () => {
  it('rejects mismatched inner dims and 1-D operands with the shapes in the message', () => {
    tidy(() => {
      const a = tensor(randData(6, 1), [2, 3]);
      const b = tensor(randData(8, 2), [4, 2]);
      expect(() => O.matmul(a, b)).toThrow(/\[2,3\].*\[4,2\]/);
      expect(() => O.matmul(tensor([1, 2, 3]), b)).toThrow(/at least 2 dims/);
    });
  });
  it('empty dims: K = 0 gives zeros (plus bias), M = 0 an empty result', async () => {
    const [y, z] = tidy(() => [
      O.linear(tensor([], [3, 0]), tensor([], [2, 0]), tensor([1, 2], [2])),
      O.matmul(tensor([], [0, 4]), tensor(randData(8, 1), [4, 2])),
    ]);
    expect(Array.from(await y.toArray())).toEqual([1, 2, 1, 2, 1, 2]);
    expect(z.shape).toEqual([0, 2]);
    y.dispose();
    z.dispose();
  });
  it('backward reruns are bit-identical (deterministic)', async () => {
    const run = async () => {
      const a = tensor(randData(4 * 9 * 10, 3), [4, 9, 10], 'f32', { requiresGrad: true });
      const w = tensor(randData(10 * 11, 4), [10, 11], 'f32', { requiresGrad: true });
      tidy(() => backward(O.matmul(a, w), tensor(randData(4 * 9 * 11, 5), [4, 9, 11])));
      const out = [await a.grad!.toArray(), await w.grad!.toArray()];
      for (const t of [a, w]) {
        t.grad!.dispose();
        t.dispose();
      }
      return out;
    };
    const [x, y] = [await run(), await run()];
    expect(Array.from(x[0])).toEqual(Array.from(y[0]));
    expect(Array.from(x[1])).toEqual(Array.from(y[1]));
  });
});

suite('matmul.wgsl');

/**
 * The subgroup variant runs only on a CPU adapter with subgroups; the engine's default device
 * does not ask for the feature, so these tests make a second device that does.
 */
describe('subgroup variant', () => {
  let main: Device;
  let sg: Device | null = null;
  beforeAll(async () => {
    main = dev();
    const adapter = await nodeGPU().requestAdapter();
    const info = adapter?.info;
    if (!adapter || !adapter.features.has('subgroups') || info?.architecture !== 'software' || (info.subgroupMinSize ?? 0) < 8) return;
    const gpu = await adapter.requestDevice({ requiredLimits: wantedLimits(adapter), requiredFeatures: ['subgroups' as GPUFeatureName] });
    sg = await init(gpu);
    setDevice(main);
  });
  afterAll(() => {
    setDevice(main);
    sg?.destroy();
  });
  describe('on a device with subgroups', () => {
    beforeAll(() => {
      if (sg) setDevice(sg);
    });
    afterAll(() => setDevice(main));
    it('is the kernel in use, built from matmul.wgsl, and compiles cleanly', async () => {
      if (!sg) return;
      expect(device()).toBe(sg);
      const c = tidy(() => O.matmul(tensor(randData(6, 1), [2, 3]), tensor(randData(12, 2), [3, 4])));
      await c.toArray();
      c.dispose();
      const src = SHADERS.matmul_subgroups;
      expect(src).toMatch(/^enable subgroups;/);
      expect(src).not.toMatch(/^\/\/ <portable>/m);
      const module = sg.gpu.createShaderModule({ code: src });
      const msgs = (await module.getCompilationInfo()).messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      expect(msgs).toEqual([]);
    });
    suite('matmul (subgroups)');
  });
});
