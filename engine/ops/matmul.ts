// Matrix products (shaders/matmul.wgsl): batched, NumPy-broadcast matmul with transpose flags, and
// `linear` (x · wᵀ + bias, weights stored [out, in]). Backward rules are matmuls with flipped flags.
import { record } from '../autograd.js';
import { device, type Device } from '../device.js';
import { SHADERS } from '../shaders.gen.js';
import { Tensor, numel, shapeStr, type Shape } from '../tensor.js';
import { MAX_RANK, assertF32, broadcastShapes, broadcastStrides, pack8, run } from './common.js';
import { sumTo } from './reduce.js';

const SHADER = 'matmul';
/** The subgroup variant's name in the shader registry (built at first use from SHADER). */
const SUBGROUP_SHADER = 'matmul_subgroups';
/**
 * Rows of C per invocation (TM in the shader, a multiple of 8): the most on big M (more reuse of
 * each loaded B value; lavapipe has the registers spilled anyway, GPUs do not), down to ROWS_MIN
 * when M is small so that fewer clamped duplicate rows are computed.
 */
const ROWS_CPU = 24;
const ROWS_GPU = 16;
const ROWS_MIN = 8;
/** Columns of C per invocation (one vec4). */
const COLS = 4;
/**
 * Invocations per workgroup along N: WX_MAX, or fewer when N is narrow (lanes past N would only
 * repeat clamped loads), but not under WX_MIN (a GPU warp's worth with WY rows; 8 = one lavapipe
 * SIMD batch). Along M: WY_GPU on GPUs, 1 on CPU adapters (all lanes share their rows).
 */
const WX_MAX = 64;
const WX_MIN_GPU = 16;
const WX_MIN_CPU = 8;
const WY_GPU = 4;
/** Lanes the subgroup variant broadcasts from (SG in the shader). */
const SUBGROUP_LANES = 8;

export interface MatmulOptions {
  /** a is stored [.., K, M] (its transpose is used). */
  transA?: boolean;
  /** b is stored [.., N, K] (its transpose is used). */
  transB?: boolean;
}

interface Variant {
  shader: string;
  WY: number;
  minWX: number;
  maxRows: number;
}

const variants = new WeakMap<Device, Variant>();

/**
 * Which kernel variant the device gets. CPU adapters (lavapipe) run one row group per workgroup
 * (WY = 1) and, when the device has subgroups of at least 8 lanes, the subgroup variant.
 */
