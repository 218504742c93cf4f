// Reverse-mode autograd in micrograd's shape: ops attach a Node (parents + backward rule) to
// their output; backward() walks the graph in reverse topological order and accumulates grads.
import { Tensor, keep, shapeStr, tidy, type Node } from './tensor.js';
import { add, fill } from './ops/elementwise.js';

let gradEnabled = true;

/** Whether ops record the tape right now (false inside `noGrad`). */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording the tape (evaluation, optimizer updates, grad arithmetic). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/**
 * Attaches the tape node for `out = op(parents)` when any parent needs a gradient.
 * `backward` receives dL/dout and returns dL/dparent for each parent (same shapes), or null.
 */
export function record(out: Tensor, op: string, parents: Tensor[], backward: Node['backward']): Tensor {
  if (gradEnabled && parents.some((p) => p.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, parents, backward };
  }
  return out;
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: deep graphs (long sequences of ops) would overflow a recursive walk.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const parents = t.node?.parents ?? [];
    if (i < parents.length) {
      top[1]++;
      const p = parents[i];
      if (p.requiresGrad && !seen.has(p)) {
        seen.add(p);
        stack.push([p, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

export interface BackwardOptions {
  /** Keep the tape (and its saved tensors) for another backward through the same graph. */
  retainGraph?: boolean;
}

/**
 * Backpropagates from `root`. With no `grad`, root must have one element (dL/droot = 1).
 * Leaf tensors with requiresGrad get `.grad` (accumulated across calls, kept out of `tidy`).
 */
export function backward(root: Tensor, grad?: Tensor, opts: BackwardOptions = {}): void {
  if (!root.requiresGrad) throw new Error(`backward() on ${root} which does not require grad`);
  // One scope for the whole walk: every temporary of the backward rules is freed at its end;
  // only the leaves' .grad tensors are kept.
  tidy(() => noGrad(() => {
    let seed: Tensor;
    if (grad) {
      if (grad.shape.join() !== root.shape.join())
        throw new Error(`backward(): gradient shape ${shapeStr(grad.shape)} does not match output ${shapeStr(root.shape)}`);
      seed = grad.view(grad.shape); // an alias we may free without touching the caller's tensor
    } else {
      if (root.size !== 1) throw new Error(`backward() without a gradient needs a scalar output, got ${shapeStr(root.shape)}`);
      seed = fill(root.shape, 1);
    }
    const grads = new Map<Tensor, Tensor>([[root, seed]]);
    const order = topoOrder(root);
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.node;
      if (!node) {
        // Leaf: accumulate into .grad, which outlives the step's scope.
        if (t.grad) {
          const sum = keep(add(t.grad, g));
          t.grad.dispose();
          g.dispose();
          t.grad = sum;
        } else t.grad = keep(g);
        continue;
      }
      const pgrads = node.backward(g);
      const owned = new Set<Tensor>([g]);
      node.parents.forEach((p, i) => {
        let pg = pgrads[i];
        if (!pg || !p.requiresGrad) return;
        if (pg.shape.join() !== p.shape.join())
          throw new Error(`backward of '${node.op}': gradient ${shapeStr(pg.shape)} for input ${i} of shape ${shapeStr(p.shape)}`);
        // Never let two owners share one tensor object (a rule may pass dout through, or
        // return one tensor for two parents): alias it instead.
        if (owned.has(pg)) pg = pg.view(pg.shape);
        owned.add(pg);
        const prev = grads.get(p);
        if (prev) {
          grads.set(p, add(prev, pg));
          prev.dispose();
          pg.dispose();
        } else grads.set(p, pg);
      });
      g.dispose();
      if (!opts.retainGraph) t.node = null; // release the saved tensors with the closure
    }
  }));
}

/** Frees and clears the gradients of the given tensors. */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
