// LoRA: adapters on the target projections only, base frozen (no gradient, unchanged by AdamW), seeded
// dropout in training mode, and mergeLoRA giving a plain HF model with the adapted model's outputs.
import { describe, expect, it } from 'vitest';
import { AdamW, backward, crossEntropy, reshape, tensor, tidy } from '../../engine/index.js';
import { expectedTensors } from '../../engine/io/hf.js';
import {
  LlamaForCausalLM, LoRALinear, applyLoRA, loadStateDict, loraModules, loraParameters, makeConfig, mergeLoRA, namedLoraParameters, stateDict,
  type LlamaLikeConfig,
} from '../../engine/model/index.js';
import { Rng } from '../../engine/index.js';
import { expectClose, useDevice } from '../helpers.js';
import { randomWeights } from './reference.js';

useDevice();

const cfg: LlamaLikeConfig = makeConfig({
  model_type: 'qwen2', vocab_size: 37, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, rms_norm_eps: 1e-5, tie_word_embeddings: true,
});
const ids = [[1, 4, 9, 16, 25, 36, 7], [2, 3, 5, 7, 11, 13, 17]];

function makeModel(): LlamaForCausalLM {
  const w = randomWeights(cfg, 7);
  return new LlamaForCausalLM(cfg, { weights: (n) => w.get(n) });
}

async function logitsOf(model: LlamaForCausalLM): Promise<Float32Array> {
  const t = tidy(() => model.forward(ids).logits);
  const a = (await t.toArray()) as Float32Array;
  t.dispose();
  return a;
}

/** Gives every lora_B random values (it starts at zero, which would make the adapters invisible). */
function randomizeB(model: LlamaForCausalLM, seed: number): void {
  const rng = new Rng(seed);
  const w = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [n, t] of namedLoraParameters(model))
    if (n.endsWith('lora_B.weight')) w.set(n, { shape: [...t.shape], data: Float32Array.from({ length: t.size }, () => (rng.next() * 2 - 1) * 0.3) });
  loadStateDict(model, w, { strict: false });
}

describe('LoRA', () => {
  it('wraps the targets, freezes the base, starts as the identity (B = 0)', async () => {
    const model = makeModel();
    try {
      const before = await logitsOf(model);
      const mods = applyLoRA(model, { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'], seed: 3 });
      expect(mods.length).toBe(3 * cfg.num_hidden_layers);
      expect(mods.every((m) => m instanceof LoRALinear && m.scaling === 2)).toBe(true);
      const names = model.namedParameters().map(([n]) => n);
      expect(names).toEqual(namedLoraParameters(model).map(([n]) => n));
      expect(names.slice(0, 2)).toEqual(['model.layers.0.self_attn.q_proj.lora_A.weight', 'model.layers.0.self_attn.q_proj.lora_B.weight']);
      expect(loraParameters(model).length).toBe(2 * mods.length);
      // The base weights keep their HF names in the state dict, frozen.
      const sd = stateDict(model);
      expect(sd.get('model.layers.0.self_attn.q_proj.weight')!.requiresGrad).toBe(false);
      expect(sd.get('model.embed_tokens.weight')!.requiresGrad).toBe(false);
      expect(sd.get('model.layers.0.self_attn.q_proj.lora_A.weight')!.shape).toEqual([4, 24]);
      expect(sd.get('model.layers.1.mlp.down_proj.lora_B.weight')!.shape).toEqual([24, 4]);
      expectClose(await logitsOf(model), before, { atol: 1e-6, rtol: 1e-6, name: 'B = 0 leaves the model unchanged' });
      // Same seed, same A.
      const other = makeModel();
      applyLoRA(other, { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'], seed: 3 });
      expect(await loraParameters(other)[0].toArray()).toEqual(await loraParameters(model)[0].toArray());
      const bound = 1 / Math.sqrt(24);
      for (const v of await loraParameters(model)[0].toArray()) expect(Math.abs(v)).toBeLessThanOrEqual(bound);
      other.dispose();
    } finally {
      model.dispose();
    }
  });

  it('trains only the adapters: the base gets no gradient and AdamW leaves it bit-identical', async () => {
    const model = makeModel();
    try {
      applyLoRA(model, { r: 4, alpha: 8, dropout: 0.25, seed: 1 });
      randomizeB(model, 2);
      const sd = stateDict(model);
      const baseNames = [...sd.keys()].filter((n) => !n.includes('.lora_'));
      const baseBefore = await Promise.all(baseNames.map((n) => sd.get(n)!.toArray()));
      const opt = new AdamW(loraParameters(model), { lr: 1e-2 });
      const targets = tensor(ids.flatMap((r) => [...r.slice(1), 0]), [14], 'i32');
      const A0 = await loraParameters(model)[0].toArray();
      model.train();
      tidy(() => {
        const loss = crossEntropy(reshape(model.forward(ids).logits, [14, cfg.vocab_size]), targets);
        backward(loss);
      });
      for (const n of baseNames) expect(sd.get(n)!.grad, n).toBeNull();
      for (const p of loraParameters(model)) expect(p.grad).not.toBeNull();
      opt.step();
      opt.zeroGrad();
      const baseAfter = await Promise.all(baseNames.map((n) => sd.get(n)!.toArray()));
      baseNames.forEach((n, i) => expect(baseAfter[i], n).toEqual(baseBefore[i]));
      expect(await loraParameters(model)[0].toArray()).not.toEqual(A0);
      // Dropout is active in training mode only.
      const evalOut = await logitsOf(model.eval());
      model.train();
      const trainOut = await logitsOf(model);
      expect(trainOut).not.toEqual(evalOut);
      targets.dispose();
      opt.dispose();
    } finally {
      model.dispose();
    }
  });

  it('mergeLoRA folds B·A·alpha/r into the base: same outputs, plain HF parameters again', async () => {
    const model = makeModel();
    try {
      applyLoRA(model, { r: 3, alpha: 5, dropout: 0.1, seed: 9 });
      randomizeB(model, 4);
      model.eval();
      const adapted = await logitsOf(model);
      mergeLoRA(model);
      expect(loraModules(model).length).toBe(0);
      expect(model.namedParameters().map(([n]) => n)).toEqual([...expectedTensors(cfg).keys()]);
      expect(model.parameters().every((p) => p.requiresGrad)).toBe(true);
      expectClose(await logitsOf(model), adapted, { atol: 2e-5, rtol: 2e-5, name: 'merged vs adapted logits' });
    } finally {
      model.dispose();
    }
  });
});
