// The Kubernetes source against the fake API server, through the real @kubernetes/client-node.

import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeApiServer } from "../fakes/apiserver.ts";
import { KubeSource, loadKubeConfig } from "../../sidecar/k8s/kube-source.ts";
import { kubeConfigFor, memoryLogger, modelObj, objectiveObj, podObj, poolObj, poolV1Obj, rewriteObj, sleep, waitUntil } from "./helpers.ts";

async function setup(opts: { serve?: string[]; bookmarkIntervalMs?: number; namespaces?: string[] } = {}) {
  const api = await FakeApiServer.start({ serve: opts.serve, bookmarkIntervalMs: opts.bookmarkIntervalMs });
  const { log, records } = memoryLogger();
  let changes = 0;
  const restarts: string[] = [];
  const source = new KubeSource({
    kubeConfigObject: kubeConfigFor(api.kubeconfigYaml()),
    namespaces: opts.namespaces ?? [],
    log,
    onRestart: (r) => restarts.push(r),
    backoffBaseMs: 20,
    backoffMaxMs: 100,
    missingRetryMs: 100,
    discoveryIntervalMs: 100,
  });
  await source.start(() => changes++);
  const podNames = () => source.snapshot().podsFor("default", { app: "qwen" }).map((p) => p.metadata?.name).sort();
  return {
    api, source, records, restarts, podNames,
    changes: () => changes,
    async close() {
      await source.stop();
      await api.close();
    },
  };
}

test("lists and watches pools, models and the selected pods with a labelSelector", async () => {
  const t = await setup();
  try {
    t.api.apply(poolObj("vllm-qwen-pool", { app: "qwen" }));
    t.api.apply(modelObj("inferencemodel-qwen", "/model/qwen", "vllm-qwen-pool", { criticality: "Critical" }));
    t.api.apply(podObj("qwen-0", "10.0.0.1", { app: "qwen" }));
    t.api.apply(podObj("other", "10.0.0.9", { app: "other" }));
    // Pools and models can show up before the third informer (InferenceTrafficPolicy) has listed.
    await waitUntil(() => t.source.snapshot().pools.length === 1 && t.source.snapshot().models.length === 1 && t.source.synced(), 5000, "pools, models and every informer listed");
    t.source.setPodSelectors([{ namespace: "default", selector: { app: "qwen" } }]);
    assert.equal(t.source.synced(), false, "a new pod informer is not synced before its first list");
    await waitUntil(() => t.source.synced() && t.podNames().length === 1, 5000, "pods");
    assert.deepEqual(t.podNames(), ["qwen-0"]);

    const podList = t.api.requests.find((r) => !r.watch && r.path === "/api/v1/namespaces/default/pods");
    assert.equal(podList?.query.labelSelector, "app=qwen");
    await waitUntil(() => t.api.watchesOf("pods").length > 0, 5000, "pod watch");
    const podWatch = t.api.watchesOf("pods")[0];
    assert.equal(podWatch.query.labelSelector, "app=qwen");
    assert.equal(podWatch.query.allowWatchBookmarks, "true");
    assert.ok(Number(podWatch.query.timeoutSeconds) >= 300, "watches carry a server-side timeout");
    assert.match(podWatch.query.resourceVersion, /^\d+$/);
    assert.ok(t.api.requests.some((r) => r.path === "/apis/inference.networking.x-k8s.io/v1alpha2/inferencepools"), "cluster-wide pool list");

    // Live events.
    t.api.apply(podObj("qwen-1", "10.0.0.2", { app: "qwen" }));
    await waitUntil(() => t.podNames().length === 2, 5000, "qwen-1 added");
    t.api.apply(podObj("qwen-1", "10.0.0.2", { app: "not-qwen-anymore" }));
    await waitUntil(() => t.podNames().length === 1, 5000, "qwen-1 relabelled out of the selector");
    t.api.remove("Pod", "default", "qwen-0");
    await waitUntil(() => t.podNames().length === 0, 5000, "qwen-0 deleted");

    // Selectors no pool uses any more stop their informer.
    const before = t.api.openWatches;
    t.source.setPodSelectors([]);
    await waitUntil(() => t.api.openWatches === before - 1, 5000, "pod watch closed");
  } finally {
    await t.close();
  }
});

