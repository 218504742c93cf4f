// Our engine behind the same timing interface as the peers (bench/peers), plus the plain float64
// JavaScript reference as a floor. Every timed repetition ends with the GPU's completion awaited.
import {
  add, backward, crossEntropy, device, logSoftmax, matmul, mean, relu, square, sub, tensor, tidy, type Tensor,
} from '../engine/index.js';
import { TINY_OP_CHAIN, TINY_OP_SIZE, randint, randn, timeReps } from './peers/common.js';
import type { Peer, PeerTiming, TimeOpts } from './peers/index.js';

/** Times `step` (recorded inside a tidy) followed by a full GPU sync. */
function timeGPU(step: () => unknown, opts: TimeOpts, perRep = 1): Promise<PeerTiming> {
  return timeReps(async () => {
    tidy(() => {
      step();
    });
    await device().sync();
  }, opts, perRep);
}

/** Creates inputs outside the timed region, times, then frees them. */
async function withInputs(make: () => Tensor[], body: (xs: Tensor[]) => Promise<PeerTiming>): Promise<PeerTiming> {
  const xs = make();
  try {
    return await body(xs);
  } finally {
    for (const x of xs) x.dispose();
  }
}

export const ours: Peer = {
  name: 'ours',
  async init() {
    return true;
  },
  matmul(M, K, N, opts) {
    return withInputs(() => [tensor(randn(M * K, 1), [M, K]), tensor(randn(K * N, 2), [K, N])], ([a, b]) =>
      timeGPU(() => matmul(a, b), opts));
  },
  logSoftmax(R, V, opts) {
    return withInputs(() => [tensor(randn(R * V, 3), [R, V])], ([x]) => timeGPU(() => logSoftmax(x), opts));
  },
  crossEntropy(R, V, opts) {
    // Loss and dloss/dlogits, as a training step needs them.
    return withInputs(() => [tensor(randn(R * V, 4), [R, V], 'f32', { requiresGrad: true }), tensor(randint(R, V, 5), [R], 'i32')], ([x, t]) =>
      timeGPU(() => {
        backward(crossEntropy(x, t));
        x.grad?.dispose();
        x.grad = null;
      }, opts));
  },
  tinyOp(opts) {
    return withInputs(() => [tensor(randn(TINY_OP_SIZE, 6), [TINY_OP_SIZE]), tensor(randn(TINY_OP_SIZE, 7), [TINY_OP_SIZE])], ([a, b]) =>
      timeGPU(() => {
        let x = a;
        for (let i = 0; i < TINY_OP_CHAIN; i++) x = add(x, b);
      }, opts, TINY_OP_CHAIN));
  },
  mlpStep(B, D, H, opts) {
    const make = () => [
      tensor(randn(B * D, 8), [B, D]),
      tensor(randn(B * D, 9), [B, D]),
      tensor(randn(D * H, 10, 1 / Math.sqrt(D)), [D, H], 'f32', { requiresGrad: true }),
      tensor(randn(H, 11, 0.1), [H], 'f32', { requiresGrad: true }),
      tensor(randn(H * D, 12, 1 / Math.sqrt(H)), [H, D], 'f32', { requiresGrad: true }),
      tensor(randn(D, 13, 0.1), [D], 'f32', { requiresGrad: true }),
    ];
    return withInputs(make, ([x, y, W1, b1, W2, b2]) =>
      timeGPU(() => {
        const h = relu(add(matmul(x, W1), b1));
        const out = add(matmul(h, W2), b2);
        backward(mean(square(sub(out, y))));
        for (const p of [W1, b1, W2, b2]) {
          p.grad?.dispose();
          p.grad = null;
        }
      }, opts));
  },
  async dispose() {},
};

/** log Σ_j exp(x[o + j]) over one row of length V, max-subtracted. */
function rowLogSumExp(x: Float64Array, o: number, V: number): number {
  let m = -Infinity;
  for (let j = 0; j < V; j++) m = Math.max(m, x[o + j]);
  let s = 0;
  for (let j = 0; j < V; j++) s += Math.exp(x[o + j] - m);
  return m + Math.log(s);
}

/** The float64 reference in plain JavaScript: the floor any GPU engine should clear. */
export const jsF64: Peer = {
  name: 'js-f64',
  async init() {
    return true;
  },
  async matmul(M, K, N, opts) {
    const a = Float64Array.from(randn(M * K, 1));
    const b = Float64Array.from(randn(K * N, 2));
    const c = new Float64Array(M * N);
    return timeReps(async () => {
      // i-k-j order: the cache-friendly naive loop.
      c.fill(0);
      for (let i = 0; i < M; i++)
        for (let k = 0; k < K; k++) {
          const av = a[i * K + k];
          const row = k * N;
          const out = i * N;
          for (let j = 0; j < N; j++) c[out + j] += av * b[row + j];
        }
    }, opts);
  },
  async logSoftmax(R, V, opts) {
    const x = Float64Array.from(randn(R * V, 3));
    const y = new Float64Array(R * V);
    return timeReps(async () => {
      for (let r = 0; r < R; r++) {
        const o = r * V;
        const lse = rowLogSumExp(x, o, V);
        for (let j = 0; j < V; j++) y[o + j] = x[o + j] - lse;
      }
    }, opts);
  },
  async crossEntropy(R, V, opts) {
    const x = Float64Array.from(randn(R * V, 4));
    const t = randint(R, V, 5);
    const g = new Float64Array(R * V);
    return timeReps(async () => {
      let loss = 0;
      for (let r = 0; r < R; r++) {
        const o = r * V;
        const lse = rowLogSumExp(x, o, V);
        loss += lse - x[o + t[r]];
        for (let j = 0; j < V; j++) g[o + j] = Math.exp(x[o + j] - lse) / R;
        g[o + t[r]] -= 1 / R;
      }
      if (!Number.isFinite(loss)) throw new Error('js-f64 cross-entropy diverged');
    }, opts);
  },
  async dispose() {},
};
