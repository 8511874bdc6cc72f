import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parsePool } from "../../sidecar/k8s/pool-spec.ts";
import { parseManifests } from "../../sidecar/k8s/manifests.ts";
import { formatAddress, podReady } from "../../sidecar/k8s/pods.ts";
import { collectionPath, INFERENCE_POOL, labelSelectorString, POD, selectorMatches } from "../../sidecar/k8s/resources.ts";
import { FileSource } from "../../sidecar/k8s/file-source.ts";
import { Logger } from "../../sidecar/observability/log.ts";
import type { InferencePool, Pod } from "../../sidecar/k8s/types.ts";

const EXAMPLES = fileURLToPath(new URL("../../deploy/examples/", import.meta.url));

function pool(annotations: Record<string, string> = {}, spec: InferencePool["spec"] = { targetPortNumber: 8000, selector: { app: "qwen" } }): InferencePool {
  return { apiVersion: "inference.networking.x-k8s.io/v1alpha2", kind: "InferencePool", metadata: { name: "p", annotations }, spec };
}

test("pool annotations: routing strategy and runtime, with defaults and warnings", () => {
  assert.deepEqual(parsePool(pool(), "default"), {
    spec: { key: "default/p", namespace: "default", name: "p", port: 8000, ports: [8000], api: "v1alpha2", selector: { app: "qwen" }, strategy: "DEFAULT", runtime: "vllm" },
    issues: [],
  });
  const prefix = parsePool(pool({ "inference.networking.x-k8s.io/routing-strategy": "PREFIX_CACHE", "inference.networking.x-k8s.io/model-server-runtime": "sglang" }), "ns1");
  assert.equal(prefix.spec.strategy, "PREFIX_CACHE");
  assert.equal(prefix.spec.runtime, "sglang");
  assert.equal(prefix.spec.key, "ns1/p");
  const bad = parsePool(pool({ "inference.networking.x-k8s.io/routing-strategy": "ROUND_ROBIN", "inference.networking.x-k8s.io/model-server-runtime": "triton" }), "default");
  assert.equal(bad.spec.strategy, "DEFAULT");
  assert.equal(bad.spec.runtime, "vllm");
  assert.deepEqual(bad.issues.map((i) => i.code), ["annotation_invalid", "annotation_invalid"]);
  assert.match(bad.issues[0].message, /ROUND_ROBIN.*using DEFAULT/);
});

test("pool annotation wasm-epp.io/scrape-name-filter: on or off per pool; absent leaves it to the flag; anything else warns", () => {
  assert.equal(parsePool(pool(), "default").spec.nameFilter, undefined);
  assert.equal(parsePool(pool({ "wasm-epp.io/scrape-name-filter": "off" }), "default").spec.nameFilter, false);
  assert.equal(parsePool(pool({ "wasm-epp.io/scrape-name-filter": "On" }), "default").spec.nameFilter, true);
  assert.equal(parsePool(pool({ "wasm-epp.io/scrape-name-filter": "false" }), "default").spec.nameFilter, false);
  const bad = parsePool(pool({ "wasm-epp.io/scrape-name-filter": "sometimes" }), "default");
  assert.equal(bad.spec.nameFilter, undefined);
  assert.deepEqual(bad.issues.map((i) => i.message), ['InferencePool default/p: wasm-epp.io/scrape-name-filter "sometimes" is not on or off; using --scrape-name-filter']);
});

test("pool runtime falls back to an InferenceTrafficPolicy's modelServerRuntime", () => {
  const policy = { metadata: { name: "inference-policy", namespace: "default" }, spec: { poolRef: { name: "p" }, modelServerRuntime: "sglang" } };
  assert.equal(parsePool(pool(), "default", [policy]).spec.runtime, "sglang");
  // The annotation wins; a policy in another namespace does not apply.
  assert.equal(parsePool(pool({ "inference.networking.x-k8s.io/model-server-runtime": "vllm" }), "default", [policy]).spec.runtime, "vllm");
  assert.equal(parsePool(pool(), "default", [{ ...policy, metadata: { name: "x", namespace: "other" } }]).spec.runtime, "vllm");
});

