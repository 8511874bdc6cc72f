// Workloads with the properties of production traffic (test/sim/traffic.ts): a system prompt
// shared by every request, long-tailed lengths, Zipf-popular conversations whose turns come
// minutes apart, a rate that swings +-25% per minute with bursts, open-loop load near 90% of
// capacity; one of them with a mix of LoRA adapters, and one replayed from a trace file.
//
// Capacity calibration (scripts/bench/calibrate.ts): each workload's requests, all ready at
// once, through least-request (a cache-oblivious router) at 4 to 64 requests in flight per pod;
// capacity is the best throughput, and ratePerSec is 90% of it. So a cache-aware router has
// some headroom and round-robin or random can fall behind in the swings and bursts, as in
// production. Re-run the calibration after changing a workload or the simulator's cost model.

import { fileURLToPath } from 'node:url';
import { traffic, type TrafficOptions } from '../../test/sim/traffic.ts';
import { SEEDS_ENGINE, traceWorkload } from './trace-workload.ts';
import type { Workload } from './workloads.ts';

const MINUTE = 60_000;

// 8 pods. Conversations: 200-token system prompt, lognormal user messages (median 60 tokens),
// Zipf turns (P(n) ~ n^-2.2), next turn ~90 s later. Prompt p99 about 10x the median.
// Capacity 42.7 req/s.
export const CHAT: TrafficOptions = {
  requests: 4000,
  ratePerSec: 38.4,
  warmupMs: 5 * MINUTE,
  systemLen: 200,
  userLen: { median: 60, sigma: 1.6, max: 6000 },
  outputLen: { median: 180, sigma: 0.6, min: 8, max: 1024 },
  turnsZipf: 2.2,
  turnGapMs: { median: 90_000, sigma: 0.5, min: 20_000 },
  seed: 21,
};

// 8 pods. Single requests (documents, retrieval): a 300-token system prompt and a lognormal
// question+context of median 400 tokens, p99 about 10x the prompt median. Capacity 32.4 req/s.
export const LONG_TAIL: TrafficOptions = {
  requests: 3000,
  ratePerSec: 29.1,
  systemLen: 300,
  userLen: { median: 400, sigma: 1.2, max: 7000 },
  outputLen: { median: 150, sigma: 0.6, min: 8, max: 1024 },
  maxTurns: 1,
  turnGapMs: { median: MINUTE, sigma: 0 },
  seed: 22,
};

// 5 pods, the seeds' pool. Conversations as in CHAT, each on the base model or an adapter:
// the seeds' travel-helper-v1 and -v2, and now and then a third (the pods load at most 2 per
// batch, --max-loras 2, and keep 4 in host memory), so adapters contend for slots. Capacity
// 22.9 req/s (measured on the base model: what the pods do when slots never get in the way).
export const LORA_MIX: TrafficOptions = {
  ...CHAT,
  requests: 2000,
  ratePerSec: 20.6,
  loras: [
    { name: null, weight: 0.5 },
    { name: 'travel-helper-v1', weight: 0.25 },
    { name: 'travel-helper-v2', weight: 0.2 },
    { name: 'travel-helper-v3', weight: 0.05 },
  ],
  seed: 23,
};

export const CONVERSATIONS_TRACE_PATH = fileURLToPath(new URL('./traces/conversations.jsonl', import.meta.url));
// 128 tokens per hash id: the trace's 32k-token contexts at a quarter, within 8192. The trace
// runs at 8.9 req/s; capacity is 53.5 req/s, so it is replayed 5.4x faster (90%).
export const CONVERSATIONS_TRACE_BLOCK_TOKENS = 128;
export const CONVERSATIONS_TRACE_SPEED = 5.4;

function trafficWorkload(name: string, pods: number, o: TrafficOptions, what: string, quickRequests: number, quick: boolean): Workload {
  const opts = { ...o, requests: quick ? quickRequests : o.requests };
  return {
    name,
    description: `${what}; ${opts.requests} requests, open loop at ${o.ratePerSec.toFixed(1)} req/s on average (90% of the measured capacity), +-${((o.swing ?? 0.25) * 100).toFixed(0)}% per minute with bursts; ${pods} pods`,
    pods,
    arrival: { kind: 'open' },
    source: (seed) => traffic(seed === undefined ? opts : { ...opts, seed: (o.seed ?? 0) * 1000 + seed }),
    engine: SEEDS_ENGINE,
  };
}

export function realWorkloads(quick: boolean): Workload[] {
  return [
    trafficWorkload('chat', 8, CHAT, 'chat: conversations with Zipf-distributed turns ~90 s apart, after a 5-minute warm-up; a 200-token system prompt shared by all; lognormal messages (prompt p99 ~10x median)', 1000, quick),
    trafficWorkload('long-tail', 8, LONG_TAIL, 'single requests with a 300-token shared system prompt and lognormal lengths (prompt p99 ~10x median, up to 7k tokens)', 800, quick),
    trafficWorkload('lora-mix', 5, LORA_MIX, 'chat on the base model (50%) and the adapters travel-helper-v1 (25%), travel-helper-v2 (20%) and travel-helper-v3 (5%; 2 adapters per batch)', 600, quick),
    traceWorkload(CONVERSATIONS_TRACE_PATH, {
      name: 'trace-conversations',
      what: 'the Mooncake-format trace scripts/bench/traces/conversations.jsonl (conversations, a system-prompt block opening 97% of requests, prompt p99 ~10x median, +-25% per minute)',
      blockTokens: CONVERSATIONS_TRACE_BLOCK_TOKENS,
      speed: CONVERSATIONS_TRACE_SPEED,
      limit: quick ? 1000 : undefined,
      pods: 8,
    }),
  ];
}

// 8 pods, 3 prefill and 5 decode (SGLang P/D over RDMA): conversations with longer contexts
// than CHAT's — a 1000-token system prompt shared by all and lognormal messages of median 300
// tokens — and turns ~20 s apart, so that prefill is the larger part of the work and where a
// conversation's next turn is prefilled matters. Capacity 10.0 req/s (least-request on each
// role, pd-least-request).
export const PD_CHAT: TrafficOptions = {
  ...CHAT,
  requests: 3000,
  ratePerSec: 9,
  systemLen: 1000,
  userLen: { median: 300, sigma: 1.2, max: 6000 },
  outputLen: { median: 150, sigma: 0.6, min: 8, max: 1024 },
  warmupMs: 60_000,
  turnGapMs: { median: 20_000, sigma: 0.5, min: 5_000 },
  seed: 24,
};

export const PD_CHAT_PREFILL = 3;

export function pdWorkloads(quick: boolean): Workload[] {
  return [
    {
      ...trafficWorkload('pd-chat', 8, PD_CHAT, 'prefill/decode disaggregation (3 prefill + 5 decode pods, KV over RDMA): conversations with a 1000-token system prompt shared by all, lognormal messages (median 300 tokens), Zipf turns ~20 s apart', 800, quick),
      pd: { prefill: PD_CHAT_PREFILL },
    },
  ];
}