test("a watch the server ends is resumed from the last resourceVersion without a relist", async () => {
  const t = await setup();
  try {
    t.api.apply(poolObj("p", { app: "qwen" }));
    t.source.setPodSelectors([{ namespace: "default", selector: { app: "qwen" } }]);
    t.api.apply(podObj("qwen-0", "10.0.0.1", { app: "qwen" }));
    await waitUntil(() => t.podNames().length === 1 && t.api.watchesOf("pods").length === 1, 5000, "first watch");
    const lists = t.api.requests.filter((r) => !r.watch && r.path.endsWith("/pods")).length;
    const lastRv = t.api.get("Pod", "default", "qwen-0")!.metadata.resourceVersion;
    t.api.dropWatches();
    await waitUntil(() => t.api.watchesOf("pods").length === 2, 5000, "second watch");
    assert.equal(t.api.watchesOf("pods")[1].query.resourceVersion, lastRv);
    assert.equal(t.api.requests.filter((r) => !r.watch && r.path.endsWith("/pods")).length, lists, "no relist");
    t.api.apply(podObj("qwen-1", "10.0.0.2", { app: "qwen" }));
    await waitUntil(() => t.podNames().length === 2, 5000, "event after the resumed watch");
    assert.equal(t.restarts.length, 0);
  } finally {
    await t.close();
  }
});

test("410 Gone: a too-old resourceVersion makes the informer relist and catch up", async () => {
  const t = await setup();
  try {
    t.api.apply(poolObj("p", { app: "qwen" }));
    t.source.setPodSelectors([{ namespace: "default", selector: { app: "qwen" } }]);
    t.api.apply(podObj("qwen-0", "10.0.0.1", { app: "qwen" }));
    t.api.apply(podObj("qwen-1", "10.0.0.2", { app: "qwen" }));
    await waitUntil(() => t.podNames().length === 2 && t.api.watchesOf("pods").length === 1, 5000, "first watch");
    const lists = () => t.api.requests.filter((r) => !r.watch && r.path.endsWith("/pods")).length;
    const before = lists();
    // While the client is disconnected: changes it will not see as events, then compaction.
    t.api.breakWatches();
    t.api.remove("Pod", "default", "qwen-0");
    t.api.apply(podObj("qwen-2", "10.0.0.3", { app: "qwen" }));
    t.api.compact();
    await waitUntil(() => lists() > before, 5000, "relist after 410");
    await waitUntil(() => t.podNames().join() === "qwen-1,qwen-2", 5000, "caught up");
    assert.ok(
      t.api.requests.some((r) => r.watch && r.path.endsWith("/pods") && Number(r.query.resourceVersion) < t.api.compactedRv),
      "the client tried its old resourceVersion first",
    );
  } finally {
    await t.close();
  }
});

test("any other watch or list failure restarts the informer with backoff", async () => {
  const t = await setup();
  try {
    t.api.apply(poolObj("p", { app: "qwen" }));
    await waitUntil(() => t.source.snapshot().pools.length === 1, 5000, "pool");
    // Connection cut: the client's informer stops; ours comes back.
    t.api.breakWatches();
    t.api.failNext((r) => r.path.endsWith("/inferencepools"), 500, 3);
    t.api.apply(poolObj("p2", { app: "other" }));
    await waitUntil(() => t.source.snapshot().pools.length === 2, 5000, "pool added after restarts");
    assert.ok(t.restarts.some((r) => r.startsWith("inferencepools")), `restarts: ${t.restarts.join(", ")}`);
    assert.ok(t.records.some((r) => r.event === "watch_failed" || r.event === "list_failed"), "t.records.some((r) => r.event === \"watch_failed\" || r.event === \"list_failed\")");
    assert.ok(t.records.some((r) => r.event === "watch_recovered"), "t.records.some((r) => r.event === \"watch_recovered\")");
  } finally {
    await t.close();
  }
});