test("pool without a port or selector is kept, with an issue", () => {
  const r = parsePool(pool({}, { selector: {} }), "default");
  assert.equal(r.spec.port, 0);
  assert.deepEqual(r.issues.map((i) => i.code), ["pool_invalid", "pool_invalid"]);
  assert.equal(parsePool(pool({}, { targetPortNumber: 70000, selector: { a: "b" } }), "default").spec.port, 0);
});

test("pod readiness: Ready=True, not terminating, not finished", () => {
  const ready: Pod = { metadata: { name: "a" }, status: { phase: "Running", podIP: "10.0.0.1", conditions: [{ type: "PodScheduled", status: "True" }, { type: "Ready", status: "True" }] } };
  assert.equal(podReady(ready), true);
  assert.equal(podReady({ ...ready, status: { ...ready.status, conditions: [{ type: "Ready", status: "False" }] } }), false);
  assert.equal(podReady({ ...ready, metadata: { name: "a", deletionTimestamp: "2025-11-20T10:00:00Z" } }), false);
  assert.equal(podReady({ ...ready, metadata: { name: "a", deletionTimestamp: new Date() } }), false);
  assert.equal(podReady({ ...ready, status: { ...ready.status, phase: "Succeeded" } }), false);
  assert.equal(podReady({ metadata: { name: "a" } }), false);
});

test("addresses in the form the filter accepts", () => {
  assert.equal(formatAddress("10.1.2.3", 8000), "10.1.2.3:8000");
  assert.equal(formatAddress("fd00:10:244::5", 8000), "[fd00:10:244::5]:8000");
  assert.equal(formatAddress("10.1.2.3", 0), undefined);
  assert.equal(formatAddress("10.01.2.3", 80), undefined);
  assert.equal(formatAddress("fe80::1%eth0", 80), undefined);
  assert.equal(formatAddress("::ffff:1.2.3.4", 80), undefined);
  assert.equal(formatAddress("host.example", 80), undefined);
  assert.equal(formatAddress(undefined, 80), undefined);
});

test("selectors and paths", () => {
  assert.equal(selectorMatches({ app: "qwen" }, { app: "qwen", x: "y" }), true);
  assert.equal(selectorMatches({ app: "qwen", role: "leader" }, { app: "qwen" }), false);
  assert.equal(selectorMatches({}, { app: "qwen" }), false, "an empty selector selects nothing");
  assert.equal(labelSelectorString({ role: "leader", app: "qwen" }), "app=qwen,role=leader");
  assert.equal(collectionPath(POD, "default"), "/api/v1/namespaces/default/pods");
  assert.equal(collectionPath(INFERENCE_POOL), "/apis/inference.networking.x-k8s.io/v1alpha2/inferencepools");
});

test("manifests: multi-document, namespace defaulted, unrelated kinds ignored, errors reported", () => {
  const text = [
    "apiVersion: gateway.networking.k8s.io/v1",
    "kind: Gateway",
    "metadata: {name: gw}",
    "---",
    "apiVersion: inference.networking.x-k8s.io/v1alpha2",
    "kind: InferencePool",
    "metadata: {name: p}",
    "spec: {targetPortNumber: 8000, selector: {app: qwen}}",
    "---",
    "apiVersion: v1",
    "kind: Pod",
    "metadata: {name: pod-a, namespace: other}",
    "---",
    "kind: Pod",
    "metadata: {name: nameless-version}",
    "---",
    "apiVersion: v1",
    "kind: Pod",
    "metadata: {labels: {a: b}}",
    "---",
    "apiVersion: v1",
    "kind: List",
    "items:",
    "- {apiVersion: v1, kind: Pod, metadata: {name: from-list}}",
    "---",
  ].join("\n");
  const r = parseManifests(text, "team-a", "x.yaml");
  assert.deepEqual(r.objects.map((o) => `${o.resource.kind} ${o.object.metadata?.namespace}/${o.object.metadata?.name}`), ["InferencePool team-a/p", "Pod other/pod-a", "Pod team-a/from-list"]);
  assert.equal(r.ignored, 1);
  assert.equal(r.errors.length, 2);
  assert.equal(parseManifests("key: [unclosed", "default").errors.length, 1);
});

