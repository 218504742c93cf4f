// Standalone matmul tuning: times generated WGSL variants (and the engine's own matmul) on the
// benchmark shapes, GPU completion awaited, median of several runs after warm-up. Exploration only:
// the chosen configuration lives in shaders/matmul.wgsl.
//   XDG_RUNTIME_DIR=/tmp npx tsx bench/matmul-tune.ts [name-substring ...] [--reps N] [--wait sync|sleep]
//     [--shapes MxKxN,...] [--peers (TF.js WebGPU and WASM too)] [--emit variant (print its WGSL)]
import { nodeGPU } from '../engine/node/index.js';
import { init, setDevice, wantedLimits, type Device } from '../engine/device.js';
import { device, matmul, tensor, tidy, Tensor } from '../engine/index.js';
import { SHADERS } from '../engine/shaders.gen.js';
import { median, randn } from './peers/common.js';

interface Variant {
  name: string;
  /** Rows of C per invocation (all invocations of a workgroup share them when WY = 1). */
  TM: number;
  /** vec4 column groups per invocation (TN = 4·TN4 columns), spaced WX·4 apart. */
  TN4: number;
  WX: number;
  WY: number;
  transA?: boolean;
  transB?: boolean;
  /** Scalar loads (no vec4 along the contiguous dim) for A / B. */
  scalarA?: boolean;
  scalarB?: boolean;
  /** Each lane of an 8-wide subgroup loads one A row; rows reach all lanes by subgroupBroadcast. */
  sgA?: boolean;
  /** K blocks per loop iteration (loop-carried accumulators are written once per iteration). */
  KU?: number;
  /** Load each K step's B right before its FMAs (keeps LLVM from hoisting all products). */
  inter?: boolean;
  /** Sum a K block's products per accumulator in registers, then add once (fewer acc loads/stores). */
  dot?: boolean;
  /** K steps per block (a multiple of 4; default 4). */
  KB?: number;
}

/** One vec4 load covers 4 steps of K (or 4 rows/columns when the operand is stored transposed). */
const V = 4;
/** Subgroup width assumed by the sgA variants (lavapipe at 256-bit vectors). */
const SG = 8;

/**
 * One register-tiled kernel with the tile shape baked in as constants (for exploration).
 * K is consumed in blocks of KB steps; per block each invocation gets TM×KB A values and KB×TN
 * B values (vec4 loads along whichever dim is contiguous) and does TM·TN·KB multiply-adds as
 * vec4 operations over its 4 adjacent columns.
 */
