// The sidecar in Kubernetes mode, in process: the real client talks to the fake API server
// through a kubeconfig file; fake model servers serve the metrics; a receiver takes the pushes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseOptions } from "../../sidecar/cli.ts";
import { startSidecar, type Sidecar } from "../../sidecar/app.ts";
import { FakeApiServer } from "../fakes/apiserver.ts";
import { FakeModelServer } from "../fakes/model-metrics.ts";
import { PushReceiver, type StoredDoc } from "../fakes/push-receiver.ts";
import { validateState } from "../fakes/state-validator.ts";
import { memoryLogger, modelObj, podObj, poolObj, waitUntil } from "./helpers.ts";

const IPS = ["127.0.0.31", "127.0.0.32", "127.0.0.33"];

function ep(d: StoredDoc, pod: string, pool = "default/vllm-qwen-pool") {
  return d.pools.find((p) => p.name === pool)?.endpoints.find((e) => e.pod === pod);
}

test("Kubernetes mode end to end against the fake API server", async (t) => {
  const first = await FakeModelServer.start({ host: IPS[0], state: { waiting: 1, kvUsage: 0.2 } });
  const servers = [first];
  for (let i = 1; i < IPS.length; i++) servers.push(await FakeModelServer.start({ host: IPS[i], port: first.port, state: { waiting: 1 + i, kvUsage: 0.2 + 0.2 * i } }));
  const port = first.port;
  const api = await FakeApiServer.start({ bookmarkIntervalMs: 200 });
  const receiver = await PushReceiver.start({ token: "kube-token" });
  // Envoy still holds the document of an earlier run of the sidecar.
  receiver.preload({ version: 41, generated_at_ms: Date.now() - 60_000, pools: [], models: [] });
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-kube-"));
  const kubeconfig = join(dir, "kubeconfig");
  await writeFile(kubeconfig, api.kubeconfigYaml());

  api.apply(poolObj("vllm-qwen-pool", { app: "qwen" }, { port }));
  api.apply(poolObj("other-pool", { app: "other" }, { port }));
  api.apply(modelObj("inferencemodel-qwen", "/model/qwen", "vllm-qwen-pool", { criticality: "Critical", targets: [{ name: "/model/qwen", weight: 100 }] }));
  IPS.forEach((ip, i) => api.apply(podObj(`qwen-${i}`, ip, { app: "qwen" })));

  const { log, records } = memoryLogger("info");
  const options = parseOptions([
    "--kubeconfig", kubeconfig,
    "--pool", "default/vllm-qwen-pool",
    "--push-url", receiver.url,
    "--metrics-port", "0",
    "--metrics-address", "127.0.0.1",
    "--scrape-interval", "50ms",
    "--push-coalesce", "20ms",
    "--push-interval", "500ms",
  ]);
  let sidecar: Sidecar | undefined;

  // Every document generated `slackMs` after `since` must satisfy pred.
  async function reflects(what: string, since: number, pred: (d: StoredDoc) => boolean, slackMs = 200): Promise<StoredDoc> {
    const doc = await receiver.waitFor(pred, 5000, what);
    const late = receiver.docs.filter((d) => d.generated_at_ms > since + slackMs && !pred(d));
    assert.deepEqual(late.map((d) => d.version), [], `${what}: documents generated after the change that do not show it`);
    return doc;
  }

  try {
    sidecar = await startSidecar(options, { log, env: { WASM_EPP_PUSH_TOKEN: "kube-token" } });

    await t.test("first document: only the --pool pool, with its pods and model", async () => {
      const d = await receiver.waitFor((x) => x.pools[0]?.endpoints.length === 3 && x.pools[0].endpoints.every((e) => e.metrics_age_ms < 1000), 10_000, "first state");
      assert.deepEqual(d.pools.map((p) => p.name), ["default/vllm-qwen-pool"]);
      assert.deepEqual(d.pools[0].endpoints.map((e) => e.address), IPS.map((ip) => `${ip}:${port}`));
      assert.deepEqual(d.pools[0].endpoints.map((e) => e.waiting), [1, 2, 3]);
      assert.deepEqual(d.models.map((m) => m.name), ["/model/qwen"]);
      assert.equal(receiver.docs[0].version, 42, "the version numbering continues from the stored document");
      await waitUntil(() => sidecar!.ready(), 2000, "ready after the first accepted push");
      const podWatch = api.watchesOf("pods")[0];
      assert.equal(podWatch.query.labelSelector, "app=qwen", "pods watched with the pool's selector");
      assert.ok(api.requests.every((r) => !r.path.includes("/inferencepools") || r.path.includes("/namespaces/default/")), "watches only the --pool namespace");
    });

    await t.test("a pod turning unready leaves the routing state within one push", async () => {
      const since = Date.now();
      api.apply(podObj("qwen-1", IPS[1], { app: "qwen" }, { ready: false }));
      const d = await reflects("qwen-1 not ready", since, (x) => ep(x, "qwen-1")?.ready === false);
      assert.equal(ep(d, "qwen-1")!.score, 0);
      api.apply(podObj("qwen-1", IPS[1], { app: "qwen" }));
      await receiver.waitFor((x) => ep(x, "qwen-1")?.ready === true && ep(x, "qwen-1")!.metrics_age_ms < 1000, 5000, "qwen-1 ready again");
    });

    await t.test("a terminating pod is not ready; a deleted pod is gone, within one push", async () => {
      let since = Date.now();
      api.apply(podObj("qwen-2", IPS[2], { app: "qwen" }, { terminating: true }));
      await reflects("qwen-2 terminating", since, (x) => ep(x, "qwen-2")?.ready === false);
      since = Date.now();
      api.remove("Pod", "default", "qwen-2");
      await reflects("qwen-2 deleted", since, (x) => !ep(x, "qwen-2") && x.pools[0].endpoints.length === 2);
    });

    await t.test("a model added, re-weighted and deleted", async () => {
      const lora = (w1: number, w2: number) => modelObj("travel", "travel", "vllm-qwen-pool", { criticality: "Sheddable", targets: [{ name: "travel-helper-v1", weight: w1 }, { name: "travel-helper-v2", weight: w2 }] });
      let since = Date.now();
      api.apply(lora(90, 10));
      await reflects("model added", since, (d) => d.models.some((m) => m.name === "travel" && m.targets?.[0].weight === 90 && m.criticality === "Sheddable"));
      since = Date.now();
      api.apply(lora(30, 70));
      await reflects("model re-weighted", since, (d) => d.models.some((m) => m.name === "travel" && m.targets?.[1].weight === 70));
      since = Date.now();
      api.remove("InferenceModel", "default", "travel");
      const d = await reflects("model deleted", since, (x) => !x.models.some((m) => m.name === "travel"));
      assert.deepEqual(d.models.map((m) => m.name), ["/model/qwen"]);
    });

    await t.test("a pool annotation change switches the strategy", async () => {
      const since = Date.now();
      api.apply(poolObj("vllm-qwen-pool", { app: "qwen" }, { port, annotations: { "inference.networking.x-k8s.io/routing-strategy": "PREFIX_CACHE" } }));
      await reflects("PREFIX_CACHE", since, (d) => d.pools[0].strategy === "PREFIX_CACHE");
    });

    await t.test("after dropped watches and a compacted history, changes still arrive", async () => {
      api.breakWatches();
      api.apply(podObj("qwen-2", IPS[2], { app: "qwen" }));
      api.compact();
      await receiver.waitFor((d) => ep(d, "qwen-2")?.ready === true, 5000, "qwen-2 back after relist");
      api.dropWatches();
      servers[0].set({ waiting: 9 });
      api.apply(podObj("qwen-0", IPS[0], { app: "qwen", tier: "gold" }));
      await receiver.waitFor((d) => ep(d, "qwen-0")?.waiting === 9, 5000, "new metrics after resumed watch");
      assert.ok(records.some((r) => r.event === "watch_failed" || r.event === "list_failed"), "the broken watch was logged");
    });

    await t.test("every pushed document passes the filter's validation", () => {
      const problems = receiver.docs.map((d) => validateState(d)).filter((p) => p !== undefined);
      assert.deepEqual(problems, []);
      const versions = receiver.docs.map((d) => d.version);
      assert.ok(versions.every((v, i) => i === 0 || v >= versions[i - 1]), "versions never go back");
    });
  } finally {
    await sidecar?.stop();
    await api.close();
    await receiver.down();
    await Promise.all(servers.map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  }
});
