// Shared helpers for the peer-library adapters: the timing loop (median of reps after warmup)
// and deterministic random inputs, so every peer sees the same numbers for the same shape.
import type { PeerTiming, TimeOpts } from './index.js';

/** Number of chained 64-float adds per repetition in `tinyOp`; the result is total / this. */
export const TINY_OP_CHAIN = 1000;
/** Element count of the tiny elementwise op. */
export const TINY_OP_SIZE = 64;

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Run `rep` `opts.warmup` times untimed, then `opts.reps` times timed; return the median.
 * `rep` must do one complete repetition INCLUDING waiting for the device to finish
 * (each peer supplies its own completion fence), and must free what it allocates.
 * `perRep` divides each sample (used by tinyOp: ms for a chain of n ops / n).
 */
export async function timeReps(
  rep: () => Promise<void>,
  opts: TimeOpts,
  perRep = 1,
): Promise<PeerTiming> {
  for (let i = 0; i < opts.warmup; i++) await rep();
  const samples: number[] = [];
  for (let i = 0; i < Math.max(1, opts.reps); i++) {
    const t0 = performance.now();
    await rep();
    samples.push((performance.now() - t0) / perRep);
  }
  return { ms: median(samples) };
}

/** mulberry32: tiny, fast, seedable 32-bit PRNG returning floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` standard-normal floats times `scale` (Box-Muller), deterministic in `seed`. */
export function randn(n: number, seed: number, scale = 1): Float32Array<ArrayBuffer> {
  const rnd = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - rnd(); // (0, 1], keeps log finite
    const r = Math.sqrt(-2 * Math.log(u)) * scale;
    const th = 2 * Math.PI * rnd();
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
  return out;
}

/** `n` integers uniform in [0, hi), deterministic in `seed` (class targets). */
export function randint(n: number, hi: number, seed: number): Int32Array<ArrayBuffer> {
  const rnd = mulberry32(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rnd() * hi);
  return out;
}

/** Error message of an unknown thrown value. */
export function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
