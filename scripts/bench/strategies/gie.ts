// The Gateway API Inference Extension's endpoint picker with its default configuration (v1.5):
// queue-scorer (min-max of waiting requests, weight 2), kv-cache-utilization-scorer (1 - KV
// usage, weight 2), prefix-cache-scorer (approximate prefix index, weight 3), max-score picker
// with random tie-breaking. The prefix index: the prompt's 64-character blocks, chained hashes,
// greedy match from the first block until a block no pod has; after each pick the chosen pod's
// LRU (capacity: its num_gpu_blocks, the default autoTune) records every block. Metrics come
// from the same periodic scrapes every strategy gets.

import type { Router } from '../../../test/sim/cluster.ts';
import { Rng } from '../../../test/sim/rng.ts';
import { blockHashes, PodLru, promptText } from './prefix-blocks.ts';

const DEFAULT_LRU = 31_250;

export function gie(seed = 11, model = '/model/qwen'): Router {
  const rng = new Rng(seed);
  const lrus: PodLru[] = [];
  return {
    name: 'gie',
    route(req, _now, view) {
      const pods = view.pods;
      const n = pods.length;
      while (lrus.length < n) lrus.push(new PodLru(DEFAULT_LRU));
      // Prefix match (greedy: count blocks per pod until a block nobody has).
      const hashes = blockHashes(promptText(req), req.lora ?? model);
      const matched = new Array<number>(n).fill(0);
      for (const h of hashes) {
        let any = false;
        for (let i = 0; i < n; i++) {
          if (lrus[i].has(h)) {
            matched[i]++;
            any = true;
          }
        }
        if (!any) break;
      }
      const waiting = pods.map((p) => p.metrics?.waiting ?? 0);
      const minW = Math.min(...waiting);
      const maxW = Math.max(...waiting);
      let best = -Infinity;
      let pick = 0;
      let ties = 0;
      for (let i = 0; i < n; i++) {
        const m = pods[i].metrics;
        const queue = maxW === minW ? 1 : (maxW - waiting[i]) / (maxW - minW);
        const kv = 1 - (m?.kvUsage ?? 0);
        const prefix = hashes.length > 0 ? matched[i] / hashes.length : 0;
        const score = 2 * queue + 2 * kv + 3 * prefix;
        if (score > best + 1e-12) {
          best = score;
          pick = i;
          ties = 1;
        } else if (Math.abs(score - best) <= 1e-12 && rng.next() * ++ties < 1) {
          pick = i;
        }
      }
      const cap = pods[pick].metrics?.kvBlocksTotal;
      if (cap && cap > 0) lrus[pick].capacity = cap;
      for (const h of hashes) lrus[pick].add(h);
      return pick;
    },
  };
}
