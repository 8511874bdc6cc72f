// Prompt text and block hashes as routers outside the model server see them. A simulated prompt
// is rendered as text (4 bytes per token, test/sim/tokens.ts), so a router's 64-character blocks
// (16 tokens x 4 characters, the Gateway API Inference Extension's approximation) line up with
// the model server's 16-token KV blocks.

import { createHash } from 'node:crypto';
import { detokenize } from '../../../test/sim/tokens.ts';
import type { SimRequest } from '../../../test/sim/cluster.ts';

export const BLOCK_CHARS = 64;
export const MAX_BLOCKS = 256;

export function promptText(req: SimRequest): string {
  return detokenize(req.tokens);
}

// Chained 64-bit block hashes seeded by the model, full blocks only, at most maxBlocks.
export function blockHashes(text: string, model: string, maxBlocks = MAX_BLOCKS, blockChars = BLOCK_CHARS): bigint[] {
  const out: bigint[] = [];
  let prev = digest(Buffer.from(model));
  for (let i = 0; i + blockChars <= text.length && out.length < maxBlocks; i += blockChars) {
    const h = digest(Buffer.concat([Buffer.from(text.slice(i, i + blockChars)), le64(prev)]));
    out.push(h);
    prev = h;
  }
  return out;
}

function digest(b: Buffer): bigint {
  return createHash('sha1').update(b).digest().readBigUInt64LE(0);
}

function le64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

// A per-pod LRU of block hashes with a capacity (GIE's indexer: one LRU per server, sized to
// the server's num_gpu_blocks when known).
export class PodLru {
  private readonly map = new Map<bigint, true>();
  constructor(public capacity: number) {}

  has(h: bigint): boolean {
    return this.map.has(h);
  }

  add(h: bigint): bigint | undefined {
    if (this.map.has(h)) this.map.delete(h);
    this.map.set(h, true);
    if (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value as bigint;
      this.map.delete(oldest);
      return oldest;
    }
    return undefined;
  }

  get size(): number {
    return this.map.size;
  }
}
