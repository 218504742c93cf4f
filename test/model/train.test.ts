// Training from scratch: a tiny causal LM learns synthetic next-token rules (a fixed random permutation;
// repeating random patterns, which need attention) to losses far below the unigram entropy of the data.
import { describe, expect, it } from 'vitest';
import { AdamW, backward, clipGradNorm, crossEntropy, reshape, tensor, tidy } from '../../engine/index.js';
import { Rng } from '../../engine/index.js';
import { LlamaForCausalLM, makeConfig } from '../../engine/model/index.js';
import { useDevice } from '../helpers.js';

useDevice();

/** A run's settings: model, data and optimisation. */
interface TrainConfig {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  batch: number;
  seqLen: number;
  steps: number;
  lr: number;
  clip: number;
  seed: number;
  /** Final training loss must be below this fraction of the data's unigram entropy. */
  targetFraction: number;
}

const MODEL = { vocab: 32, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, clip: 1, seed: 1, targetFraction: 0.2 };
/** x_{t+1} = π(x_t): learnable from the current token alone (embeddings and MLP). */
const PERMUTATION: TrainConfig = { ...MODEL, batch: 8, seqLen: 16, steps: 80, lr: 1e-2 };
/** A random pattern of PERIOD tokens repeated: each token copies the one PERIOD − 1 back (needs attention). */
// The attention solution appears after a plateau whose length depends on float rounding (fused and
// composite attention agree to ~1e-6 yet leave it at different steps), so allow ample steps.
const REPEAT: TrainConfig = { ...MODEL, batch: 8, seqLen: 24, steps: 420, lr: 1e-2 };
const PERIOD = 4;
/** Targets that cannot be predicted (the pattern's first tokens) are left out of the loss. */
const IGNORE = -100;

/** −Σ p log p of the counted targets' empirical distribution (nats): the best loss without context. */
function unigramEntropy(targets: number[], V: number): number {
  const counts = new Array<number>(V).fill(0);
  let n = 0;
  for (const t of targets)
    if (t !== IGNORE) {
      counts[t]++;
      n++;
    }
  return -counts.filter((k) => k > 0).reduce((h, k) => h + (k / n) * Math.log(k / n), 0);
}

/**
 * Trains a fresh model on batches from `data` (sequences of seqLen + 1 tokens and their targets) and
 * returns the losses read every few steps and the unigram entropy of all targets seen.
 */
async function train(c: TrainConfig, data: (rng: Rng) => { seqs: number[][]; targets: number[] }, name: string): Promise<{ losses: number[]; H: number }> {
  const rng = new Rng(c.seed);
  const cfg = makeConfig({
    model_type: 'llama', vocab_size: c.vocab, hidden_size: c.hidden, intermediate_size: c.intermediate, num_hidden_layers: c.layers,
    num_attention_heads: c.heads, num_key_value_heads: c.kvHeads, max_position_embeddings: c.seqLen,
  });
  const model = new LlamaForCausalLM(cfg, { init: { seed: c.seed, std: 0.02 } });
  const opt = new AdamW(model.parameters(), { lr: c.lr, weightDecay: 0 });
  const R = c.batch * c.seqLen;
  const allTargets: number[] = [];
  const losses: number[] = [];
  const t0 = performance.now();
  try {
    for (let step = 0; step < c.steps; step++) {
      const { seqs, targets } = data(rng);
      allTargets.push(...targets);
      const inputs = seqs.map((s) => s.slice(0, c.seqLen));
      const loss = tidy(() => {
        const logits = model.forward(inputs).logits;
        const l = crossEntropy(reshape(logits, [R, c.vocab]), tensor(targets, [R], 'i32'), { ignoreIndex: IGNORE });
        backward(l);
        clipGradNorm(model.parameters(), c.clip).dispose();
        opt.step();
        opt.zeroGrad();
        return l;
      });
      // Read every few steps only: each read-back waits for the GPU.
      if (step % 20 === 19 || step === 0 || step === c.steps - 1) losses.push(await loss.item());
      loss.dispose();
    }
  } finally {
    opt.dispose();
    model.dispose();
  }
  const H = unigramEntropy(allTargets, c.vocab);
  const secs = (performance.now() - t0) / 1000;
  console.log(`[train] ${name}: ${c.steps} steps in ${secs.toFixed(1)} s; unigram entropy ${H.toFixed(3)} nats; losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  return { losses, H };
}

describe('training from scratch', () => {
  it('learns a permutation next-token task well below the unigram entropy', async () => {
    const c = PERMUTATION;
    const rng = new Rng(c.seed + 1);
    // A random permutation (Fisher–Yates).
    const perm = Array.from({ length: c.vocab }, (_, i) => i);
    for (let i = c.vocab - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const { losses, H } = await train(c, (r) => {
      const seqs = Array.from({ length: c.batch }, () => {
        const s = [r.int(c.vocab)];
        while (s.length < c.seqLen + 1) s.push(perm[s[s.length - 1]]);
        return s;
      });
      return { seqs, targets: seqs.flatMap((s) => s.slice(1)) };
    }, 'permutation');
    expect(losses[0]).toBeGreaterThan(0.9 * Math.log(c.vocab)); // starts near chance
    expect(losses[losses.length - 1]).toBeLessThan(c.targetFraction * H);
  });

  it('learns to continue repeating patterns (attention) well below the unigram entropy', async () => {
    const c = REPEAT;
    const { losses, H } = await train(c, (r) => {
      const seqs = Array.from({ length: c.batch }, () => {
        const pattern = Array.from({ length: PERIOD }, () => r.int(c.vocab));
        return Array.from({ length: c.seqLen + 1 }, (_, i) => pattern[i % PERIOD]);
      });
      // Target t is token t + 1, predictable once a whole period has been seen (t + 1 ≥ PERIOD).
      return { seqs, targets: seqs.flatMap((s) => s.slice(1).map((x, t) => (t + 1 < PERIOD ? IGNORE : x))) };
    }, 'repeating patterns');
    expect(losses[0]).toBeGreaterThan(0.9 * Math.log(c.vocab));
    expect(losses[losses.length - 1]).toBeLessThan(c.targetFraction * H);
  });
});