function genWGSL(v: Variant): string {
  const { TM, TN4, WX, WY } = v;
  const KB = v.KB ?? 4;
  const ks = (from = 0, n = KB) => Array.from({ length: n }, (_, i) => from + i);
  const L: string[] = [];
  L.push(`${v.sgA ? 'enable subgroups;' : ''}
struct P { M: u32, K: u32, N: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@compute @workgroup_size(${WX}, ${WY})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>${v.sgA ? ', @builtin(subgroup_invocation_id) sl: u32' : ''}) {
  let M = p.M; let K = p.K; let N = p.N;
  let row0 = (wid.y * ${WY}u + lid.y) * ${TM}u;
  let col0 = wid.x * ${WX * 4 * TN4}u + lid.x * 4u;`);
  // Clamped row/col starts keep every load in bounds; stores are guarded instead.
  for (let i = 0; i < TM; i++) L.push(`  let r${i} = min(row0 + ${i}u, M - 1u);`);
  for (let j = 0; j < TN4; j++) for (let e = 0; e < 4; e++) L.push(`  let c${j}_${e} = min(col0 + ${j * WX * 4 + e}u, N - 1u);`);
  for (let i = 0; i < TM; i++) for (let j = 0; j < TN4; j++) L.push(`  var acc${i}_${j} = vec4<f32>(0.0);`);
  if (v.sgA) for (let q = 0; q < TM / SG; q++) L.push(`  let rl${q} = min(row0 + ${q * SG}u + sl, M - 1u);`);
  const kx = (k: string, kk: number, full: boolean) => (full ? `(${k} + ${kk}u)` : `min(${k} + ${kk}u, K - 1u)`);
  // A values a{i}_{kk}, kk < KB, for the block starting at k; loaded in chunks of V steps.
  const loadA = (k: string, full: boolean) => {
    for (let c0 = 0; c0 < KB; c0 += V) {
      const kc = c0 ? `${k} + ${c0}u` : k;
      if (v.sgA) {
        // Lane l loads row (row0 + 8q + l) for V K steps; row i reaches every lane by broadcast from lane i % 8.
        for (let q = 0; q < TM / SG; q++) {
          if (!v.transA && !v.scalarA && full) L.push(`    let al${q}_${c0} = a4[(rl${q} * K + ${kc}) / 4u];`);
          else {
            const el = (kk: number) => (v.transA ? `a[(${kx(k, kk, full)}) * M + rl${q}]` : `a[rl${q} * K + ${kx(k, kk, full)}]`);
            L.push(`    let al${q}_${c0} = vec4<f32>(${ks(c0, V).map(el).join(', ')});`);
          }
        }
        for (let i = 0; i < TM; i++) L.push(`    let ab${i}_${c0} = subgroupBroadcast(al${Math.floor(i / SG)}_${c0}, ${i % SG}u);`);
        for (let i = 0; i < TM; i++) for (const kk of ks(c0, V)) L.push(`    let a${i}_${kk} = ab${i}_${c0}[${kk - c0}];`);
      } else if (!v.transA && !v.scalarA && full) {
        for (let i = 0; i < TM; i++) L.push(`    let av${i}_${c0} = a4[(r${i} * K + ${kc}) / 4u];`);
        for (let i = 0; i < TM; i++) for (const kk of ks(c0, V)) L.push(`    let a${i}_${kk} = av${i}_${c0}[${kk - c0}];`);
      } else if (v.transA && !v.scalarA) {
        for (let i = 0; i < TM; i += 4) for (const kk of ks(c0, V)) L.push(`    let at${i}_${kk} = a4[(${kx(k, kk, full)} * M + r${i}) / 4u];`);
        for (let i = 0; i < TM; i++) for (const kk of ks(c0, V)) L.push(`    let a${i}_${kk} = at${i - (i % 4)}_${kk}[${i % 4}];`);
      } else {
        for (let i = 0; i < TM; i++)
          for (const kk of ks(c0, V)) L.push(`    let a${i}_${kk} = a[${v.transA ? `(${kx(k, kk, full)}) * M + r${i}` : `r${i} * K + ${kx(k, kk, full)}`}];`);
      }
    }
  };
  // B values b{kk}_{j} (vec4 over the invocation's 4 columns of group j).
  const loadB = (k: string, full: boolean, only?: number) => {
    const kks = only === undefined ? ks() : [only];
    if (v.transB && !v.scalarB && full) {
      for (let c0 = 0; c0 < KB; c0 += V) {
        for (let j = 0; j < TN4; j++) for (let e = 0; e < 4; e++) L.push(`    let bt${j}_${e}_${c0} = b4[(c${j}_${e} * K + ${k} + ${c0}u) / 4u];`);
        for (let j = 0; j < TN4; j++)
          for (const kk of ks(c0, V)) L.push(`    let b${kk}_${j} = vec4<f32>(${[0, 1, 2, 3].map((e) => `bt${j}_${e}_${c0}[${kk - c0}]`).join(', ')});`);
      }
    } else if (!v.transB && !v.scalarB) {
      for (let j = 0; j < TN4; j++) for (const kk of kks) L.push(`    let b${kk}_${j} = b4[(${kx(k, kk, full)} * N + c${j}_0) / 4u];`);
    } else {
      for (let j = 0; j < TN4; j++)
        for (const kk of kks) {
          const el = (e: number) => (v.transB ? `b[c${j}_${e} * K + ${kx(k, kk, full)}]` : `b[(${kx(k, kk, full)}) * N + c${j}_${e}]`);
          L.push(`    let b${kk}_${j} = vec4<f32>(${[0, 1, 2, 3].map(el).join(', ')});`);
        }
    }
  };
  // In the tail block, steps past K multiply by zero instead of branching.
  const av = (i: number, kk: number, tail: boolean) => `vec4<f32>(a${i}_${kk}${tail ? ` * select(0.0, 1.0, k + ${kk}u < K)` : ''})`;
  const fmas = (tail: boolean, only?: number) => {
    for (const kk of only === undefined ? ks() : [only])
      for (let i = 0; i < TM; i++) for (let j = 0; j < TN4; j++) L.push(`    acc${i}_${j} = fma(${av(i, kk, tail)}, b${kk}_${j}, acc${i}_${j});`);
  };
  const step = (k: string, full: boolean, tail: boolean) => {
    loadA(k, full);
    if (v.dot) {
      // The block's KB products per accumulator are summed in registers, then added once.
      loadB(k, full);
      for (let i = 0; i < TM; i++)
        for (let j = 0; j < TN4; j++) {
          let e = `${av(i, 0, tail)} * b0_${j}`;
          for (let kk = 1; kk < KB; kk++) e = `fma(${av(i, kk, tail)}, b${kk}_${j}, ${e})`;
          L.push(`    acc${i}_${j} += ${e};`);
        }
    } else if (v.inter && !(v.transB && !v.scalarB && full)) {
      for (let kk = 0; kk < KB; kk++) {
        loadB(k, full, kk);
        fmas(tail, kk);
      }
    } else {
      loadB(k, full);
      fmas(tail);
    }
  };
  const KU = v.KU ?? 1;
  if (KU > 1) {
    L.push(`  let kBig = K - K % ${KB * KU}u;`);
    L.push(`  for (var k0 = 0u; k0 < kBig; k0 += ${KB * KU}u) {`);
    for (let u = 0; u < KU; u++) {
      L.push(`   {`, `    let k = k0 + ${u * KB}u;`);
      step('k', true, false);
      L.push('   }');
    }
    L.push('  }');
  }
  L.push(`  let kMain = K - K % ${KB}u;`);
  L.push(`  for (var k = ${KU > 1 ? 'kBig' : '0u'}; k < kMain; k += ${KB}u) {`);
  step('k', true, false);
  L.push('  }');
  L.push(`  if (kMain < K) {`);
  L.push(`    let k = kMain;`);
  step('k', false, true);
  L.push('  }');
  for (let i = 0; i < TM; i++)
    for (let j = 0; j < TN4; j++) {
      L.push(`  if (row0 + ${i}u < M && col0 + ${j * WX * 4}u < N) {`);
      for (let e = 0; e < 4; e++) L.push(`    c[(row0 + ${i}u) * N + col0 + ${j * WX * 4 + e}u] = acc${i}_${j}[${e}];`);
      L.push(`  }`);
    }
  L.push('}');
  return L.join('\n');
}

