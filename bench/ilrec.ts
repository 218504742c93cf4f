// ILRec rows of `npm run bench`: the fused token-preference loss (engine/ops/token_losses.ts)
// against its composite twin, forward + backward, at a SID-vocabulary shape.
import { backward, device, randn, tensor, tidy, tokenPreferenceComposite, tokenPreferenceLoss, type TokenPreferenceConfig } from '../engine/index.js';
import { timeReps } from './peers/common.js';
import type { PeerTiming, TimeOpts } from './peers/index.js';

/** R response positions, V = 3 specials + 5 codebook levels of 256 SID tokens, K lens layers. */
export const TOKEN_LOSS_SHAPE = { R: 1024, V: 1283, K: 4, specials: 3, level: 256 };

type TokenLossFn = typeof tokenPreferenceLoss;

/** One forward + backward of `f` with the default ILRec settings (CRR on, teacher detached) and `cfg` over them. */
export async function timeTokenLoss(f: TokenLossFn, opts: TimeOpts, cfg: Partial<TokenPreferenceConfig> = {}): Promise<PeerTiming> {
  const { R, V, K, specials, level } = TOKEN_LOSS_SHAPE;
  const levels = (V - specials) / level;
  const zL = randn([R, V], { seed: 1, requiresGrad: true });
  const zI = randn([K, R, V], { seed: 2, requiresGrad: true });
  // Row r predicts a token of level r mod 5: its domain is that level's 256 SID tokens.
  const dom = Array.from({ length: R }, (_, r) => specials + (r % levels) * level).flatMap((lo) => [lo, lo + level]);
  const targets = tensor(Array.from({ length: R }, (_, r) => dom[2 * r] + ((r * 37) % level)), [R], 'i32');
  const domain = tensor(dom, [R, 2], 'i32');
  // CF log-masses, every 7th token without mass.
  const rw = Float32Array.from({ length: R * V }, (_, i) => (i % 7 === 0 ? -Infinity : -3 + Math.sin(i)));
  const rewards = tensor(rw, [R, V]);
  try {
    return await timeReps(async () => {
      tidy(() => backward(f({ zL, zI, targets, domain, rewards }, cfg).loss));
      for (const t of [zL, zI]) {
        t.grad?.dispose();
        t.grad = null;
      }
      await device().sync();
    }, opts);
  } finally {
    for (const t of [zL, zI, targets, domain, rewards]) t.dispose();
  }
}

export { tokenPreferenceComposite };
