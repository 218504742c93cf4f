// Float64 twins of engine/ops/matmul.ts, same names and argument order.
import { bcastIndex, broadcastShape, ndZeros, unravel, type ND } from './nd.js';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/** op(a) · op(b) with NumPy batch broadcasting (a [.., M, K] or [.., K, M] with transA, and so on). */
export function matmul(a: ND, b: ND, opts: MatmulOptions = {}): ND {
  const { transA = false, transB = false } = opts;
  const [ra, ca] = a.shape.slice(-2);
  const [rb, cb] = b.shape.slice(-2);
  const [M, K] = transA ? [ca, ra] : [ra, ca];
  const [Kb, N] = transB ? [cb, rb] : [rb, cb];
  if (K !== Kb) throw new Error(`ref matmul: inner dims ${K} and ${Kb} differ`);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const batch = broadcastShape(batchA, batchB);
  const out = ndZeros([...batch, M, N]);
  const nBatch = batch.reduce((x, y) => x * y, 1);
  for (let z = 0; z < nBatch; z++) {
    const idx = unravel(z, batch);
    // The operands' matrices for this output batch index (broadcast dims repeat matrix 0).
    const ao = bcastIndex({ data: a.data, shape: batchA }, idx) * ra * ca;
    const bo = bcastIndex({ data: b.data, shape: batchB }, idx) * rb * cb;
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = a.data[ao + (transA ? k * M + m : m * K + k)];
          const bv = b.data[bo + (transB ? n * K + k : k * N + n)];
          s += av * bv;
        }
        out.data[(z * M + m) * N + n] = s;
      }
  }
  return out;
}

/** x [.., in] · wᵀ (+ bias) with w [out, in]. */
export function linear(x: ND, w: ND, bias?: ND): ND {
  const [O, I] = w.shape;
  const rows = x.shape.slice(0, -1).reduce((p, d) => p * d, 1);
  const y = matmul({ data: x.data, shape: [rows, I] }, w, { transB: true });
  if (bias) for (let r = 0; r < rows; r++) for (let o = 0; o < O; o++) y.data[r * O + o] += bias.data[o];
  return { data: y.data, shape: [...x.shape.slice(0, -1), O] };
}
