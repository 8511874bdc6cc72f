// The paged KV cache's blocks, as vLLM v1's BlockPool keeps them (vllm/v1/core/block_pool.py):
//
// - every block has a reference count; blocks with count 0 sit in a free queue;
// - a full block that has been computed is named by a chained hash of its tokens (see
//   chainHash) and can be found by that hash while it keeps its contents, even when free:
//   that is automatic prefix caching;
// - new blocks are taken from the head of the free queue; taking a block that still carries a
//   hash evicts it from the cache;
// - finished or preempted requests return their blocks to the tail of the queue (the engine
//   returns a request's blocks last-first, so a prefix outlives its suffix), which makes the
//   queue an LRU order: the least recently freed cached block is evicted first;
// - a cache hit on a free block takes it out of the queue again.
//
// The queue is a doubly linked list over block ids, so every operation is O(1).

const NONE = -1;

export class BlockPool {
  readonly numBlocks: number;
  private readonly refCnt: Int32Array;
  private readonly hashOf: Float64Array; // NaN: holds no cached contents
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = NONE;
  private tail = NONE;
  private free = 0;
  private readonly byHash = new Map<number, number>();
  /** Cached blocks whose contents were dropped to make room. */
  evictions = 0;

  constructor(numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks <= 0) throw new RangeError(`numBlocks must be a positive integer, got ${numBlocks}`);
    this.numBlocks = numBlocks;
    this.refCnt = new Int32Array(numBlocks);
    this.hashOf = new Float64Array(numBlocks).fill(NaN);
    this.prev = new Int32Array(numBlocks).fill(NONE);
    this.next = new Int32Array(numBlocks).fill(NONE);
    for (let b = 0; b < numBlocks; b++) this.append(b);
  }

  /** Blocks in the free queue (including cached ones that can still be hit). */
  get numFree(): number {
    return this.free;
  }

  /** Blocks currently holding cached contents (in use or free). */
  get numCached(): number {
    return this.byHash.size;
  }

  /** Fraction of blocks in use by requests, as vLLM's kv_cache_usage_perc. */
  usage(): number {
    return 1 - this.free / this.numBlocks;
  }

  refCount(block: number): number {
    return this.refCnt[block];
  }

  /** The block holding the contents named by `hash`, if any. Does not change anything. */
  lookup(hash: number): number | undefined {
    return this.byHash.get(hash);
  }

  /** Takes a block from the head of the free queue for a request (evicting its cached contents). */
  allocate(): number {
    const b = this.head;
    if (b === NONE) throw new Error("no free KV block");
    this.unlink(b);
    const h = this.hashOf[b];
    if (!Number.isNaN(h)) {
      this.byHash.delete(h);
      this.hashOf[b] = NaN;
      this.evictions++;
    }
    this.refCnt[b] = 1;
    return b;
  }

  /** A request starts using a cached block (a prefix-cache hit). */
  touch(block: number): void {
    if (this.refCnt[block] === 0) this.unlink(block);
    this.refCnt[block]++;
  }

  /** A request stops using a block; unused blocks go to the tail of the free queue. */
  release(block: number): void {
    const c = --this.refCnt[block];
    if (c < 0) throw new Error(`block ${block} released more often than taken`);
    if (c === 0) this.append(block);
  }

  /**
   * Names a block's (now computed) contents by `hash`. If another block already holds the same
   * contents this one stays unnamed (it is freed as a plain block later). Returns whether it was named.
   */
  cache(block: number, hash: number): boolean {
    if (!Number.isNaN(this.hashOf[block])) return this.hashOf[block] === hash;
    if (this.byHash.has(hash)) return false;
    this.byHash.set(hash, block);
    this.hashOf[block] = hash;
    return true;
  }

  /** Block ids in free-queue order, head (next to be reused) first. For tests. */
  freeQueue(): number[] {
    const out: number[] = [];
    for (let b = this.head; b !== NONE; b = this.next[b]) out.push(b);
    return out;
  }

  private append(b: number): void {
    this.prev[b] = this.tail;
    this.next[b] = NONE;
    if (this.tail === NONE) this.head = b;
    else this.next[this.tail] = b;
    this.tail = b;
    this.free++;
  }

  private unlink(b: number): void {
    const p = this.prev[b], n = this.next[b];
    if (p === NONE) this.head = n;
    else this.next[p] = n;
    if (n === NONE) this.tail = p;
    else this.prev[n] = p;
    this.prev[b] = this.next[b] = NONE;
    this.free--;
  }
}

/**
 * The hash naming a full block: a function of the previous block's hash and this block's token
 * ids, so equal hashes mean equal prefixes (vLLM hashes (parent hash, token ids, extra keys such
 * as the LoRA adapter)). Two 32-bit lanes combined into a 53-bit integer, exact as a double.
 */
export function chainHash(parent: number, tokens: ArrayLike<number>, start: number, count: number): number {
  let a = (parent >>> 0) ^ 0x9e3779b9;
  let b = Math.floor(parent / 4294967296) ^ 0x7f4a7c15;
  for (let i = start; i < start + count; i++) {
    const t = tokens[i] | 0;
    a = Math.imul(a ^ t, 0x85ebca6b);
    a = (a << 13) | (a >>> 19);
    b = Math.imul(b ^ t ^ a, 0xc2b2ae35);
    b = (b << 17) | (b >>> 15);
  }
  a ^= b >>> 16;
  a = Math.imul(a ^ (a >>> 16), 0x7feb352d);
  a ^= a >>> 15;
  b ^= a;
  b = Math.imul(b ^ (b >>> 15), 0x846ca68b);
  b ^= b >>> 16;
  return (a >>> 0) * 2097152 + (b >>> 11);
}

/** The parent hash of a sequence's first block: separates LoRA adapters (and the base model). */
export function rootHash(lora: string | null | undefined): number {
  let h = 0x811c9dc5;
  const s = lora ?? "";
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) * 1024 + s.length;
}
