// Prefix trie over item codes as token-id sequences, for constrained beam search: which
// tokens may follow a prefix, and which item a complete code names.
//
// Built once with Maps, then frozen into flat typed arrays (CSR: each node's children are a
// sorted slice), so a lookup is a binary search per token and allowedNext is a slice copy.

export interface SidTrieOptions {
  /**
   * Token that ends every code (e.g. the vocabulary's <eos>). When set, a complete code is
   * followed by this token in the trie, so allowedNext(fullCode) = [endToken] and codes of
   * different lengths may be prefixes of one another. When unset, codes must be prefix-free.
   */
  endToken?: number;
}

export class SidTrie {
  /** childStart[node]..childStart[node+1]: the node's children in childToken/childNode. */
  private readonly childStart: Int32Array;
  private readonly childToken: Int32Array;
  private readonly childNode: Int32Array;
  /** Item whose code ends at this node (after endToken when set), else -1. */
  private readonly nodeItem: Int32Array;
  readonly endToken: number | undefined;
  readonly root = 0;

  /** codes[i] = token ids of item i. Throws on two items with the same code. */
  constructor(codes: readonly (readonly number[])[], opts: SidTrieOptions = {}) {
    this.endToken = opts.endToken;
    const children: Map<number, number>[] = [new Map()];
    const items: number[] = [-1];
    codes.forEach((code, item) => {
      if (code.length === 0) throw new Error(`SidTrie: item ${item} has an empty code`);
      if (this.endToken !== undefined && code.includes(this.endToken))
        throw new Error(`SidTrie: item ${item} uses the end token ${this.endToken} inside its code`);
      const seq = this.endToken === undefined ? code : [...code, this.endToken];
      let node = 0;
      for (const t of seq) {
        if (!Number.isInteger(t) || t < 0) throw new Error(`SidTrie: item ${item} has bad token ${t}`);
        let next = children[node]!.get(t);
        if (next === undefined) {
          if (items[node]! >= 0)
            throw new Error(`SidTrie: code of item ${items[node]} is a prefix of item ${item}'s; set endToken`);
          next = children.length;
          children[node]!.set(t, next);
          children.push(new Map());
          items.push(-1);
        }
        node = next;
      }
      if (items[node]! >= 0) throw new Error(`SidTrie: items ${items[node]} and ${item} have the same code`);
      if (children[node]!.size > 0)
        throw new Error(`SidTrie: item ${item}'s code is a prefix of another item's; set endToken`);
      items[node] = item;
    });
    const nNodes = children.length;
    this.childStart = new Int32Array(nNodes + 1);
    for (let v = 0; v < nNodes; v++) this.childStart[v + 1] = this.childStart[v]! + children[v]!.size;
    this.childToken = new Int32Array(this.childStart[nNodes]!);
    this.childNode = new Int32Array(this.childStart[nNodes]!);
    for (let v = 0; v < nNodes; v++) {
      const sorted = [...children[v]!.entries()].sort((a, b) => a[0] - b[0]);
      let k = this.childStart[v]!;
      for (const [t, c] of sorted) {
        this.childToken[k] = t;
        this.childNode[k++] = c;
      }
    }
    this.nodeItem = Int32Array.from(items);
  }

  get nodeCount(): number {
    return this.nodeItem.length;
  }

  /** Child of `node` along `token`, or -1. */
  step(node: number, token: number): number {
    const tokens = this.childToken;
    let lo = this.childStart[node]!;
    let hi = this.childStart[node + 1]! - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const t = tokens[mid]!;
      if (t === token) return this.childNode[mid]!;
      if (t < token) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Node reached by a prefix from the root, or -1 when the prefix is not in the trie. */
  walk(prefix: readonly number[]): number {
    let node = this.root;
    for (const t of prefix) {
      node = this.step(node, t);
      if (node < 0) return -1;
    }
    return node;
  }

  /** Allowed next tokens after `prefix`, ascending; [] for an invalid or complete prefix. */
  allowedNext(prefix: readonly number[]): number[] {
    const node = this.walk(prefix);
    return node < 0 ? [] : Array.from(this.allowedAt(node));
  }

  /** Allowed next tokens at a node, ascending; a view into the trie (do not modify). */
  allowedAt(node: number): Int32Array {
    return this.childToken.subarray(this.childStart[node]!, this.childStart[node + 1]!);
  }

  /** Item of a complete code (with or without the trailing endToken), or undefined. */
  itemOf(fullCode: readonly number[]): number | undefined {
    let node = this.walk(fullCode);
    if (node < 0) return undefined;
    if (this.nodeItem[node]! < 0 && this.endToken !== undefined) node = this.step(node, this.endToken);
    if (node < 0) return undefined;
    const item = this.nodeItem[node]!;
    return item >= 0 ? item : undefined;
  }

  /** Item completed at a node, or -1 (beam search bookkeeping without re-walking). */
  itemAt(node: number): number {
    return this.nodeItem[node]!;
  }
}
