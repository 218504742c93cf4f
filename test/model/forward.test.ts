// The causal LM against the independent float64 reference: logits (Llama / Qwen2, tied / untied, GQA),
// logit-lens layers at chosen positions and vocab slices, left padding, HF names, and gradients.
import { describe, expect, it } from 'vitest';
import { Rng, Tensor, add, backward, crossEntropy, reshape, scale, tensor, tidy } from '../../engine/index.js';
import * as RE from '../../engine/ref/elementwise.js';
import { expectedTensors } from '../../engine/io/hf.js';
import { LlamaForCausalLM, makeConfig, stateDict, type LlamaLikeConfig } from '../../engine/model/index.js';
import { expectClose, useDevice } from '../helpers.js';
import { lensLogits, randomWeights, refCrossEntropy, refForward } from './reference.js';

useDevice();

/** The test's small config: V=37, C=24, NH=4, NKV=2 (GQA), hs=6, 2 layers. */
function smallConfig(model_type: 'llama' | 'qwen2', tied: boolean): LlamaLikeConfig {
  return makeConfig({
    model_type, vocab_size: 37, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: tied, max_position_embeddings: 64,
  });
}

function randomIds(B: number, T: number, V: number, seed: number): number[][] {
  let s = seed;
  const next = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % V;
  return Array.from({ length: B }, () => Array.from({ length: T }, next));
}

function build(cfg: LlamaLikeConfig, seed: number): { model: LlamaForCausalLM; w: Map<string, Float32Array> } {
  const w = randomWeights(cfg, seed);
  return { model: new LlamaForCausalLM(cfg, { weights: (n) => w.get(n) }), w };
}

async function read(t: Tensor): Promise<Float32Array> {
  return (await t.toArray()) as Float32Array;
}

const TOL = { atol: 2e-4, rtol: 2e-4 };

