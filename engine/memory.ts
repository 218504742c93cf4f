// GPU memory: a buffer pool keyed by size class, with byte accounting (allocated, in use, peak).
// Every tensor buffer comes from here, so a training loop reuses the same buffers step after step.

/**
 * WebGPU's flag values (fixed by the spec), so modules can load before any WebGPU globals exist
 * (Node installs them only when Dawn is created).
 */
export const GPU_FLAGS = {
  MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80, QUERY_RESOLVE: 0x200, COMPUTE_STAGE: 0x4, MAP_MODE_READ: 0x1,
} as const;

/** Usage of every tensor buffer: kernels read and write it, uploads and read-backs copy it. */
export const TENSOR_USAGE = GPU_FLAGS.STORAGE | GPU_FLAGS.COPY_SRC | GPU_FLAGS.COPY_DST;

/** Smallest buffer handed out; tiny tensors share this class instead of fragmenting the pool. */
const MIN_BYTES = 256;

/**
 * Size classes: powers of two split into four steps (1, 1.25, 1.5, 1.75 × 2^k), so a request
 * wastes at most 25% while the number of distinct classes (and so of idle buffers) stays small.
 */
export function sizeClass(bytes: number): number {
  if (bytes <= MIN_BYTES) return MIN_BYTES;
  const p = 2 ** Math.floor(Math.log2(bytes));
  const step = p / 4;
  return Math.ceil(bytes / step) * step;
}

export interface PoolStats {
  /** Bytes of GPU buffers created and not destroyed (in use + idle in the pool). */
  allocatedBytes: number;
  /** Bytes of buffers currently handed out. */
  inUseBytes: number;
  /** Highest `inUseBytes` since creation or the last `resetPeak`. */
  peakBytes: number;
  buffers: number;
  inUseBuffers: number;
}

/**
 * When idle buffers may be destroyed: a loop of fixed shapes never holds more idle bytes than its
 * own working set, but one whose shapes vary (length-grouped batches, beam search over prompts of
 * every length) would keep an idle buffer of every size class it ever used. So a miss that finds
 * more idle bytes than `maxIdleRatio` × the highest in-use bytes seen (and at least
 * `minIdleBytes`) trims the pool first.
 */
export interface PoolLimits {
  maxIdleRatio: number;
  minIdleBytes: number;
}

export const DEFAULT_POOL_LIMITS: PoolLimits = { maxIdleRatio: 1, minIdleBytes: 64 * 2 ** 20 };

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private sizes = new WeakMap<GPUBuffer, number>();
  private stats: PoolStats = { allocatedBytes: 0, inUseBytes: 0, peakBytes: 0, buffers: 0, inUseBuffers: 0 };
  /** Highest in-use bytes ever (unlike `peakBytes`, never reset): the scale of the idle limit. */
  private highWater = 0;
  /** Number of automatic trims (the idle limit was exceeded). */
  autoTrims = 0;

  constructor(private gpu: GPUDevice, readonly limits: PoolLimits = { ...DEFAULT_POOL_LIMITS }) {}

  /** A buffer of at least `bytes` bytes with TENSOR_USAGE; reuses an idle one of the same class. */
  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const max = this.gpu.limits.maxStorageBufferBindingSize;
    if (size > max) throw new Error(`tensor of ${bytes} bytes exceeds the device's maxStorageBufferBindingSize (${max})`);
    let buf = this.free.get(size)?.pop();
    if (!buf) {
      const idle = this.stats.allocatedBytes - this.stats.inUseBytes;
      if (idle > Math.max(this.limits.minIdleBytes, this.limits.maxIdleRatio * this.highWater)) {
        this.trim();
        this.autoTrims++;
      }
      buf = this.gpu.createBuffer({ size, usage: TENSOR_USAGE });
      this.sizes.set(buf, size);
      this.stats.allocatedBytes += size;
      this.stats.buffers++;
    }
    this.stats.inUseBytes += size;
    this.stats.inUseBuffers++;
    if (this.stats.inUseBytes > this.stats.peakBytes) this.stats.peakBytes = this.stats.inUseBytes;
    if (this.stats.inUseBytes > this.highWater) this.highWater = this.stats.inUseBytes;
    return buf;
  }

  /** Returns a buffer to the pool. Safe while earlier recorded kernels still use it: queue order holds. */
  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) throw new Error('release of a buffer the pool did not hand out');
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.stats.inUseBytes -= size;
    this.stats.inUseBuffers--;
  }

  /**
   * Called before `trim` destroys buffers: recorded, unsubmitted commands may still use an idle
   * buffer (release is allowed while they do), so they must be submitted first.
   */
  beforeTrim: (() => void) | null = null;
  /** Called after `trim` destroys buffers, so caches holding them (bind groups) can drop them. */
  onTrim: (() => void) | null = null;

  /** Destroys idle buffers (after a phase with different shapes; automatically past `limits`). */
  trim(): void {
    this.beforeTrim?.();
    for (const list of this.free.values())
      for (const b of list) {
        this.stats.allocatedBytes -= this.sizes.get(b)!;
        this.stats.buffers--;
        b.destroy();
      }
    this.free.clear();
    this.onTrim?.();
  }

  resetPeak(): void {
    this.stats.peakBytes = this.stats.inUseBytes;
  }

  snapshot(): PoolStats {
    return { ...this.stats };
  }

  destroy(): void {
    this.trim();
  }
}
