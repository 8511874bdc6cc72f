import { test } from "node:test";
import assert from "node:assert/strict";
import { buildDocument, renderDocument, type BuildInput, type EndpointInput } from "../../sidecar/state/document.ts";
import type { PoolSpec } from "../../sidecar/k8s/pool-spec.ts";
import type { InferenceModel } from "../../sidecar/k8s/types.ts";
import type { TargetRecord } from "../../sidecar/metrics/scraper.ts";
import { validateState } from "../fakes/state-validator.ts";

const NOW = 1_763_600_000_000;

function spec(over: Partial<PoolSpec> = {}): PoolSpec {
  return { key: "default/vllm-qwen-pool", namespace: "default", name: "vllm-qwen-pool", port: 8000, ports: [8000], api: "v1alpha2", selector: { app: "qwen" }, strategy: "DEFAULT", runtime: "vllm", ...over };
}

function rec(over: Partial<TargetRecord> = {}): TargetRecord {
  return { firstSeenMs: NOW - 10_000, attempts: 5, consecutiveUnreachable: 0, unreachable: false, lastSuccessMs: NOW - 35, metrics: { waiting: 2, running: 14, kvUsage: 0.41, loraRunning: ["travel-helper-v1"], loraWaiting: [], maxLora: 2 }, ...over };
}

function ep(pod: string, ip: string, over: Partial<EndpointInput> = {}): EndpointInput {
  return { pod, ip, k8sReady: true, firstSeenMs: NOW - 10_000, record: rec(), ...over };
}

function model(name: string, modelName: string, over: Partial<InferenceModel["spec"]> = {}, created = "2025-11-20T10:00:00Z", ns = "default"): InferenceModel {
  return { metadata: { name, namespace: ns, creationTimestamp: created }, spec: { modelName, poolRef: { name: "vllm-qwen-pool" }, ...over } };
}

function input(over: Partial<BuildInput> = {}): BuildInput {
  return { pools: [{ spec: spec(), endpoints: [ep("qwen-0", "10.0.0.1")] }], models: [], defaultNamespace: "default", metricsStaleMs: 1000, nowMs: NOW, ...over };
}

function render(i: BuildInput, version = 42, at = NOW) {
  return JSON.parse(renderDocument(buildDocument(i), version, at));
}

test("the document has exactly the contract's shape", () => {
  const doc = render(input({ models: [model("inferencemodel-qwen", "/model/qwen", { criticality: "Critical", targetModels: [{ name: "/model/qwen", weight: 100 }] })] }));
  assert.deepEqual(doc, {
    version: 42,
    generated_at_ms: NOW,
    pools: [{
      name: "default/vllm-qwen-pool", strategy: "DEFAULT", runtime: "vllm",
      endpoints: [{ pod: "qwen-0", address: "10.0.0.1:8000", ready: true, metrics_age_ms: 35, waiting: 2, running: 14, kv_usage: 0.41, lora_running: ["travel-helper-v1"], lora_waiting: [], max_lora: 2, score: 0.652 }],
    }],
    models: [{ name: "/model/qwen", pool: "default/vllm-qwen-pool", criticality: "Critical", targets: [{ name: "/model/qwen", weight: 100 }] }],
  });
  assert.equal(validateState(doc), undefined);
});

test("ages are computed at render time from the metrics' wall-clock time", () => {
  const built = buildDocument(input());
  const a = JSON.parse(renderDocument(built, 1, NOW + 1000));
  assert.equal(a.pools[0].endpoints[0].metrics_age_ms, 1035);
  const b = JSON.parse(renderDocument(built, 1, NOW));
  assert.equal(b.pools[0].endpoints[0].metrics_age_ms, 35);
});