test("the shipped examples describe the seeds' pool, model and five pods on 127.0.0.11-15", async () => {
  const pools = parseManifests(await readFile(join(EXAMPLES, "inference-pool.yaml"), "utf8"), "default");
  const pods = parseManifests(await readFile(join(EXAMPLES, "pods.yaml"), "utf8"), "default");
  assert.deepEqual(pools.errors, []);
  assert.deepEqual(pods.errors, []);
  const p = pools.objects.find((o) => o.resource.kind === "InferencePool")!.object as InferencePool;
  assert.deepEqual(parsePool(p, "default").spec, { key: "default/vllm-qwen-pool", namespace: "default", name: "vllm-qwen-pool", port: 8000, ports: [8000], api: "v1alpha2", selector: { app: "qwen" }, strategy: "DEFAULT", runtime: "vllm" });
  const m = pools.objects.find((o) => o.resource.kind === "InferenceModel")!.object as { spec: unknown };
  assert.deepEqual(m.spec, { modelName: "/model/qwen", criticality: "Critical", poolRef: { group: "inference.networking.x-k8s.io", kind: "InferencePool", name: "vllm-qwen-pool" }, targetModels: [{ name: "/model/qwen", weight: 100 }] });
  assert.deepEqual(pods.objects.map((o) => [o.object.metadata?.name, (o.object as Pod).status?.podIP, podReady(o.object as Pod)]), [0, 1, 2, 3, 4].map((i) => [`qwen-${i}`, `127.0.0.${11 + i}`, true]));
});

test("file source: reads *.yaml/*.yml directly in the directory, ignores subdirectories, follows changes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-manifests-"));
  try {
    await writeFile(join(dir, "pool.yaml"), "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\nmetadata: {name: p}\nspec: {targetPortNumber: 8000, selector: {app: qwen}}\n");
    await writeFile(join(dir, "pods.yml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: qwen}}\nstatus: {podIP: 10.0.0.1}\n");
    await writeFile(join(dir, "notes.txt"), "apiVersion: v1\nkind: Pod\nmetadata: {name: txt}\n");
    await mkdir(join(dir, "other-example"));
    await writeFile(join(dir, "other-example", "pool.yaml"), "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\nmetadata: {name: sub}\nspec: {targetPortNumber: 9000, selector: {app: x}}\n");
    let changes = 0;
    const src = new FileSource({ dir, defaultNamespace: "default", log: new Logger("error", () => {}), pollMs: 60_000, debounceMs: 10 });
    await src.start(() => changes++);
    assert.equal(src.synced(), true);
    let snap = src.snapshot();
    assert.deepEqual(snap.pools.map((p) => p.metadata?.name), ["p"]);
    assert.deepEqual(snap.podsFor("default", { app: "qwen" }).map((p) => p.metadata?.name), ["a"]);
    assert.ok(changes >= 1, "changes >= 1");

    // A broken edit keeps the file's previous objects.
    await writeFile(join(dir, "pods.yml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: b, labels: [unclosed\n");
    await src.reload();
    assert.deepEqual(src.snapshot().podsFor("default", { app: "qwen" }).map((p) => p.metadata?.name), ["a"]);

    // A fixed edit replaces them; a deleted file removes its objects (found by the watcher).
    await writeFile(join(dir, "pods.yml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: b, labels: {app: qwen}}\nstatus: {podIP: 10.0.0.2}\n");
    await src.reload();
    snap = src.snapshot();
    assert.deepEqual(snap.podsFor("default", { app: "qwen" }).map((p) => p.metadata?.name), ["b"]);
    const before = changes;
    await rm(join(dir, "pool.yaml"));
    const deadline = Date.now() + 3000;
    while (src.snapshot().pools.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(src.snapshot().pools.length, 0);
    assert.ok(changes > before, "changes > before");
    await src.stop();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("file source: a missing directory is a start-up error", async () => {
  const src = new FileSource({ dir: join(tmpdir(), "does-not-exist-wasm-epp"), defaultNamespace: "default", log: new Logger("error", () => {}) });
  await assert.rejects(src.start(() => {}), (err: Error & { code?: string }) => err.code === "manifests_unreadable");
});
