// The engine's device: one GPUDevice plus the pipeline cache, the batched command encoder,
// the per-batch uniform arena, error surfacing and the DEBUG switch. Browser-safe: no Node imports.
import { SHADERS } from './shaders.gen.js';
import { BufferPool, GPU_FLAGS } from './memory.js';

/** Engine-wide switches; `DEBUG` logs the device, generated WGSL and per-kernel times. */
export const config = {
  DEBUG: false,
  /** Submit the open command buffer after this many dispatches so the GPU starts early. */
  dispatchesPerSubmit: 256,
};

/** A storage/uniform binding as declared in WGSL; read from the shader source. */
interface BindingDecl {
  binding: number;
  type: GPUBufferBindingType;
}

interface ShaderEntry {
  module: GPUShaderModule;
  bindings: Map<number, BindingDecl>;
}

interface PipelineEntry {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** Bind groups by uniform offset and the ids of their storage buffers. */
  groups: Map<string, GPUBindGroup>;
}

/** Bound on cached bind groups; past it the cache starts over. */
const MAX_CACHED_BIND_GROUPS = 65536;

/** Bytes per uniform slot: WebGPU's minUniformBufferOffsetAlignment is at most 256. */
const UNIFORM_SLOT = 256;
const UNIFORM_SLOTS = 4096;

/** Uniform words per kernel call: u32 values; floats go in through `f32bits`. */
export type Params = ArrayLike<number>;

const f32view = new Float32Array(1);
const u32view = new Uint32Array(f32view.buffer);
/** The u32 bit pattern of an f32, so float parameters can travel in a u32 uniform array. */
export function f32bits(x: number): number {
  f32view[0] = x;
  return u32view[0];
}

export interface DispatchSpec {
  /** Shader file name without extension, e.g. 'matmul'. */
  shader: string;
  entry: string;
  /** WGSL `override` constants; part of the pipeline cache key. */
  constants?: Record<string, number>;
  /** binding index → buffer (binding 0 is the uniform params when `params` is given). */
  buffers: Record<number, GPUBuffer>;
  params?: Params;
  workgroups: [number, number?, number?];
  /** Name shown in errors and DEBUG timings; defaults to shader:entry. */
  label?: string;
}

export class Device {
  readonly gpu: GPUDevice;
  readonly pool: BufferPool;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  readonly description: string;

  private shaders = new Map<string, ShaderEntry>();
  private pipelines = new Map<string, PipelineEntry>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 0;
  private cachedGroups = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  private uniformData = new Uint32Array((UNIFORM_SLOT / 4) * UNIFORM_SLOTS);
  private uniformUsed = 0;
  private uniformBuffer: GPUBuffer;
  private lastKernel = '(none)';
  private fatal: Error | null = null;
  /** Kernel label → [calls, total ms]; filled only in DEBUG. */
  readonly kernelTimes = new Map<string, [number, number]>();
  /** Every dispatch ever recorded, for tests of dispatch counts and benches. */
  dispatchCount = 0;