function variantFor(dev: Device): Variant {
  let v = variants.get(dev);
  if (v) return v;
  const info = (dev.gpu as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const name = `${info?.architecture ?? ''} ${info?.device ?? ''} ${info?.description ?? ''} ${dev.description}`;
  const cpu = info?.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(name);
  const subgroups = dev.features.has('subgroups') && (info?.subgroupMinSize ?? 0) >= SUBGROUP_LANES;
  if (cpu && subgroups) {
    (SHADERS as Record<string, string>)[SUBGROUP_SHADER] ??= subgroupSource(SHADERS[SHADER]);
    v = { shader: SUBGROUP_SHADER, WY: 1, minWX: WX_MIN_CPU, maxRows: ROWS_CPU };
  } else if (cpu) v = { shader: SHADER, WY: 1, minWX: WX_MIN_CPU, maxRows: ROWS_CPU };
  else v = { shader: SHADER, WY: WY_GPU, minWX: WX_MIN_GPU, maxRows: ROWS_GPU };
  variants.set(dev, v);
  return v;
}

/** The subgroup variant: `enable subgroups;` + the module with its <portable> section swapped for the `//| ` lines. */
function subgroupSource(src: string): string {
  const alt = src.split('\n').filter((l) => l.startsWith('//|')).map((l) => l.replace(/^\/\/\| ?/, '')).join('\n');
  const out = src.replace(/\/\/ <portable>[\s\S]*?\/\/ <\/portable>/, alt);
  if (out === src || !alt) throw new Error('matmul.wgsl: <portable> section or //| lines not found');
  return `enable subgroups;\n${out}`;
}

/** Shape of a 2-D-or-more operand as (batch dims, rows, cols). */
function splitMatrix(t: Tensor, name: string): [number[], number, number] {
  if (t.ndim < 2) throw new Error(`matmul: ${name} must have at least 2 dims, got ${shapeStr(t.shape)}`);
  return [t.shape.slice(0, -2), t.shape[t.ndim - 2], t.shape[t.ndim - 1]];
}

/**
 * out[.., M, N] = op(a) · op(b) (+ bias) without autograd. When b has no batch and a is not
 * transposed, a's batch is folded into M (one dispatch over [Z·M, K]: the Linear case).
 */
function mmKernel(a: Tensor, b: Tensor, transA: boolean, transB: boolean, bias?: Tensor): Tensor {
  assertF32(a, 'matmul');
  assertF32(b, 'matmul');
  const [batchA, ra, ca] = splitMatrix(a, 'a');
  const [batchB, rb, cb] = splitMatrix(b, 'b');
  const [M, K] = transA ? [ca, ra] : [ra, ca];
  const [Kb, N] = transB ? [cb, rb] : [rb, cb];
  if (K !== Kb) {
    throw new Error(`matmul: inner dims differ: a ${shapeStr(a.shape)}${transA ? 'ᵀ' : ''} · b ${shapeStr(b.shape)}${transB ? 'ᵀ' : ''} (K ${K} vs ${Kb})`);
  }
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== N)) throw new Error(`matmul: bias ${shapeStr(bias.shape)} must be [${N}]`);
  let batch = broadcastShapes(batchA, batchB, 'matmul (batch dims)');
  const out = Tensor.empty([...batch, M, N]);
  let rows = M;
  let aStr = broadcastStrides(batchA, batch).map((s) => s * ra * ca);
  let bStr = broadcastStrides(batchB, batch).map((s) => s * rb * cb);
  if (numel(batchB) === 1 && !transA) {
    rows = numel(batch) * M;
    batch = [];
    aStr = [];
    bStr = [];
  }
  if (batch.length > MAX_RANK) throw new Error(`matmul: ${batch.length} batch dims exceed ${MAX_RANK}`);
  if (out.size === 0) return out;
  const { shader, WY, minWX, maxRows } = variantFor(device());
  const TM = Math.min(maxRows, Math.max(ROWS_MIN, Math.ceil(rows / ROWS_MIN) * ROWS_MIN));
  const WX = Math.min(WX_MAX, Math.max(minWX, 2 ** Math.ceil(Math.log2(Math.ceil(N / COLS)))));
  run({
    shader, entry: 'matmul', label: `matmul${transA ? '_tA' : ''}${transB ? '_tB' : ''}`,
    constants: {
      TRANS_A: +transA, TRANS_B: +transB, HAS_BIAS: +!!bias, WX, WY, TM,
      VEC_A: +((transA ? rows : K) % 4 === 0), VEC_B: +((transB ? K : N) % 4 === 0),
    },
    buffers: { 1: a.buffer, 2: a.buffer, 3: b.buffer, 4: b.buffer, 5: (bias ?? a).buffer, 6: out.buffer },
    params: [rows, K, N, batch.length, ...pack8(batch), ...pack8(aStr), ...pack8(bStr)],
    workgroups: [Math.ceil(N / (WX * COLS)), Math.ceil(rows / (TM * WY)), Math.max(1, numel(batch))],
  });
  return out;
}

/**
 * Gradients of C = op(A) · op(B) for dC = g, each summed back over its operand's broadcast batch:
 * d op(A) = dC · op(B)ᵀ and d op(B) = op(A)ᵀ · dC; a transposed operand gets the transpose.
 */