test("equal inputs give equal keys; any change of content changes the key", () => {
  const base = buildDocument(input());
  assert.equal(buildDocument(input()).key, base.key);
  const fresher = buildDocument(input({ pools: [{ spec: spec(), endpoints: [ep("qwen-0", "10.0.0.1", { record: rec({ lastSuccessMs: NOW - 5 }) })] }] }));
  assert.notEqual(fresher.key, base.key);
  const otherStrategy = buildDocument(input({ pools: [{ spec: spec({ strategy: "PREFIX_CACHE" }), endpoints: [ep("qwen-0", "10.0.0.1")] }] }));
  assert.notEqual(otherStrategy.key, base.key);
});

test("endpoints: sorted by pod, IPv6 bracketed, invalid and duplicate addresses skipped with an issue", () => {
  const built = buildDocument(input({
    pools: [{
      spec: spec(),
      endpoints: [
        ep("qwen-2", "fd00::2"),
        ep("qwen-1", "10.0.0.1"),
        ep("qwen-0", "10.0.0.1"),
        ep("qwen-3", "not-an-ip"),
        ep("qwen-4", "010.0.0.4"),
        ep("qwen-5", "::ffff:10.0.0.5"),
        ep("pending", undefined as unknown as string, { k8sReady: false, record: undefined }),
      ],
    }],
  }));
  assert.deepEqual(built.pools[0].endpoints.map((e) => [e.pod, e.address]), [["qwen-0", "10.0.0.1:8000"], ["qwen-2", "[fd00::2]:8000"]]);
  assert.deepEqual(built.issues.map((i) => i.code).sort(), ["address_duplicate", "pod_address_invalid", "pod_address_invalid", "pod_address_invalid"]);
  assert.equal(validateState(JSON.parse(renderDocument(built, 1, NOW))), undefined);
});

test("readiness: not-ready pods and unreachable pods are published with ready=false and score 0", () => {
  const built = buildDocument(input({
    pools: [{
      spec: spec(),
      endpoints: [
        ep("a", "10.0.0.1"),
        ep("b", "10.0.0.2", { k8sReady: false, record: undefined }),
        ep("c", "10.0.0.3", { record: rec({ unreachable: true, consecutiveUnreachable: 2 }) }),
      ],
    }],
  }));
  const byPod = Object.fromEntries(built.pools[0].endpoints.map((e) => [e.pod, e]));
  assert.equal(byPod.a.ready, true);
  assert.ok(byPod.a.score > 0, "byPod.a.score > 0");
  assert.equal(byPod.b.ready, false);
  assert.equal(byPod.b.score, 0);
  assert.equal(byPod.c.ready, false);
  assert.equal(byPod.c.score, 0);
  assert.equal(byPod.c.waiting, 2, "an unreachable pod keeps its last values");
  assert.equal(built.stats[0].readyPods, 1);
});

test("a pod never scraped is published stale: age beyond --metrics-stale, score 0, zero load", () => {
  const built = buildDocument(input({ pools: [{ spec: spec(), endpoints: [ep("new", "10.0.0.9", { firstSeenMs: NOW - 20, record: { firstSeenMs: NOW - 20, attempts: 0, consecutiveUnreachable: 0, unreachable: false } })] }] }));
  const e = JSON.parse(renderDocument(built, 1, NOW)).pools[0].endpoints[0];
  assert.equal(e.ready, true);
  assert.equal(e.metrics_age_ms, 1020);
  assert.equal(e.score, 0);
  assert.equal(e.waiting, 0);
});

test("cache config and LoRA fields pass through; lists are capped", () => {
  const many = Array.from({ length: 300 }, (_, i) => `adapter-${i}`);
  const built = buildDocument(input({ pools: [{ spec: spec(), endpoints: [ep("a", "10.0.0.1", { record: rec({ metrics: { waiting: 0, running: 0, kvUsage: 0, loraRunning: many, loraWaiting: [], maxLora: 100000, kvBlockSize: 16, kvBlocks: 8192 } }) })] }] }));
  const e = built.pools[0].endpoints[0];
  assert.equal(e.kv_block_size, 16);
  assert.equal(e.kv_blocks, 8192);
  assert.equal(e.lora_running.length, 256);
  assert.equal(e.max_lora, 65536);
});

