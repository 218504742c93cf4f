// Segmented log-sum-exp vs its float64 reference: empty, length-1 and prime-length segments across
// all threads-per-segment classes, unwritten outputs, large magnitudes, one 20,000-long segment,
// and the input checks (ranges, duplicate outputs, no gradient).
import { describe, expect, it } from 'vitest';
import { Rng, noGrad, tensor } from '../../engine/index.js';
import { segmentLogSumExp, type Segments } from '../../engine/ops/segment.js';
import * as R from '../../engine/ref/segment.js';
import { nd } from '../../engine/ref/nd.js';
import { expectClose, randData, useDevice } from '../helpers.js';

useDevice();

function segs(list: [row: number, start: number, end: number, out: number][]): Segments {
  return {
    row: Int32Array.from(list.map((s) => s[0])),
    start: Int32Array.from(list.map((s) => s[1])),
    end: Int32Array.from(list.map((s) => s[2])),
    out: Int32Array.from(list.map((s) => s[3])),
  };
}

async function check(data: Float32Array, shape: [number, number], seg: Segments, outSize: number, name: string, atol = 1e-5, rtol = 1e-5) {
  const x = tensor(data, shape);
  const y = segmentLogSumExp(x, seg, outSize);
  expect(y.shape).toEqual([outSize]);
  const got = await y.toArray();
  const want = R.segmentLogSumExp(nd(data, shape), seg, outSize).data;
  // −Infinity where the reference has it, exactly; the finite values within tolerance.
  const inf = (a: ArrayLike<number>) => Array.from(a, (v) => v === -Infinity);
  expect(inf(got), `${name}: -Infinity positions`).toEqual(inf(want));
  const fin = (a: ArrayLike<number>) => Array.from(a).filter((v) => v !== -Infinity);
  expectClose(fin(got), fin(want), { atol, rtol, name });
  x.dispose();
  y.dispose();
  return got;
}

/** Random segments over a [B, N] matrix with the given lengths, written to a shuffled subset of outputs. */
function randomSegments(B: number, N: number, lengths: number[], outSize: number, rng: Rng): Segments {
  const outs = Array.from({ length: outSize }, (_, i) => i);
  for (let i = outs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [outs[i], outs[j]] = [outs[j], outs[i]];
  }
  return segs(
    lengths.map((len, s) => {
      const start = rng.int(N - len + 1);
      return [rng.int(B), start, start + len, outs[s]];
    }),
  );
}

describe('segmentLogSumExp', () => {
  it('lengths 0, 1 and primes across the thread classes; unwritten outputs are -inf', async () => {
    const [B, N] = [3, 1031];
    const lengths = [0, 1, 2, 3, 5, 7, 13, 31, 37, 127, 257, 1031, 0, 1, 1009];
    const seg = randomSegments(B, N, lengths, lengths.length + 4, new Rng(1));
    const got = await check(randData(B * N, 2, -3, 3), [B, N], seg, lengths.length + 4, 'mixed');
    const written = new Set(seg.out);
    for (let o = 0; o < got.length; o++) if (!written.has(o)) expect(got[o]).toBe(-Infinity);
    lengths.forEach((len, s) => {
      if (len === 0) expect(got[seg.out[s]]).toBe(-Infinity);
    });
  });

  it('a length-1 segment returns its element exactly; overlapping segments are independent', async () => {
    const data = randData(2 * 5, 3, -10, 10);
    const got = await check(data, [2, 5], segs([[1, 3, 4, 0], [0, 0, 5, 1], [0, 1, 4, 2], [1, 0, 5, 3]]), 4, 'small');
    expect(got[0]).toBe(data[8]);
  });

  it('many short segments in many workgroups (tiled rows, like the reward children)', async () => {
    const [B, N] = [7, 211];
    const list: [number, number, number, number][] = [];
    for (let b = 0; b < B; b++) for (let a = 0; a < N; ) {
      const len = Math.min(N - a, 1 + ((a * 7 + b) % 11));
      list.push([b, a, a + len, list.length]);
      a += len;
    }
    await check(randData(B * N, 4, -5, 5), [B, N], segs(list), list.length + 1, 'tiled');
  });

  it('large magnitudes stay finite and exact (max-shifted)', async () => {
    const [B, N] = [2, 97];
    const rng = new Rng(5);
    const data = new Float32Array(B * N);
    for (let i = 0; i < data.length; i++) data[i] = (rng.next() < 0.5 ? -1 : 1) * (1e4 + 50 * rng.next());
    const seg = segs([[0, 0, 97, 0], [1, 0, 40, 1], [1, 40, 97, 2], [0, 10, 11, 3], [1, 3, 90, 4]]);
    const got = await check(data, [B, N], seg, 5, 'large', 1e-3, 1e-6);
    for (const v of got) expect(Number.isFinite(v)).toBe(true);
  });

  it('one row of 20,000 (one segment, and split into primes)', async () => {
    const N = 20000;
    const data = randData(N, 6, -20, 20);
    const list: [number, number, number, number][] = [[0, 0, N, 0]];
    for (let a = 0, k = 0; a < N; k++) {
      const len = Math.min(N - a, [4001, 17, 1, 997, 3][k % 5]);
      list.push([0, a, a + len, list.length]);
      a += len;
    }
    await check(data, [1, N], segs(list), list.length, 'long');
  });

  it('no segments; empty output', async () => {
    const got = await check(randData(6, 7), [2, 3], segs([]), 3, 'none');
    expect(Array.from(got)).toEqual([-Infinity, -Infinity, -Infinity]);
    await check(randData(6, 7), [2, 3], segs([]), 0, 'empty');
  });

  it('rejects bad segments, naming them, and inputs that need a gradient', () => {
    const x = tensor(randData(6, 8), [2, 3]);
    expect(() => segmentLogSumExp(x, segs([[0, 0, 1, 0], [2, 0, 1, 1]]), 2)).toThrow(/segment 1 has row 2/);
    expect(() => segmentLogSumExp(x, segs([[0, 2, 1, 0]]), 2)).toThrow(/segment 0 has range \[2, 1\)/);
    expect(() => segmentLogSumExp(x, segs([[0, 0, 4, 0]]), 2)).toThrow(/segment 0 has range \[0, 4\)/);
    expect(() => segmentLogSumExp(x, segs([[0, 0, 1, 2]]), 2)).toThrow(/segment 0 writes out\[2\]/);
    expect(() => segmentLogSumExp(x, segs([[0, 0, 1, 1], [1, 0, 3, 0], [1, 1, 2, 1]]), 2)).toThrow(/segments 0 and 2 both write out\[1\]/);
    expect(() => segmentLogSumExp(x, { ...segs([[0, 0, 1, 0]]), out: new Int32Array(0) }, 2)).toThrow(/one entry per segment/);
    expect(() => segmentLogSumExp(tensor(randData(6, 8), [6]), segs([]), 1)).toThrow(/\[B, N\]/);
    const w = tensor(randData(6, 8), [2, 3], 'f32', { requiresGrad: true });
    expect(() => segmentLogSumExp(w, segs([[0, 0, 1, 0]]), 1)).toThrow(/no backward/);
    const y = noGrad(() => segmentLogSumExp(w, segs([[0, 0, 1, 0]]), 1));
    expect(y.shape).toEqual([1]);
    for (const t of [x, w, y]) t.dispose();
  });
});