function matmulGrads(a: Tensor, b: Tensor, g: Tensor, transA: boolean, transB: boolean, needA: boolean, needB: boolean): [Tensor | null, Tensor | null] {
  // dA = dC · op(B)ᵀ, or (transA) dA = op(B) · dCᵀ
  const dA = needA ? sumTo(transA ? mmKernel(b, g, transB, true) : mmKernel(g, b, false, !transB), a.shape) : null;
  let dB: Tensor | null = null;
  if (needB) {
    const zA = numel(a.shape.slice(0, -2));
    if (numel(b.shape.slice(0, -2)) === 1 && zA > 1 && !transA) {
      // b shared across a's batch: fold the batch into the contraction, Σ_z A_zᵀ·dC_z = A_flatᵀ·dC_flat.
      const [M, K] = [a.shape[a.ndim - 2], a.shape[a.ndim - 1]];
      const N = g.shape[g.ndim - 1];
      const aFlat = a.view([zA * M, K]);
      const gFlat = g.view([zA * M, N]);
      // dB = A_flatᵀ · dC_flat, or (transB) dB = dC_flatᵀ · A_flat
      const flat = transB ? mmKernel(gFlat, aFlat, true, false) : mmKernel(aFlat, gFlat, true, false);
      aFlat.dispose();
      gFlat.dispose();
      dB = flat.view(b.shape);
      flat.dispose();
    } else {
      // dB = op(A)ᵀ · dC, or (transB) dB = dCᵀ · op(A)
      dB = sumTo(transB ? mmKernel(g, a, true, transA) : mmKernel(a, g, !transA, false), b.shape);
    }
  }
  return [dA, dB];
}

/**
 * op(a) · op(b) with NumPy batch broadcasting: a [.., M, K] (or [.., K, M] with transA),
 * b [.., K, N] (or [.., N, K] with transB) → [.., M, N].
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false } = opts;
  const out = mmKernel(a, b, transA, transB);
  return record(out, 'matmul', [a, b], (g) => matmulGrads(a, b, g, transA, transB, a.requiresGrad, b.requiresGrad));
}

/**
 * PyTorch's Linear: x [.., in] · wᵀ + bias with w stored [out, in] and bias [out] → [.., out].
 * The bias is added in the matmul kernel's epilogue.
 */
export function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  if (w.ndim !== 2) throw new Error(`linear: weight must be [out, in], got ${shapeStr(w.shape)}`);
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== w.shape[1]) throw new Error(`linear: x ${shapeStr(x.shape)} does not end in in=${w.shape[1]} of weight ${shapeStr(w.shape)}`);
  const [O, I] = w.shape;
  const rows = numel(x.shape.slice(0, -1));
  const outShape: Shape = [...x.shape.slice(0, -1), O];
  // x as [rows, in] (a view, so 1-D x works too); the product is [rows, out].
  const x2 = x.view([rows, I]);
  const y2 = mmKernel(x2, w, false, true, bias);
  x2.dispose();
  const y = y2.view(outShape);
  y2.dispose();
  const parents = bias ? [x, w, bias] : [x, w];
  return record(y, 'linear', parents, (g) => {
    // y = x·wᵀ + bias: dx = dy·w, dw = dyᵀ·x (over all rows), dbias = Σ_rows dy
    const g2 = g.view([rows, O]);
    const xv = x.view([rows, I]);
    const [dx, dw] = matmulGrads(xv, w, g2, false, true, x.requiresGrad, w.requiresGrad);
    const grads = [dx && viewAs(dx, x.shape), dw];
    if (bias) grads.push(bias.requiresGrad ? sumTo(g2, bias.shape) : null);
    xv.dispose();
    g2.dispose();
    return grads;
  });
}

/** t reshaped to `shape` as a view, the original handle freed (its buffer lives on in the view). */
function viewAs(t: Tensor, shape: Shape): Tensor {
  const v = t.view(shape);
  t.dispose();
  return v;
}
