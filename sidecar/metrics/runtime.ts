// From a model server's samples to the few numbers the state document carries.
//
// A server may expose several series of one gauge: one per `model_name` (vLLM labels every
// metric with the served model), one per engine (`engine="0"`, `"1"`, ... under data
// parallelism), one per rank (SGLang `tp_rank`/`dp_rank`). The rules:
//   - request counts (waiting, running): the sum over all series, since every series counts
//     distinct requests on this server;
//   - KV-cache usage: the mean over the series (each engine has its own cache of the same size,
//     and the server spreads requests over its engines); NaN series are skipped;
//   - vllm:lora_requests_info: the series with the largest value wins. vLLM starts a new series
//     whenever the adapter lists change and sets the value to the time of the change, so the
//     newest series is the current state, even when its lists are empty;
//   - cache_config_info: the first series with parseable positive block_size/num_gpu_blocks
//     (SGLang: page_size/num_pages).
//   - a series labelled with a non-empty `priority` is a per-priority breakdown of the series
//     labelled priority="" (SGLang with --enable-priority-scheduling publishes both), so it is
//     left out of the sums whenever a total series is present.
// The core gauges (waiting, running, KV usage) are required: a page without any one of them is
// an error (metrics_missing) and the pod keeps its previous values. LoRA and cache-config series
// are optional.
//
// Pods of a prefill/decode pool (SGLang disaggregation) hold requests in queues of their own
// besides the waiting queue; they are added to `waiting` and `running` per role so that every
// request a pod has accepted and not yet answered is counted once:
//   - prefill: waiting += the bootstrap queue (requests waiting for their decode side's
//     handshake before they may be prefilled); running += the inflight queue (prefilled, KV cache
//     being sent; the request is answered once the decode side has it);
//   - decode: waiting += the prealloc queue (waiting for KV-cache room and the handshake);
//     running += the transfer queue (room reserved, KV cache arriving from the prefill side).
// Transfers count as running on both sides: they no longer wait for this server's capacity.
// These gauges are optional (absent counts 0): servers before they existed still work.

import type { Runtime } from "../k8s/pool-spec.ts";
import type { PdRole } from "../k8s/pd.ts";
import { MetricSelector, type Sample } from "./exposition.ts";

export interface ServerMetrics {
  waiting: number;
  running: number;
  kvUsage: number; // 0..1
  loraRunning?: string[];
  loraWaiting?: string[];
  maxLora?: number;
  kvBlockSize?: number;
  kvBlocks?: number;
  // What the server says it is (SGLang's `engine_type` label: prefill, decode or unified).
  engineType?: EngineType;
}

export type EngineType = "prefill" | "decode" | "unified";
const ENGINE_TYPES: readonly string[] = ["prefill", "decode", "unified"];

export type Extraction = { ok: true; metrics: ServerMetrics } | { ok: false; missing: string[] };

interface RuntimeSpec {
  waiting: string;
  running: string;
  kvUsage: string[]; // first present wins
  lora?: string;
  cacheInfo?: { name: string; blockSize: string; blocks: string };
  // The same two numbers as gauges of their own (SGLang since it dropped cache_config_info).
  cacheGauges?: { blockSize: string; blocks: string };
  // Per role: gauges added to waiting / running. Each entry lists alternative names of one gauge
  // (renamed across versions), the first present wins.
  pd?: Record<PdRole, { waiting: string[][]; running: string[][] }>;
}

