// /metrics pages of a simulated pod, in the Prometheus text format (0.0.4) as Python's
// prometheus_client writes them for vLLM and SGLang:
//   - label names sorted, values with \\, \" and \n escaped;
//   - values as Python's repr() of a float, with Go's exponent form for positive values of 7 or
//     more integer digits (prometheus_client's floatToGoString): 2.0, 0.25, 1.7636e+09;
//   - counters as <name>_total plus a <name>_created gauge family; histograms as cumulative
//     _bucket{le=...} series, _count and _sum, plus a _created gauge family.
//
// vLLM (v1 engine, as of 0.9/0.10: vllm/v1/metrics/loggers.py): per-engine metrics labelled
// {engine="0", model_name=<served model name>}: num_requests_running/waiting,
// kv_cache_usage_perc and the deprecated gpu_cache_usage_perc, prefix_cache_queries/hits (and the
// deprecated gpu_ variants), num_preemptions, prompt_tokens, generation_tokens, request_success,
// token-count and latency histograms with vLLM's buckets; vllm:lora_requests_info (labels
// max_lora, running_lora_adapters, waiting_lora_adapters; one series per adapter combination,
// valued at the time it was last reported) when LoRA is enabled; vllm:cache_config_info.
//
// SGLang (python/sglang/srt/metrics/collector.py): sglang:num_running_reqs, num_queue_reqs,
// num_used_tokens, token_usage, gen_throughput, cache_hit_rate, max_total_num_tokens,
// prompt/generation/cached token and request counters, TTFT / inter-token / e2e histograms,
// labelled {model_name}; sglang:cache_config_info {page_size, num_pages}. A prefill or decode
// server of a disaggregated deployment adds its queue gauges (sglang:num_prefill_bootstrap_queue_reqs
// and num_prefill_inflight_queue_reqs, or num_decode_prealloc_queue_reqs and
// num_decode_transfer_queue_reqs), the bootstrap / transfer failure counters and, on the prefill
// side, the KV transfer latency histogram.

import type { EngineSnapshot, LoraInfoSample } from "./engine.ts";
import type { Histogram } from "./histogram.ts";

