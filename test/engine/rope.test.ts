// RoPE: forward vs the float64 reference (angles rounded to f32 like HF) and backward vs finite
// differences, with default, shared, per-batch (left-padded) and large positions, offsets and
// Llama-3-scaled inv_freq.
import { describe, expect, it } from 'vitest';
import { backward, tensor, tidy, type Tensor } from '../../engine/index.js';
import { rope, ropeInvFreq, type RopeOptions } from '../../engine/ops/rope.js';
import { configRopeInvFreq } from '../../engine/io/hf.js';
import * as R from '../../engine/ref/rope.js';
import { nd } from '../../engine/ref/nd.js';
import { checkOp, expectClose, randData, useDevice } from '../helpers.js';

useDevice();

/** checkOp on x with positions passed through a closure (they get no gradient). */
async function check(name: string, shape: number[], opts: RopeOptions & { pos?: [number[], number[]] } = {}) {
  const posT = opts.pos ? tensor(opts.pos[0], opts.pos[1], 'i32') : undefined;
  const posN = opts.pos ? nd(opts.pos[0], opts.pos[1]) : undefined;
  try {
    await checkOp({
      name, shapes: [shape],
      fn: ([x]) => rope(x, { ...opts, positions: posT }),
      ref: ([x]) => R.rope(x, { ...opts, positions: posN }),
      fwd: { atol: 2e-6, rtol: 1e-5 },
    });
  } finally {
    posT?.dispose();
  }
}

describe('rope vs reference', () => {
  it('[1,1,1,2]', () => check('tiny', [1, 1, 1, 2]));
  it('[1,2,3,4]', () => check('small', [1, 2, 3, 4]));
  it('[2,3,5,8] theta 500000', () => check('batched', [2, 3, 5, 8], { theta: 500000 }));
  it('[3,1,7,6] offset 13', () => check('offset', [3, 1, 7, 6], { offset: 13 }));
  it('positions [T]', () => check('pos[T]', [2, 2, 5, 6], { pos: [[4, 0, 9, 2, 100], [5]] }));
  it('positions [B, T], left padded', () =>
    check('pos[B,T]', [3, 2, 4, 10], { pos: [[1, 1, 0, 1, 0, 1, 2, 3, 1, 0, 1, 2], [3, 4]] }));
  it('positions [1, T] shared by the batch', () => check('pos[1,T]', [2, 1, 3, 4], { pos: [[7, 8, 9], [1, 3]] }));
  it('attention scaling', () => check('scaling', [1, 2, 3, 4], { scaling: 1.25 }));
  it('llama-3 scaled inv_freq', () => {
    const invFreq = configRopeInvFreq({
      head_dim: 16, rope_theta: 500000,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    });
    return check('llama3', [2, 2, 3, 16], { invFreq, offset: 500 });
  });
});

describe('angles at large positions', () => {
  it('positions up to 8191, hs 128, theta 500000: matches f32-angle reference', async () => {
    const [B, NH, T, hs] = [2, 3, 37, 128];
    const pos = Int32Array.from({ length: B * T }, (_, k) => (k < T ? 8191 - k * 211 : k * 97 % 8192));
    const xd = randData(B * NH * T * hs, 3);
    const x = tensor(xd, [B, NH, T, hs]);
    const p = tensor(pos, [B, T], 'i32');
    const y = tidy(() => rope(x, { positions: p, theta: 500000 }));
    const want = R.rope(nd(xd, [B, NH, T, hs]), { positions: nd(pos, [B, T]), theta: 500000 });
    // |x| ≤ 1: a few f32 ulps of sin/cos. (Hardware sin units that range-reduce in f32 are off by
    // ~ulp(angle) ≈ 5e-4 at 8k; the kernel reduces the argument itself, see rope.wgsl.)
    expectClose(await y.toArray(), want.data, { atol: 1e-6, rtol: 0, name: 'rope@8k' });
    for (const t of [x, p, y]) t.dispose();
  });
  it('default positions on a larger tensor [2, 5, 67, 64]', async () => {
    const shape = [2, 5, 67, 64];
    const n = shape.reduce((a, b) => a * b, 1);
    const xd = randData(n, 4);
    const x = tensor(xd, shape);
    const y = tidy(() => rope(x, { offset: 4000 }));
    expectClose(await y.toArray(), R.rope(nd(xd, shape), { offset: 4000 }).data, { atol: 1e-6, rtol: 0 });
    x.dispose();
    y.dispose();
  });
});

describe('inverse and errors', () => {
  it('backward of a round trip is the identity', async () => {
    const shape = [2, 3, 5, 8];
    const x = tensor(randData(240, 8), shape, 'f32', { requiresGrad: true });
    const g = tensor(randData(240, 9), shape);
    tidy(() => backward(rope(x, { offset: 3000 }), g));
    const dx = tensor(await x.grad!.toArray(), shape);
    // rope(dx) = R(θ)·R(−θ)·g = g.
    const back = tidy(() => rope(dx, { offset: 3000 }));
    expectClose(await back.toArray(), await g.toArray(), { atol: 1e-6, rtol: 0 });
    for (const t of [x.grad!, x, g, dx, back]) t.dispose();
  });
  it('rejects bad shapes', () => {
    const ts: Tensor[] = [tensor(randData(6, 1), [1, 1, 2, 3]), tensor(randData(8, 1), [1, 1, 2, 4]), tensor([0, 1, 2], [3], 'i32')];
    expect(() => rope(ts[0])).toThrow(/even/);
    expect(() => rope(ts[1], { positions: ts[2] })).toThrow(/positions \[3\]/);
    expect(() => rope(ts[1], { invFreq: new Float32Array(3) })).toThrow(/invFreq/);
    for (const t of ts) t.dispose();
  });
  it('ropeInvFreq matches the reference', () => {
    expect(Array.from(ropeInvFreq(64, 500000))).toEqual(Array.from(R.ropeInvFreq(64, 500000)));
  });
});
