// nn modules: recursive named parameters (tied weights once), train/eval, PyTorch-style init,
// and each layer's forward/backward against a float64 reference.
import { describe, expect, it } from 'vitest';
import { Rng, tensor, tidy, type Tensor } from '../../engine/index.js';
import { Embedding, Linear, MLP, Module, RMSNorm } from '../../engine/nn.js';
import * as RN from '../../engine/ref/norm.js';
import { nd, ndZeros, type ND } from '../../engine/ref/nd.js';
import { checkOp, expectClose, useDevice } from '../helpers.js';

useDevice();

/** y = x·Wᵀ + b in float64, x [..., in], W [out, in]. */
function linearRef(x: ND, w: ND, b?: ND): ND {
  const [O, I] = w.shape;
  const rows = x.data.length / I;
  const y = ndZeros([...x.shape.slice(0, -1), O]);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < O; o++) {
      let s = b ? b.data[o] : 0;
      for (let i = 0; i < I; i++) s += x.data[r * I + i] * w.data[o * I + i];
      y.data[r * O + o] = s;
    }
  return y;
}

class Block extends Module {
  norm = new RMSNorm(6);
  layers = [new Linear(6, 6, { seed: 1 }), new Linear(6, 6, { seed: 2, bias: false })];
  head: Linear;
  constructor() {
    super();
    this.head = new Linear(6, 6, { seed: 3 });
  }
}

describe('Module', () => {
  it('collects named parameters recursively, tied weights once', () => {
    const b = new Block();
    expect(b.namedParameters().map(([n, t]) => `${n}[${t.shape}]`)).toEqual([
      'norm.weight[6]', 'layers.0.weight[6,6]', 'layers.0.bias[6]', 'layers.1.weight[6,6]', 'head.weight[6,6]', 'head.bias[6]',
    ]);
    expect(b.numParameters()).toBe(6 + 36 + 6 + 36 + 36 + 6);
    // Tie the head to layer 0: its weight is listed once, under its first name.
    b.head.weight.dispose();
    (b.head as { weight: Tensor }).weight = b.layers[0].weight;
    expect(b.parameters().length).toBe(5);
    expect(b.eval().training).toBe(false);
    expect(b.layers[1].training).toBe(false);
    expect(b.train().norm.training).toBe(true);
    b.dispose();
    expect(b.layers[0].weight.disposed).toBe(true);
  });

  it('Linear init: PyTorch bounds, seeded and reproducible', async () => {
    const a = new Linear(50, 30, { seed: 7 });
    const b = new Linear(50, 30, { seed: 7 });
    const w = await a.weight.toArray();
    const bound = 1 / Math.sqrt(50);
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    expect(Array.from(await b.weight.toArray())).toEqual(Array.from(w));
    expect(Math.max(...(await a.bias!.toArray()).map(Math.abs))).toBeLessThanOrEqual(bound);
    // MLP layers draw from one stream: different values.
    const m = new MLP(4, 4, 4, { rng: new Rng(1) });
    expect(Array.from(await m.fc1.weight.toArray())).not.toEqual(Array.from(await m.fc2.weight.toArray()));
    for (const mod of [a, b, m]) mod.dispose();
  });
});

describe('layers vs reference', () => {
  it('Linear with and without bias', async () => {
    for (const bias of [true, false]) {
      const lin = new Linear(7, 5, { seed: 3, bias });
      const w = nd(await lin.weight.toArray(), [5, 7]);
      const b = bias ? nd(await lin.bias!.toArray(), [5]) : undefined;
      await checkOp({ name: `linear bias=${bias}`, shapes: [[2, 3, 7]], fn: ([x]) => lin.forward(x), ref: ([x]) => linearRef(x, w, b) });
      lin.dispose();
    }
  });

  it('MLP', async () => {
    const mlp = new MLP(3, 11, 2, { seed: 4 });
    const [w1, b1, w2, b2] = await Promise.all(mlp.parameters().map((p) => p.toArray()));
    const ref = (x: ND) => {
      const h = linearRef(x, nd(w1, [11, 3]), nd(b1, [11]));
      h.data = h.data.map((v) => Math.max(v, 0));
      return linearRef(h, nd(w2, [2, 11]), nd(b2, [2]));
    };
    await checkOp({ name: 'mlp', shapes: [[5, 3]], fn: ([x]) => mlp.forward(x), ref: ([x]) => ref(x) });
    mlp.dispose();
  });

  it('Embedding and RMSNorm', async () => {
    const emb = new Embedding(10, 4, { seed: 5 });
    const table = await emb.weight.toArray();
    const ids = tensor([3, 0, 9, 3], [2, 2], 'i32');
    const y = tidy(() => emb.forward(ids));
    expect(y.shape).toEqual([2, 2, 4]);
    const want = [3, 0, 9, 3].flatMap((i) => Array.from(table.slice(i * 4, i * 4 + 4)));
    expect(Array.from(await y.toArray())).toEqual(want);
    const norm = new RMSNorm(4, 1e-5);
    const z = tidy(() => norm.forward(y));
    expectClose(await z.toArray(), RN.rmsNorm(nd(want, [2, 2, 4]), nd([1, 1, 1, 1], [4]), 1e-5).data);
    for (const t of [ids, y, z]) t.dispose();
    emb.dispose();
    norm.dispose();
  });
});
