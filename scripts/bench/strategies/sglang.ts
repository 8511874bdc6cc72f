// SGLang router's cache_aware policy (sgl-router): an approximate radix tree of the prompts each
// worker was sent, and the router's own count of requests in flight per worker.
//   1. If the load is imbalanced — max - min > balance_abs_threshold (64) and
//      max > balance_rel_threshold (1.5) x min — send to the least loaded worker.
//   2. Else take the worker holding the longest prefix of the prompt; if its match rate
//      (matched / prompt length) exceeds cache_threshold (0.3) send it there, else to the worker
//      with the smallest tree (the most free cache).
//   3. Record the prompt in the chosen worker's tree. Trees are trimmed to max_tree_size every
//      eviction_interval (120 s), least recently used first.
// The tree is kept here at the granularity of 64-character blocks (the router's is per
// character), which changes match rates by less than a block.

import type { Router } from '../../../test/sim/cluster.ts';
import { blockHashes, BLOCK_CHARS, promptText } from './prefix-blocks.ts';

export interface SglangOptions {
  cacheThreshold?: number;
  balanceAbs?: number;
  balanceRel?: number;
  evictionIntervalMs?: number;
  /** Per worker, in characters (sgl-router's default 2^26). */
  maxTreeChars?: number;
}

export function sglangCacheAware(o: SglangOptions = {}): Router {
  const threshold = o.cacheThreshold ?? 0.3;
  const abs = o.balanceAbs ?? 64;
  const rel = o.balanceRel ?? 1.5;
  const every = o.evictionIntervalMs ?? 120_000;
  const maxBlocks = Math.floor((o.maxTreeChars ?? 2 ** 26) / BLOCK_CHARS);
  // block hash -> worker -> last access time
  const tree = new Map<bigint, Map<number, number>>();
  const sizes: number[] = [];
  let lastEviction = 0;

  const evict = (now: number) => {
    for (let w = 0; w < sizes.length; w++) {
      if (sizes[w] <= maxBlocks) continue;
      const mine: Array<[bigint, number]> = [];
      for (const [h, owners] of tree) {
        const t = owners.get(w);
        if (t !== undefined) mine.push([h, t]);
      }
      mine.sort((a, b) => a[1] - b[1]);
      for (let k = 0; k < mine.length && sizes[w] > maxBlocks; k++) {
        const owners = tree.get(mine[k][0])!;
        owners.delete(w);
        if (owners.size === 0) tree.delete(mine[k][0]);
        sizes[w]--;
      }
    }
    lastEviction = now;
  };

  return {
    name: 'sglang-cache-aware',
    route(req, now, view) {
      const pods = view.pods;
      while (sizes.length < pods.length) sizes.push(0);
      if (now - lastEviction >= every) evict(now);
      const text = promptText(req);
      const hashes = blockHashes(text, req.lora ?? '', Number.MAX_SAFE_INTEGER);
      const loads = pods.map((p) => p.outstanding);
      const max = Math.max(...loads);
      const min = Math.min(...loads);
      let pick: number;
      if (max - min > abs && max > rel * min) {
        pick = loads.indexOf(min);
      } else {
        let matched = 0;
        let holder = -1;
        for (const h of hashes) {
          const owners = tree.get(h);
          if (!owners || owners.size === 0) break;
          matched++;
          // Prefer, among the workers holding this block, the one that also held the previous ones.
          if (holder < 0 || !owners.has(holder)) holder = owners.keys().next().value as number;
        }
        const rate = text.length > 0 ? (matched * BLOCK_CHARS) / text.length : 0;
        if (holder >= 0 && rate > threshold) pick = holder;
        else {
          pick = 0;
          for (let i = 1; i < pods.length; i++) if (sizes[i] < sizes[pick]) pick = i;
        }
      }
      for (const h of hashes) {
        let owners = tree.get(h);
        if (!owners) tree.set(h, (owners = new Map()));
        if (!owners.has(pick)) sizes[pick]++;
        owners.set(pick, now);
      }
      return pick;
    },
  };
}
