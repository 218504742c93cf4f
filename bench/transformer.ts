// Transformer rows of `npm run bench`: fused attention against our composite path (matmul +
// masked softmax + matmul; TF.js has no fused attention), a decoder training step and KV-cache
// decoding of a small Llama-shaped model, reported as tokens/s.
import {
  AdamW, Module, attention, attentionComposite, backward, clipGradNorm, crossEntropy, device, randn, reshape, tensor, tidy, type Tensor,
} from '../engine/index.js';
import { LlamaForCausalLM, greedy, makeConfig } from '../engine/model/index.js';
import { timeReps } from './peers/common.js';
import type { PeerTiming, TimeOpts } from './peers/index.js';

export interface AttentionShape {
  B: number;
  NH: number;
  T: number;
  hs: number;
}

type AttnFn = typeof attention;

/** Causal self-attention forward (and backward when `withGrad`) at one shape. */
export async function timeAttention(f: AttnFn, s: AttentionShape, withGrad: boolean, opts: TimeOpts): Promise<PeerTiming> {
  const shape = [s.B, s.NH, s.T, s.hs];
  const [q, k, v] = [1, 2, 3].map((seed) => randn(shape, { seed, requiresGrad: withGrad }));
  const dout = randn(shape, { seed: 4 });
  try {
    return await timeReps(async () => {
      tidy(() => {
        const o = f(q, k, v, { causal: true });
        if (withGrad) backward(o, dout);
      });
      for (const t of [q, k, v]) {
        t.grad?.dispose();
        t.grad = null;
      }
      await device().sync();
    }, opts);
  } finally {
    for (const t of [q, k, v, dout]) t.dispose();
  }
}

/** The small decoder the throughput rows use (fits lavapipe; same code as a real checkpoint). */
export const SMALL_DECODER = {
  model_type: 'llama' as const, vocab_size: 512, hidden_size: 128, intermediate_size: 344, num_hidden_layers: 4,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256,
};
export const TRAIN_SHAPE = { B: 8, T: 64 };
export const DECODE_SHAPE = { prompts: 8, promptLen: 16, newTokens: 32 };

/**
 * Median ms of one optimizer step of `model` on `loss` (forward and loss inside, backward, global-norm
 * clip at 1, AdamW); frees the model and the optimizer afterwards.
 */
export async function timeTrainSteps(model: Module, loss: () => Tensor, opts: TimeOpts): Promise<PeerTiming> {
  const opt = new AdamW(model.parameters(), { lr: 1e-4 });
  model.train();
  try {
    return await timeReps(async () => {
      tidy(() => {
        backward(loss());
        clipGradNorm(model.parameters(), 1).dispose();
        opt.step();
        opt.zeroGrad();
      });
      await device().sync();
    }, opts);
  } finally {
    opt.dispose();
    model.dispose();
  }
}

/** One training step (forward, cross-entropy, backward, clip, AdamW): ms per step; tokens = B·T. */
export async function timeDecoderStep(opts: TimeOpts): Promise<PeerTiming> {
  const model = new LlamaForCausalLM(makeConfig(SMALL_DECODER), { init: { seed: 1, std: 0.02 } });
  const { B, T } = TRAIN_SHAPE;
  const V = SMALL_DECODER.vocab_size;
  const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 31 + t * 7) % V));
  const targets = ids.flatMap((row) => row.map((x) => (x + 1) % V));
  return timeTrainSteps(model, () => crossEntropy(reshape(model.forward(ids).logits, [B * T, V]), tensor(targets, [B * T], 'i32')), opts);
}

/** Greedy KV-cache decoding of `newTokens` for `prompts` sequences: ms per call. */
export async function timeDecoding(opts: TimeOpts): Promise<PeerTiming> {
  const model = new LlamaForCausalLM(makeConfig(SMALL_DECODER), { init: { seed: 1, std: 0.02 } });
  const { prompts, promptLen, newTokens } = DECODE_SHAPE;
  const V = SMALL_DECODER.vocab_size;
  const ps = Array.from({ length: prompts }, (_, b) => Array.from({ length: promptLen }, (_, t) => (b * 13 + t * 5) % V));
  try {
    return await timeReps(async () => {
      await greedy(model, ps, { maxNewTokens: newTokens, eosTokenIds: [] });
    }, opts);
  } finally {
    model.dispose();
  }
}

export { attentionComposite };
