// Neural-network modules: a `Module` base that collects named parameters recursively, and the
// layers built on the engine's ops (Linear, Embedding, RMSNorm, a two-layer ReLU MLP).
import { Tensor, keep, shapeStr } from './tensor.js';
import { Rng, tensor } from './ops/create.js';
import { relu } from './ops/elementwise.js';
import { linear } from './ops/matmul.js';
import { embedding } from './ops/embedding.js';
import { rmsNorm } from './ops/norm.js';

/** Seeding for a module's initial weights: pass one Rng through several layers, or a seed. */
export interface InitOptions {
  rng?: Rng;
  seed?: number;
}

function rngOf(o: InitOptions): Rng {
  return o.rng ?? new Rng(o.seed ?? 0);
}

/** A trainable leaf that outlives every `tidy` scope. */
function parameter(data: Float32Array, shape: number[]): Tensor {
  return keep(tensor(data, shape, 'f32', { requiresGrad: true }));
}

function uniform(n: number, bound: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.next() * 2 - 1) * bound;
  return a;
}

/**
 * Base of all layers. Parameters are the own properties holding tensors that require grad;
 * sub-modules are own properties holding Modules (or arrays of them, named `name.i`).
 */
export abstract class Module {
  /** Training mode (dropout-like behaviour keys off this); set with train()/eval(). */
  training = true;

  /** Direct sub-modules, in declaration order. */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [k, v] of Object.entries(this)) {
      if (v instanceof Module) out.push([k, v]);
      else if (Array.isArray(v)) v.forEach((m, i) => m instanceof Module && out.push([`${k}.${i}`, m]));
    }
    return out;
  }

  /** Parameters with dotted paths (`fc1.weight`), each tensor once even when shared (tied weights). */
  namedParameters(prefix = '', seen = new Set<Tensor>()): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [k, v] of Object.entries(this)) {
      if (v instanceof Tensor && v.requiresGrad && !seen.has(v)) {
        seen.add(v);
        out.push([prefix + k, v]);
      }
    }
    for (const [k, m] of this.namedChildren()) out.push(...m.namedParameters(`${prefix}${k}.`, seen));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Number of trainable scalars. */
  numParameters(): number {
    return this.parameters().reduce((a, t) => a + t.size, 0);
  }

  train(mode = true): this {
    this.training = mode;
    for (const [, m] of this.namedChildren()) m.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Frees every parameter and its gradient. */
  dispose(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
      p.dispose();
    }
  }
}

export interface LinearOptions extends InitOptions {
  bias?: boolean;
}

/** y = x·Wᵀ + b with W [out, in]; PyTorch's init: W, b ~ U(−1/√in, 1/√in) (kaiming-uniform, a = √5). */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LinearOptions = {}) {
    super();
    const rng = rngOf(opts);
    const bound = inFeatures > 0 ? 1 / Math.sqrt(inFeatures) : 0;
    this.weight = parameter(uniform(outFeatures * inFeatures, bound, rng), [outFeatures, inFeatures]);
    this.bias = opts.bias ?? true ? parameter(uniform(outFeatures, bound, rng), [outFeatures]) : null;
  }

  /** x [..., in] → [..., out]. */
  forward(x: Tensor): Tensor {
    if (x.shape[x.ndim - 1] !== this.inFeatures)
      throw new Error(`Linear(${this.inFeatures}, ${this.outFeatures}): input ${shapeStr(x.shape)} has the wrong last dim`);
    return linear(x, this.weight, this.bias ?? undefined);
  }
}

/** A lookup table W [num, dim]; PyTorch's init W ~ N(0, 1). */
export class Embedding extends Module {
  readonly weight: Tensor;

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, opts: InitOptions = {}) {
    super();
    const rng = rngOf(opts);
    const w = new Float32Array(numEmbeddings * embeddingDim);
    for (let i = 0; i < w.length; i++) w[i] = rng.normal();
    this.weight = parameter(w, [numEmbeddings, embeddingDim]);
  }

  /** ids i32 [...] → [..., dim]. */
  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }
}

/** RMSNorm over the last dim with a learned scale (initialised to ones), HF LlamaRMSNorm. */
export class RMSNorm extends Module {
  readonly weight: Tensor;

  constructor(readonly dim: number, readonly eps = 1e-6) {
    super();
    this.weight = parameter(new Float32Array(dim).fill(1), [dim]);
  }

  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

/** Two linear layers with a ReLU between: in → hidden → out. */
export class MLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(inFeatures: number, hidden: number, outFeatures: number, opts: LinearOptions = {}) {
    super();
    const rng = rngOf(opts);
    this.fc1 = new Linear(inFeatures, hidden, { ...opts, rng });
    this.fc2 = new Linear(hidden, outFeatures, { ...opts, rng });
  }

  forward(x: Tensor): Tensor {
    return this.fc2.forward(relu(this.fc1.forward(x)));
  }
}
