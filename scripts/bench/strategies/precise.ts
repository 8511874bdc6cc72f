// The precise oracle: a router that reads every simulated pod's exact state at the moment of the
// decision — which of the prompt's blocks are in its prefix cache right now, what is waiting and
// how full its KV cache is — and picks the pod with the lowest estimated time to first token:
//
//   est = (prefill work queued ahead + this prompt's uncached tokens) / prefill rate
//         + a wait for KV blocks when the pod has fewer free blocks than the prompt needs
//
// This is what a router fed by the model servers' own KV-cache events can reach (llm-d's precise
// prefix-cache routing), without their delay: the ceiling the realistic strategies are measured
// against, not something a proxy can do.

import type { Router } from '../../../test/sim/cluster.ts';
import { Rng } from '../../../test/sim/rng.ts';

// Tokens per millisecond of prefill for the simulated A10 (see docs/simulator.md: ~5,000 tok/s).
const PREFILL_PER_MS = 5;
const KV_WAIT_MS = 5000;

export function precise(seed = 13): Router {
  const rng = new Rng(seed);
  const uncachedAtSend = new Map<string, number>();
  return {
    name: 'precise',
    oracle: true,
    route(req, _now, view) {
      const engines = view.engines!;
      let best = Infinity;
      let pick = 0;
      let ties = 0;
      let pickUncached = 0;
      for (let i = 0; i < engines.length; i++) {
        const e = engines[i];
        const uncached = req.tokens.length - e.cachedPrefixTokens(req.tokens, req.lora ?? null);
        let backlog = 0;
        for (const id of e.queues().waiting) backlog += uncachedAtSend.get(id) ?? 0;
        const s = e.snapshot();
        const free = s.kvBlocksTotal - s.kvBlocksUsed;
        const need = Math.ceil((uncached + req.maxTokens / 4) / s.blockSize);
        const kvWait = free >= need ? 0 : (KV_WAIT_MS * (need - free)) / need;
        const est = (backlog + uncached) / PREFILL_PER_MS + kvWait + s.running * 0.5;
        if (est < best - 1e-9) {
          best = est;
          pick = i;
          ties = 1;
          pickUncached = uncached;
        } else if (Math.abs(est - best) <= 1e-9 && rng.next() * ++ties < 1) {
          pick = i;
          pickUncached = uncached;
        }
      }
      uncachedAtSend.set(req.id, pickUncached);
      return pick;
    },
    onFinished(req) {
      uncachedAtSend.delete(req.id);
    },
  };
}