  constructor(gpu: GPUDevice, description = 'WebGPU device') {
    this.gpu = gpu;
    this.limits = gpu.limits;
    this.features = new Set(gpu.features as unknown as Iterable<string>);
    this.description = description;
    this.pool = new BufferPool(gpu);
    this.pool.beforeTrim = () => this.flush();
    this.pool.onTrim = () => this.clearBindGroups();
    this.uniformBuffer = gpu.createBuffer({
      label: 'uniform-arena',
      size: this.uniformData.byteLength,
      usage: GPU_FLAGS.UNIFORM | GPU_FLAGS.COPY_DST,
    });
    gpu.lost.then((info) => {
      this.fatal = new Error(`WebGPU device lost (${info.reason}): ${info.message}; last kernel: ${this.lastKernel}`);
    });
    gpu.addEventListener('uncapturederror', (ev: Event) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.fatal ??= new Error(`WebGPU error near kernel '${this.lastKernel}': ${err.message}`);
    });
    if (config.DEBUG) console.log(`[engine] device: ${description}`);
  }

  /** Throws the first asynchronous device error, naming the kernel it followed. */
  check(): void {
    if (this.fatal) {
      const e = this.fatal;
      this.fatal = null;
      throw e;
    }
  }

  private shader(name: string): ShaderEntry {
    let s = this.shaders.get(name);
    if (s) return s;
    const code = SHADERS[name];
    if (code === undefined) throw new Error(`unknown shader '${name}' (known: ${Object.keys(SHADERS).join(', ')})`);
    if (config.DEBUG) console.log(`[engine] WGSL ${name}.wgsl\n${code}`);
    this.gpu.pushErrorScope('validation');
    const module = this.gpu.createShaderModule({ label: name, code });
    this.gpu.popErrorScope().then((e) => {
      if (e) this.fatal = new Error(`shader ${name}.wgsl failed to compile: ${e.message}`);
    });
    s = { module, bindings: parseBindings(code) };
    this.shaders.set(name, s);
    return s;
  }

  /** Compilation messages of a shader (used by the test that compiles every shader). */
  async compilationMessages(name: string): Promise<string[]> {
    const info = await this.shader(name).module.getCompilationInfo();
    return info.messages.map((m) => `${name}.wgsl:${m.lineNum}:${m.linePos} ${m.type}: ${m.message}`);
  }

  private pipeline(spec: DispatchSpec) {
    // Built on every dispatch, so kept cheap: integer keys iterate in ascending order by the
    // language's rules, and constants in insertion order (another order only adds a cache entry).
    let key = `${spec.shader}|${spec.entry}|${spec.params ? 'u' : ''}|`;
    for (const b in spec.buffers) key += `${b},`;
    if (spec.constants) for (const c in spec.constants) key += `${c}=${spec.constants[c]},`;
    let p = this.pipelines.get(key);
    if (p) return p;
    const slots = Object.keys(spec.buffers).map(Number);
    const sh = this.shader(spec.shader);
    const entries: GPUBindGroupLayoutEntry[] = [];
    const all = spec.params ? [0, ...slots] : slots;
    for (const b of all) {
      const decl = sh.bindings.get(b);
      if (!decl) throw new Error(`${spec.shader}.wgsl declares no @binding(${b}) (entry ${spec.entry})`);
      entries.push({ binding: b, visibility: GPU_FLAGS.COMPUTE_STAGE, buffer: { type: decl.type } });
    }
    const layout = this.gpu.createBindGroupLayout({ label: key, entries });
    this.gpu.pushErrorScope('validation');
    const pipeline = this.gpu.createComputePipeline({
      label: key,
      layout: this.gpu.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module: sh.module, entryPoint: spec.entry, constants: spec.constants },
    });
    this.gpu.popErrorScope().then((e) => {
      if (e) this.fatal ??= new Error(`pipeline ${key} failed: ${e.message}`);
    });
    p = { pipeline, layout, groups: new Map() };
    this.pipelines.set(key, p);
    return p;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** Records one compute dispatch into the open batch; nothing is submitted until `flush`. */
  dispatch(spec: DispatchSpec): void {
    this.check();
    const label = spec.label ?? `${spec.shader}:${spec.entry}`;
    this.lastKernel = label;
    const [x, y = 1, z = 1] = spec.workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) throw new Error(`${label}: grid ${x}×${y}×${z} exceeds ${max} workgroups per dimension`);
    const entry = this.pipeline(spec);
    let offset = -1;
    if (spec.params) {
      if (this.uniformUsed === UNIFORM_SLOTS) this.flush();
      const words = UNIFORM_SLOT / 4;
      if (spec.params.length > words) throw new Error(`${label}: ${spec.params.length} uniform words exceed ${words}`);
      const off = this.uniformUsed * words;
      for (let i = 0; i < spec.params.length; i++) this.uniformData[off + i] = spec.params[i];
      offset = off * 4;
      this.uniformUsed++;
    }
    const group = this.bindGroup(entry, spec, offset);
    this.encoder ??= this.gpu.createCommandEncoder();
    const stamps = config.DEBUG && this.features.has('timestamp-query') ? this.gpu.createQuerySet({ type: 'timestamp', count: 2 }) : null;
    if (stamps) {
      // DEBUG: each dispatch in its own pass, timed on the GPU by timestamp queries.
      this.endPass();
      this.pass = this.encoder.beginComputePass({ timestampWrites: { querySet: stamps, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    }
    this.pass ??= this.encoder.beginComputePass();
    this.pass.setPipeline(entry.pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(x, y, z);
    this.dispatchCount++;
    if (config.DEBUG) {
      this.timeKernel(label, stamps);
      return;
    }
    if (++this.pending >= config.dispatchesPerSubmit) this.flush();
  }

  /** DEBUG timing: GPU timestamps around the dispatch where supported, else submit-to-done wall time. */
  private timeKernel(label: string, stamps: GPUQuerySet | null): void {
    const add = (ms: number) => {
      const e = this.kernelTimes.get(label) ?? [0, 0];
      this.kernelTimes.set(label, [e[0] + 1, e[1] + ms]);
    };
    if (stamps) {
      const enc = this.encoderForCopy();
      const resolved = this.gpu.createBuffer({ size: 16, usage: GPU_FLAGS.QUERY_RESOLVE | GPU_FLAGS.COPY_SRC });
      const staging = this.gpu.createBuffer({ size: 16, usage: GPU_FLAGS.MAP_READ | GPU_FLAGS.COPY_DST });
      enc.resolveQuerySet(stamps, 0, 2, resolved, 0);
      enc.copyBufferToBuffer(resolved, 0, staging, 0, 16);
      this.flush();
      staging.mapAsync(GPU_FLAGS.MAP_MODE_READ).then(() => {
        const [t0, t1] = new BigUint64Array(staging.getMappedRange());
        add(Number(t1 - t0) / 1e6);
        staging.destroy();
        resolved.destroy();
        stamps.destroy();
      });
      return;
    }
    const t0 = performance.now();
    this.flush();
    this.gpu.queue.onSubmittedWorkDone().then(() => add(performance.now() - t0));
  }

  /**
   * Bind groups are cached per pipeline and buffer set: creating one costs more than the rest of a
   * dispatch, and a training loop binds the same pooled buffers at the same uniform slots step
   * after step. (A dynamic uniform offset would hit the cache more often, but made each dispatch
   * about 2.5× slower to execute on lavapipe.)
   */
  private bindGroup(entry: PipelineEntry, spec: DispatchSpec, offset: number): GPUBindGroup {
    let key = `${offset}:`;
    for (const b in spec.buffers) key += `${this.bufferId(spec.buffers[b])},`;
    let group = entry.groups.get(key);
    if (group) return group;
    const entries: GPUBindGroupEntry[] = [];
    if (spec.params) entries.push({ binding: 0, resource: { buffer: this.uniformBuffer, offset, size: UNIFORM_SLOT } });
    for (const b in spec.buffers) entries.push({ binding: Number(b), resource: { buffer: spec.buffers[b] } });
    group = this.gpu.createBindGroup({ layout: entry.layout, entries });
    if (this.cachedGroups >= MAX_CACHED_BIND_GROUPS) this.clearBindGroups();
    entry.groups.set(key, group);
    this.cachedGroups++;
    return group;
  }

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  /** Drops cached bind groups (they keep their buffers alive); called when the pool trims. */
  clearBindGroups(): void {
    for (const p of this.pipelines.values()) p.groups.clear();
    this.cachedGroups = 0;
  }

  /** The open batch's encoder with no compute pass open, for copies. */
  encoderForCopy(): GPUCommandEncoder {
    this.endPass();
    this.encoder ??= this.gpu.createCommandEncoder();
    return this.encoder;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Submits everything recorded so far (uniforms first, via the queue's ordering). */
  flush(): void {
    this.endPass();
    if (this.uniformUsed > 0) {
      this.gpu.queue.writeBuffer(this.uniformBuffer, 0, this.uniformData, 0, this.uniformUsed * (UNIFORM_SLOT / 4));
      this.uniformUsed = 0;
    }
    if (this.encoder) {
      this.gpu.queue.submit([this.encoder.finish()]);
      this.encoder = null;
    }
    this.pending = 0;
  }

  /** Waits until the GPU has finished all submitted work; rethrows device errors. */
  async sync(): Promise<void> {
    this.flush();
    await this.gpu.queue.onSubmittedWorkDone();
    this.check();
  }

  /** Uploads host data into a buffer, ordered after everything recorded so far. */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    // queue.writeBuffer runs before any command buffer submitted after it, so the open batch
    // (which may still read this pooled buffer's previous contents) must be submitted first.
    this.flush();
    this.gpu.queue.writeBuffer(buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Copies `bytes` of a buffer back to the host. The only read-back path in the engine. */
  async read(buffer: GPUBuffer, bytes: number, byteOffset = 0): Promise<ArrayBuffer> {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.gpu.createBuffer({ size, usage: GPU_FLAGS.MAP_READ | GPU_FLAGS.COPY_DST });
    this.encoderForCopy().copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
    this.flush();
    try {
      await staging.mapAsync(GPU_FLAGS.MAP_MODE_READ);
      this.check();
      return staging.getMappedRange().slice(0, bytes);
    } finally {
      staging.destroy();
    }
  }

  /** Per-kernel DEBUG timings as printable lines, slowest first. */
  timingReport(): string {
    return [...this.kernelTimes.entries()]
      .sort((a, b) => b[1][1] - a[1][1])
      .map(([k, [n, ms]]) => `${k.padEnd(40)} ${String(n).padStart(6)} calls ${ms.toFixed(2).padStart(10)} ms`)
      .join('\n');
  }

  destroy(): void {
    this.flush();
    this.pool.destroy();
    this.uniformBuffer.destroy();
    this.gpu.destroy();
  }
}

/** Reads `@group(0) @binding(N) var<...>` declarations to build explicit bind-group layouts. */
function parseBindings(code: string): Map<number, BindingDecl> {
  const out = new Map<number, BindingDecl>();
  const re = /@binding\((\d+)\)\s*var<\s*(uniform|storage)\s*(?:,\s*(read_write|read))?\s*>/g;
  for (const m of code.matchAll(re)) {
    const type: GPUBufferBindingType =
      m[2] === 'uniform' ? 'uniform' : m[3] === 'read_write' ? 'storage' : 'read-only-storage';
    out.set(Number(m[1]), { binding: Number(m[1]), type });
  }
  return out;
}

let current: Device | null = null;

/** The engine's current device; throws a clear message if `init` was not called. */
export function device(): Device {
  if (!current) throw new Error('no engine device: call init() (browser) or initNode() from the /node entry first');
  return current;
}

export function setDevice(d: Device | null): void {
  current = d;
}

/** Limits worth asking for: the adapter's maxima for buffer sizes and workgroup storage. */
export function wantedLimits(adapter: GPUAdapter): Record<string, number> {
  const l = adapter.limits;
  return {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
  };
}

/**
 * Makes the engine's device from a GPUDevice, a GPU (navigator.gpu or Dawn's), or the browser's
 * navigator.gpu when nothing is given.
 */
export async function init(source?: GPU | GPUDevice): Promise<Device> {
  if (source && 'queue' in source) {
    current = new Device(source, 'user-supplied GPUDevice');
    return current;
  }
  const gpu = source ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new Error('WebGPU is not available: navigator.gpu is undefined (in Node, use initNode from the /node entry)');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter found');
  const features: GPUFeatureName[] = [];
  if (adapter.features.has('shader-f16')) features.push('shader-f16');
  if (adapter.features.has('timestamp-query')) features.push('timestamp-query');
  // Subgroups let the CPU (lavapipe) matmul share loaded rows across lanes: about 2× there.
  if (adapter.features.has('subgroups')) features.push('subgroups');
  const dev = await adapter.requestDevice({ requiredLimits: wantedLimits(adapter), requiredFeatures: features });
  const info = adapter.info;
  const desc = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  current = new Device(dev, desc);
  return current;
}
