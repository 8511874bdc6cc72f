// Measures the capacity of the simulated cluster on each open-loop built-in workload, whose mean
// rate is set to 90% of it (real-workloads.ts).
//
// Capacity is the highest steady arrival rate the cluster sustains through least-request (a
// cache-oblivious router): the workload's traffic at a constant Poisson rate (no swings, no
// bursts) is sustained when requests sent in the last quarter of the run wait about as long as
// those sent in the second quarter (mean TTFT at most 2x, or under 1 s, and the second quarter's
// under 10 s); past capacity the
// queue grows without bound and the later requests wait ever longer. (The mean, not the median:
// requests starved of a LoRA slot are a few percent, and their waits grow just the same.) A bisection finds the rate
// to within 3%. (Closed-loop throughput overstates it: with hundreds of requests queued per pod
// the engine batches better, for LoRA adapters especially, than an open loop can sustain.)
//
// On a prefill/decode workload the router is least-request on each role (pd-least-request).
// On priority-overload the traffic is its three bands in their proportions (Standard 1, Critical
// 0.1, Sheddable 0.2), and the capacity is their total rate; least-request ignores criticality.
//
//   npx tsx scripts/bench/calibrate.ts [chat|long-tail|lora-mix|trace-conversations|pd-chat|priority-overload ...]

import { simulate } from '../../test/sim/cluster.ts';
import { leastRequest, pdLeastRequest } from '../../test/sim/routers.ts';
import { summarize } from '../../test/sim/stats.ts';
import { parseTrace, planTrace, traceSource } from '../../test/sim/trace.ts';
import { priorityTraffic, traffic, type TrafficOptions } from '../../test/sim/traffic.ts';
import type { RequestSource } from '../../test/sim/workload.ts';
import { CHAT, CONVERSATIONS_TRACE_BLOCK_TOKENS, LONG_TAIL, LORA_MIX, PD_CHAT, PD_CHAT_PREFILL } from './real-workloads.ts';
import { SEEDS_ENGINE } from './trace-workload.ts';
import { CONVERSATIONS, conversationsTrace } from './traces/generate.ts';
import { CRITICAL_SHARE, PRIORITY_PODS, PRIORITY_TRAFFIC, priorityBands, SHEDDABLE_SHARE } from './priority-workloads.ts';

const REQUESTS = 6000;

/** Whether least-request keeps up with `source` on `pods` pods. */
export async function sustained(pods: number, source: RequestSource, seed = 7, prefill?: number): Promise<{ ok: boolean; early: number; late: number }> {
  const pd = prefill === undefined ? {} : { pd: { prefill } };
  const router = prefill === undefined ? leastRequest({ seed }) : pdLeastRequest({ seed });
  const r = await simulate({ cluster: { pods, engine: SEEDS_ENGINE, seed, ...pd }, source, router, arrival: { kind: 'open' } });
  const sent = r.requests.slice().sort((a, b) => a.sentMs - b.sentMs);
  const q = Math.floor(sent.length / 4);
  const early = summarize(sent.slice(q, 2 * q).map((x) => x.ttftMs)).mean;
  const late = summarize(sent.slice(3 * q).map((x) => x.ttftMs)).mean;
  // Far past capacity both quarters are swamped and their ratio says little: a rate whose second
  // quarter already waits over 10 s on average is not sustained.
  return { ok: late <= Math.max(2 * early, 1000) && early <= 10_000, early, late };
}

/** Bisection on the rate between lo (sustained) and hi (not), to within 3%. */
export async function capacity(pods: number, at: (ratePerSec: number) => RequestSource, lo: number, hi: number, log: (s: string) => void, prefill?: number): Promise<number> {
  while (hi / lo > 1.03) {
    const mid = Math.sqrt(lo * hi);
    const s = await sustained(pods, at(mid), 7, prefill);
    log(`  ${mid.toFixed(2)} req/s: mean TTFT ${s.early.toFixed(0)} -> ${s.late.toFixed(0)} ms, ${s.ok ? 'sustained' : 'falling behind'}\n`);
    if (s.ok) lo = mid;
    else hi = mid;
  }
  return lo;
}

const steady = (o: TrafficOptions, rate: number): TrafficOptions => ({ ...o, requests: REQUESTS, ratePerSec: rate, swing: 0, burstEveryMs: 0 });
// The trace's timestamps come from CONVERSATIONS' rate profile; a Poisson version at the same
// mean rate, replayed faster, stands for it.
const traceAt = (rate: number) => {
  const text = conversationsTrace({ ...steady(CONVERSATIONS, CONVERSATIONS.ratePerSec) });
  const plan = planTrace(parseTrace(text), { blockTokens: CONVERSATIONS_TRACE_BLOCK_TOKENS, speed: rate / CONVERSATIONS.ratePerSec });
  return traceSource(plan);
};

const targets: Array<[string, number, (rate: number) => RequestSource, number?]> = [
  ['chat', 8, (r) => traffic(steady(CHAT, r))],
  ['long-tail', 8, (r) => traffic(steady(LONG_TAIL, r))],
  // On the base model only: what the pods can do when adapter slots never get in the way; what
  // a router loses to slot contention on top of that is its own doing.
  ['lora-mix', 5, (r) => traffic({ ...steady(LORA_MIX, r), loras: undefined })],
  ['trace-conversations', 8, traceAt],
  ['pd-chat', 8, (r) => traffic(steady(PD_CHAT, r)), PD_CHAT_PREFILL],
  // REQUESTS in all, at a total rate r.
  ['priority-overload', PRIORITY_PODS, (r) => priorityTraffic({ traffic: PRIORITY_TRAFFIC, bands: priorityBands(r / (1 + CRITICAL_SHARE + SHEDDABLE_SHARE)), durationMs: (REQUESTS / r) * 1000 })],
];
const only = process.argv.slice(2);
for (const [name, pods, at, prefill] of targets) {
  if (only.length && !only.includes(name)) continue;
  process.stdout.write(`${name} (${pods} pods${prefill === undefined ? '' : `, ${prefill} prefill`})\n`);
  const cap = await capacity(pods, at, prefill === undefined ? 2 * pods : pods / 2, 10 * pods, (s) => process.stdout.write(s), prefill);
  process.stdout.write(`${name}: capacity ${cap.toFixed(1)} req/s, 90% ${(0.9 * cap).toFixed(1)} req/s\n`);
}