describe('LlamaForCausalLM forward vs float64 reference', () => {
  const B = 2;
  const T = 7;
  for (const [type, tied] of [['llama', false], ['llama', true], ['qwen2', false], ['qwen2', true]] as const) {
    it(`${type}, ${tied ? 'tied' : 'untied'} head: logits, HF names`, async () => {
      const cfg = smallConfig(type, tied);
      const { model, w } = build(cfg, 11);
      try {
        // namedParameters maps 1:1 to the HF tensor names, in HF order.
        expect(model.namedParameters().map(([n]) => n)).toEqual([...expectedTensors(cfg).keys()]);
        expect(cfg.qkv_bias).toBe(type === 'qwen2');
        const ids = randomIds(B, T, cfg.vocab_size, 3);
        const ref = refForward(cfg, w, ids);
        const logits = tidy(() => model.forward(ids).logits);
        expect(logits.shape).toEqual([B, T, cfg.vocab_size]);
        expectClose(await read(logits), ref.logits, { ...TOL, name: `${type} logits` });
        logits.dispose();
      } finally {
        model.dispose();
      }
    });
  }

  it('logit lens: per-layer logits at chosen positions over a vocab slice, in one forward', async () => {
    const cfg = smallConfig('qwen2', false);
    const { model, w } = build(cfg, 5);
    try {
      const ids = randomIds(B, T, cfg.vocab_size, 9);
      const ref = refForward(cfg, w, ids);
      const V = cfg.vocab_size;
      const [v0, v1] = [5, 30];
      const positions = [6, 2, 4];
      // Shared positions [P], per-row positions [B, P].
      for (const pos of [positions, [[1, 6], [3, 0]]] as (number[] | number[][])[]) {
        const perRow = Array.isArray(pos[0]);
        const out = tidy(() => model.forward(ids, { layers: [0, 1, -1], positions: pos, vocabSlice: [v0, v1] }));
        expect([...out.layerLogits.keys()]).toEqual([0, 1, 2]);
        const P = perRow ? (pos as number[][])[0].length : pos.length;
        const at = (b: number, j: number) => (perRow ? (pos as number[][])[b][j] : (pos as number[])[j]);
        for (const [l, t] of out.layerLogits) {
          expect(t.shape).toEqual([B, P, v1 - v0]);
          const full = lensLogits(cfg, w, ref.hidden[l], B * T);
          const want = new Float64Array(B * P * (v1 - v0));
          for (let b = 0; b < B; b++)
            for (let j = 0; j < P; j++)
              for (let v = v0; v < v1; v++) want[(b * P + j) * (v1 - v0) + v - v0] = full[(b * T + at(b, j)) * V + v];
          expectClose(await read(t), want, { ...TOL, name: `layer ${l} lens logits` });
        }
        // The final logits are taken at the same positions over the whole vocabulary.
        expect(out.logits.shape).toEqual([B, P, V]);
        const wantFinal = new Float64Array(B * P * V);
        for (let b = 0; b < B; b++) for (let j = 0; j < P; j++) wantFinal.set(ref.logits.subarray((b * T + at(b, j)) * V, (b * T + at(b, j) + 1) * V), (b * P + j) * V);
        expectClose(await read(out.logits), wantFinal, { ...TOL, name: 'final logits at positions' });
        out.logits.dispose();
        for (const t of out.layerLogits.values()) t.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it('left padding with an attention mask matches the reference on the real tokens', async () => {
    const cfg = smallConfig('llama', false);
    const { model, w } = build(cfg, 8);
    try {
      const ids = randomIds(B, T, cfg.vocab_size, 21);
      const mask = [[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]];
      const ref = refForward(cfg, w, ids, { attentionMask: mask });
      // The padded row equals the same tokens run unpadded.
      const solo = refForward(cfg, w, [ids[0].slice(3)]);
      const V = cfg.vocab_size;
      expectClose(ref.logits.subarray(3 * V, T * V), solo.logits, { atol: 1e-9, rtol: 1e-9, name: 'reference padding' });
      const logits = tidy(() => model.forward(ids, { attentionMask: mask }).logits);
      const got = await read(logits);
      logits.dispose();
      const keep = (a: ArrayLike<number>) => Array.from(a).filter((_, i) => mask[Math.floor(i / (T * V))][Math.floor(i / V) % T] === 1);
      expectClose(keep(got), keep(ref.logits), { ...TOL, name: 'padded logits' });
    } finally {
      model.dispose();
    }
  });
});

describe('LlamaForCausalLM gradients', () => {
  it('cross-entropy gradients match finite differences of the float64 reference', async () => {
    const cfg = smallConfig('qwen2', false);
    const B = 2;
    const T = 5;
    const { model, w } = build(cfg, 13);
    try {
      const ids = randomIds(B, T + 1, cfg.vocab_size, 17);
      const inputs = ids.map((r) => r.slice(0, T));
      const targets = ids.flatMap((r) => r.slice(1));
      const V = cfg.vocab_size;
      // Logits at a permutation of all positions (the gather path), plus layer 1's lens logits there.
      const P = [4, 1, 0, 3, 2];
      const finalTargets = inputs.flatMap((_, b) => P.map((p) => targets[b * T + p]));
      const lensTargets = inputs.flatMap((r) => P.map((p) => r[p]));
      const pick = (x: Float64Array) => {
        const out = new Float64Array(B * P.length * V);
        for (let b = 0; b < B; b++) P.forEach((p, j) => out.set(x.subarray((b * T + p) * V, (b * T + p + 1) * V), (b * P.length + j) * V));
        return out;
      };
      const refLoss = (ww: Map<string, Float32Array | Float64Array>) => {
        const r = refForward(cfg, ww, inputs);
        const lens = lensLogits(cfg, ww, r.hidden[1], B * T);
        return refCrossEntropy(pick(r.logits), finalTargets, V) + 0.5 * refCrossEntropy(pick(lens), lensTargets, V);
      };
      const R = B * P.length;
      const loss = tidy(() => {
        const out = model.forward(inputs, { layers: [1], positions: P });
        const l0 = crossEntropy(reshape(out.logits, [R, V]), tensor(finalTargets, [R], 'i32'));
        const l1 = crossEntropy(reshape(out.layerLogits.get(1)!, [R, V]), tensor(lensTargets, [R], 'i32'));
        const sum = add(l0, scale(l1, 0.5));
        backward(sum);
        return sum;
      });
      const got = await loss.item();
      loss.dispose();
      expect(got).toBeCloseTo(refLoss(w), 4);
      const sd = stateDict(model);
      const checks: [string, number[]][] = [
        ['model.layers.0.self_attn.q_proj.weight', [0, 37, 101, 500]],
        ['model.layers.1.self_attn.k_proj.bias', [0, 7]],
        ['model.layers.0.mlp.gate_proj.weight', [3, 250, 777]],
        ['model.layers.1.mlp.down_proj.weight', [11, 600]],
        ['model.embed_tokens.weight', [ids[0][0] * cfg.hidden_size + 2, ids[1][2] * cfg.hidden_size + 20]],
        ['model.norm.weight', [0, 13]],
        ['model.layers.1.input_layernorm.weight', [5]],
        ['lm_head.weight', [10, 400]],
      ];
      const EPS = 1e-4;
      let largest = 0;
      for (const [name, idx] of checks) {
        const grad = await read(sd.get(name)!.grad!);
        const base = w.get(name)!;
        for (const i of idx) {
          const plus = new Float64Array(base);
          const minus = new Float64Array(base);
          plus[i] += EPS;
          minus[i] -= EPS;
          const with_ = (v: Float64Array) => new Map<string, Float32Array | Float64Array>([...w, [name, v]]);
          const fd = (refLoss(with_(plus)) - refLoss(with_(minus))) / (2 * EPS);
          expectClose([grad[i]], [fd], { atol: 1e-5, rtol: 2e-3, name: `d loss / d ${name}[${i}]` });
          largest = Math.max(largest, Math.abs(fd));
        }
      }
      expect(largest).toBeGreaterThan(1e-2); // the check is not vacuous
    } finally {
      model.dispose();
    }
  });
});

describe('LlamaForCausalLM residual dropout', () => {
  /** The reference's drop hook with the engine's masks: one seed per site, drawn from Rng(seed) in forward order. */
  const refDrop = (p: number, seed: number) => {
    const rng = new Rng(seed);
    return (x: Float64Array) => RE.dropout({ data: x, shape: [x.length] }, p, Math.floor(rng.next() * 2 ** 32)).data;
  };

  it('training mode matches the reference with the same masks (values and gradients); eval mode drops nothing', async () => {
    const cfg = smallConfig('llama', true);
    const [B, T, p, seed] = [2, 5, 0.3, 5];
    const w = randomWeights(cfg, 19);
    const model = new LlamaForCausalLM(cfg, { weights: (n) => w.get(n), dropout: p, dropoutSeed: seed });
    try {
      const ids = randomIds(B, T + 1, cfg.vocab_size, 23);
      const inputs = ids.map((r) => r.slice(0, T));
      const targets = ids.flatMap((r) => r.slice(1));
      const V = cfg.vocab_size;
      const refLoss = (ww: Map<string, Float32Array | Float64Array>) => refCrossEntropy(refForward(cfg, ww, inputs, { drop: refDrop(p, seed) }).logits, targets, V);
      const loss = tidy(() => {
        const l = crossEntropy(reshape(model.forward(inputs).logits, [B * T, V]), tensor(targets, [B * T], 'i32'));
        backward(l);
        return l;
      });
      const got = await loss.item();
      loss.dispose();
      expect(got).toBeCloseTo(refLoss(w), 4);
      expect(Math.abs(got - refCrossEntropy(refForward(cfg, w, inputs).logits, targets, V))).toBeGreaterThan(1e-3); // masks did act
      const sd = stateDict(model);
      const EPS = 1e-4;
      for (const [name, idx] of [['model.layers.0.mlp.up_proj.weight', [2, 301]], ['model.layers.1.self_attn.o_proj.weight', [7, 400]], ['model.embed_tokens.weight', [ids[0][1] * cfg.hidden_size + 3]]] as const) {
        const grad = await read(sd.get(name)!.grad!);
        for (const i of idx) {
          const plus = new Float64Array(w.get(name)!);
          const minus = new Float64Array(w.get(name)!);
          plus[i] += EPS;
          minus[i] -= EPS;
          const with_ = (v: Float64Array) => new Map<string, Float32Array | Float64Array>([...w, [name, v]]);
          expectClose([grad[i]], [(refLoss(with_(plus)) - refLoss(with_(minus))) / (2 * EPS)], { atol: 1e-5, rtol: 2e-3, name: `d loss / d ${name}[${i}]` });
        }
      }
      // Eval mode: the plain reference, and the generator does not advance.
      const state = model.dropoutState;
      model.eval();
      const evalLogits = tidy(() => model.forward(inputs).logits);
      expectClose(await read(evalLogits), refForward(cfg, w, inputs).logits, { ...TOL, name: 'eval-mode logits' });
      evalLogits.dispose();
      expect(model.dropoutState).toEqual(state);
    } finally {
      model.dispose();
    }
  });

  it('the generator state round-trips: restoring it repeats the masks', async () => {
    const cfg = smallConfig('qwen2', false);
    const w = randomWeights(cfg, 3);
    const model = new LlamaForCausalLM(cfg, { weights: (n) => w.get(n), dropout: 0.5, dropoutSeed: 1 });
    try {
      const ids = randomIds(2, 6, cfg.vocab_size, 9);
      const logits = async () => {
        const t = tidy(() => model.forward(ids).logits);
        const a = await read(t);
        t.dispose();
        return a;
      };
      const saved = model.dropoutState;
      const a = await logits();
      const b = await logits();
      model.dropoutState = saved;
      const c = await logits();
      expect(Array.from(b)).not.toEqual(Array.from(a));
      expect(Array.from(c)).toEqual(Array.from(a));
      model.dropout = 1;
      await expect(logits()).rejects.toThrow(/dropout 1 must be in \[0, 1\)/);
    } finally {
      model.dispose();
    }
  });
});
