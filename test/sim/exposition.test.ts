import { test } from "node:test";
import assert from "node:assert/strict";
import { scanExposition, type Sample } from "../../sidecar/metrics/exposition.ts";
import { Engine } from "./engine.ts";
import { promFloat, pyRepr, sglangMetricsPage, vllmMetricsPage } from "./exposition.ts";

test("numbers are written as Python's prometheus_client writes them", () => {
  assert.equal(pyRepr(2), "2.0");
  assert.equal(pyRepr(0.25), "0.25");
  assert.equal(pyRepr(1e-5), "1e-05");
  assert.equal(pyRepr(1e16), "1e+16");
  assert.equal(pyRepr(123456789.5), "123456789.5");
  assert.equal(promFloat(0), "0.0");
  assert.equal(promFloat(5), "5.0");
  assert.equal(promFloat(0.001), "0.001");
  assert.equal(promFloat(2560), "2560.0");
  assert.equal(promFloat(1234567), "1.234567e+06");
  assert.equal(promFloat(1763600000.5), "1.7636000005e+09");
  assert.equal(promFloat(Infinity), "+Inf");
  assert.equal(promFloat(NaN), "NaN");
});

function samples(text: string): Sample[] {
  const out: Sample[] = [];
  const r = scanExposition(text, (s) => out.push(s));
  assert.equal(r.invalid, 0);
  return out;
}

test("the vLLM page: sorted labels, counters with _total and _created, cumulative histograms, LoRA series", () => {
  const e = new Engine({ maxLoras: 2 });
  e.submit({ id: "a", tokens: Array.from({ length: 100 }, (_, i) => i), maxTokens: 3, lora: "travel-helper-v1" }, 1_700_000_000_000);
  e.submit({ id: "b", tokens: Array.from({ length: 100 }, (_, i) => i + 7), maxTokens: 1 }, 1_700_000_000_000);
  let t = 1_700_000_000_000;
  for (let r = e.step(t); r; r = e.step(t)) t += r.durationMs;
  const text = vllmMetricsPage(e.snapshot(), { modelName: "/model/qwen", createdSec: 1_700_000_000, loraInfo: e.loraInfoHistory(), gpuMemoryUtilization: 0.95 });
  assert.match(text, /^vllm:num_requests_running\{engine="0",model_name="\/model\/qwen"\} 0\.0$/m);
  assert.match(text, /^# TYPE vllm:prompt_tokens_total counter$/m);
  assert.match(text, /^vllm:prompt_tokens_total\{engine="0",model_name="\/model\/qwen"\} 200\.0$/m);
  assert.match(text, /^# TYPE vllm:prompt_tokens_created gauge$/m);
  assert.match(text, /^vllm:request_success_total\{engine="0",finished_reason="length",model_name="\/model\/qwen"\} 2\.0$/m);
  const s = samples(text);
  const ttft = s.filter((x) => x.name === "vllm:time_to_first_token_seconds_bucket");
  assert.equal(ttft.length, 23);
  for (let i = 1; i < ttft.length; i++) assert.ok(ttft[i].value >= ttft[i - 1].value, "cumulative");
  assert.equal(ttft.at(-1)!.labels.le, "+Inf");
  assert.equal(ttft.at(-1)!.value, 2);
  assert.equal(ttft[0].labels.le, "0.001");
  const lora = s.filter((x) => x.name === "vllm:lora_requests_info");
  assert.ok(lora.length >= 2, "one series per adapter combination");
  const newest = lora.reduce((a, b) => (b.value > a.value ? b : a));
  assert.deepEqual(newest.labels, { max_lora: "2", running_lora_adapters: "", waiting_lora_adapters: "" });
  assert.ok(lora.some((x) => x.labels.running_lora_adapters === "travel-helper-v1"));
  assert.ok(newest.value > 1.7e9 && newest.value < 1.8e9, "Unix seconds");
  const cfg = s.find((x) => x.name === "vllm:cache_config_info")!;
  assert.equal(cfg.labels.block_size, "16");
  assert.equal(cfg.labels.num_gpu_blocks, String(e.snapshot().kvBlocksTotal));
  assert.equal(cfg.labels.gpu_memory_utilization, "0.95");
  // Without LoRA there is no lora_requests_info family.
  const plain = vllmMetricsPage(new Engine().snapshot(), { modelName: "m", createdSec: 1 });
  assert.doesNotMatch(plain, /lora_requests_info/);
});

test("the SGLang page uses SGLang's names and model_name label only", () => {
  const e = new Engine({ histogramBuckets: "sglang" });
  const text = sglangMetricsPage(e.snapshot(), { modelName: "qwen" });
  const names = new Set(samples(text).map((x) => x.name));
  for (const n of ["sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage", "sglang:cache_config_info", "sglang:prompt_tokens_total", "sglang:time_to_first_token_seconds_bucket"]) {
    assert.ok(names.has(n), n);
  }
  assert.ok(![...names].some((n) => n.startsWith("vllm:")));
  assert.match(text, /^sglang:num_queue_reqs\{model_name="qwen"\} 0\.0$/m);
  assert.match(text, /^sglang:time_to_first_token_seconds_bucket\{le="0\.1",model_name="qwen"\} 0\.0$/m);
});
