// Attention timing: fused kernels vs the composite twin (matmul + softmax), forward and
// forward+backward, median of several runs after warm-up with GPU completion awaited.
//   XDG_RUNTIME_DIR=/tmp npx tsx bench/attention-tune.ts [--reps N] [--T 128,512] [--hs 32] [--nh 4] [--nkv 4]
//     [--decode]        also time one decoding step: 16 beams × T cached keys, one new query row
//     [--wgsl FILE]     run a variant of shaders/attention.wgsl (exploration)
//     [--set k=v,...]   override ATTENTION_TUNING fields, e.g. --set rowsPerGroup=64
//     [--per-kernel]    also time fused fwd + bwd_dq alone and fwd + bwd_dkv alone
import { readFileSync } from 'node:fs';
import { initNode } from '../engine/node/index.js';
import { backward, device, tensor, tidy, type Tensor } from '../engine/index.js';
import { ATTENTION_TUNING, attention, attentionComposite } from '../engine/ops/attention.js';
import { SHADERS } from '../engine/shaders.gen.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const REPS = Number(arg('reps') ?? 5);
const WARMUP = 2;
const Ts = (arg('T') ?? '128,512').split(',').map(Number);
const hs = Number(arg('hs') ?? 32);
const NH = Number(arg('nh') ?? 4);
const NKV = Number(arg('nkv') ?? NH);
const B = 1;

function randn(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32) * 2 - 1;
  }
  return a;
}

/** Median wall time and median process CPU time (ms; lavapipe runs kernels on this process's
 * threads, so CPU time is the steadier number when other work shares the cores) of fn, each run
 * ending with the GPU idle. */
async function time(fn: () => void): Promise<string> {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < WARMUP + REPS; r++) {
    await device().sync();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    fn();
    await device().sync();
    const c = process.cpuUsage(c0);
    if (r >= WARMUP) {
      wall.push(performance.now() - t0);
      cpu.push((c.user + c.system) / 1000);
    }
  }
  const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return `${med(wall).toFixed(2)} (cpu ${med(cpu).toFixed(1)}, min ${Math.min(...wall).toFixed(2)})`;
}

async function main() {
  const dev = await initNode();
  const wgsl = arg('wgsl');
  if (wgsl) SHADERS.attention = readFileSync(wgsl, 'utf8');
  for (const kv of (arg('set') ?? '').split(',').filter(Boolean)) {
    const [k, v] = kv.split('=');
    (ATTENTION_TUNING as Record<string, unknown>)[k] = Number.isNaN(Number(v)) ? v : Number(v);
  }
  console.log(`device: ${dev.description}`);
  console.log(`B=${B} NH=${NH} NKV=${NKV} hs=${hs}, causal; median of ${REPS} after ${WARMUP} warm-up runs: wall ms (median process CPU ms, min wall ms)`);
  const impls: [string, typeof attention][] = [['fused', attention], ['composite', attentionComposite]];
  for (const T of Ts) {
    const q = tensor(randn(B * NH * T * hs, 1), [B, NH, T, hs], 'f32', { requiresGrad: true });
    const k = tensor(randn(B * NKV * T * hs, 2), [B, NKV, T, hs], 'f32', { requiresGrad: true });
    const v = tensor(randn(B * NKV * T * hs, 3), [B, NKV, T, hs], 'f32', { requiresGrad: true });
    const u = tensor(randn(B * NH * T * hs, 4), [B, NH, T, hs]);
    const row: string[] = [];
    for (const [name, f] of impls) {
      try {
        const fwd = await time(() => tidy(() => void f(q, k, v)));
        const fb = await time(() => {
          tidy(() => backward(f(q, k, v), u));
          for (const t of [q, k, v]) {
            t.grad?.dispose();
            t.grad = null;
          }
        });
        row.push(`${name}: fwd ${fwd}  fwd+bwd ${fb}`);
      } catch (e) {
        row.push(`${name}: unavailable (${(e as Error).message.split('\n')[0]})`);
      }
    }
    console.log(`T=${String(T).padEnd(4)} ${row.join('   |   ')}`);
    if (process.argv.includes('--per-kernel')) {
      // Backward kernels apart: gradients for q only (bwd_dq), or for k and v only (D + bwd_dkv).
      for (const [name, want] of [['fwd+bwd_dq', [q]], ['fwd+bwd_dkv', [k, v]]] as const) {
        for (const t of [q, k, v]) t.requiresGrad = (want as readonly Tensor[]).includes(t);
        const ms = await time(() => {
          tidy(() => backward(attention(q, k, v), u));
          for (const t of want) {
            t.grad?.dispose();
            t.grad = null;
          }
        });
        console.log(`    ${name}: ${ms}`);
      }
      for (const t of [q, k, v]) t.requiresGrad = true;
    }
    for (const t of [q, k, v, u] as Tensor[]) t.dispose();
  }
  if (process.argv.includes('--decode')) {
    const beams = 16;
    for (const T of Ts) {
      const q = tensor(randn(beams * NH * hs, 5), [beams, NH, 1, hs]);
      const k = tensor(randn(beams * NKV * T * hs, 6), [beams, NKV, T, hs]);
      const v = tensor(randn(beams * NKV * T * hs, 7), [beams, NKV, T, hs]);
      const row: string[] = [];
      for (const kernel of ['split', 'rows'] as const) {
        ATTENTION_TUNING.kernel = kernel;
        row.push(`${kernel}: ${await time(() => tidy(() => void attention(q, k, v)))}`);
      }
      ATTENTION_TUNING.kernel = 'auto';
      try {
        row.push(`composite: ${await time(() => tidy(() => void attentionComposite(q, k, v)))}`);
      } catch (e) {
        row.push(`composite: unavailable (${(e as Error).message.split('\n')[0]})`);
      }
      console.log(`decode ${beams} beams × 1 query, Tk=${T}: ${row.join('  ')}`);
      for (const t of [q, k, v]) t.dispose();
    }
  }
  dev.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