test("a resource the cluster does not serve counts as empty and is picked up once served", async () => {
  const t = await setup({ serve: ["pods", "inferencepools", "inferencemodels"] });
  try {
    await waitUntil(() => t.source.synced(), 5000, "synced without InferenceTrafficPolicy");
    // Discovery found it missing: it is not listed at all (no 404 to retry).
    assert.ok(!t.api.requests.some((r) => r.path.endsWith("/inferencetrafficpolicies")), "an unserved resource is not listed");
    assert.ok(t.records.some((r) => r.event === "api_discovered" && !String(r.resources).includes("inferencetrafficpolicies")), "discovery logged what is watched");
    t.api.serve("inferencetrafficpolicies");
    t.api.apply({ apiVersion: "inferenceextension.alibabacloud.com/v1alpha1", kind: "InferenceTrafficPolicy", metadata: { name: "policy", namespace: "default" }, spec: { poolRef: { name: "p" }, modelServerRuntime: "sglang" } });
    await waitUntil(() => t.source.snapshot().policies.length === 1, 5000, "policy listed");
  } finally {
    await t.close();
  }
});

test("bookmarks advance the resourceVersion a resumed watch starts from", async () => {
  const t = await setup({ bookmarkIntervalMs: 30 });
  try {
    t.api.apply(poolObj("p", { app: "qwen" }));
    t.source.setPodSelectors([{ namespace: "default", selector: { app: "qwen" } }]);
    await waitUntil(() => t.api.watchesOf("pods").length === 1, 5000, "pod watch");
    const firstRv = Number(t.api.watchesOf("pods")[0].query.resourceVersion);
    // Changes to other resources move the global resourceVersion; the pod watch only sees bookmarks.
    for (let i = 0; i < 5; i++) t.api.apply(modelObj(`m${i}`, `model-${i}`, "p"));
    await sleep(120);
    t.api.dropWatches();
    await waitUntil(() => t.api.watchesOf("pods").length === 2, 5000, "resumed pod watch");
    assert.equal(Number(t.api.watchesOf("pods")[1].query.resourceVersion), t.api.rv);
    assert.ok(t.api.rv > firstRv, "t.api.rv > firstRv");
  } finally {
    await t.close();
  }
});

test("namespaced mode lists and watches only the given namespaces", async () => {
  const t = await setup({ namespaces: ["team-a"] });
  try {
    t.api.apply(poolObj("a", { app: "x" }, { namespace: "team-a" }));
    t.api.apply(poolObj("b", { app: "x" }, { namespace: "team-b" }));
    await waitUntil(() => t.source.synced() && t.source.snapshot().pools.length === 1, 5000, "team-a pool");
    await sleep(50);
    assert.deepEqual(t.source.snapshot().pools.map((p) => p.metadata?.name), ["a"]);
    assert.ok(t.api.requests.every((r) => !r.path.includes("/inferencepools") || r.path.includes("/namespaces/team-a/")), "t.api.requests.every((r) => !r.path.includes(\"/inferencepools\") || r.path.includes(\"/namespaces/team-a/\"))");
  } finally {
    await t.close();
  }
});

test("a kubeconfig that cannot be loaded is a clear start-up error", () => {
  assert.throws(() => loadKubeConfig("/nonexistent/kubeconfig"), (err: Error & { code?: string }) => err.code === "kubeconfig_invalid" && /\/nonexistent\/kubeconfig/.test(err.message));
});

const V1 = ["pods", "inferencepools.inference.networking.k8s.io", "inferenceobjectives", "inferencemodelrewrites"];

