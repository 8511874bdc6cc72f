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
import { ApproxPrefixIndex, maxScorePick, queueScores } from './gie.ts';

export function precise(seed = 13): Router {
  const rng = new Rng(seed);
  const index = new ApproxPrefixIndex();
  return {
    name: 'precise',
    oracle: true,
    route(req, _now, view) {
      const engines = view.engines!;
      const snaps = engines.map((e) => e.snapshot());
      const queue = queueScores(snaps.map((s) => s.waiting));
      const { hashes, matched } = index.match(req, engines.length, '/model/qwen');
      const scores = engines.map((e, i) => {
        const exact = req.tokens.length > 0 ? e.cachedPrefixTokens(req.tokens, req.lora ?? null) / req.tokens.length : 0;
        const remembered = hashes.length > 0 ? matched[i] / hashes.length : 0;
        return 2 * queue[i] + 2 * (1 - snaps[i].kvUsage) + 3 * Math.max(exact, remembered);
      });
      const pick = maxScorePick(scores, rng);
      index.record(pick, hashes, snaps[pick].kvBlocksTotal);
      return pick;
    },
  };
}
