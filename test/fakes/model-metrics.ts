// Model-server /metrics in the real exposition formats, and a fake server that serves them.
//
//   vllmV1Exposition  vLLM V1 engine: kv_cache_usage_perc, lora_requests_info, cache_config_info,
//                     counters with _created series, the full set of histograms (tens of KB,
//                     like a real page), Python process metrics; one series per engine.
//   vllmV0Exposition  older vLLM: gpu_cache_usage_perc, num_requests_swapped, no engine label.
//   sglangExposition  SGLang: num_queue_reqs, num_running_reqs, token_usage, cache_config_info.
//
// FakeModelServer serves one of them on /metrics and can misbehave on demand (down, slow, hung,
// garbage, truncated, huge, HTTP 500). Reusable by a model-server simulator.

import { answerFor, type NameFilterMode } from "./prom-filter.ts";
import http from "node:http";
import type { AddressInfo } from "node:net";

export type Flavour = "vllm-v1" | "vllm-v0" | "sglang";

export interface ModelState {
  modelName: string;
  waiting: number;
  running: number;
  kvUsage: number; // 0..1
  loraRunning: string[];
  loraWaiting: string[];
  maxLora: number;
  blockSize: number;
  numGpuBlocks: number;
  engines: number; // vLLM V1 data-parallel engines: one series each
  // Requests served so far (drives counters and histogram counts).
  served: number;
}

export function defaultState(over: Partial<ModelState> = {}): ModelState {
  return {
    modelName: "/model/qwen",
    waiting: 0,
    running: 0,
    kvUsage: 0,
    loraRunning: [],
    loraWaiting: [],
    maxLora: 2,
    blockSize: 16,
    numGpuBlocks: 27235,
    engines: 1,
    served: 1200,
    ...over,
  };
}

