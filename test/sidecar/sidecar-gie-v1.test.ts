// The sidecar reading the GIE v1 API, in process, end to end: the real @kubernetes/client-node
// against the fake API server (a cluster with only the v1 CRDs, and one with both APIs), and file
// mode with both; fake model servers serve the metrics; a receiver takes the pushes, which must
// pass the filter's document checks.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseOptions } from "../../sidecar/cli.ts";
import { startSidecar, type Sidecar } from "../../sidecar/app.ts";
import { FakeApiServer, type Obj } from "../fakes/apiserver.ts";
import { FakeModelServer } from "../fakes/model-metrics.ts";
import { PushReceiver, type StoredDoc } from "../fakes/push-receiver.ts";
import { validateState } from "../fakes/state-validator.ts";
import { memoryLogger, modelObj, objectiveObj, podObj, poolObj, poolV1Obj, rewriteObj, toYaml, waitUntil } from "./helpers.ts";

const IPS = ["127.0.0.71", "127.0.0.72"];
const V1_ONLY = ["pods", "inferencepools.inference.networking.k8s.io", "inferenceobjectives", "inferencemodelrewrites"];

interface Cluster {
  servers: FakeModelServer[];
  ports: number[];
}

// Two model servers per pod IP (a v1 pool with two target ports), waiting = 10 x pod + port index.
async function modelServers(): Promise<Cluster> {
  const servers: FakeModelServer[] = [];
  const a = await FakeModelServer.start({ host: IPS[0], state: { waiting: 0 } });
  const b = await FakeModelServer.start({ host: IPS[0], state: { waiting: 1 } });
  servers.push(a, b);
  servers.push(await FakeModelServer.start({ host: IPS[1], port: a.port, state: { waiting: 10 } }));
  servers.push(await FakeModelServer.start({ host: IPS[1], port: b.port, state: { waiting: 11 } }));
  return { servers, ports: [a.port, b.port] };
}

function v1Objects(ports: number[]): Obj[] {
  return [
    poolV1Obj("qwen", { app: "qwen" }, { ports }),
    objectiveObj("interactive", "qwen", 100, { created: "2025-11-20T10:00:00Z" }),
    objectiveObj("batch", "qwen", -5, { created: "2025-11-20T10:00:01Z" }),
    objectiveObj("standard", "qwen", undefined, { created: "2025-11-20T10:00:02Z" }),
    rewriteObj("canary", "qwen", [
      { matches: [{ model: { value: "qwen" } }], targets: [{ modelRewrite: "qwen-2.5", weight: 90 }, { modelRewrite: "qwen-3", weight: 10 }] },
      { targets: [{ modelRewrite: "qwen-2.5" }] },
    ], { created: "2025-11-20T10:00:03Z" }),
    ...IPS.map((ip, i) => podObj(`qwen-${i}`, ip, { app: "qwen" })),
  ];
}

// What a cluster with the objects above publishes for default/qwen.
function checkV1(d: StoredDoc, ports: number[]): void {
  const pool = d.pools.find((p) => p.name === "default/qwen");
  assert.ok(pool, "the v1 pool is published");
  assert.deepEqual(pool.endpoints.map((e) => [e.pod, e.address, e.waiting]), [
    ["qwen-0-rank-0", `${IPS[0]}:${ports[0]}`, 0],
    ["qwen-0-rank-1", `${IPS[0]}:${ports[1]}`, 1],
    ["qwen-1-rank-0", `${IPS[1]}:${ports[0]}`, 10],
    ["qwen-1-rank-1", `${IPS[1]}:${ports[1]}`, 11],
  ]);
  assert.deepEqual(pool.default_targets, [{ name: "qwen-2.5" }]);
  assert.deepEqual(d.models.filter((m) => m.pool === "default/qwen"), [{ name: "qwen", pool: "default/qwen", targets: [{ name: "qwen-2.5", weight: 90 }, { name: "qwen-3", weight: 10 }] }]);
  assert.deepEqual(d.objectives, [
    { name: "batch", pool: "default/qwen", priority: -5, criticality: "Sheddable" },
    { name: "interactive", pool: "default/qwen", priority: 100, criticality: "Critical" },
    { name: "standard", pool: "default/qwen", priority: 0, criticality: "Standard" },
  ]);
  assert.equal(validateState(d), undefined);
}

const ready = (ports: number[]) => (x: StoredDoc) => {
  const p = x.pools.find((q) => q.name === "default/qwen");
  return p !== undefined && p.endpoints.length === 2 * ports.length && p.endpoints.every((e) => e.ready && e.metrics_age_ms < 1000) && (x.objectives?.length ?? 0) === 3;
};

