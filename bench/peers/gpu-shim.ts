// Makes the browser WebGPU entry points (navigator.gpu, GPUBufferUsage, ...) exist in Node,
// backed by Dawn from the `webgpu` npm package, so browser-only peers (TF.js, jax-js) can run.
import os from 'node:os';
import { create, globals } from 'webgpu';

let shared: GPU | null = null;
let uncapturedErrors = 0;

/**
 * WebGPU errors the peers' devices raised and nobody captured so far (validation, out of memory).
 * A timing taken while this count grew is of command buffers Dawn rejected: not a valid timing.
 */
export function peerDeviceErrors(): number {
  return uncapturedErrors;
}

/** Counts the uncaptured errors of every device requested through `gpu` from now on. */
function countDeviceErrors(gpu: GPU): void {
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  Object.defineProperty(gpu, 'requestAdapter', {
    configurable: true,
    value: async (options?: GPURequestAdapterOptions) => {
      const adapter = await requestAdapter(options);
      if (!adapter) return adapter;
      const requestDevice = adapter.requestDevice.bind(adapter);
      Object.defineProperty(adapter, 'requestDevice', {
        configurable: true,
        value: async (desc?: GPUDeviceDescriptor) => {
          const dev = await requestDevice(desc);
          dev.addEventListener('uncapturederror', () => void uncapturedErrors++);
          return dev;
        },
      });
      return adapter;
    },
  });
}

/**
 * Install the shim (idempotent) and return the process-wide `GPU` object.
 *
 * - Pass `gpu` (e.g. `nodeGPU()` from engine/node) BEFORE any peer's init() so the peers use
 *   the engine's Dawn instance. Otherwise an existing `navigator.gpu` is reused, and only if
 *   neither exists is a new instance created (two Dawn instances in one process also work;
 *   both then pick the same adapter).
 * - Copies the WebGPU enum/constructor globals (GPUBufferUsage, GPUMapMode, GPUShaderStage,
 *   GPUBuffer, ...) onto globalThis, without overwriting ones that already exist. TF.js uses
 *   GPUBufferUsage / GPUMapMode as bare globals.
 * - Node 20 has no `navigator`; Node >= 21 has one without `gpu`. Both cases are handled.
 *   Besides `gpu`, the peers read `navigator.userAgent` (jax-js's WebGPU kernel tuner runs a
 *   /Mobi|Android/ test on it, and checks for Firefox) and `navigator.hardwareConcurrency`.
 */
export function installWebGPUShim(gpuIn?: GPU): GPU {
  if (shared) return shared;
  // Mesa lavapipe / the Vulkan loader want a runtime dir; without it they warn or fail.
  process.env.XDG_RUNTIME_DIR ??= '/tmp';

  const g = globalThis as Record<string, unknown>;
  for (const [k, v] of Object.entries(globals)) if (!(k in g)) g[k] = v;

  const nav = g.navigator as (Partial<Navigator> & Record<string, unknown>) | undefined;
  const existing = gpuIn ?? (nav?.gpu as GPU | undefined);
  // `create([])`: default Dawn toggles. We keep a reference (`shared`) so the instance is
  // never garbage-collected while devices created from it are in use.
  const gpu: GPU = existing ?? (create([]) as GPU);
  if (!nav) {
    Object.defineProperty(globalThis, 'navigator', {
      configurable: true,
      writable: true,
      value: {
        gpu,
        userAgent: `Node.js/${process.versions.node}`,
        language: 'en-US',
        hardwareConcurrency: os.availableParallelism(),
      },
    });
  } else if (nav.gpu !== gpu) {
    Object.defineProperty(nav, 'gpu', { configurable: true, value: gpu });
  }
  countDeviceErrors(gpu);
  shared = gpu;
  return gpu;
}