/** Dispatches a generated variant (its WGSL added to the engine's shader registry, in this script only). */
function runVariant(v: Variant, M: number, K: number, N: number, A: Tensor, B: Tensor, C: Tensor): void {
  const name = `tune_${v.name}`;
  (SHADERS as Record<string, string>)[name] ??= genWGSL(v);
  device().dispatch({
    shader: name, entry: 'main', label: name, params: [M, K, N, 0],
    buffers: { 1: A.buffer, 2: B.buffer, 3: B.buffer, 4: C.buffer, 5: A.buffer },
    workgroups: [Math.ceil(N / (v.WX * 4 * v.TN4)), Math.ceil(M / (v.TM * v.WY))],
  });
}

/**
 * Two engine devices on the same adapter: one with the 'subgroups' feature (the sgA variants, and
 * the engine's lavapipe fast path) and one without it (what engine/device.ts init asks for today).
 */
async function makeDevices(): Promise<{ sg: Device; plain: Device }> {
  // An adapter makes one device, so each device gets its own.
  const make = async (features: GPUFeatureName[]) => {
    const adapter = await nodeGPU().requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new Error('no WebGPU adapter');
    const requiredFeatures = features.filter((f) => adapter.features.has(f));
    return init(await adapter.requestDevice({ requiredLimits: wantedLimits(adapter), requiredFeatures }));
  };
  return { plain: await make(['shader-f16']), sg: await make(['subgroups', 'shader-f16']) };
}

/** A row that times the engine's own matmul. */
interface EngineRow {
  name: string;
  transA?: boolean;
  transB?: boolean;
  /** On the device with subgroups (else the one without: the portable kernel). */
  subgroups: boolean;
}

const ENGINE_ROWS: EngineRow[] = [
  { name: 'engine', subgroups: true },
  { name: 'engine_tA', transA: true, subgroups: true },
  { name: 'engine_tB', transB: true, subgroups: true },
  { name: 'engine_tAtB', transA: true, transB: true, subgroups: true },
  { name: 'engine_nosubgroups', subgroups: false },
];

