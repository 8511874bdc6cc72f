import { test } from "node:test";
import assert from "node:assert/strict";
import { extract, metricNames, selectorFor, splitList } from "../../sidecar/metrics/runtime.ts";
import type { Runtime } from "../../sidecar/k8s/pool-spec.ts";
import { defaultState, sglangExposition, vllmV0Exposition, vllmV1Exposition } from "../fakes/model-metrics.ts";

function fromText(runtime: Runtime, text: string) {
  return extract(runtime, selectorFor(runtime).select(Buffer.from(text)).samples);
}

test("vLLM V1: queue, running, kv_cache_usage_perc, newest LoRA series, cache config", () => {
  const x = fromText("vllm", vllmV1Exposition(defaultState({ waiting: 3, running: 7, kvUsage: 0.41, loraRunning: ["travel-helper-v1"], loraWaiting: ["b"], maxLora: 4, blockSize: 32, numGpuBlocks: 1000 })));
  assert.deepEqual(x, {
    ok: true,
    metrics: { waiting: 3, running: 7, kvUsage: 0.41, loraRunning: ["travel-helper-v1"], loraWaiting: ["b"], maxLora: 4, kvBlockSize: 32, kvBlocks: 1000 },
  });
});

test("vLLM V1 with data-parallel engines: counts summed, KV usage averaged", () => {
  const text = [
    'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0',
    'vllm:num_requests_waiting{engine="1",model_name="m"} 3.0',
    'vllm:num_requests_running{engine="0",model_name="m"} 10.0',
    'vllm:num_requests_running{engine="1",model_name="m"} 4.0',
    'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2',
    'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6',
    'vllm:kv_cache_usage_perc{engine="2",model_name="m"} NaN',
    "",
  ].join("\n");
  const x = fromText("vllm", text);
  assert.ok(x.ok, "x.ok");
  assert.equal(x.metrics.waiting, 5);
  assert.equal(x.metrics.running, 14);
  assert.ok(Math.abs(x.metrics.kvUsage - 0.4) < 1e-12, "Math.abs(x.metrics.kvUsage - 0.4) < 1e-12");
  assert.equal(x.metrics.loraRunning, undefined);
});

test("vLLM V0: falls back to gpu_cache_usage_perc", () => {
  const x = fromText("vllm", vllmV0Exposition(defaultState({ waiting: 1, running: 2, kvUsage: 0.77 })));
  assert.ok(x.ok, "x.ok");
  assert.equal(x.metrics.kvUsage, 0.77);
  assert.equal(x.metrics.waiting, 1);
  assert.equal(x.metrics.kvBlockSize, 16);
});

test("kv_cache_usage_perc wins over gpu_cache_usage_perc when both are present", () => {
  const x = fromText("vllm", "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\n");
  assert.ok(x.ok, "x.ok");
  assert.equal(x.metrics.kvUsage, 0.1);
});

test("SGLang: num_queue_reqs, num_running_reqs, token_usage, page_size/num_pages", () => {
  const x = fromText("sglang", sglangExposition(defaultState({ waiting: 4, running: 9, kvUsage: 0.33, blockSize: 1, numGpuBlocks: 500000 })));
  assert.deepEqual(x, { ok: true, metrics: { waiting: 4, running: 9, kvUsage: 0.33, kvBlockSize: 1, kvBlocks: 500000 } });
  // The vLLM names are not looked for on an SGLang pool, and vice versa.
  assert.ok(!metricNames("sglang").some((n) => n.startsWith("vllm:")), "!metricNames(\"sglang\").some((n) => n.startsWith(\"vllm:\"))");
  assert.equal(fromText("vllm", sglangExposition(defaultState())).ok, false);
});

test("the newest lora_requests_info series wins, even when its lists are empty", () => {
  const text = [
    "vllm:num_requests_waiting 0",
    "vllm:num_requests_running 0",
    "vllm:kv_cache_usage_perc 0",
    'vllm:lora_requests_info{max_lora="2",running_lora_adapters="a,b",waiting_lora_adapters=""} 1.7e+09',
    'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.8e+09',
    'vllm:lora_requests_info{max_lora="2",running_lora_adapters="c",waiting_lora_adapters=""} 1.75e+09',
    "",
  ].join("\n");
  const x = fromText("vllm", text);
  assert.ok(x.ok, "x.ok");
  assert.deepEqual(x.metrics.loraRunning, []);
  assert.deepEqual(x.metrics.loraWaiting, []);
  assert.equal(x.metrics.maxLora, 2);
});

test("a page without a core gauge is an error naming it", () => {
  const x = fromText("vllm", "vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0.5\n");
  assert.deepEqual(x, { ok: false, missing: ["vllm:num_requests_running"] });
  const y = fromText("vllm", "<html>not metrics</html>");
  assert.equal(y.ok, false);
  assert.equal((y as { missing: string[] }).missing.length, 3);
});

test("out-of-range values are clamped; unparseable cache config is ignored", () => {
  const x = fromText(
    "vllm",
    'vllm:num_requests_waiting -4\nvllm:num_requests_running 5e12\nvllm:kv_cache_usage_perc 1.7\nvllm:cache_config_info{block_size="None",num_gpu_blocks="abc"} 1\n',
  );
  assert.ok(x.ok, "x.ok");
  assert.equal(x.metrics.waiting, 0);
  assert.equal(x.metrics.running, 1e9);
  assert.equal(x.metrics.kvUsage, 1);
  assert.equal(x.metrics.kvBlockSize, undefined);
  assert.equal(x.metrics.kvBlocks, undefined);
});

test("splitList trims, drops empties and duplicates", () => {
  assert.deepEqual(splitList(" a, b,,a ,c "), ["a", "b", "c"]);
  assert.deepEqual(splitList(""), []);
  assert.deepEqual(splitList(undefined), []);
});