const SPECS: Record<Runtime, RuntimeSpec> = {
  vllm: {
    waiting: "vllm:num_requests_waiting",
    running: "vllm:num_requests_running",
    // kv_cache_usage_perc since vLLM v1; gpu_cache_usage_perc in older servers.
    kvUsage: ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    lora: "vllm:lora_requests_info",
    cacheInfo: { name: "vllm:cache_config_info", blockSize: "block_size", blocks: "num_gpu_blocks" },
  },
  sglang: {
    waiting: "sglang:num_queue_reqs",
    running: "sglang:num_running_reqs",
    kvUsage: ["sglang:token_usage"],
    cacheInfo: { name: "sglang:cache_config_info", blockSize: "page_size", blocks: "num_pages" },
    cacheGauges: { blockSize: "sglang:page_size", blocks: "sglang:num_pages" },
    pd: {
      prefill: {
        // num_prefill_bootstrap_queue_reqs in current servers, num_prefill_prealloc_queue_reqs
        // before: both count the bootstrap queue.
        waiting: [["sglang:num_prefill_bootstrap_queue_reqs", "sglang:num_prefill_prealloc_queue_reqs"]],
        running: [["sglang:num_prefill_inflight_queue_reqs"]],
      },
      decode: {
        waiting: [["sglang:num_decode_prealloc_queue_reqs"]],
        running: [["sglang:num_decode_transfer_queue_reqs"]],
      },
    },
  },
};

export function metricNames(runtime: Runtime, role?: PdRole): string[] {
  const s = SPECS[runtime];
  const names = [s.waiting, s.running, ...s.kvUsage];
  if (s.lora) names.push(s.lora);
  if (s.cacheInfo) names.push(s.cacheInfo.name);
  if (s.cacheGauges) names.push(s.cacheGauges.blockSize, s.cacheGauges.blocks);
  const extra = role !== undefined ? s.pd?.[role] : undefined;
  if (extra) for (const alternatives of [...extra.waiting, ...extra.running]) names.push(...alternatives);
  return names;
}

// The query string that asks a prometheus_client exposition for exactly these series: one
// `name[]` per name (the client matches sample names; every series read here is a gauge, whose
// sample name is its family name). Brackets and colons percent-encoded.
const queries = new Map<string, string>();

export function nameQuery(runtime: Runtime, role?: PdRole): string {
  const key = role === undefined ? runtime : `${runtime}/${role}`;
  let q = queries.get(key);
  if (q === undefined) {
    q = "?" + metricNames(runtime, role).map((n) => `name%5B%5D=${encodeURIComponent(n)}`).join("&");
    queries.set(key, q);
  }
  return q;
}

const selectors = new Map<string, MetricSelector>();

export function selectorFor(runtime: Runtime, role?: PdRole): MetricSelector {
  const key = role === undefined ? runtime : `${runtime}/${role}`;
  let s = selectors.get(key);
  if (!s) {
    s = new MetricSelector(metricNames(runtime, role));
    selectors.set(key, s);
  }
  return s;
}

export function extract(runtime: Runtime, samples: Map<string, Sample[]>, role?: PdRole): Extraction {
  const spec = SPECS[runtime];
  const missing: string[] = [];
  const waitingList = samples.get(spec.waiting);
  const waiting = sum(waitingList);
  if (waiting === undefined) missing.push(spec.waiting);
  const runningList = samples.get(spec.running);
  const running = sum(runningList);
  if (running === undefined) missing.push(spec.running);
  let kv: number | undefined;
  for (const name of spec.kvUsage) {
    kv = mean(samples.get(name));
    if (kv !== undefined) break;
  }
  if (kv === undefined) missing.push(spec.kvUsage.join(" or "));
  if (missing.length > 0) return { ok: false, missing };
  let queued = waiting!;
  let active = running!;
  const extra = role !== undefined ? spec.pd?.[role] : undefined;
  if (extra) {
    for (const alternatives of extra.waiting) queued += firstSum(samples, alternatives);
    for (const alternatives of extra.running) active += firstSum(samples, alternatives);
  }

  const m: ServerMetrics = {
    waiting: clampCount(queued),
    running: clampCount(active),
    kvUsage: Math.min(1, Math.max(0, kv!)),
  };
  if (spec.lora) {
    const lora = newest(samples.get(spec.lora));
    if (lora) {
      m.loraRunning = splitList(lora.labels.running_lora_adapters);
      m.loraWaiting = splitList(lora.labels.waiting_lora_adapters);
      const max = positiveInt(lora.labels.max_lora);
      if (max !== undefined) m.maxLora = max;
    }
  }
  if (spec.cacheInfo) {
    for (const s of samples.get(spec.cacheInfo.name) ?? []) {
      const bs = positiveInt(s.labels[spec.cacheInfo.blockSize]);
      const nb = positiveInt(s.labels[spec.cacheInfo.blocks]);
      if (bs !== undefined || nb !== undefined) {
        if (bs !== undefined) m.kvBlockSize = bs;
        if (nb !== undefined) m.kvBlocks = nb;
        break;
      }
    }
  }
  if (spec.cacheGauges && m.kvBlockSize === undefined && m.kvBlocks === undefined) {
    const bs = positiveInt(first(samples.get(spec.cacheGauges.blockSize)));
    const nb = positiveInt(first(samples.get(spec.cacheGauges.blocks)));
    if (bs !== undefined) m.kvBlockSize = bs;
    if (nb !== undefined) m.kvBlocks = nb;
  }
  const engine = engineTypeOf(waitingList) ?? engineTypeOf(runningList);
  if (engine !== undefined) m.engineType = engine;
  return { ok: true, metrics: m };
}