/**
 * How to wait for the GPU: 'sync' awaits device().sync() right away (the protocol the targets are
 * stated in); 'sleep' first sleeps 90% of the best time so far, because Dawn's node binding
 * busy-polls while a completion promise is pending and so takes one of lavapipe's two cores.
 */
let waitMode: 'sync' | 'sleep' = 'sync';

interface Timing {
  /** Median wall-clock ms per call. */
  ms: number;
  /**
   * Least process CPU ms per call (lavapipe's worker threads plus the waiting main thread): the
   * least is the best estimate of the uncontended cost while other jobs share the cores.
   */
  cpuMs: number;
}

async function time(fn: () => void, warmup: number, reps: number): Promise<Timing> {
  let best = Infinity;
  const once = async () => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    fn();
    device().flush();
    if (waitMode === 'sleep' && best < Infinity) await new Promise((r) => setTimeout(r, best * 0.9));
    await device().sync();
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    best = Math.min(best, ms);
    return { ms, cpuMs: (c.user + c.system) / 1000 };
  };
  await once(); // compiles the pipeline: not a time to sleep by
  best = Infinity;
  for (let i = 1; i < warmup; i++) await once();
  const ts: Timing[] = [];
  for (let i = 0; i < reps; i++) ts.push(await once());
  return { ms: median(ts.map((t) => t.ms)), cpuMs: Math.min(...ts.map((t) => t.cpuMs)) };
}

/** Max |diff| of sampled C entries against a float64 dot product on the host (sanity check). */
async function sampledError(C: Tensor, a: Float32Array, b: Float32Array, M: number, K: number, N: number, transA = false, transB = false): Promise<number> {
  const c = await C.toArray();
  let worst = 0;
  for (let s = 0; s < 64; s++) {
    const m = (s * 7919) % M;
    const n = (s * 104729 + 13) % N;
    let ref = 0;
    for (let k = 0; k < K; k++) ref += (transA ? a[k * M + m] : a[m * K + k]) * (transB ? b[n * K + k] : b[k * N + n]);
    worst = Math.max(worst, Math.abs(ref - c[m * N + n]));
  }
  return worst;
}

const base = (o: Partial<Variant> & { name: string }): Variant => ({ TM: 4, TN4: 1, WX: 64, WY: 1, ...o });
const VARIANTS: Variant[] = [
  base({ name: 'tm4x4_wx64' }),
  base({ name: 'tm4x4_wx16_wy4', WX: 16, WY: 4 }),
  base({ name: 'tm8x4_wx64', TM: 8 }),
  base({ name: 'tm8x8_wx32', TM: 8, TN4: 2, WX: 32 }),
  base({ name: 'tm16x8_wx32', TM: 16, TN4: 2, WX: 32 }),
  base({ name: 'sg8x4', TM: 8, sgA: true }),
  base({ name: 'sg16x4', TM: 16, sgA: true }),
  base({ name: 'sgi16x4', TM: 16, sgA: true, inter: true }),
  base({ name: 'sgi24x4', TM: 24, sgA: true, inter: true }),
  base({ name: 'sgd8x4', TM: 8, sgA: true, dot: true }),
  base({ name: 'sgd16x4', TM: 16, sgA: true, dot: true }),
  base({ name: 'sgd24x4', TM: 24, sgA: true, dot: true }),
  base({ name: 'sgd32x4', TM: 32, sgA: true, dot: true }),
  base({ name: 'sgd16x8', TM: 16, TN4: 2, WX: 32, sgA: true, dot: true }),
  base({ name: 'sgd16x4_kb8', TM: 16, sgA: true, dot: true, KB: 8 }),
  base({ name: 'sgd24x4_kb8', TM: 24, sgA: true, dot: true, KB: 8 }),
  base({ name: 'sgd32x4_kb8', TM: 32, sgA: true, dot: true, KB: 8 }),
  base({ name: 'sgd24x4_wx8', TM: 24, WX: 8, sgA: true, dot: true }),
  base({ name: 'sgd24x4_wx256', TM: 24, WX: 256, sgA: true, dot: true }),
  base({ name: 'td8x4', TM: 8, dot: true }),
  base({ name: 'td16x4', TM: 16, dot: true }),
  base({ name: 'td8x8', TM: 8, TN4: 2, WX: 32, dot: true }),
];

