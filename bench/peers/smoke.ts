// Smoke test for bench/peers: init every peer and print one timing of each function it has,
// at small sizes. Run: npx tsx bench/peers/smoke.ts (finishes in well under a minute here).
import { peers, type Peer, type PeerTiming, type TimeOpts } from './index.js';

const opts: TimeOpts = { warmup: 2, reps: 5 };

const cases: [string, (p: Peer) => Promise<PeerTiming> | undefined][] = [
  ['matmul 128x128x128', (p) => p.matmul?.(128, 128, 128, opts)],
  ['logSoftmax 64x1024', (p) => p.logSoftmax?.(64, 1024, opts)],
  ['crossEntropy 64x1024 (fwd+grad)', (p) => p.crossEntropy?.(64, 1024, opts)],
  ['tinyOp add 64 (per op)', (p) => p.tinyOp?.(opts)],
  ['mlpStep B=64 D=128 H=256', (p) => p.mlpStep?.(64, 128, 256, opts)],
];

let failed = false;
for (const peer of peers) {
  const t0 = performance.now();
  const ok = await peer.init();
  console.log(`${peer.name}: init ${ok ? 'ok' : 'UNAVAILABLE'} (${(performance.now() - t0).toFixed(0)} ms)`);
  if (!ok) continue;
  for (const [label, run] of cases) {
    try {
      const r = await run(peer);
      if (r) console.log(`  ${label.padEnd(34)} ${r.ms.toFixed(3).padStart(9)} ms`);
    } catch (e) {
      failed = true;
      console.log(`  ${label.padEnd(34)} ERROR ${e instanceof Error ? e.stack : String(e)}`);
    }
  }
  await peer.dispose();
}
if (failed) process.exitCode = 1;
