// `npm run bench`: kernel throughput of our engine against peers measured in the same run on the
// same device (TF.js WebGPU and WASM, jax-js WebGPU, plain float64 JS). Prints a markdown table;
// `--json FILE` writes the rows; `--quick` runs a reduced set (under 2 minutes on lavapipe).
import { writeFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { device } from '../engine/index.js';
import { initNode, nodeGPU } from '../engine/node/index.js';
import { jsF64, ours } from './ours.js';
import {
  DECODE_SHAPE, SMALL_DECODER, TRAIN_SHAPE, attentionComposite, timeAttention, timeDecoderStep, timeDecoding,
} from './transformer.js';
import { attention, tokenPreferenceLoss } from '../engine/index.js';
import { TOKEN_LOSS_SHAPE, timeTokenLoss, tokenPreferenceComposite } from './ilrec.js';
import { STEP_LC, STEP_SHAPE, stepTokens, timeTrainStep } from './ilrec-steps.js';
import { errMsg } from './peers/common.js';
import { installWebGPUShim, peerDeviceErrors, peers, type Peer, type PeerTiming, type TimeOpts } from './peers/index.js';

interface Measure {
  ms: number;
  gflops?: number;
  gbps?: number;
  /** Tokens per second, for the decoder rows. */
  tokensPerSec?: number;
  /** WebGPU errors the peer's device raised during the case: its timing is of rejected work. */
  deviceErrors?: number;
}

interface Row extends Measure {
  name: string;
  shape: string;
  peers: Record<string, Measure>;
}

interface Case {
  name: string;
  shape: string;
  /** Floating-point operations per call (for GFLOP/s) or bytes moved (for GB/s). */
  flops?: number;
  bytes?: number;
  /** Include in --quick. */
  quick: boolean;
  /** Slow peers (e.g. the float64 floor) skip big shapes. */
  skip?: string[];
  run: (p: Peer, o: TimeOpts) => Promise<PeerTiming> | undefined;
  /** Rows measured without the library peers: our path first, then named alternatives of ours. */
  own?: Record<string, (o: TimeOpts) => Promise<PeerTiming>>;
  /** Tokens processed per call (for tokens/s). */
  tokens?: number;
}

const ATT = (T: number) => ({ B: 1, NH: 4, T, hs: 32 });
const attnFlops = (T: number, grad: boolean) => {
  const { B, NH, hs } = ATT(T);
  // Causal: half of QKᵀ and PV; backward costs about 2.5× the forward (dQ, dK, dV, recomputed P).
  const fwd = 2 * 2 * B * NH * T * T * hs * 0.5;
  return grad ? fwd * 3.5 : fwd;
};
const attentionCase = (T: number, grad: boolean, quick: boolean): Case => ({
  name: grad ? 'attention fwd+bwd' : 'attention fwd', shape: `B=1 NH=4 T=${T} hs=32 causal`, flops: attnFlops(T, grad), quick,
  run: () => undefined,
  own: {
    ours: (o) => timeAttention(attention, ATT(T), grad, o),
    composite: (o) => timeAttention(attentionComposite, ATT(T), grad, o),
  },
});

const F32 = 4;

const cases: Case[] = [
  { name: 'matmul', shape: '512x512x512', flops: 2 * 512 ** 3, quick: true, run: (p, o) => p.matmul?.(512, 512, 512, o) },
  { name: 'matmul', shape: '1024x1024x1024', flops: 2 * 1024 ** 3, quick: true, skip: ['js-f64'], run: (p, o) => p.matmul?.(1024, 1024, 1024, o) },
  { name: 'matmul (LM head)', shape: '256x512 · 512x8192', flops: 2 * 256 * 512 * 8192, quick: true, skip: ['js-f64'], run: (p, o) => p.matmul?.(256, 512, 8192, o) },
  // log-softmax reads and writes the [R, V] tensor once each.
  { name: 'log-softmax', shape: '256x8192', bytes: 2 * 256 * 8192 * F32, quick: true, run: (p, o) => p.logSoftmax?.(256, 8192, o) },
  // fused cross-entropy: reads the logits and writes dlogits (loss and targets are negligible).
  { name: 'cross-entropy fwd+bwd', shape: '256x8192', bytes: 2 * 256 * 8192 * F32, quick: true, run: (p, o) => p.crossEntropy?.(256, 8192, o) },
  { name: 'tiny op dispatch', shape: '64 floats', quick: true, run: (p, o) => p.tinyOp?.(o) },
  // relu(x W1 + b1) W2 + b2, MSE: forward 2 matmuls, backward 4.
  { name: 'MLP fwd+bwd step', shape: 'B=256 D=512 H=1024', flops: 6 * 2 * 256 * 512 * 1024, quick: false, run: (p, o) => p.mlpStep?.(256, 512, 1024, o) },
  attentionCase(128, false, true),
  attentionCase(128, true, true),
  attentionCase(512, false, false),
  attentionCase(512, true, false),
  {
    // Fused ILRec token loss vs its composite twin (forward + backward, default settings) and vs
    // itself with the log-prob threshold (one more pass over D; with the mean over the K layers,
    // as a sum of K log-probabilities against φ = 1 leaves N empty here, while the mean gives about
    // the |N| of the default row); bytes: reading zL, zI [K, R, V] and the rewards once and writing
    // dzL and dzI once.
    name: 'ILRec token loss fwd+bwd', shape: `R=${TOKEN_LOSS_SHAPE.R} V=${TOKEN_LOSS_SHAPE.V} K=${TOKEN_LOSS_SHAPE.K}`, quick: true,
    bytes: TOKEN_LOSS_SHAPE.R * TOKEN_LOSS_SHAPE.V * (2 * TOKEN_LOSS_SHAPE.K + 3) * F32,
    run: () => undefined,
    own: {
      ours: (o) => timeTokenLoss(tokenPreferenceLoss, o), composite: (o) => timeTokenLoss(tokenPreferenceComposite, o),
      'ours logprob': (o) => timeTokenLoss(tokenPreferenceLoss, o, { threshold: 'logprob', aggregator: 'mean' }),
    },
  },
  {
    // ILRec optimizer step against an SFT step on the same windows: the ratio is ILRec's overhead
    // (lens logits of the intermediate layers, CF rewards, the fused token loss).
    name: 'ILRec train step', shape: `L=${STEP_SHAPE.layers} C=${STEP_SHAPE.hidden} ${STEP_SHAPE.items} items, ${STEP_SHAPE.windows} windows × ${STEP_SHAPE.windowItems} items`,
    tokens: stepTokens(STEP_LC), quick: false, run: () => undefined,
    own: { ours: (o) => timeTrainStep('ilrec', o), 'sft step': (o) => timeTrainStep('sft', o) },
  },
  {
    name: 'decoder train step', shape: `L=${SMALL_DECODER.num_hidden_layers} C=${SMALL_DECODER.hidden_size} V=${SMALL_DECODER.vocab_size} B=${TRAIN_SHAPE.B} T=${TRAIN_SHAPE.T}`,
    tokens: TRAIN_SHAPE.B * TRAIN_SHAPE.T, quick: false, run: () => undefined, own: { ours: timeDecoderStep },
  },
  {
    name: 'greedy decoding (KV cache)', shape: `${DECODE_SHAPE.prompts} seqs × ${DECODE_SHAPE.newTokens} new tokens, same model`,
    tokens: DECODE_SHAPE.prompts * DECODE_SHAPE.newTokens, quick: false, run: () => undefined, own: { ours: timeDecoding },
  },
];

function measure(c: Case, t: PeerTiming): Measure {
  const m: Measure = { ms: t.ms };
  if (c.flops) m.gflops = c.flops / (t.ms * 1e6);
  if (c.bytes) m.gbps = c.bytes / (t.ms * 1e6);
  if (c.tokens) m.tokensPerSec = c.tokens / (t.ms / 1000);
  return m;
}

function fmt(m: Measure | undefined): string {
  if (!m) return '–';
  if (m.deviceErrors) return `invalid (${m.deviceErrors} WebGPU errors; ${m.ms.toFixed(2)} ms)`;
  if (m.tokensPerSec !== undefined) return `${m.ms.toFixed(2)} ms (${m.tokensPerSec.toFixed(0)} tok/s)`;
  const rate = m.gflops !== undefined ? `${m.gflops.toFixed(1)} GFLOP/s` : m.gbps !== undefined ? `${m.gbps.toFixed(2)} GB/s` : `${(m.ms * 1000).toFixed(1)} µs`;
  return m.gflops !== undefined || m.gbps !== undefined ? `${m.ms.toFixed(2)} ms (${rate})` : rate;
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('npm run bench --')
    .option('json', { type: 'string', describe: 'write the rows as JSON to this file' })
    .option('quick', { type: 'boolean', default: false, describe: 'reduced set, fewer repetitions (< 2 min on lavapipe)' })
    .option('reps', { type: 'number', describe: 'timed repetitions per case (median reported)' })
    .option('warmup', { type: 'number', describe: 'untimed repetitions first' })
    .option('peers', { type: 'string', describe: 'comma-separated peer names to run (default: all available)' })
    .option('only', { type: 'string', describe: 'run only cases whose name contains this' })
    .strict()
    .help()
    .parse();

  const dev = await initNode();
  installWebGPUShim(nodeGPU()); // peers share Dawn's instance with us
  const opts: TimeOpts = { warmup: argv.warmup ?? (argv.quick ? 1 : 2), reps: argv.reps ?? (argv.quick ? 3 : 7) };
  const wanted = argv.peers?.split(',');
  const active: Peer[] = [ours];
  for (const p of [...peers, jsF64]) {
    if (wanted && !wanted.includes(p.name)) continue;
    try {
      if (await p.init()) active.push(p);
    } catch (e) {
      console.warn(`peer ${p.name} unavailable: ${errMsg(e)}`);
    }
  }
  console.log(`device: ${dev.description}`);
  console.log(`peers: ${active.slice(1).map((p) => p.name).join(', ')}; warmup ${opts.warmup}, median of ${opts.reps}`);

  const rows: Row[] = [];
  for (const c of cases) {
    if (argv.quick && !c.quick) continue;
    if (argv.only && !c.name.includes(argv.only)) continue;
    let row: Row | null = null;
    if (c.own) {
      for (const [name, f] of Object.entries(c.own)) {
        const m = measure(c, await f(opts));
        if (!row) row = { name: c.name, shape: c.shape, ...m, peers: {} };
        else row.peers[name] = m;
      }
    }
    for (const p of c.own ? [] : active) {
      if (c.skip?.includes(p.name) && p !== ours) continue;
      let t: PeerTiming | undefined;
      const errorsBefore = peerDeviceErrors();
      try {
        t = await c.run(p, opts);
        await new Promise((r) => setTimeout(r, 20)); // uncaptured errors arrive as events after the work
      } catch (e) {
        console.warn(`${p.name} ${c.name} ${c.shape}: ${errMsg(e)}`);
        continue;
      }
      if (!t) continue;
      const m = measure(c, t);
      const errors = peerDeviceErrors() - errorsBefore;
      if (errors > 0) m.deviceErrors = errors;
      if (p === ours) row = { name: c.name, shape: c.shape, ...m, peers: {} };
      else if (row) row.peers[p.name] = m;
    }
    if (!row) continue;
    rows.push(row);
    console.log(`${c.name.padEnd(22)} ${c.shape.padEnd(20)} ours ${fmt(row)}  ${Object.entries(row.peers).map(([k, v]) => `${k} ${fmt(v)}`).join('  ')}`);
  }

  const ownNames = [...new Set(rows.flatMap((r) => Object.keys(r.peers)))].filter((n) => !active.some((p) => p.name === n));
  const names = [...active.slice(1).map((p) => p.name), ...(ownNames.length ? ownNames : ['composite'])];
  const lines = [
    `| kernel | shape | ours | ${names.map((n) => `${n} | ours/${n}`).join(' | ')} |`,
    `|---|---|---|${names.map(() => '---|---').join('|')}|`,
    ...rows.map((r) => `| ${r.name} | ${r.shape} | ${fmt(r)} | ${names.map((n) => {
      const m = r.peers[n];
      return `${fmt(m)} | ${m && !m.deviceErrors ? `${(m.ms / r.ms).toFixed(2)}×` : '–'}`;
    }).join(' | ')} |`),
  ];
  console.log(`\n${lines.join('\n')}\n\n(ours/peer = peer time ÷ our time: above 1 means we are faster)`);
  if (argv.json) {
    writeFileSync(argv.json, JSON.stringify({ device: dev.description, date: new Date().toISOString(), opts, rows }, null, 2));
    console.log(`wrote ${argv.json}`);
  }
  for (const p of active) await p.dispose();
  device().destroy();
  process.exit(0);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
