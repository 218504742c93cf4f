// Tensor: a shape, a dtype and a pooled GPU buffer (shared by reshaped views), plus the autograd
// node that made it. Also the scopes (`tidy`, `keep`) that free a step's intermediates.
import { device } from './device.js';

export type DType = 'f32' | 'i32';
export type Shape = readonly number[];

/** A pooled buffer shared by a tensor and its reshaped views; freed when the last one is disposed. */
class Storage {
  refs = 1;
  constructor(
    readonly buffer: GPUBuffer,
    /** Host copy of integer data uploaded from the host (e.g. token ids), kept for index-building backward rules. */
    readonly host?: Int32Array,
  ) {}
}

/**
 * One node of the autograd tape (micrograd's shape): the op's parents and a rule mapping the
 * gradient of the output to the gradients of each parent (null where a parent gets none).
 */
export interface Node {
  op: string;
  parents: Tensor[];
  backward: (dout: Tensor) => (Tensor | null)[];
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

function checkShape(shape: Shape): void {
  for (const d of shape)
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid shape ${shapeStr(shape)}: dims must be non-negative integers`);
}

let nextId = 0;

export class Tensor {
  readonly id = nextId++;
  readonly shape: Shape;
  readonly size: number;
  readonly dtype: DType;
  requiresGrad: boolean;
  grad: Tensor | null = null;
  node: Node | null = null;
  private storage: Storage | null;

  /** Internal: use the creation functions (`tensor`, `zeros`, `randn`, ...) instead. */
  constructor(storage: Storage, shape: Shape, dtype: DType, requiresGrad = false) {
    checkShape(shape);
    this.storage = storage;
    this.shape = [...shape];
    this.size = numel(shape);
    this.dtype = dtype;
    this.requiresGrad = requiresGrad;
    track(this);
  }

  /** A fresh, uninitialised tensor with a pooled buffer. */
  static empty(shape: Shape, dtype: DType = 'f32'): Tensor {
    checkShape(shape);
    return new Tensor(new Storage(device().pool.acquire(Math.max(1, numel(shape)) * 4)), shape, dtype);
  }

  /** A tensor uploaded from host data (f32 from Float32Array/number[], i32 from Int32Array). */
  static fromData(data: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): Tensor {
    checkShape(shape);
    const n = numel(shape);
    if (data.length !== n) throw new Error(`data has ${data.length} elements but shape ${shapeStr(shape)} needs ${n}`);
    const arr = dtype === 'f32' ? Float32Array.from(data) : Int32Array.from(data);
    const dev = device();
    const buf = dev.pool.acquire(Math.max(1, n) * 4);
    if (n > 0) dev.write(buf, arr);
    return new Tensor(new Storage(buf, dtype === 'i32' ? (arr as Int32Array) : undefined), shape, dtype);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get disposed(): boolean {
    return this.storage === null;
  }

  /** The GPU buffer; throws if the tensor was disposed (a use-after-free would read garbage). */
  get buffer(): GPUBuffer {
    if (!this.storage) throw new Error(`tensor #${this.id} ${shapeStr(this.shape)} used after dispose()`);
    return this.storage.buffer;
  }

  /** Host copy of i32 data when the tensor (or a view of it) was uploaded from the host. */
  get hostInts(): Int32Array | undefined {
    return this.storage?.host;
  }

  /** A view with another shape over the same buffer (no copy, no autograd: see ops.reshape). */
  view(shape: Shape): Tensor {
    if (numel(shape) !== this.size) throw new Error(`cannot view ${shapeStr(this.shape)} as ${shapeStr(shape)}`);
    const s = this.storage;
    if (!s) throw new Error(`tensor #${this.id} used after dispose()`);
    s.refs++;
    return new Tensor(s, shape, this.dtype);
  }

  /** Reads the values back to the host: the only read-back in the engine. */
  async toArray(): Promise<Float32Array | Int32Array> {
    const bytes = this.size * 4;
    if (bytes === 0) return this.dtype === 'f32' ? new Float32Array(0) : new Int32Array(0);
    const ab = await device().read(this.buffer, bytes);
    return this.dtype === 'f32' ? new Float32Array(ab) : new Int32Array(ab);
  }

  /** Reads a one-element tensor as a number. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs a one-element tensor, got ${shapeStr(this.shape)}`);
    return (await this.toArray())[0];
  }

  /** Frees the buffer back to the pool (when no view shares it). Idempotent. */
  dispose(): void {
    const s = this.storage;
    if (!s) return;
    this.storage = null;
    this.node = null;
    untrack(this);
    if (--s.refs === 0) device().pool.release(s.buffer);
  }

  toString(): string {
    return `Tensor#${this.id}(${this.dtype} ${shapeStr(this.shape)}${this.requiresGrad ? ', grad' : ''})`;
  }
}

// ---- scopes ---------------------------------------------------------------------------------

const scopes: Set<Tensor>[] = [];

function track(t: Tensor): void {
  if (scopes.length) scopes[scopes.length - 1].add(t);
}

function untrack(t: Tensor): void {
  for (const s of scopes) s.delete(t);
}

/** Removes a tensor from every open scope so `tidy` will not free it (e.g. parameters, grads). */
export function keep<T extends Tensor>(t: T): T {
  untrack(t);
  return t;
}

function collect(x: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 8 || x === null || typeof x !== 'object') return;
  if (x instanceof Tensor) out.add(x);
  else if (Array.isArray(x)) for (const v of x) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(x) === Object.prototype) for (const v of Object.values(x)) collect(v, out, depth + 1);
}

/**
 * Runs `fn` and frees every tensor it created except those it returns (in arrays or plain
 * objects) or `keep`s. Synchronous: await read-backs outside it.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    // A failed step must not leak what it allocated before the error.
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  const survivors = new Set<Tensor>();
  collect(result, survivors);
  for (const t of scope) if (!survivors.has(t)) t.dispose();
  for (const t of survivors) if (scope.has(t)) track(t);
  return result;
}