async function runKube(serve: string[] | undefined, objects: Obj[], check: (d: StoredDoc, records: Array<Record<string, unknown>>, api: FakeApiServer) => void, c: Cluster): Promise<void> {
  const api = await FakeApiServer.start({ serve });
  const receiver = await PushReceiver.start({ token: "v1-token" });
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-v1-"));
  const kubeconfig = join(dir, "kubeconfig");
  await writeFile(kubeconfig, api.kubeconfigYaml());
  for (const o of objects) api.apply(o);
  const { log, records } = memoryLogger("info");
  let sidecar: Sidecar | undefined;
  try {
    sidecar = await startSidecar(parseOptions(["--kubeconfig", kubeconfig, "--push-url", receiver.url, "--metrics-port", "0", "--metrics-address", "127.0.0.1", "--scrape-interval", "50ms", "--push-coalesce", "20ms"]), { log, env: { WASM_EPP_PUSH_TOKEN: "v1-token" } });
    const d = await receiver.waitFor(ready(c.ports), 10_000, "the v1 pool with its four endpoints and three objectives");
    check(d, records, api);
  } finally {
    await sidecar?.stop();
    await api.close();
    await receiver.down();
    await rm(dir, { recursive: true, force: true });
  }
}

test("a cluster with only the v1 CRDs: the v1 pool (two ports), objectives and rewrites make the document", async () => {
  const c = await modelServers();
  try {
    await runKube(V1_ONLY, v1Objects(c.ports), (d, records, api) => {
      checkV1(d, c.ports);
      assert.deepEqual(d.pools.map((p) => p.name), ["default/qwen"]);
      assert.ok(!api.requests.some((r) => /x-k8s\.io\/v1alpha2\/(inferencepools|inferencemodels)$/.test(r.path)), "the v1alpha2 pools and models are never listed");
      assert.ok(!records.some((r) => r.level === "warn"), `no warnings: ${JSON.stringify(records.filter((r) => r.level === "warn"))}`);
    }, c);
  } finally {
    await Promise.all(c.servers.map((s) => s.close()));
  }
});

test("a cluster with both APIs: v1 and v1alpha2 pools side by side; a name in both is served from v1, with a warning", async () => {
  const c = await modelServers();
  try {
    const objects = [
      ...v1Objects(c.ports),
      // The seeds' v1alpha2 pool and model, untouched.
      poolObj("vllm-qwen-pool", { app: "qwen" }, { port: c.ports[0] }),
      modelObj("inferencemodel-qwen", "/model/qwen", "vllm-qwen-pool", { criticality: "Critical" }),
      // The same namespace/name in both APIs.
      poolObj("qwen", { app: "other" }, { port: 9999 }),
    ];
    await runKube(undefined, objects, (d, records) => {
      checkV1(d, c.ports);
      assert.deepEqual(d.pools.map((p) => p.name), ["default/qwen", "default/vllm-qwen-pool"]);
      const old = d.pools.find((p) => p.name === "default/vllm-qwen-pool")!;
      assert.deepEqual(old.endpoints.map((e) => [e.pod, e.address]), [["qwen-0", `${IPS[0]}:${c.ports[0]}`], ["qwen-1", `${IPS[1]}:${c.ports[0]}`]]);
      assert.deepEqual(d.models.filter((m) => m.pool === "default/vllm-qwen-pool"), [{ name: "/model/qwen", pool: "default/vllm-qwen-pool", criticality: "Critical" }]);
      const conflict = records.filter((r) => r.code === "pool_conflict");
      assert.equal(conflict.length, 1);
      assert.match(String(conflict[0].msg ?? conflict[0].message), /InferencePool default\/qwen exists in both inference\.networking\.k8s\.io\/v1 and inference\.networking\.x-k8s\.io\/v1alpha2; the v1 pool is served/);
    }, c);
  } finally {
    await Promise.all(c.servers.map((s) => s.close()));
  }
});

test("file mode reads both APIs from one directory", async () => {
  const c = await modelServers();
  const receiver = await PushReceiver.start({ token: "v1-token" });
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-v1-files-"));
  const { log } = memoryLogger("info");
  let sidecar: Sidecar | undefined;
  try {
    await writeFile(join(dir, "v1.yaml"), toYaml(v1Objects(c.ports)));
    await writeFile(join(dir, "v1alpha2.yaml"), toYaml([poolObj("vllm-qwen-pool", { app: "qwen" }, { port: c.ports[1] }), modelObj("m", "/model/qwen", "vllm-qwen-pool")]));
    sidecar = await startSidecar(parseOptions(["--manifests", dir, "--push-url", receiver.url, "--metrics-port", "0", "--metrics-address", "127.0.0.1", "--scrape-interval", "50ms", "--push-coalesce", "20ms"]), { log, env: { WASM_EPP_PUSH_TOKEN: "v1-token" } });
    const d = await receiver.waitFor((x) => ready(c.ports)(x) && x.pools.length === 2, 10_000, "both pools");
    checkV1(d, c.ports);
    assert.deepEqual(d.pools.find((p) => p.name === "default/vllm-qwen-pool")!.endpoints.map((e) => e.address), IPS.map((ip) => `${ip}:${c.ports[1]}`));
  } finally {
    await sidecar?.stop();
    await receiver.down();
    await rm(dir, { recursive: true, force: true });
    await Promise.all(c.servers.map((s) => s.close()));
  }
});
