// jax-js peer: its WebGPU backend on Dawn through our navigator.gpu shim, written the way a
// JAX user would (jit + valueAndGrad; jax-js's move semantics handled with .ref).
import type * as JaxNS from '@jax-js/jax';
import type { Peer, PeerTiming, TimeOpts } from './index.js';
import { TINY_OP_CHAIN, TINY_OP_SIZE, errMsg, randint, randn, timeReps } from './common.js';
import { installWebGPUShim } from './gpu-shim.js';

type Jax = typeof JaxNS;
type Arr = JaxNS.Array;

/**
 * jax-js notes (v0.1.25):
 * - Ownership: every op CONSUMES its array arguments (Rust-like moves). Inputs reused across
 *   repetitions are therefore passed as `x.ref` (refcount + 1), and outputs are disposed.
 * - Laziness: ops are recorded and only submitted to the GPU when a result is awaited.
 *   `blockUntilReady()` submits the pending work and then maps a 0-byte read of each output
 *   buffer, which resolves only after all earlier queue work is done: it is jax's own
 *   "wait for the device" (the analogue of block_until_ready in JAX), with no data copied.
 * - Small constant arrays (< 128 elements, all equal) become inline constants rather than
 *   buffers, so tiny inputs here are random (never constant) to keep them real buffers.
 */
export function jaxWebGPUPeer(): Peer {
  let jax: Jax | null = null;

  function lib(): Jax {
    if (!jax) throw new Error('jax-js-webgpu: init() first');
    return jax;
  }

  /** Time `step` (returns the arrays it produced; must not consume `inputs`), then free. */
  async function time(
    step: () => JaxNS.JsTree<Arr>,
    inputs: Arr[],
    opts: TimeOpts,
    perRep = 1,
  ): Promise<PeerTiming> {
    const j = lib();
    try {
      return await timeReps(
        async () => {
          const out = step();
          await j.blockUntilReady(out);
          j.tree.dispose(out);
        },
        opts,
        perRep,
      );
    } finally {
      for (const x of inputs) x.dispose();
    }
  }

  const f32 = (j: Jax, data: Float32Array<ArrayBuffer>, shape: number[]) =>
    j.numpy.array(data, { shape, dtype: j.DType.Float32, device: 'webgpu' });

  return {
    name: 'jax-js-webgpu',

    async init() {
      try {
        installWebGPUShim();
        const j = await import('@jax-js/jax');
        const available = await j.init('webgpu');
        if (!available.includes('webgpu')) {
          console.warn('[peers] jax-js-webgpu: jax.init("webgpu") found no WebGPU adapter');
          return false;
        }
        j.defaultDevice('webgpu'); // jit-compiled functions run on the default device
        jax = j;
        return true;
      } catch (e) {
        console.warn(`[peers] jax-js-webgpu: unavailable: ${errMsg(e)}`);
        return false;
      }
    },

    async matmul(M, K, N, opts) {
      const j = lib();
      const a = f32(j, randn(M * K, 1), [M, K]);
      const b = f32(j, randn(K * N, 2), [K, N]);
      // A single routine: no jit needed (jit would not change the kernel).
      return time(() => j.numpy.matmul(a.ref, b.ref), [a, b], opts);
    },

    async logSoftmax(R, V, opts) {
      const j = lib();
      const x = f32(j, randn(R * V, 3), [R, V]);
      const f = j.jit((z: Arr) => j.nn.logSoftmax(z, -1));
      try {
        return await time(() => f(x.ref), [x], opts);
      } finally {
        f.dispose();
      }
    },

    async crossEntropy(R, V, opts) {
      const j = lib();
      const { numpy: np, nn } = j;
      const logits = f32(j, randn(R * V, 4), [R, V]);
      const targets = np.array(randint(R, V, 5), { shape: [R], dtype: j.DType.Int32 });
      // jit(valueAndGrad(mean CE)), CE written with a one-hot mask like optax's
      // softmax_cross_entropy. The integer-label form (takeAlongAxis) runs eagerly but its
      // gradient lowers to a scatter that jax-js 0.1.25's jit rejects ("routine primitive
      // scatter input is not imm"), and un-jitted it costs more dispatches.
      const ce = (l: Arr, t: Arr) =>
        np.mean(np.sum(nn.oneHot(t, V).mul(nn.logSoftmax(l, -1)), -1)).mul(-1);
      const f = j.jit(j.valueAndGrad(ce)); // gradient w.r.t. the logits (argument 0)
      try {
        return await time(() => f(logits.ref, targets.ref), [logits, targets], opts);
      } finally {
        f.dispose();
      }
    },

    async tinyOp(opts) {
      const j = lib();
      const a = f32(j, randn(TINY_OP_SIZE, 6), [TINY_OP_SIZE]);
      const b = f32(j, randn(TINY_OP_SIZE, 7), [TINY_OP_SIZE]);
      // Eager (un-jitted) dependent adds: jax-js dispatches one kernel per op (checked: 100
      // adds -> 100 dispatches). Under jit they would fuse into one kernel.
      const chain = () => {
        let t = a.ref;
        for (let i = 0; i < TINY_OP_CHAIN; i++) t = j.numpy.add(t, b.ref);
        return t;
      };
      return time(chain, [a, b], opts, TINY_OP_CHAIN);
    },

    async mlpStep(B, D, H, opts) {
      const j = lib();
      const { numpy: np, nn } = j;
      const x = f32(j, randn(B * D, 8), [B, D]);
      const y = f32(j, randn(B * D, 9), [B, D]);
      const params = {
        W1: f32(j, randn(D * H, 10, 1 / Math.sqrt(D)), [D, H]),
        b1: f32(j, randn(H, 11, 0.1), [H]),
        W2: f32(j, randn(H * D, 12, 1 / Math.sqrt(H)), [H, D]),
        b2: f32(j, randn(D, 13, 0.1), [D]),
      };
      type Params = typeof params;
      const loss = (p: Params, xb: Arr, yb: Arr) => {
        const h = nn.relu(np.add(np.matmul(xb, p.W1), p.b1));
        const out = np.add(np.matmul(h, p.W2), p.b2);
        return np.mean(np.square(np.subtract(out, yb)));
      };
      const f = j.jit(j.valueAndGrad(loss)); // grads of all params (argument 0 is the tree)
      try {
        return await time(
          () => f(j.tree.ref(params), x.ref, y.ref),
          [x, y, params.W1, params.b1, params.W2, params.b2],
          opts,
        );
      } finally {
        f.dispose();
      }
    },

    async dispose() {
      // Per-call arrays and jitted functions are freed by each method. jax-js has no API to
      // tear down an initialised backend, so its GPUDevice lives until the process exits.
    },
  };
}

export const jaxWebGPU: Peer = jaxWebGPUPeer();
