// When to hold requests: the pool's saturation by the Gateway API Inference Extension's detector —
// the mean over ready endpoints of max(waiting / queue threshold, KV usage / KV threshold), an
// endpoint whose metrics are stale counting as saturated (1).
//
// Arrivals are held when the metrics say the pool is saturated. Releases from the queue also
// count in-flight credits: the requests this proxy sent an endpoint since its metrics were taken
// count as waiting there until the next scrape shows them. Without them every release between two
// scrapes would see the same pool, and a queue of hundreds would be released at once into the
// servers' own queues. (At arrival they would hold every burst over an idle pool until the next
// scrape, which the metrics do not call for.)
// With a stale state (degraded mode) nothing is known and nothing is held.

import { PickInput, metricsStale, sentSince } from "../schedule/pick";

export function poolSaturation(input: PickInput, credits: bool): f64 {
  if (input.degraded) return 0;
  const c = input.cfg;
  const eps = input.pool.endpoints;
  let sum: f64 = 0;
  let n = 0;
  for (let i = 0; i < eps.length; i++) {
    const e = unchecked(eps[i]);
    if (!e.ready) continue;
    n++;
    if (metricsStale(e, input)) {
      sum += 1;
      continue;
    }
    const waiting = credits ? e.waiting + sentSince(e, input) : e.waiting;
    const q = c.queueThreshold > 0 ? waiting / c.queueThreshold : 0;
    const k = c.kvThreshold > 0 ? e.kvUsage / c.kvThreshold : 0;
    sum += q > k ? q : k;
  }
  return n == 0 ? 0 : sum / <f64>n;
}
