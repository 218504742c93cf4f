// Float64 twin of engine/ops/norm.ts, plus the analytic backward for checks too large for finite
// differences.
import { ndZeros, type ND } from './nd.js';

export function rmsNorm(x: ND, weight: ND, eps = 1e-6): ND {
  const C = x.shape[x.shape.length - 1];
  const rows = C === 0 ? 0 : x.data.length / C;
  const out = ndZeros(x.shape);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x.data[r * C + c] ** 2;
    const rstd = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) out.data[r * C + c] = x.data[r * C + c] * rstd * weight.data[c];
  }
  return out;
}

/** dL/dx and dL/dweight of rmsNorm for upstream gradient dy. */
export function rmsNormBackward(x: ND, weight: ND, eps: number, dy: ND): { dx: ND; dweight: ND } {
  const C = x.shape[x.shape.length - 1];
  const rows = C === 0 ? 0 : x.data.length / C;
  const dx = ndZeros(x.shape);
  const dweight = ndZeros([C]);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    let dot = 0;
    for (let c = 0; c < C; c++) {
      const i = r * C + c;
      ss += x.data[i] ** 2;
      dot += dy.data[i] * weight.data[c] * x.data[i];
    }
    const rstd = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) {
      const i = r * C + c;
      dx.data[i] = rstd * dy.data[i] * weight.data[c] - rstd ** 3 * x.data[i] * dot / C;
      dweight.data[c] += dy.data[i] * x.data[i] * rstd;
    }
  }
  return { dx, dweight };
}
