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
// The core gauges (waiting, running, KV usage) are required: a page without any one of them is
// an error (metrics_missing) and the pod keeps its previous values. LoRA and cache-config series
// are optional.

import type { Runtime } from "../k8s/pool-spec.ts";
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
}

export type Extraction = { ok: true; metrics: ServerMetrics } | { ok: false; missing: string[] };

interface RuntimeSpec {
  waiting: string;
  running: string;
  kvUsage: string[]; // first present wins
  lora?: string;
  cacheInfo?: { name: string; blockSize: string; blocks: string };
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
  },
};

export function metricNames(runtime: Runtime): string[] {
  const s = SPECS[runtime];
  const names = [s.waiting, s.running, ...s.kvUsage];
  if (s.lora) names.push(s.lora);
  if (s.cacheInfo) names.push(s.cacheInfo.name);
  return names;
}

const selectors = new Map<Runtime, MetricSelector>();

export function selectorFor(runtime: Runtime): MetricSelector {
  let s = selectors.get(runtime);
  if (!s) {
    s = new MetricSelector(metricNames(runtime));
    selectors.set(runtime, s);
  }
  return s;
}

export function extract(runtime: Runtime, samples: Map<string, Sample[]>): Extraction {
  const spec = SPECS[runtime];
  const missing: string[] = [];
  const waiting = sum(samples.get(spec.waiting));
  if (waiting === undefined) missing.push(spec.waiting);
  const running = sum(samples.get(spec.running));
  if (running === undefined) missing.push(spec.running);
  let kv: number | undefined;
  for (const name of spec.kvUsage) {
    kv = mean(samples.get(name));
    if (kv !== undefined) break;
  }
  if (kv === undefined) missing.push(spec.kvUsage.join(" or "));
  if (missing.length > 0) return { ok: false, missing };

  const m: ServerMetrics = {
    waiting: clampCount(waiting!),
    running: clampCount(running!),
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
  return { ok: true, metrics: m };
}

function finite(list: Sample[] | undefined): number[] {
  if (!list) return [];
  const out: number[] = [];
  for (const s of list) if (Number.isFinite(s.value)) out.push(s.value);
  return out;
}

function sum(list: Sample[] | undefined): number | undefined {
  const v = finite(list);
  return v.length === 0 ? undefined : v.reduce((a, b) => a + b, 0);
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
