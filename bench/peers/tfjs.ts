// TF.js peers: the WebGPU backend (running on Dawn through our navigator.gpu shim) and the
// WASM backend (CPU; SIMD, single-threaded in Node), both inside one shared tfjs-core engine.
import { createRequire } from 'node:module';
import path from 'node:path';
import { build } from 'esbuild';
import type { Tensor } from '@tensorflow/tfjs-core';
import type { Peer, PeerTiming, TimeOpts } from './index.js';
import { TINY_OP_CHAIN, TINY_OP_SIZE, errMsg, randint, randn, timeReps } from './common.js';
import { installWebGPUShim } from './gpu-shim.js';

type TF = typeof import('@tensorflow/tfjs-core');
type BackendName = 'webgpu' | 'wasm';
type Op = 'matmul' | 'logSoftmax' | 'crossEntropy' | 'tinyOp' | 'mlpStep';

/**
 * The private parts of tfjs-backend-webgpu@4.22.0's WebGPUBackend that the fence uses.
 * (package.json pins the exact version because of this.)
 */
interface WebGPUBackendInternals {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

let tfLoad: Promise<TF> | null = null;

/**
 * Register TF.js's gradient functions (tf.grad & co. fail without them: "gradient function not
 * found for RealDiv").
 *
 * They live in tfjs-core's `dist/register_all_gradients.js`, a side-effect module that only the
 * `@tensorflow/tfjs` umbrella package loads, and that is ESM-with-extensionless-imports Node
 * cannot load (the CommonJS node bundle tfjs-core resolves to does not contain it). Instead of
 * adding the umbrella package (~230 MB with layers/converter/data/webgl) we bundle that one
 * module with esbuild (already here: a devDependency, and tsx's own engine) in memory, ~140 kB,
 * ~0.2 s, and import it from a data: URL. That is what the umbrella's `tf.node.js` does too:
 * a private copy of the gradient code whose `registerGradient` writes into tfjs-core's
 * registry, which lives on globalThis and is therefore shared (as is the engine).
 */
async function registerTfGradients(require: NodeJS.Require): Promise<void> {
  const entry = require.resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    minify: true,
    logLevel: 'silent',
  });
  const code = Buffer.from(out.outputFiles[0].text).toString('base64');
  await import(`data:text/javascript;base64,${code}`);
}

/**
 * Import tfjs-core plus both backends and the gradients, once. Order matters:
 *  1. The shim must exist BEFORE tfjs-backend-webgpu is imported: the package registers the
 *     'webgpu' backend at module load only if `navigator.gpu` is there (hence dynamic imports).
 *  2. setWasmPaths must run before the wasm backend initialises. We point it at the .wasm
 *     files inside node_modules (they ship in the npm tarball; no install script, no network).
 *     In Node, Emscripten reads that path with fs, so a plain directory prefix works.
 * Node resolves all three packages to their CommonJS "main" bundles, which share one
 * tfjs-core instance (one engine, one backend registry).
 */
function loadTf(): Promise<TF> {
  tfLoad ??= (async () => {
    installWebGPUShim();
    const tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-webgpu');
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const require = createRequire(import.meta.url);
    await registerTfGradients(require);
    const distDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
    wasm.setWasmPaths(distDir + path.sep);
    return tf;
  })();
  return tfLoad;
}

/**
 * Wait until everything TF.js has issued so far has finished on the device.
 *
 * WebGPU: TF.js records dispatches into an open command encoder and only submits every
 * WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE (15) dispatches or when data is read. So we (1) end the
 * open compute pass and submit it, exactly as the backend does before a readback, then
 * (2) await `queue.onSubmittedWorkDone()`. This costs no extra kernel and no readback, unlike
 * `await result.data()` (copies the whole output to the host) or summing to a scalar first
 * (adds a reduction kernel + a 4-byte map). The backend exposes no public flush, so this
 * touches two private methods (see WebGPUBackendInternals).
 *
 * WASM: kernels run synchronously on the JS thread, so the result is complete when the op
 * returns and there is nothing to wait for.
 */
async function fence(tf: TF, backend: BackendName): Promise<void> {
  if (backend !== 'webgpu') return;
  const b = tf.backend() as unknown as WebGPUBackendInternals;
  if (b.commandEncoder) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
  await b.device.queue.onSubmittedWorkDone();
}

