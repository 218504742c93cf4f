// ILRec training-step rows of `npm run bench`: one optimizer step of SFT and of ILRec (lens logits of
// the intermediate layers, CF rewards from SASRec, the fused token loss) on the same batch of
// windows, at the Instruments shape of configs/instruments.json, so the ILRec overhead is a ratio.
import { SASRec } from '../ilrec/cf/sasrec.js';
import { RewardTable } from '../ilrec/cf/rewards.js';
import { Rng } from '../ilrec/data/rng.js';
import { disambiguate } from '../ilrec/data/sid.js';
import { DEFAULT_CONFIG } from '../ilrec/config.js';
import { itemCodesFromSidSet, windowBatch, type Window } from '../ilrec/train/examples.js';
import { ilrecLoss, layerSet, sftLoss, type IlrecLossContext } from '../ilrec/train/losses.js';
import { buildModel } from '../ilrec/train/pipeline.js';
import { timeTrainSteps } from './transformer.js';
import type { PeerTiming, TimeOpts } from './peers/index.js';

/** Instruments-sized catalogue (4 levels × 256 codes + a disambiguation level), 16 windows of 21 items. */
export const STEP_SHAPE = { items: 9922, levels: 4, codebook: 256, windows: 16, windowItems: 21, hidden: 128, layers: 4 };

/** Tokens one step feeds: every window is BOS + 21 items × Lc tokens, minus the last. */
export const stepTokens = (Lc: number) => STEP_SHAPE.windows * STEP_SHAPE.windowItems * Lc;

function setup() {
  const s = STEP_SHAPE;
  const rng = new Rng(7);
  const codes = itemCodesFromSidSet(disambiguate(Array.from({ length: s.items }, () => Array.from({ length: s.levels }, () => Math.floor(rng.next() * s.codebook)))));
  const sequences = Array.from({ length: s.windows }, () => Array.from({ length: s.windowItems + 2 }, () => Math.floor(rng.next() * s.items)));
  const windows: Window[] = sequences.map((seq, user) => ({ user, start: 0, items: seq.slice(0, s.windowItems), firstTarget: 1 }));
  const cfg = { ...DEFAULT_CONFIG, model: { ...DEFAULT_CONFIG.model, hidden: s.hidden, layers: s.layers } };
  const model = buildModel(cfg, codes.vocab.size, 1 + s.windowItems * codes.Lc);
  const cf = new SASRec(s.items, { hidden: 64, layers: 2, heads: 2, intermediate: 128, maxLen: 50 });
  cf.eval();
  const ctx: IlrecLossContext = {
    codes, cf, rewardTable: new RewardTable(codes.tokens), sequences, loss: cfg.ilrec.loss,
    layers: layerSet(model, cfg.ilrec.layersBelowLast), restrictToLevel: true,
  };
  return { model, cf, ctx, batch: windowBatch(windows, codes), Lc: codes.Lc };
}

/** One optimizer step (forward, loss, backward, clip, AdamW) of `kind`: ms per step. */
export async function timeTrainStep(kind: 'sft' | 'ilrec', opts: TimeOpts): Promise<PeerTiming> {
  const { model, cf, ctx, batch } = setup();
  try {
    return await timeTrainSteps(model, () => (kind === 'sft' ? sftLoss(model, batch) : ilrecLoss(model, batch, ctx)).loss, opts);
  } finally {
    cf.dispose();
  }
}

/** Code length of the bench catalogue (for the tokens column). */
export const STEP_LC = STEP_SHAPE.levels + 1;
