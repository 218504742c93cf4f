// Node entry: creates the engine's device through Dawn (npm `webgpu`), with a clear error when no
// adapter exists (no GPU and no software Vulkan driver). The only engine file that imports Node.
import { create, globals } from 'webgpu';
import { config, init, type Device } from '../device.js';

export const SETUP_HINT =
  'No WebGPU adapter found. Without a GPU, Dawn needs a software Vulkan driver (Mesa 25 lavapipe): ' +
  'on Debian 12 run `sudo bash scripts/setup.sh` from the repository, which installs libvulkan1 and ' +
  'mesa-vulkan-drivers from bookworm-backports (Mesa 22 from bookworm is too old for Dawn).';

let gpu: GPU | null = null;

/** Dawn's `navigator.gpu` equivalent, created once per process; installs the WebGPU globals. */
export function nodeGPU(): GPU {
  if (gpu) return gpu;
  // Vulkan loaders warn (and some drivers fail) without a runtime dir.
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  Object.assign(globalThis, globals);
  gpu = create([]) as GPU;
  return gpu;
}

/** Initialises the engine on Dawn; throws SETUP_HINT when there is no adapter. */
export async function initNode(): Promise<Device> {
  // ENGINE_DEBUG=1 logs the device, every generated WGSL module and per-kernel times.
  if (process.env.ENGINE_DEBUG && process.env.ENGINE_DEBUG !== '0') config.DEBUG = true;
  const g = nodeGPU();
  const adapter = await g.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error(SETUP_HINT);
  const dev = await init(g);
  if (config.DEBUG) process.on('exit', () => console.log(`[engine] per-kernel GPU times (timestamp queries where supported)\n${dev.timingReport()}`));
  return dev;
}