test("a pool without a valid port is published with no endpoints", () => {
  const doc = render(input({ pools: [{ spec: spec({ port: 0 }), endpoints: [ep("a", "10.0.0.1")] }] }));
  assert.deepEqual(doc.pools[0].endpoints, []);
});

test("models: oldest first, only for published pools in the same namespace, optional fields omitted", () => {
  const models = [
    model("newer", "/model/qwen", { criticality: "Sheddable" }, "2025-11-21T00:00:00Z"),
    model("older", "/model/qwen", { criticality: "Critical" }, "2025-11-19T00:00:00Z"),
    model("plain", "/model/plain"),
    model("lora", "travel", { targetModels: [{ name: "travel-helper-v1", weight: 90 }, { name: "travel-helper-v2", weight: 10 }] }, "2025-11-20T00:00:00Z"),
    model("unweighted", "split", { targetModels: [{ name: "a" }, { name: "b" }] }, "2025-11-20T01:00:00Z"),
    model("elsewhere", "/model/x", {}, "2025-11-18T00:00:00Z", "other-ns"),
    model("no-pool", "/model/y", { poolRef: { name: "missing-pool" } }),
    model("wrong-kind", "/model/z", { poolRef: { name: "vllm-qwen-pool", kind: "Service", group: "" } }),
    model("bad-crit", "/model/c", { criticality: "Urgent" }, "2025-11-22T00:00:00Z"),
  ];
  delete models[2].metadata!.creationTimestamp;
  const built = buildDocument(input({ models }));
  assert.deepEqual(built.models, [
    { name: "/model/qwen", pool: "default/vllm-qwen-pool", criticality: "Critical" },
    { name: "travel", pool: "default/vllm-qwen-pool", targets: [{ name: "travel-helper-v1", weight: 90 }, { name: "travel-helper-v2", weight: 10 }] },
    { name: "split", pool: "default/vllm-qwen-pool", targets: [{ name: "a" }, { name: "b" }] },
    { name: "/model/qwen", pool: "default/vllm-qwen-pool", criticality: "Sheddable" },
    { name: "/model/c", pool: "default/vllm-qwen-pool" },
    { name: "/model/plain", pool: "default/vllm-qwen-pool" }, // no creationTimestamp: last
  ]);
  const messages = built.issues.map((i) => i.message).join("\n");
  assert.match(messages, /newer: modelName "\/model\/qwen" is already served .* by the older default\/older/);
  assert.match(messages, /wrong-kind/);
  assert.match(messages, /Urgent/);
  assert.doesNotMatch(messages, /no-pool/, "a model of a pool not served here is not an error");
});

test("models with a typed Date creationTimestamp sort like strings", () => {
  const a = model("a", "m1");
  a.metadata!.creationTimestamp = new Date("2025-01-02T00:00:00Z");
  const b = model("b", "m2", {}, "2025-01-01T00:00:00Z");
  assert.deepEqual(buildDocument(input({ models: [a, b] })).models.map((m) => m.name), ["m2", "m1"]);
});

test("pool stats average ready pods with metrics", () => {
  const built = buildDocument(input({
    pools: [{
      spec: spec(),
      endpoints: [
        ep("a", "10.0.0.1", { record: rec({ metrics: { waiting: 2, running: 4, kvUsage: 0.2 } }) }),
        ep("b", "10.0.0.2", { record: rec({ metrics: { waiting: 4, running: 8, kvUsage: 0.6 } }) }),
        ep("c", "10.0.0.3", { k8sReady: false, record: undefined }),
      ],
    }],
  }));
  assert.equal(built.stats[0].readyPods, 2);
  assert.equal(built.stats[0].avgWaiting, 3);
  assert.equal(built.stats[0].avgRunning, 6);
  assert.ok(Math.abs(built.stats[0].avgKvUsage - 0.4) < 1e-12, "Math.abs(built.stats[0].avgKvUsage - 0.4) < 1e-12");
});