let SHAPES: [number, number, number][] = [
  [512, 512, 512],
  [1024, 1024, 1024],
  [256, 512, 8192],
];

/** TF.js WebGPU and WASM on the same shapes (bench/peers; its own timing loop, completion awaited). */
async function peerRows(reps: number): Promise<void> {
  const { tfjsWasm, tfjsWebGPU } = await import('./peers/tfjs.js');
  for (const peer of [tfjsWebGPU, tfjsWasm]) {
    if (!(await peer.init())) continue;
    const cells: string[] = [];
    for (const [M, K, N] of SHAPES) {
      const r = await peer.matmul!(M, K, N, { warmup: 2, reps });
      cells.push(((2 * M * K * N) / r.ms / 1e6).toFixed(1).padStart(16));
    }
    console.log([peer.name.padEnd(24), ...cells].join(' '));
    await peer.dispose();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const repsAt = args.indexOf('--reps');
  const reps = repsAt >= 0 ? Number(args.splice(repsAt, 2)[1]) : 5;
  const emitAt = args.indexOf('--emit');
  if (emitAt >= 0) {
    // Print one variant's WGSL (for profiling it outside this script) and stop.
    console.log(genWGSL(VARIANTS.find((v) => v.name === args[emitAt + 1])!));
    return;
  }
  const waitAt = args.indexOf('--wait');
  if (waitAt >= 0) waitMode = args.splice(waitAt, 2)[1] as 'sync' | 'sleep';
  const peersAt = args.indexOf('--peers');
  const withPeers = peersAt >= 0 && args.splice(peersAt, 1).length > 0;
  const shapesAt = args.indexOf('--shapes');
  if (shapesAt >= 0) SHAPES = args.splice(shapesAt, 2)[1].split(',').map((x) => x.split('x').map(Number) as [number, number, number]);
  const filters = args;
  const devices = await makeDevices();
  const info = (devices.sg.gpu as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  console.log(`device: ${info?.description ?? devices.sg.description}`);
  const pick = <T extends { name: string }>(xs: T[]) => (filters.length ? xs.filter((x) => filters.some((f) => x.name.includes(f))) : xs);
  const header = ['variant'.padEnd(24), ...SHAPES.map((s) => s.join('x').padStart(16))].join(' ');
  console.log(`GFLOP/s wall, median of ${reps} (in brackets: per 2 CPU-seconds, least of ${reps}), wait=${waitMode}:\n${header}`);
  const rows: (EngineRow | Variant)[] = [...pick(ENGINE_ROWS), ...pick(VARIANTS)];
  for (const row of rows) {
    const v = 'TM' in row ? row : null;
    const e = 'TM' in row ? null : row;
    setDevice(e && !e.subgroups ? devices.plain : devices.sg);
    const cells: string[] = [];
    for (const [M, K, N] of SHAPES) {
      const [ha, hb] = [randn(M * K, 1), randn(K * N, 2)];
      const cell = tidy(() => ({
        A: tensor(ha, row.transA ? [K, M] : [M, K]),
        B: tensor(hb, row.transB ? [N, K] : [K, N]),
        C: Tensor.empty([M, N]),
      }));
      const opts = { transA: row.transA, transB: row.transB };
      let t: Timing;
      let C = cell.C;
      if (v) t = await time(() => runVariant(v, M, K, N, cell.A, cell.B, cell.C), 2, reps);
      else {
        t = await time(() => matmul(cell.A, cell.B, opts).dispose(), 2, reps);
        C = matmul(cell.A, cell.B, opts);
      }
      const err = await sampledError(C, ha, hb, M, K, N, row.transA, row.transB);
      if (C !== cell.C) C.dispose();
      const note = err < 1e-3 ? '' : '!';
      cell.A.dispose();
      cell.B.dispose();
      cell.C.dispose();
      // wall GFLOP/s, and in brackets GFLOP per least CPU-second × 2 (what 2 idle cores would give).
      const gf = (ms: number) => ((2 * M * K * N) / ms / 1e6).toFixed(1);
      cells.push(`${gf(t.ms)}${note} (${gf(t.cpuMs / 2)})`.padStart(16));
    }
    console.log([row.name.padEnd(24), ...cells].join(' '));
  }
  devices.plain.destroy();
  devices.sg.destroy();
  if (withPeers) await peerRows(reps);
}

await main();