/** A TF.js-backed peer exposing the subset `ops` of the benchmark functions. */
function tfjsPeer(name: string, backend: BackendName, ops: readonly Op[]): Peer {
  let tf: TF | null = null;
  let disposed = false;

  /** Switch the shared engine to our backend (the other TF.js peer may have switched it). */
  async function use(): Promise<TF> {
    if (!tf || disposed) throw new Error(`${name}: init() first`);
    if (tf.getBackend() !== backend && !(await tf.setBackend(backend))) {
      throw new Error(`${name}: could not activate backend '${backend}'`);
    }
    return tf;
  }

  /** Time `step` (which returns the tensors it produced): run, fence, dispose outputs. */
  async function time(
    tfm: TF,
    step: () => Tensor[],
    inputs: Tensor[],
    opts: TimeOpts,
    perRep = 1,
  ): Promise<PeerTiming> {
    try {
      return await timeReps(
        async () => {
          // tidy frees every intermediate (incl. the gradient tape's); outputs survive it.
          const outs = tfm.tidy(step);
          await fence(tfm, backend);
          tfm.dispose(outs);
        },
        opts,
        perRep,
      );
    } finally {
      tfm.dispose(inputs);
    }
  }

  const impl: Required<Pick<Peer, Op>> = {
    async matmul(M, K, N, opts) {
      const tfm = await use();
      const a = tfm.tensor2d(randn(M * K, 1), [M, K]);
      const b = tfm.tensor2d(randn(K * N, 2), [K, N]);
      return time(tfm, () => [tfm.matMul(a, b)], [a, b], opts);
    },

    async logSoftmax(R, V, opts) {
      const tfm = await use();
      const x = tfm.tensor2d(randn(R * V, 3), [R, V]);
      return time(tfm, () => [tfm.logSoftmax(x, -1)], [x], opts);
    },

    async crossEntropy(R, V, opts) {
      const tfm = await use();
      const logits = tfm.tensor2d(randn(R * V, 4), [R, V]);
      const targets = tfm.tensor1d(randint(R, V, 5), 'int32');
      // What a TF.js user writes: one-hot the int labels, tf.losses.softmaxCrossEntropy (mean
      // over rows by default; it has a fused custom gradient softmax - onehot), and
      // tf.valueAndGrad for loss + dLoss/dLogits in one pass.
      const lossAndGrad = tfm.valueAndGrad((l: Tensor) =>
        tfm.losses.softmaxCrossEntropy(tfm.oneHot(targets, V), l),
      );
      return time(
        tfm,
        () => {
          const { value, grad } = lossAndGrad(logits);
          return [value, grad];
        },
        [logits, targets],
        opts,
      );
    },

    async tinyOp(opts) {
      const tfm = await use();
      const a = tfm.tensor1d(randn(TINY_OP_SIZE, 6));
      const b = tfm.tensor1d(randn(TINY_OP_SIZE, 7));
      // n dependent adds, one fence at the end; timeReps divides by n.
      const chain = () => {
        let t = a;
        for (let i = 0; i < TINY_OP_CHAIN; i++) t = tfm.add(t, b);
        return [t];
      };
      return time(tfm, chain, [a, b], opts, TINY_OP_CHAIN);
    },

    async mlpStep(B, D, H, opts) {
      const tfm = await use();
      // Output width = D (targets are [B, D]); weights scaled ~1/sqrt(fan_in).
      const x = tfm.tensor2d(randn(B * D, 8), [B, D]);
      const y = tfm.tensor2d(randn(B * D, 9), [B, D]);
      const params = [
        tfm.tensor2d(randn(D * H, 10, 1 / Math.sqrt(D)), [D, H]),
        tfm.tensor1d(randn(H, 11, 0.1)),
        tfm.tensor2d(randn(H * D, 12, 1 / Math.sqrt(H)), [H, D]),
        tfm.tensor1d(randn(D, 13, 0.1)),
      ];
      const lossAndGrads = tfm.valueAndGrads((...p: Tensor[]) => {
        const [W1, b1, W2, b2] = p;
        const h = tfm.relu(tfm.add(tfm.matMul(x, W1), b1));
        const out = tfm.add(tfm.matMul(h, W2), b2);
        return tfm.losses.meanSquaredError(y, out);
      });
      return time(
        tfm,
        () => {
          const { value, grads } = lossAndGrads(params);
          return [value, ...grads];
        },
        [x, y, ...params],
        opts,
      );
    },
  };

  const peer: Peer = {
    name,

    async init() {
      if (disposed) {
        console.warn(`[peers] ${name}: disposed; cannot be re-initialised in this process`);
        return false;
      }
      try {
        tf = await loadTf();
        if (!tf.findBackendFactory(backend)) {
          console.warn(`[peers] ${name}: backend '${backend}' is not registered (no navigator.gpu?)`);
          return false;
        }
        if (!(await tf.setBackend(backend))) {
          console.warn(`[peers] ${name}: backend '${backend}' failed to initialise`);
          return false;
        }
        if (backend === 'webgpu') {
          // With CPU forwarding on (the default), ops whose inputs are small and not yet on
          // the GPU run on TF.js's CPU backend instead. We benchmark GPU kernels and dispatch
          // cost, so force every op onto the GPU.
          tf.env().set('WEBGPU_CPU_FORWARD', false);
        }
        return true;
      } catch (e) {
        console.warn(`[peers] ${name}: unavailable: ${errMsg(e)}`);
        return false;
      }
    },

    async dispose() {
      if (!tf || disposed) return;
      disposed = true;
      if (backend === 'webgpu') {
        // removeBackend() runs WebGPUBackend.dispose() (destroys its pooled buffers and query
        // set) but leaves the GPUDevice alive, so destroy that too. This unregisters the
        // backend for the rest of the process, hence no re-init after dispose().
        const registered = tf.engine().registry[backend] as unknown as
          | WebGPUBackendInternals
          | undefined;
        tf.removeBackend(backend);
        registered?.device.destroy();
      }
      // The wasm backend's memory is a WebAssembly heap; nothing else to release.
    },
  };
  for (const op of ops) Object.assign(peer, { [op]: impl[op] });
  return peer;
}

/** TF.js on WebGPU: every benchmark function. */
export const tfjsWebGPU: Peer = tfjsPeer('tfjs-webgpu', 'webgpu', [
  'matmul',
  'logSoftmax',
  'crossEntropy',
  'tinyOp',
  'mlpStep',
]);

/** TF.js on WASM (CPU, XNNPACK SIMD kernels): matmul only, the CPU "moonshot" reference. */
export const tfjsWasm: Peer = tfjsPeer('tfjs-wasm', 'wasm', ['matmul']);
