// Peer libraries for `npm run bench`: a uniform timing interface over TF.js (WebGPU, WASM) and
// jax-js (WebGPU), run in the same Node process and on the same (Dawn) adapter as our engine.
import { jaxWebGPU } from './jax.js';
import { tfjsWasm, tfjsWebGPU } from './tfjs.js';

/** Median wall-clock milliseconds per call, device completion included. */
export interface PeerTiming {
  ms: number;
}

/** Median over `reps` timed repetitions, after `warmup` untimed ones (compiles, uploads). */
export interface TimeOpts {
  warmup: number;
  reps: number;
}

export interface Peer {
  name: string; // 'tfjs-webgpu' | 'tfjs-wasm' | 'jax-js-webgpu'
  /** Load the library and its backend; false (after a console note why) if unavailable. */
  init(): Promise<boolean>;
  /** [M,K] x [K,N], f32. */
  matmul?(M: number, K: number, N: number, opts: TimeOpts): Promise<PeerTiming>;
  /** log-softmax over the last axis of [R,V]. */
  logSoftmax?(R: number, V: number, opts: TimeOpts): Promise<PeerTiming>;
  /** Mean cross-entropy of [R,V] logits vs int targets: loss AND d loss / d logits. */
  crossEntropy?(R: number, V: number, opts: TimeOpts): Promise<PeerTiming>;
  /** Per-dispatch overhead: (time for n chained 64-float adds, fenced once) / n. */
  tinyOp?(opts: TimeOpts): Promise<PeerTiming>;
  /** Forward+backward of relu(x@W1+b1)@W2+b2 vs y, MSE loss, grads of W1,b1,W2,b2.
   *  x, y: [B,D]; W1: [D,H]; W2: [H,D]. */
  mlpStep?(B: number, D: number, H: number, opts: TimeOpts): Promise<PeerTiming>;
  /** Free what the peer holds. A disposed TF.js WebGPU peer cannot be re-initialised. */
  dispose(): Promise<void>;
}

export { TINY_OP_CHAIN } from './common.js';
export { installWebGPUShim, peerDeviceErrors } from './gpu-shim.js';

/** All peers. Importing this module loads no peer library; init() does, lazily. */
export const peers: Peer[] = [tfjsWebGPU, tfjsWasm, jaxWebGPU];