/** Python repr() of a float. */
export function pyRepr(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (n === Infinity) return "inf";
  if (n === -Infinity) return "-inf";
  if (Number.isInteger(n) && Math.abs(n) < 1e16) return (Object.is(n, -0) ? "-0" : String(n)) + ".0";
  const [mant, e] = n.toExponential().split("e");
  const exp = Number(e);
  if (exp >= -4 && exp < 16) return String(n);
  return `${mant}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
}

/** prometheus_client's floatToGoString: sample values and `le` labels. */
export function promFloat(n: number): string {
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  if (Number.isNaN(n)) return "NaN";
  const s = pyRepr(n);
  const dot = s.indexOf(".");
  if (n > 0 && dot > 6) {
    const mantissa = `${s[0]}.${s.slice(1, dot)}${s.slice(dot + 1)}`.replace(/[0.]+$/, "");
    return `${mantissa}e+0${dot - 1}`;
  }
  return s;
}

type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

// Label sets are reused across a page (and across pages), so their text is kept.
const labelTextCache = new WeakMap<Labels, string>();

function labelText(labels: Labels): string {
  const cached = labelTextCache.get(labels);
  if (cached !== undefined) return cached;
  const keys = Object.keys(labels).sort();
  const text = keys.length === 0 ? "" : "{" + keys.map((k) => `${k}="${escapeLabel(labels[k])}"`).join(",") + "}";
  labelTextCache.set(labels, text);
  return text;
}

// The label text around a histogram's `le` label: everything before its value, everything after.
function bucketLabelParts(labels: Labels): [string, string] {
  const keys = [...Object.keys(labels), "le"].sort();
  const parts = keys.map((k) => (k === "le" ? "" : `${k}="${escapeLabel(labels[k])}"`));
  const at = keys.indexOf("le");
  const before = parts.slice(0, at).join(",");
  const after = parts.slice(at + 1).join(",");
  return [`{${before}${before ? "," : ""}le="`, `"${after ? "," : ""}${after}}`];
}

class Page {
  private readonly out: string[] = [];

  family(name: string, type: string, help: string): void {
    this.out.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Labels, value: number): void {
    this.out.push(`${name}${labelText(labels)} ${promFloat(value)}`);
  }

  gauge(name: string, help: string, series: [Labels, number][]): void {
    this.family(name, "gauge", help);
    for (const [l, v] of series) this.sample(name, l, v);
  }

  counter(name: string, help: string, series: [Labels, number][], created?: number): void {
    this.family(`${name}_total`, "counter", help);
    for (const [l, v] of series) this.sample(`${name}_total`, l, v);
    if (created !== undefined) {
      this.family(`${name}_created`, "gauge", help);
      for (const [l] of series) this.sample(`${name}_created`, l, created);
    }
  }

  histogram(name: string, help: string, labels: Labels, h: Histogram, created?: number): void {
    this.family(name, "histogram", help);
    const cum = h.cumulative();
    const [open, close] = bucketLabelParts(labels);
    const bucket = `${name}_bucket`;
    for (let i = 0; i < h.bounds.length; i++) this.out.push(`${bucket}${open}${promFloat(h.bounds[i])}${close} ${promFloat(cum[i])}`);
    this.out.push(`${bucket}${open}+Inf${close} ${promFloat(cum[cum.length - 1])}`);
    this.sample(`${name}_count`, labels, h.count);
    this.sample(`${name}_sum`, labels, h.sum);
    if (created !== undefined) {
      this.family(`${name}_created`, "gauge", help);
      this.sample(`${name}_created`, labels, created);
    }
  }

  text(): string {
    return this.out.join("\n") + "\n";
  }
}

export interface VllmPageOptions {
  /** Served model name (the model_name label). */
  modelName: string;
  /** Unix seconds when the metrics were created (the _created series). */
  createdSec: number;
  /** vllm:lora_requests_info series (engine.loraInfoHistory(), times in Unix ms); omit when LoRA is disabled. */
  loraInfo?: readonly LoraInfoSample[];
  gpuMemoryUtilization?: number;
  /** Requests that finished with each reason. */
  finishedByReason?: Partial<Record<"stop" | "length" | "abort", number>>;
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A vLLM v1 engine's /metrics page. */
export function vllmMetricsPage(s: EngineSnapshot, o: VllmPageOptions): string {
  const p = new Page();
  const l: Labels = { model_name: o.modelName, engine: "0" };
  const one = (v: number): [Labels, number][] => [[l, v]];
  const c = o.createdSec;
  p.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", one(s.running));
  p.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", one(s.waiting));
  p.gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.", one(s.kvUsage));
  p.counter("vllm:gpu_prefix_cache_queries", "GPU prefix cache queries, in terms of number of queriedtokens. DEPRECATED: Use vllm:prefix_cache_queries instead.", one(s.prefixCacheQueries), c);
  p.counter("vllm:gpu_prefix_cache_hits", "GPU prefix cache hits, in terms of number of cached tokens. DEPRECATED: Use vllm:prefix_cache_hits instead.", one(s.prefixCacheHits), c);
  p.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", one(s.kvUsage));
  p.counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", one(s.prefixCacheQueries), c);
  p.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", one(s.prefixCacheHits), c);
  p.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", one(s.preemptions), c);
  p.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", one(s.promptTokens), c);
  p.counter("vllm:generation_tokens", "Number of generation tokens processed.", one(s.generationTokens), c);
  const fin = o.finishedByReason ?? { length: s.finished };
  p.counter(
    "vllm:request_success",
    "Count of successfully processed requests.",
    (["stop", "length", "abort"] as const).map((r) => [{ ...l, finished_reason: r }, fin[r] ?? 0]),
    c,
  );
  const h = s.histograms;
  p.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", l, h.promptTokens, c);
  p.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", l, h.generationTokens, c);
  p.histogram("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", l, h.iterationTokens, c);
  p.histogram("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", l, h.maxTokens, c);
  p.histogram("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", l, h.maxTokens, c);
  p.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", l, h.ttft, c);
  p.histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", l, h.tpot, c);
  p.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", l, h.e2e, c);
  p.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", l, h.queue, c);
  p.histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", l, h.inference, c);
  p.histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", l, h.prefill, c);
  p.histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", l, h.decode, c);
  if (s.lora) {
    const series: [Labels, number][] = (o.loraInfo ?? []).map((x) => [
      { max_lora: String(s.lora!.maxLoras), running_lora_adapters: x.running.join(","), waiting_lora_adapters: x.waiting.join(",") },
      x.atMs / 1000,
    ]);
    p.gauge("vllm:lora_requests_info", "Running stats on lora requests.", series);
  }
  p.gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", [
    [
      {
        block_size: String(s.blockSize),
        cache_dtype: "auto",
        calculate_kv_scales: "False",
        cpu_offload_gb: "0",
        enable_prefix_caching: s.prefixCachingEnabled ? "True" : "False",
        engine: "0",
        gpu_memory_utilization: String(o.gpuMemoryUtilization ?? 0.9),
        is_attention_free: "False",
        num_cpu_blocks: "None",
        num_gpu_blocks: String(s.kvBlocksTotal),
        num_gpu_blocks_override: "None",
        prefix_caching_hash_algo: "builtin",
        sliding_window: "None",
        swap_space: "4",
        swap_space_bytes: "4294967296",
      },
      1,
    ],
  ]);
  return p.text();
}

export interface SglangPageOptions {
  modelName: string;
  /** Generation throughput over the last interval, tokens/s. */
  genThroughput?: number;
  /** Tokens served from the radix cache (SGLang counts cached prompt tokens). */
  cachedTokens?: number;
  /** Disaggregation counters (with a snapshot that has `pd`). */
  pd?: { bootstrapFailed: number; transferFailed: number; transferLatencyMs?: Histogram };
}

/** SGLang's buckets for sglang:kv_transfer_latency_ms (python/sglang/srt/metrics/collector.py). */
export const SGLANG_KV_TRANSFER_LATENCY_MS_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/** An SGLang server's /metrics page. */
export function sglangMetricsPage(s: EngineSnapshot, o: SglangPageOptions): string {
  const p = new Page();
  const l: Labels = { model_name: o.modelName };
  const totalTokens = s.kvBlocksTotal * s.blockSize;
  p.gauge("sglang:num_running_reqs", "The number of running requests.", [[l, s.running]]);
  p.gauge("sglang:num_used_tokens", "The number of used tokens.", [[l, Math.round(s.kvUsage * totalTokens)]]);
  p.gauge("sglang:token_usage", "The token usage.", [[l, s.kvUsage]]);
  p.gauge("sglang:gen_throughput", "The generation throughput (token/s).", [[l, o.genThroughput ?? 0]]);
  p.gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", [[l, s.waiting]]);
  p.gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", [[l, s.prefixCacheQueries > 0 ? s.prefixCacheHits / s.prefixCacheQueries : 0]]);
  p.gauge("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.", [[l, totalTokens]]);
  p.counter("sglang:prompt_tokens", "Number of prefill tokens processed.", [[l, s.promptTokens]]);
  p.counter("sglang:generation_tokens", "Number of generation tokens processed.", [[l, s.generationTokens]]);
  p.counter("sglang:cached_tokens", "Number of cached prompt tokens.", [[l, o.cachedTokens ?? s.prefixCacheHits]]);
  p.counter("sglang:num_requests", "Number of requests processed.", [[l, s.finished]]);
  p.histogram("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", l, s.histograms.ttft);
  p.histogram("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", l, s.histograms.tpot);
  p.histogram("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", l, s.histograms.e2e);
  if (s.pd) {
    if (s.pd.role === "prefill") {
      p.gauge("sglang:num_prefill_bootstrap_queue_reqs", "The number of requests in the prefill bootstrap queue.", [[l, s.pd.bootstrapQueue]]);
      p.gauge("sglang:num_prefill_inflight_queue_reqs", "The number of requests in the prefill inflight queue.", [[l, s.pd.inflightQueue]]);
    } else {
      p.gauge("sglang:num_decode_prealloc_queue_reqs", "The number of requests in the decode prealloc queue.", [[l, s.pd.preallocQueue]]);
      p.gauge("sglang:num_decode_transfer_queue_reqs", "The number of requests in the decode transfer queue.", [[l, s.pd.transferQueue]]);
    }
    p.counter("sglang:num_bootstrap_failed_reqs", "The number of bootstrap failed requests.", [[l, o.pd?.bootstrapFailed ?? 0]]);
    p.counter("sglang:num_transfer_failed_reqs", "The number of transfer failed requests.", [[l, o.pd?.transferFailed ?? 0]]);
    if (o.pd?.transferLatencyMs) p.histogram("sglang:kv_transfer_latency_ms", "Histogram of KV cache transfer latency in ms.", l, o.pd.transferLatencyMs);
  }
  p.gauge("sglang:cache_config_info", "Information of the cache configuration.", [[{ ...l, page_size: String(s.blockSize), num_pages: String(s.kvBlocksTotal) }, 1]]);
  return p.text();
}