test("a cluster with only the v1 CRDs: the v1 pool, objectives and rewrites are watched, the v1alpha2 APIs never asked", async () => {
  const t = await setup({ serve: V1 });
  try {
    t.api.apply(poolV1Obj("qwen", { app: "qwen" }));
    t.api.apply(objectiveObj("chat", "qwen", 10));
    t.api.apply(rewriteObj("canary", "qwen", [{ matches: [{ model: { value: "qwen" } }], targets: [{ modelRewrite: "qwen-v2" }] }]));
    await waitUntil(() => t.source.synced() && t.source.snapshot().poolsV1.length === 1 && t.source.snapshot().objectives.length === 1 && t.source.snapshot().rewrites.length === 1, 5000, "v1 objects listed");
    const snap = t.source.snapshot();
    assert.deepEqual([snap.pools.length, snap.models.length, snap.policies.length], [0, 0, 0]);
    assert.deepEqual(t.source.watching().map((r) => `${r.plural}.${r.group}/${r.version}`).sort(), [
      "inferencemodelrewrites.inference.networking.x-k8s.io/v1alpha2",
      "inferenceobjectives.inference.networking.x-k8s.io/v1alpha2",
      "inferencepools.inference.networking.k8s.io/v1",
    ]);
    const old = t.api.requests.filter((r) => /^\/apis\/inference\.networking\.x-k8s\.io\/v1alpha2\/(namespaces\/[^/]+\/)?(inferencepools|inferencemodels)$/.test(r.path));
    assert.deepEqual(old, [], "no list or watch of v1alpha2 pools or models");
    assert.ok(t.api.requests.some((r) => r.path === "/apis/inference.networking.x-k8s.io/v1alpha2/inferenceobjectives"), "objectives listed");
    assert.ok(t.api.requests.some((r) => r.path === "/apis/inference.networking.k8s.io/v1"), "discovery asked for the v1 group");
    assert.ok(!t.records.some((r) => r.event === "resource_missing"), "no 404 noise for the APIs the cluster lacks");
  } finally {
    await t.close();
  }
});

test("a cluster with both APIs: both pools are watched; a CRD installed later is picked up by the next discovery, one removed is dropped", async () => {
  const t = await setup({ serve: ["pods", "inferencepools", "inferencemodels", "inferencetrafficpolicies"] });
  try {
    t.api.apply(poolObj("old", { app: "old" }));
    t.api.apply(poolV1Obj("new", { app: "new" }));
    await waitUntil(() => t.source.synced() && t.source.snapshot().pools.length === 1 && t.source.snapshot().poolsV1.length === 1, 5000, "both pools");
    assert.equal(t.source.snapshot().objectives.length, 0);
    t.api.serve("inferenceobjectives");
    t.api.apply(objectiveObj("batch", "new", -1));
    await waitUntil(() => t.source.snapshot().objectives.length === 1, 5000, "objectives watched after the CRD appears");
    t.api.serve("inferencepools.inference.networking.x-k8s.io", false);
    await waitUntil(() => t.source.snapshot().pools.length === 0, 5000, "the v1alpha2 pools dropped with their CRD");
    assert.equal(t.source.snapshot().poolsV1.length, 1);
  } finally {
    await t.close();
  }
});

test("discovery that fails falls back to watching every resource, with a warning; a 404 is then 'not served'", async () => {
  const api = await FakeApiServer.start({ serve: V1 });
  api.failNext((r) => /^\/apis\/[^/]+\/[^/]+$/.test(r.path), 403, 1);
  const { log, records } = memoryLogger();
  const source = new KubeSource({ kubeConfigObject: kubeConfigFor(api.kubeconfigYaml()), namespaces: [], log, missingRetryMs: 100, discoveryIntervalMs: 60_000 });
  try {
    api.apply(poolV1Obj("qwen", { app: "qwen" }));
    await source.start(() => {});
    await waitUntil(() => source.synced() && source.snapshot().poolsV1.length === 1, 5000, "v1 pool listed");
    assert.ok(records.some((r) => r.event === "api_discovery_failed" && r.code === "api_discovery_failed"));
    assert.equal(source.watching().length, 6, "every custom resource watched");
    assert.ok(records.some((r) => r.event === "resource_missing" && String(r.resource).startsWith("inferencemodels")), "the unserved ones count as empty");
  } finally {
    await source.stop();
    await api.close();
  }
});
