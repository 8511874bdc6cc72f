// The precise oracle: the Gateway API Inference Extension's default scoring (queue 2, KV cache 2,
// prefix 3, best score wins) fed with what no real router has — every simulated pod's exact state
// at the moment of the decision: how many of the prompt's tokens are in its prefix cache right
// now, its current waiting queue and KV-cache usage. This is what a router fed by the model
// servers' own KV-cache events can reach (llm-d's precise prefix-cache routing), without their
// delay: the ceiling the realistic strategies are measured against, not something a proxy can do.
// It also keeps GIE's approximate index of where it sent each prompt and scores a pod by the
// better of the two (exact cache, remembered assignment): under memory pressure a context evicted
// from its pod should still return there rather than be re-homed at random.

import type { Router } from '../../../test/sim/cluster.ts';
import { Rng } from '../../../test/sim/rng.ts';
import { ApproxPrefixIndex } from './gie.ts';

export function precise(seed = 13): Router {
  const rng = new Rng(seed);
  const index = new ApproxPrefixIndex();
  return {
    name: 'precise',
    oracle: true,
    route(req, _now, view) {
      const engines = view.engines!;
      const snaps = engines.map((e) => e.snapshot());
      const waiting = snaps.map((s) => s.waiting);
      const minW = Math.min(...waiting);
      const maxW = Math.max(...waiting);
      const { hashes, matched } = index.match(req, engines.length, '/model/qwen');
      let best = -Infinity;
      let pick = 0;
      let ties = 0;
      for (let i = 0; i < engines.length; i++) {
        const cached = engines[i].cachedPrefixTokens(req.tokens, req.lora ?? null);
        const queue = maxW === minW ? 1 : (maxW - waiting[i]) / (maxW - minW);
        const exact = req.tokens.length > 0 ? cached / req.tokens.length : 0;
        const remembered = hashes.length > 0 ? matched[i] / hashes.length : 0;
        const score = 2 * queue + 2 * (1 - snaps[i].kvUsage) + 3 * Math.max(exact, remembered);
        if (score > best + 1e-12) {
          best = score;
          pick = i;
          ties = 1;
        } else if (Math.abs(score - best) <= 1e-12 && rng.next() * ++ties < 1) {
          pick = i;
        }
      }
      index.record(pick, hashes, snaps[pick].kvBlocksTotal);
      return pick;
    },
  };
}