// The first finite value of a series list, as text for positiveInt; undefined when none.
function first(list: Sample[] | undefined): string | undefined {
  const v = finite(list);
  return v.length === 0 ? undefined : String(v[0]);
}

// The sum of the first of `names` present on the page; 0 when none is.
function firstSum(samples: Map<string, Sample[]>, names: string[]): number {
  for (const name of names) {
    const v = sum(samples.get(name));
    if (v !== undefined) return Math.max(0, v);
  }
  return 0;
}

function engineTypeOf(list: Sample[] | undefined): EngineType | undefined {
  for (const s of list ?? []) {
    const t = s.labels.engine_type;
    if (t !== undefined && ENGINE_TYPES.includes(t)) return t as EngineType;
  }
  return undefined;
}

function finite(list: Sample[] | undefined): number[] {
  if (!list) return [];
  const out: number[] = [];
  for (const s of list) if (Number.isFinite(s.value)) out.push(s.value);
  return out;
}

function sum(list: Sample[] | undefined): number | undefined {
  const v = finite(totals(list));
  return v.length === 0 ? undefined : v.reduce((a, b) => a + b, 0);
}

// The series that are not per-priority breakdowns of a total series on the page.
function totals(list: Sample[] | undefined): Sample[] | undefined {
  if (!list || list.length < 2) return list;
  let breakdowns = 0;
  for (const s of list) if (s.labels.priority !== undefined && s.labels.priority !== "") breakdowns++;
  if (breakdowns === 0 || breakdowns === list.length) return list;
  return list.filter((s) => s.labels.priority === undefined || s.labels.priority === "");
}

function mean(list: Sample[] | undefined): number | undefined {
  const v = finite(list);
  return v.length === 0 ? undefined : v.reduce((a, b) => a + b, 0) / v.length;
}

function newest(list: Sample[] | undefined): Sample | undefined {
  let best: Sample | undefined;
  for (const s of list ?? []) {
    if (Number.isNaN(s.value)) continue;
    if (!best || s.value > best.value) best = s;
  }
  return best;
}

function clampCount(n: number): number {
  return Math.min(1e9, Math.max(0, n));
}

export function splitList(text: string | undefined): string[] {
  if (!text) return [];
  const out: string[] = [];
  for (const part of text.split(",")) {
    const t = part.trim();
    if (t.length > 0 && !out.includes(t)) out.push(t);
  }
  return out;
}

function positiveInt(text: string | undefined): number | undefined {
  if (text === undefined || !/^\s*\d+\s*$/.test(text)) return undefined;
  const n = Number(text);
  return n > 0 && Number.isSafeInteger(n) ? n : undefined;
}