// Python prometheus_client renders floats with repr(): "2.0", "0.41", "1.7636e+09".
export function pyFloat(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  if (Number.isInteger(n) && Math.abs(n) < 1e16) return `${n}.0`;
  const abs = Math.abs(n);
  if (abs >= 1e16 || abs < 1e-4) {
    const [m, e] = n.toExponential().split("e");
    const exp = Number(e);
    return `${m.includes(".") ? m : m + ".0"}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  return String(n);
}

function labelText(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

class Page {
  lines: string[] = [];
  family(name: string, type: string, help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }
  sample(name: string, labels: Record<string, string>, value: number): void {
    this.lines.push(`${name}${labelText(labels)} ${pyFloat(value)}`);
  }
  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
const TOKEN_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 32768];
const ITERATION_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const CREATED = 1763590000.123456;

function histogram(p: Page, name: string, help: string, buckets: number[], labels: Record<string, string>, count: number, mean: number): void {
  p.family(name, "histogram", help);
  // A plausible cumulative distribution around `mean`.
  for (const le of buckets) {
    const frac = 1 - Math.exp(-le / Math.max(mean, 1e-9));
    p.sample(`${name}_bucket`, { ...labels, le: pyFloat(le) }, Math.round(count * frac));
  }
  p.sample(`${name}_bucket`, { ...labels, le: "+Inf" }, count);
  p.sample(`${name}_count`, labels, count);
  p.sample(`${name}_sum`, labels, Math.round(count * mean * 1000) / 1000);
  p.family(`${name}_created`, "gauge", help);
  p.sample(`${name}_created`, labels, CREATED);
}

function counter(p: Page, name: string, help: string, series: Array<[Record<string, string>, number]>): void {
  p.family(name, "counter", help);
  for (const [l, v] of series) p.sample(`${name}_total`, l, v);
  for (const [l] of series) p.sample(`${name}_created`, l, CREATED);
}

function pythonProcess(p: Page): void {
  p.family("python_gc_objects_collected_total", "counter", "Objects collected during gc");
  for (const g of ["0", "1", "2"]) p.sample("python_gc_objects_collected_total", { generation: g }, 14523 + Number(g) * 331);
  p.family("python_gc_objects_uncollectable_total", "counter", "Uncollectable objects found during GC");
  for (const g of ["0", "1", "2"]) p.sample("python_gc_objects_uncollectable_total", { generation: g }, 0);
  p.family("python_gc_collections_total", "counter", "Number of times this generation was collected");
  for (const g of ["0", "1", "2"]) p.sample("python_gc_collections_total", { generation: g }, 1402 - Number(g) * 400);
  p.family("python_info", "gauge", "Python platform information");
  p.sample("python_info", { implementation: "CPython", major: "3", minor: "12", patchlevel: "9", version: "3.12.9" }, 1);
  p.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  p.sample("process_virtual_memory_bytes", {}, 9.1234567168e10);
  p.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  p.sample("process_resident_memory_bytes", {}, 4.123451392e9);
  p.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
  p.sample("process_start_time_seconds", {}, 1763589990.31);
  p.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
  p.sample("process_cpu_seconds_total", {}, 1234.56);
  p.family("process_open_fds", "gauge", "Number of open file descriptors.");
  p.sample("process_open_fds", {}, 87);
  p.family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
  p.sample("process_max_fds", {}, 1048576);
}

// Splits a total over `n` engines (the first ones get the remainder).
function share(total: number, n: number, i: number): number {
  const base = Math.floor(total / n);
  return base + (i < total - base * n ? 1 : 0);
}

// The API server's HTTP metrics (prometheus-fastapi-instrumentator), present on vLLM pages.
const HTTP_HIGHR_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 7.5, 10.0, 30.0, 60.0];
const HANDLERS = ["/v1/completions", "/v1/chat/completions", "/metrics", "/health", "/v1/models"];

function httpServer(p: Page, served: number): void {
  counter(p, "http_requests", "Total number of requests by method, status and handler.", HANDLERS.map((h, i) => [{ handler: h, method: i < 2 ? "POST" : "GET", status: "2xx" }, Math.max(1, served >> i)]));
  p.family("http_request_size_bytes", "summary", "Content length of incoming requests by handler.");
  for (const h of HANDLERS) {
    p.sample("http_request_size_bytes_count", { handler: h }, served);
    p.sample("http_request_size_bytes_sum", { handler: h }, served * 6200);
  }
  p.family("http_response_size_bytes", "summary", "Content length of outgoing responses by handler.");
  for (const h of HANDLERS) {
    p.sample("http_response_size_bytes_count", { handler: h }, served);
    p.sample("http_response_size_bytes_sum", { handler: h }, served * 7300);
  }
  p.family("http_request_duration_highr_seconds", "histogram", "Latency with many buckets but no API specific labels.");
  for (const le of HTTP_HIGHR_BUCKETS) p.sample("http_request_duration_highr_seconds_bucket", { le: pyFloat(le) }, Math.round(served * (1 - Math.exp(-le / 20))));
  p.sample("http_request_duration_highr_seconds_bucket", { le: "+Inf" }, served);
  p.sample("http_request_duration_highr_seconds_count", {}, served);
  p.sample("http_request_duration_highr_seconds_sum", {}, served * 21.5);
  p.family("http_request_duration_seconds", "histogram", "Latency with only few buckets by handler.");
  for (const h of HANDLERS) {
    for (const le of [0.1, 0.5, 1.0]) p.sample("http_request_duration_seconds_bucket", { handler: h, le: pyFloat(le), method: "POST" }, Math.round(served * le * 0.1));
    p.sample("http_request_duration_seconds_bucket", { handler: h, le: "+Inf", method: "POST" }, served);
    p.sample("http_request_duration_seconds_count", { handler: h, method: "POST" }, served);
    p.sample("http_request_duration_seconds_sum", { handler: h, method: "POST" }, served * 21.5);
  }
}

export function vllmV1Exposition(s: ModelState, nowSeconds = 1763600000.5): string {
  const p = new Page();
  pythonProcess(p);
  httpServer(p, s.served);
  const engines = Array.from({ length: Math.max(1, s.engines) }, (_, i) => ({ engine: String(i), model_name: s.modelName }));
  p.family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.");
  engines.forEach((l, i) => p.sample("vllm:num_requests_running", l, share(s.running, engines.length, i)));
  p.family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
  engines.forEach((l, i) => p.sample("vllm:num_requests_waiting", l, share(s.waiting, engines.length, i)));
  p.family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.");
  engines.forEach((l) => p.sample("vllm:kv_cache_usage_perc", l, s.kvUsage));
  // An older series (adapters loaded earlier), then the current one with a newer timestamp.
  p.family("vllm:lora_requests_info", "gauge", "Running stats on lora requests.");
  p.sample("vllm:lora_requests_info", { max_lora: String(s.maxLora), running_lora_adapters: "old-adapter", waiting_lora_adapters: "" }, nowSeconds - 3600);
  p.sample("vllm:lora_requests_info", { max_lora: String(s.maxLora), running_lora_adapters: s.loraRunning.join(","), waiting_lora_adapters: s.loraWaiting.join(",") }, nowSeconds);
  p.family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig");
  engines.forEach((l) =>
    p.sample("vllm:cache_config_info", {
      block_size: String(s.blockSize), cache_dtype: "auto", calculate_kv_scales: "False", cpu_offload_gb: "0", enable_prefix_caching: "True", engine: l.engine,
      gpu_memory_utilization: "0.9", is_attention_free: "False", num_cpu_blocks: "None", num_gpu_blocks: String(s.numGpuBlocks), num_gpu_blocks_override: "None",
      prefix_caching_hash_algo: "builtin", sliding_window: "None", swap_space: "4", swap_space_bytes: "4294967296",
    }, 1),
  );
  for (const l of engines) {
    const n = Math.max(1, Math.floor(s.served / engines.length));
    counter(p, "vllm:num_preemptions", "Cumulative number of preemption from the engine.", [[l, 3]]);
    counter(p, "vllm:prompt_tokens", "Number of prefill tokens processed.", [[l, n * 1550]]);
    counter(p, "vllm:generation_tokens", "Number of generation tokens processed.", [[l, n * 1800]]);
    counter(p, "vllm:request_success", "Count of successfully processed requests.", [
      [{ ...l, finished_reason: "stop" }, Math.floor(n * 0.7)],
      [{ ...l, finished_reason: "length" }, Math.floor(n * 0.29)],
      [{ ...l, finished_reason: "abort" }, Math.floor(n * 0.01)],
    ]);
    counter(p, "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", [[l, n * 1550]]);
    counter(p, "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", [[l, n * 400]]);
    histogram(p, "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_BUCKETS, l, n * 900, 180);
    histogram(p, "vllm:request_prompt_tokens", "Number of prefill tokens processed.", TOKEN_BUCKETS, l, n, 1550);
    histogram(p, "vllm:request_generation_tokens", "Number of generation tokens processed.", TOKEN_BUCKETS, l, n, 1800);
    histogram(p, "vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", TOKEN_BUCKETS, l, n, 2000);
    histogram(p, "vllm:request_params_n", "Histogram of the n request parameter.", TOKEN_BUCKETS, l, n, 1);
    histogram(p, "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", TOKEN_BUCKETS, l, n, 2000);
    histogram(p, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS, l, n, 0.35);
    histogram(p, "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", TPOT_BUCKETS, l, n * 1800, 0.04);
    histogram(p, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", TPOT_BUCKETS, l, n * 1800, 0.04);
    histogram(p, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", LATENCY_BUCKETS, l, n, 72);
    histogram(p, "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", LATENCY_BUCKETS, l, n, 0.8);
    histogram(p, "vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", LATENCY_BUCKETS, l, n, 71);
    histogram(p, "vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", LATENCY_BUCKETS, l, n, 0.3);
    histogram(p, "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", LATENCY_BUCKETS, l, n, 70);
  }
  return p.text();
}

export function vllmV0Exposition(s: ModelState): string {
  const p = new Page();
  pythonProcess(p);
  const l = { model_name: s.modelName };
  p.family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig");
  p.sample("vllm:cache_config_info", { block_size: String(s.blockSize), cache_dtype: "auto", enable_prefix_caching: "False", gpu_memory_utilization: "0.9", num_cpu_blocks: "2048", num_gpu_blocks: String(s.numGpuBlocks), num_gpu_blocks_override: "None", sliding_window: "None", swap_space_bytes: "4294967296" }, 1);
  p.family("vllm:num_requests_running", "gauge", "Number of requests currently running on GPU.");
  p.sample("vllm:num_requests_running", l, s.running);
  p.family("vllm:num_requests_swapped", "gauge", "Number of requests swapped to CPU.");
  p.sample("vllm:num_requests_swapped", l, 0);
  p.family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
  p.sample("vllm:num_requests_waiting", l, s.waiting);
  p.family("vllm:lora_requests_info", "gauge", "Running stats on lora requests.");
  p.sample("vllm:lora_requests_info", { max_lora: String(s.maxLora), running_lora_adapters: s.loraRunning.join(","), waiting_lora_adapters: s.loraWaiting.join(",") }, 1.7636e9);
  p.family("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.");
  p.sample("vllm:gpu_cache_usage_perc", l, s.kvUsage);
  p.family("vllm:cpu_cache_usage_perc", "gauge", "CPU KV-cache usage. 1 means 100 percent usage.");
  p.sample("vllm:cpu_cache_usage_perc", l, 0);
  p.family("vllm:avg_prompt_throughput_toks_per_s", "gauge", "Average prefill throughput in tokens/s.");
  p.sample("vllm:avg_prompt_throughput_toks_per_s", l, 1234.5);
  p.family("vllm:avg_generation_throughput_toks_per_s", "gauge", "Average generation throughput in tokens/s.");
  p.sample("vllm:avg_generation_throughput_toks_per_s", l, 345.6);
  counter(p, "vllm:num_preemptions", "Cumulative number of preemption from the engine.", [[l, 0]]);
  histogram(p, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS, l, s.served, 0.35);
  histogram(p, "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", TPOT_BUCKETS, l, s.served * 1800, 0.04);
  histogram(p, "vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", LATENCY_BUCKETS, l, s.served, 72);
  return p.text();
}

export function sglangExposition(s: ModelState): string {
  const p = new Page();
  const l = { model_name: s.modelName };
  p.family("sglang:prompt_tokens", "counter", "Number of prefill tokens processed.");
  p.sample("sglang:prompt_tokens_total", l, s.served * 1550);
  p.family("sglang:generation_tokens", "counter", "Number of generation tokens processed.");
  p.sample("sglang:generation_tokens_total", l, s.served * 1800);
  p.family("sglang:num_running_reqs", "gauge", "The number of running requests.");
  p.sample("sglang:num_running_reqs", l, s.running);
  p.family("sglang:num_used_tokens", "gauge", "The number of used tokens.");
  p.sample("sglang:num_used_tokens", l, Math.round(s.kvUsage * s.numGpuBlocks * s.blockSize));
  p.family("sglang:token_usage", "gauge", "The token usage.");
  p.sample("sglang:token_usage", l, s.kvUsage);
  p.family("sglang:gen_throughput", "gauge", "The generation throughput (token/s).");
  p.sample("sglang:gen_throughput", l, 345.6);
  p.family("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.");
  p.sample("sglang:num_queue_reqs", l, s.waiting);
  p.family("sglang:cache_hit_rate", "gauge", "The prefix cache hit rate.");
  p.sample("sglang:cache_hit_rate", l, 0.25);
  p.family("sglang:cache_config_info", "gauge", "Cache configuration.");
  p.sample("sglang:cache_config_info", { model_name: s.modelName, page_size: String(s.blockSize), num_pages: String(s.numGpuBlocks) }, 1);
  histogram(p, "sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS, l, s.served, 0.35);
  histogram(p, "sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", LATENCY_BUCKETS, l, s.served, 72);
  return p.text();
}

export function exposition(flavour: Flavour, s: ModelState): string {
  return flavour === "vllm-v0" ? vllmV0Exposition(s) : flavour === "sglang" ? sglangExposition(s) : vllmV1Exposition(s);
}

export type Behaviour =
  | "ok"
  | "no-query" // 400 for any request with a query string (a proxy that rejects them)
  | "slow" // answers after `delayMs`
  | "hang" // accepts the request and never answers
  | "garbage" // 200 with bytes that are not an exposition
  | "truncated" // announces the full length, sends half, closes
  | "huge" // streams a valid-looking exposition without end
  | "status500";

export interface FakeModelServerOptions {
  host?: string;
  port?: number;
  flavour?: Flavour;
  state?: Partial<ModelState>;
  nameFilter?: NameFilterMode; // how /metrics answers name[] (prom-filter.ts); default "honour"
}

export class FakeModelServer {
  readonly host: string;
  port = 0;
  flavour: Flavour;
  state: ModelState;
  behaviour: Behaviour = "ok";
  delayMs = 0;
  requests = 0;
  nameFilter: NameFilterMode;
  readonly urls: string[] = []; // the request targets, newest last (at most 1000)
  private server?: http.Server;

  constructor(opts: FakeModelServerOptions = {}) {
    this.host = opts.host ?? "127.0.0.1";
    this.port = opts.port ?? 0;
    this.flavour = opts.flavour ?? "vllm-v1";
    this.nameFilter = opts.nameFilter ?? "honour";
    this.state = defaultState(opts.state);
  }

  static async start(opts: FakeModelServerOptions = {}): Promise<FakeModelServer> {
    const s = new FakeModelServer(opts);
    await s.listen();
    return s;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  set(over: Partial<ModelState>): void {
    Object.assign(this.state, over);
  }

  async listen(): Promise<void> {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, this.host, () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  // Stops listening and drops every connection: further scrapes are refused.
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests++;
    const url = req.url ?? "/";
    this.urls.push(url);
    if (this.urls.length > 1000) this.urls.shift();
    if (url.split("?")[0] !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    if (this.behaviour === "no-query" && url.includes("?")) {
      res.writeHead(400, { "content-type": "text/plain" }).end("query strings are not allowed\n");
      return;
    }
    const text = answerFor(url, exposition(this.flavour, this.state), this.nameFilter);
    switch (this.behaviour) {
      case "ok":
      case "no-query":
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": Buffer.byteLength(text) }).end(text);
        return;
      case "slow":
        setTimeout(() => {
          if (!res.destroyed) res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(text);
        }, this.delayMs);
        return;
      case "hang":
        return;
      case "garbage": {
        const junk = Buffer.alloc(20_000);
        for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919 + 13) & 0xff;
        res.writeHead(200, { "content-type": "text/plain" }).end(Buffer.concat([Buffer.from("<html><body>\u0000{{{ vllm:num_requests_waiting{model_name=\"x 3\n"), junk]));
        return;
      }
      case "truncated": {
        const bytes = Buffer.from(text);
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4", "content-length": bytes.length });
        res.write(bytes.subarray(0, bytes.length >> 1), () => res.socket?.destroy());
        return;
      }
      case "huge": {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
        const chunk = Buffer.from(text);
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
          if (!res.destroyed) res.once("drain", pump);
        };
        pump();
        return;
      }
      case "status500":
        res.writeHead(500, { "content-type": "text/plain" }).end("internal error\n");
        return;
    }
  }
}
