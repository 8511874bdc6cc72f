// The sidecar process in file mode, end to end: manifests in a directory, fake model servers on
// loopback addresses, a push receiver that answers like the filter.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeModelServer } from "../fakes/model-metrics.ts";
import { PushReceiver, type StoredDoc } from "../fakes/push-receiver.ts";
import { validateState } from "../fakes/state-validator.ts";
import { flagNames } from "../../sidecar/cli.ts";
import { modelObj, podObj, poolObj, toYaml } from "./helpers.ts";
import { runSidecar } from "./process.ts";

const IPS = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];

async function modelServersOnOnePort(): Promise<FakeModelServer[]> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const first = await FakeModelServer.start({ host: IPS[0], state: { waiting: 0, running: 3, kvUsage: 0.1 } });
    try {
      const rest = [];
      for (let i = 1; i < IPS.length; i++) rest.push(await FakeModelServer.start({ host: IPS[i], port: first.port, state: { waiting: 4 * i, running: 3, kvUsage: 0.1 + 0.3 * i } }));
      return [first, ...rest];
    } catch {
      await first.close();
    }
  }
  throw new Error("no common free port on the loopback addresses");
}

function endpoint(d: StoredDoc, pod: string) {
  return d.pools[0]?.endpoints.find((e) => e.pod === pod);
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

test("file mode end to end: publish, follow manifest and metric changes, survive a push outage, stop on SIGTERM", async (t) => {
  const servers = await modelServersOnOnePort();
  const port = servers[0].port;
  const receiver = await PushReceiver.start({ token: "file-mode-token" });
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-e2e-"));
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, "file-mode-token\n");
  const manifests = join(dir, "manifests");
  await import("node:fs/promises").then((fs) => fs.mkdir(manifests));
  const pool = poolObj("vllm-qwen-pool", { app: "qwen" }, { port });
  const pods = IPS.map((ip, i) => podObj(`qwen-${i}`, ip, { app: "qwen" }));
  const writePods = (list = pods) => writeFile(join(manifests, "pods.yaml"), toYaml(list));
  await writeFile(join(manifests, "pool.yaml"), toYaml([pool, modelObj("inferencemodel-qwen", "/model/qwen", "vllm-qwen-pool", { criticality: "Critical", targets: [{ name: "/model/qwen", weight: 100 }] })]));
  await writePods();

  const sidecar = runSidecar([
    "--manifests", manifests,
    "--push-url", receiver.url,
    "--push-token-file", tokenFile,
    "--metrics-port", "0",
    "--metrics-address", "127.0.0.1",
    "--scrape-interval", "50ms",
    "--push-interval", "300ms",
    "--push-coalesce", "20ms",
    "--unreachable-after", "2",
    "--log-level", "debug",
  ]);
  // Every document this test sees must be one the filter accepts.
  const invalid: string[] = [];
  const check = setInterval(() => {
    for (const d of receiver.docs) {
      const p = validateState(d);
      if (p) invalid.push(p);
    }
  }, 100);

  // The first document that reflects a change must come within one push of the sidecar noticing
  // it: every document generated later than `since + slack` has to show it.
  async function reflects(what: string, since: number, pred: (d: StoredDoc) => boolean, slackMs = 250): Promise<StoredDoc> {
    const doc = await receiver.waitFor(pred, 5000, what);
    const late = receiver.docs.filter((d) => d.generated_at_ms > since + slackMs && !pred(d));
    assert.deepEqual(late.map((d) => d.version), [], `${what}: documents generated after the change that do not show it`);
    return doc;
  }

  try {
    const started = await sidecar.waitForLog((r) => r.event === "started", 15_000, "start");
    const metricsPort = Number(started.metrics_port);

    await t.test("first document: the pool, its three pods with metrics and scores, the model", async () => {
      const d = await receiver.waitFor((x) => x.pools[0]?.endpoints.length === 3 && x.pools[0].endpoints.every((e) => e.metrics_age_ms < 1000), 10_000, "first state");
      assert.equal(d.pools[0].name, "default/vllm-qwen-pool");
      assert.equal(d.pools[0].strategy, "DEFAULT");
      assert.equal(d.pools[0].runtime, "vllm");
      assert.deepEqual(d.pools[0].endpoints.map((e) => [e.pod, e.address, e.ready]), IPS.map((ip, i) => [`qwen-${i}`, `${ip}:${port}`, true]));
      assert.deepEqual(d.pools[0].endpoints.map((e) => e.waiting), [0, 4, 8]);
      const scores = d.pools[0].endpoints.map((e) => e.score);
      assert.ok(scores[0] > scores[1] && scores[1] > scores[2], `the least loaded pod scores highest: ${scores}`);
      assert.equal(endpoint(d, "qwen-0")!.kv_block_size, 16);
      assert.deepEqual(d.models, [{ name: "/model/qwen", pool: "default/vllm-qwen-pool", criticality: "Critical", targets: [{ name: "/model/qwen", weight: 100 }] }]);
      assert.ok(d.version >= 1, "versioned");
    });

    await t.test("readiness, health and the sidecar's own metrics", async () => {
      assert.equal((await get(metricsPort, "/readyz")).status, 200);
      assert.equal((await get(metricsPort, "/healthz")).status, 200);
      const m = (await get(metricsPort, "/metrics")).body;
      assert.match(m, /inference_pool_ready_pods\{name="vllm-qwen-pool",namespace="default"\} 3/);
      assert.match(m, /inference_pool_average_queue_size\{name="vllm-qwen-pool",namespace="default"\} 4/);
      assert.match(m, /inference_pool_average_kv_cache_utilization\{name="vllm-qwen-pool",namespace="default"\} 0\.(4|39999)/);
      assert.match(m, /wasm_epp_sidecar_scrape_duration_seconds_count\{pool="default\/vllm-qwen-pool",pod="qwen-0"\} [1-9]/);
      assert.match(m, /wasm_epp_sidecar_push_duration_seconds_count\{url="[^"]+"\} [1-9]/);
      assert.match(m, /wasm_epp_sidecar_scrape_to_push_seconds_count\{url="[^"]+"\} [1-9]/);
      assert.match(m, /wasm_epp_sidecar_state_version [1-9]/);
      assert.match(m, /wasm_epp_sidecar_last_push_age_seconds\{url="[^"]+"\} 0\.\d+/);
    });

    await t.test("new metric values reach the filter", async () => {
      servers[0].set({ waiting: 6, kvUsage: 0.9 });
      const since = Date.now();
      await reflects("qwen-0's new queue", since, (d) => endpoint(d, "qwen-0")?.waiting === 6, 400);
    });

    await t.test("a pod turning unready in the manifests leaves the routing state within one push", async () => {
      sidecar.logs.length = 0;
      await writePods([podObj("qwen-0", IPS[0], { app: "qwen" }), podObj("qwen-1", IPS[1], { app: "qwen" }, { ready: false }), podObj("qwen-2", IPS[2], { app: "qwen" })]);
      const seen = await sidecar.waitForLog((r) => r.event === "manifest_loaded" && String(r.msg).endsWith("pods.yaml"), 5000, "reload");
      const doc = await reflects("qwen-1 not ready", Date.parse(String(seen.ts)), (d) => endpoint(d, "qwen-1")?.ready === false);
      assert.equal(endpoint(doc, "qwen-1")!.score, 0);
    });

    await t.test("a deleted pod leaves the routing state within one push", async () => {
      sidecar.logs.length = 0;
      await writePods([podObj("qwen-0", IPS[0], { app: "qwen" }), podObj("qwen-2", IPS[2], { app: "qwen" })]);
      const seen = await sidecar.waitForLog((r) => r.event === "manifest_loaded" && String(r.msg).endsWith("pods.yaml"), 5000, "reload");
      await reflects("qwen-1 gone", Date.parse(String(seen.ts)), (d) => d.pools[0].endpoints.length === 2 && !endpoint(d, "qwen-1"));
    });

    await t.test("a model added, re-weighted and deleted", async () => {
      const base = toYaml([pool, modelObj("inferencemodel-qwen", "/model/qwen", "vllm-qwen-pool", { criticality: "Critical", targets: [{ name: "/model/qwen", weight: 100 }] })]);
      const lora = (w1: number, w2: number) => modelObj("travel", "travel", "vllm-qwen-pool", { targets: [{ name: "travel-helper-v1", weight: w1 }, { name: "travel-helper-v2", weight: w2 }] });
      await writeFile(join(manifests, "lora.yaml"), toYaml([lora(90, 10)]));
      await receiver.waitFor((d) => d.models.some((m) => m.name === "travel" && m.targets?.[0].weight === 90), 5000, "model added");
      await writeFile(join(manifests, "lora.yaml"), toYaml([lora(50, 50)]));
      await receiver.waitFor((d) => d.models.some((m) => m.name === "travel" && m.targets?.[0].weight === 50), 5000, "model re-weighted");
      await rm(join(manifests, "lora.yaml"));
      const d = await receiver.waitFor((x) => !x.models.some((m) => m.name === "travel"), 5000, "model deleted");
      assert.deepEqual(d.models.map((m) => m.name), ["/model/qwen"]);
      assert.ok(base.length > 0, "base manifest unchanged");
    });

    await t.test("metrics endpoint down: published not ready, back when it answers again", async () => {
      await servers[2].close();
      const seen = await sidecar.waitForLog((r) => r.event === "pod_unreachable" && r.pod === "qwen-2", 5000, "unreachable");
      await reflects("qwen-2 unreachable", Date.parse(String(seen.ts)), (d) => endpoint(d, "qwen-2")?.ready === false);
      await servers[2].listen();
      await receiver.waitFor((d) => endpoint(d, "qwen-2")?.ready === true, 5000, "qwen-2 back");
    });

    await t.test("garbage metrics: the pod keeps its last values and stays routable", async () => {
      servers[0].behaviour = "garbage";
      await sidecar.waitForLog((r) => r.event === "scrape_failed" && r.code === "metrics_missing", 5000, "garbage noticed");
      const d = await receiver.next(() => true, 3000);
      assert.equal(endpoint(d, "qwen-0")!.ready, true);
      assert.equal(endpoint(d, "qwen-0")!.waiting, 6);
      servers[0].behaviour = "ok";
    });

    await t.test("push listener down, then up: pushing resumes with a newer document", async () => {
      await receiver.down();
      await sidecar.waitForLog((r) => r.event === "push_failed" && r.code === "push_unreachable", 5000, "push failure");
      const before = receiver.latest!.version;
      servers[0].set({ waiting: 2 });
      await receiver.up();
      const d = await receiver.next((x) => x.version > before, 5000, "push after the outage");
      await receiver.waitFor((x) => endpoint(x, "qwen-0")?.waiting === 2, 3000, "fresh values after the outage");
      assert.ok(d.version > before, "newer version");
      const m = (await get(metricsPort, "/metrics")).body;
      assert.match(m, /wasm_epp_sidecar_push_errors_total\{url="[^"]+",code="push_unreachable"\} [1-9]/);
    });

    await t.test("SIGTERM: stops watching and exits 0", async () => {
      const code = await sidecar.stop("SIGTERM");
      assert.equal(code, 0);
      assert.ok(sidecar.logs.some((r) => r.event === "stopped"), "logged its stop");
    });
    assert.deepEqual(invalid, [], "every pushed document passes the filter's validation");
  } finally {
    clearInterval(check);
    await sidecar.stop("SIGKILL");
    await receiver.down();
    await Promise.all(servers.map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  }
});

test("start-up errors: missing token file, no token, bad flag", async () => {
  const missing = runSidecar(["--manifests", "deploy/examples", "--push-token-file", "/nonexistent/push-token", "--metrics-port", "0"]);
  assert.equal(await missing.exited, 1);
  assert.ok(missing.stderr.some((l) => l.includes("--push-token-file /nonexistent/push-token: no such file")), missing.stderr.join("\n"));
  assert.ok(missing.logs.some((r) => r.event === "start_failed" && r.code === "token_file_unreadable"), "logged with its code");

  const none = runSidecar(["--manifests", "deploy/examples", "--metrics-port", "0"]);
  assert.equal(await none.exited, 1);
  assert.ok(none.stderr.some((l) => l.includes("WASM_EPP_PUSH_TOKEN")), none.stderr.join("\n"));

  const bad = runSidecar(["--scrape-interval", "fast"]);
  assert.equal(await bad.exited, 2);
  assert.ok(bad.stderr.some((l) => l.includes("--scrape-interval fast")), bad.stderr.join("\n"));
});

test("--help documents every flag", async () => {
  const help = runSidecar(["--help"]);
  assert.equal(await help.exited, 0);
  for (const f of flagNames()) assert.ok(help.stdout.includes(`--${f}`), `--${f} in --help`);
});
