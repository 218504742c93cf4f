// Memory hygiene: a 200-step training loop (MLP, backward, clipping, AdamW inside tidy) holds pool
// usage flat and learns; dispose and use-after-dispose errors; tidy keeps survivors only.
import { describe, expect, it } from 'vitest';
import {
  Rng, Tensor, backward, device, keep, mean, square, sub, tensor, tidy,
} from '../../engine/index.js';
import { MLP } from '../../engine/nn.js';
import { AdamW, clipGradNorm } from '../../engine/optim.js';
import { randData, useDevice } from '../helpers.js';

useDevice();

/** Regression data: y = a smooth function of x, so a small MLP can fit it. */
function regressionData(n: number, inF: number, outF: number, seed: number): { x: Float32Array; y: Float32Array } {
  const rng = new Rng(seed);
  const x = Float32Array.from({ length: n * inF }, () => rng.next() * 2 - 1);
  const y = new Float32Array(n * outF);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < outF; o++) {
      let s = 0;
      for (let j = 0; j < inF; j++) s += Math.sin((o + 1) * x[i * inF + j] + j);
      y[i * outF + o] = s / inF;
    }
  return { x, y };
}

describe('training loop', () => {
  it('200 steps: no pool growth after warm-up, loss decreases', async () => {
    const [N, IN, HID, OUT] = [37, 5, 24, 3];
    const data = regressionData(N, IN, OUT, 1);
    const x = tensor(data.x, [N, IN]);
    const y = tensor(data.y, [N, OUT]);
    const model = new MLP(IN, HID, OUT, { seed: 2 });
    const params = model.parameters();
    const opt = new AdamW(params, { lr: 1e-2, weightDecay: 1e-4 });
    const pool = device().pool;
    const losses: number[] = [];
    let at10: ReturnType<typeof pool.snapshot> | null = null;
    for (let step = 1; step <= 200; step++) {
      const loss = tidy(() => {
        const l = mean(square(sub(model.forward(x), y)));
        backward(l);
        clipGradNorm(params, 1.0);
        opt.step();
        opt.zeroGrad();
        return l;
      });
      if (step === 1 || step === 200) losses.push(await loss.item());
      loss.dispose();
      if (step === 10) at10 = pool.snapshot();
    }
    await device().sync();
    const at200 = pool.snapshot();
    expect(at200.inUseBytes).toBe(at10!.inUseBytes);
    expect(at200.inUseBuffers).toBe(at10!.inUseBuffers);
    expect(at200.allocatedBytes).toBe(at10!.allocatedBytes);
    expect(losses[1]).toBeLessThan(0.5 * losses[0]);
    opt.dispose();
    model.dispose();
    x.dispose();
    y.dispose();
  });
});

describe('pool limits', () => {
  it('a loop of ever-changing shapes stays bounded (idle buffers are trimmed), and values stay right', async () => {
    const pool = device().pool;
    const saved = { ...pool.limits };
    pool.limits.minIdleBytes = 0; // trim as soon as idle bytes exceed the in-use high-water mark
    const trims0 = pool.autoTrims;
    pool.trim();
    const base = pool.snapshot().inUseBytes;
    try {
      let maxAllocated = 0;
      for (let n = 101; n < 101 + 40 * 37; n += 37) {
        // Every n lands in a new size class, so without trimming one idle buffer per class would pile up.
        const data = randData(n, n);
        const out = tidy(() => square(tensor(data, [n])));
        const got = await out.toArray();
        out.dispose();
        let maxErr = 0;
        for (let i = 0; i < n; i++) maxErr = Math.max(maxErr, Math.abs(got[i]! - data[i]! * data[i]!));
        if (maxErr > 1e-6) console.log(`n=${n}: max error ${maxErr}`);
        expect(maxErr).toBeLessThan(1e-6);
        maxAllocated = Math.max(maxAllocated, pool.snapshot().allocatedBytes);
      }
      expect(pool.autoTrims).toBeGreaterThan(trims0);
      // In use is the earlier tensors plus a few of the largest buffers; idle is capped at the
      // high-water mark. Without trimming, the ~80 idle buffers would hold ~260 KB.
      const largest = (101 + 39 * 37) * 4 * 1.25;
      expect(maxAllocated).toBeLessThan(2 * base + 8 * largest);
    } finally {
      Object.assign(pool.limits, saved);
    }
  });
});

describe('dispose', () => {
  it('frees the buffer once; use after dispose throws', async () => {
    const pool = device().pool;
    const before = pool.snapshot().inUseBuffers;
    const t = tensor(randData(10, 1), [2, 5]);
    expect(pool.snapshot().inUseBuffers).toBe(before + 1);
    t.dispose();
    t.dispose(); // idempotent
    expect(t.disposed).toBe(true);
    expect(pool.snapshot().inUseBuffers).toBe(before);
    expect(() => t.buffer).toThrow(/after dispose/);
    expect(() => t.view([10])).toThrow(/after dispose/);
    expect(() => tidy(() => square(t))).toThrow(/after dispose/);
    await expect(t.toArray()).rejects.toThrow(/after dispose/);
  });

  it('views share the buffer until the last one is disposed', async () => {
    const pool = device().pool;
    const before = pool.snapshot().inUseBuffers;
    const t = tensor([1, 2, 3, 4], [4]);
    const v = t.view([2, 2]);
    t.dispose();
    expect(pool.snapshot().inUseBuffers).toBe(before + 1);
    expect(Array.from(await v.toArray())).toEqual([1, 2, 3, 4]);
    v.dispose();
    expect(pool.snapshot().inUseBuffers).toBe(before);
  });
});

describe('tidy', () => {
  it('returns survivors (also in arrays and objects) and frees the rest', async () => {
    const pool = device().pool;
    const before = pool.snapshot();
    const x = tensor([1, 2, 3], [3]);
    let inner: Tensor | null = null;
    const out = tidy(() => {
      const a = square(x);
      inner = sub(a, x);
      const b = square(a);
      return { b, list: [sub(b, a)] };
    });
    expect(inner!.disposed).toBe(true);
    expect(x.disposed).toBe(false);
    expect(out.b.disposed).toBe(false);
    expect(Array.from(await out.list[0].toArray())).toEqual([0, 12, 72]);
    expect(pool.snapshot().inUseBuffers).toBe(before.inUseBuffers + 3);
    for (const t of [x, out.b, out.list[0]]) t.dispose();
    expect(pool.snapshot().inUseBytes).toBe(before.inUseBytes);
  });

  it('keep() survives, nested scopes hand results outward', async () => {
    const pool = device().pool;
    const before = pool.snapshot().inUseBuffers;
    const x = tensor([2], [1]);
    let kept: Tensor | null = null;
    let innerResult: Tensor | null = null;
    const outer = tidy(() => {
      innerResult = tidy(() => square(square(x))); // one survivor moves to the outer scope
      kept = keep(square(x));
      square(innerResult); // freed by the outer scope
      return null;
    });
    expect(outer).toBeNull();
    expect(innerResult!.disposed).toBe(true); // not returned from the outer scope
    expect(kept!.disposed).toBe(false);
    expect(await kept!.item()).toBe(4);
    kept!.dispose();
    x.dispose();
    expect(pool.snapshot().inUseBuffers).toBe(before);
  });
});
