// Throughput of the row kernels (softmax, log-softmax, fused cross-entropy) on [256 × 8192], plus
// workgroup-size variants of the softmax kernel and timings of embedding and top-k. GPU completion
// is awaited per run; median (and min) of several runs after warm-up. GB/s counts each kernel's
// compulsory traffic (e.g. log-softmax forward reads and writes the tensor once: 2·R·V·4 bytes).
//   XDG_RUNTIME_DIR=/tmp npx tsx bench/softmax-tune.ts [--reps N] [--rows R] [--v V]
import { initNode } from '../engine/node/index.js';
import {
  Tensor, backward, crossEntropy, device, embedding, f32bits, logSoftmax, noGrad, slice, softmax, tensor, tidy, topk,
} from '../engine/index.js';
import { threadsPerRow, rowGrid } from '../engine/ops/softmax.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const REPS = arg('reps', 10);
const WARMUP = 3;
const R = arg('rows', 256);
const V = arg('v', 8192);

function rand(n: number, seed: number, scale = 3): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * 2 * scale;
  }
  return a;
}

/** Median and min ms of `fn` (which records GPU work), each run awaited to completion. */
async function time(fn: () => void): Promise<{ med: number; min: number }> {
  const dev = device();
  for (let i = 0; i < WARMUP; i++) tidy(fn);
  await dev.sync();
  const ts: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    tidy(fn);
    await dev.sync();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return { med: ts[ts.length >> 1], min: ts[0] };
}

async function report(name: string, bytes: number, fn: () => void): Promise<void> {
  const { med, min } = await time(fn);
  const gbs = (ms: number) => (bytes / ms / 1e6).toFixed(2);
  console.log(`${name.padEnd(40)} ${med.toFixed(2).padStart(8)} ms  ${gbs(med).padStart(6)} GB/s (median)  ${gbs(min).padStart(6)} GB/s (best)`);
}

async function main(): Promise<void> {
  const dev = await initNode();
  console.log(`device: ${dev.description}; [${R} × ${V}], ${REPS} runs after ${WARMUP} warm-up\n`);
  const n = R * V;
  const x = tensor(rand(n, 1), [R, V]);
  const xg = tensor(rand(n, 1), [R, V], 'f32', { requiresGrad: true });
  const dy = tensor(rand(n, 2, 1), [R, V]);
  const y = Tensor.empty([R, V]);
  const targets = tensor(Array.from({ length: R }, (_, r) => (r * 7919) % V), [R], 'i32');
  const b2 = 2 * n * 4;
  const b3 = 3 * n * 4;

  console.log('engine ops');
  await report('copy baseline (slice of everything)', b2, () => void slice(x, [0, 0], [R, V]));
  await report('logSoftmax forward', b2, () => void logSoftmax(x));
  await report('softmax forward', b2, () => void softmax(x));
  await report('crossEntropy forward + dlogits', b2, () => void crossEntropy(xg, targets));
  await report('crossEntropy forward only (noGrad)', n * 4, () => void noGrad(() => crossEntropy(xg, targets)));
  // The leaf's gradient is dropped after each run so no accumulation kernel is timed.
  const dropGrad = () => {
    xg.grad?.dispose();
    xg.grad = null;
  };
  await report('logSoftmax forward + backward', b2 + b3, () => (backward(logSoftmax(xg), dy), dropGrad()));
  await report('crossEntropy forward + backward', b2 + b2, () => (backward(crossEntropy(xg, targets)), dropGrad()));

  // Kernel variants: direct dispatches of shaders/softmax.wgsl with other workgroup sizes.
  console.log('\nsoftmax.wgsl variants (WG = threads per workgroup = threads per row here)');
  const nc = Math.ceil(V / 4);
  const vec4 = V % 4 === 0;
  const params = [R, V, 0, f32bits(-Infinity)];
  for (const entry of ['fwd', 'bwd'] as const)
    for (const LOG of [1, 0])
      for (const wg of [32, 64, 128, 256]) {
        const tpr = Math.min(wg, threadsPerRow(nc, wg));
        const buffers: Record<number, GPUBuffer> = entry === 'fwd'
          ? { 11: x.buffer, [vec4 ? 13 : 3]: y.buffer }
          : { 11: x.buffer, 12: dy.buffer, [vec4 ? 13 : 3]: y.buffer };
        await report(`${entry} ${LOG ? 'log-softmax' : 'softmax'} WG=${wg} TPR=${tpr}`, entry === 'fwd' ? b2 : b3, () =>
          dev.dispatch({
            shader: 'softmax', entry: `${entry}${vec4 ? 4 : 1}`, constants: { WG: wg, TPR: tpr, VEC4: vec4 ? 1 : 0, LOG },
            buffers, params, workgroups: rowGrid(Math.ceil(R / (wg / tpr))),
          }));
      }

  console.log('\nembedding V=8192 C=512, B·T=2048; top-k');
  const [EV, EC, BT] = [8192, 512, 2048];
  const W = tensor(rand(EV * EC, 3, 0.1), [EV, EC], 'f32', { requiresGrad: true });
  const ids = tensor(Array.from({ length: BT }, (_, i) => (i * 2654435761) % EV), [4, BT / 4], 'i32');
  const dE = tensor(rand(BT * EC, 4), [4, BT / 4, EC]);
  await report('embedding forward', 2 * BT * EC * 4, () => void noGrad(() => embedding(W, ids)));
  await report('embedding forward + backward', 2 * BT * EC * 4 + (EV * EC + BT * EC) * 4, () => {
    backward(embedding(W, ids), dE);
    W.grad?.dispose();
    W.grad = null;
  });
  const beams = tensor(rand(8 * 32000, 5), [8, 32000]);
  await report('topk [8, 32000] k=64', 8 * 32000 * 4, () => void topk(beams, 64));
  await report('topk [8, 32000] k=4', 8 * 32000 * 4, () => void topk(beams, 4));
  dev.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
