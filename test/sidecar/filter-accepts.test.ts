// The real sidecar (build/sidecar.js) pushing to the real filter (build/wasm-epp.wasm) run by the
// proxy-wasm test host: the documents it produces are accepted, and requests are routed by the
// pods' load as the sidecar reports it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Gateway, DEST, POOL, TOKEN } from "../integration/harness.ts";
import { FakeModelServer } from "../fakes/model-metrics.ts";
import { modelObj, podObj, poolObj, toYaml, waitUntil } from "./helpers.ts";
import { ROOT } from "./process.ts";

const IPS = ["127.0.0.41", "127.0.0.42", "127.0.0.43"];
const BUNDLE = join(ROOT, "build", "sidecar.js");
const WASM = join(ROOT, "build", "wasm-epp.wasm");

// Builds when an output is missing or older than the sources it comes from.
function ensureBuilt(): void {
  const newest = (dir: string): number =>
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith(".ts"))
      .reduce((m, e) => Math.max(m, statSync(join(e.parentPath, e.name)).mtimeMs), 0);
  const stale = (out: string, src: string) => !existsSync(out) || statSync(out).mtimeMs < newest(join(ROOT, src));
  if (stale(BUNDLE, "sidecar") || stale(WASM, "assembly")) {
    const r = spawnSync(process.execPath, ["scripts/build.mjs"], { cwd: ROOT, encoding: "utf8" });
    assert.equal(r.status, 0, `build failed:\n${r.stdout}\n${r.stderr}`);
  }
}

test("the filter accepts the sidecar's documents and routes by the pods' load", async () => {
  ensureBuilt();
  const gw = new Gateway({ clock: "real", workers: 2 });

  // The push listener: HTTP in front of the host's push filter. `answers` holds the POST answers.
  const answers: number[] = [];
  let requests = 0;
  const bridge = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const r = await gw.push.worker(requests++ % 2).request({
        method: req.method ?? "POST",
        path: req.url ?? "/",
        headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k === "authorization" || k === "content-type").map(([k, v]) => [k, String(v)])),
        body: req.method === "GET" ? undefined : Buffer.concat(chunks),
      });
      if (req.method === "POST") answers.push(r.status);
      const headers: Record<string, string> = {};
      const ct = r.header("content-type");
      if (ct) headers["content-type"] = ct;
      res.writeHead(r.status, headers).end(r.kind === "local" ? r.body : undefined);
    });
  });
  await new Promise<void>((resolve) => bridge.listen(0, "127.0.0.1", () => resolve()));
  const pushUrl = `http://127.0.0.1:${(bridge.address() as AddressInfo).port}/wasm-epp/v1/state`;

  const first = await FakeModelServer.start({ host: IPS[0], state: { waiting: 20, running: 40, kvUsage: 0.9 } });
  const servers = [first];
  servers.push(await FakeModelServer.start({ host: IPS[1], port: first.port, state: { waiting: 3, running: 20, kvUsage: 0.5 } }));
  servers.push(await FakeModelServer.start({ host: IPS[2], port: first.port, state: { waiting: 0, running: 2, kvUsage: 0.1 } }));
  const port = first.port;
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-filter-"));
  await writeFile(join(dir, "cluster.yaml"), toYaml([
    poolObj("vllm-qwen-pool", { app: "qwen" }, { port }),
    modelObj("inferencemodel-qwen", "/model/qwen", "vllm-qwen-pool", { criticality: "Critical", targets: [{ name: "/model/qwen", weight: 100 }] }),
    ...IPS.map((ip, i) => podObj(`qwen-${i}`, ip, { app: "qwen" })),
  ]));
  const child = spawn(process.execPath, [BUNDLE, "--manifests", dir, "--push-url", pushUrl, "--metrics-port", "0", "--metrics-address", "127.0.0.1", "--scrape-interval", "50ms", "--push-coalesce", "20ms"], {
    env: { ...process.env, WASM_EPP_PUSH_TOKEN: TOKEN },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (c) => (stderr += c));

  const CHAT = { model: "/model/qwen", messages: [{ role: "user", content: "Write as if you were a critic: San Francisco" }] };
  const route = () => {
    const r = gw.chat(CHAT);
    assert.equal(r.kind, "upstream", `routed (got ${r.status} ${r.kind === "local" ? r.bodyText : ""})`);
    return r.header(DEST);
  };
  const stored = () => {
    const r = gw.pushRaw("", {}, 0, "GET");
    return r.status === 200 ? JSON.parse(r.bodyText) : undefined;
  };

  try {
    await waitUntil(() => {
      const d = stored();
      return d !== undefined && d.pools[0].endpoints.length === 3 && d.pools[0].endpoints.every((e: { metrics_age_ms: number }) => e.metrics_age_ms < 500);
    }, 15_000, `a stored document with fresh metrics (answers ${answers}; sidecar: ${stderr})`);
    assert.ok(answers.length > 0 && answers.every((s) => s === 204), `every push accepted: ${answers}`);
    assert.ok(gw.counter("push_accepted") >= 1, "the filter counted the accepted pushes");
    const doc = stored();
    assert.equal(doc.pools[0].name, POOL);
    assert.deepEqual(doc.models, [{ name: "/model/qwen", pool: POOL, criticality: "Critical", targets: [{ name: "/model/qwen", weight: 100 }] }]);

    // The idle pod takes the traffic.
    for (let i = 0; i < 10; i++) assert.equal(route(), `${IPS[2]}:${port}`, `request ${i} to the idle pod`);

    // Load moves: the idle pod gets busy, the busy one empties.
    servers[2].set({ waiting: 25, running: 40, kvUsage: 0.95 });
    servers[0].set({ waiting: 0, running: 1, kvUsage: 0.05 });
    await waitUntil(() => {
      const d = stored();
      const e = (pod: string) => d?.pools[0].endpoints.find((x: { pod: string }) => x.pod === pod);
      return e("qwen-2")?.waiting === 25 && e("qwen-0")?.waiting === 0;
    }, 5000, "the new load pushed");
    for (let i = 0; i < 10; i++) assert.equal(route(), `${IPS[0]}:${port}`, `request ${i} follows the load`);

    // A pod whose metrics endpoint dies is published not ready and gets nothing.
    await servers[0].close();
    await waitUntil(() => stored()?.pools[0].endpoints.find((x: { pod: string }) => x.pod === "qwen-0")?.ready === false, 5000, "qwen-0 not ready");
    for (let i = 0; i < 10; i++) assert.notEqual(route(), `${IPS[0]}:${port}`, `request ${i} avoids the dead pod`);

    assert.ok(answers.every((s) => s === 204), `no push refused: ${answers.filter((s) => s !== 204)}`);
    assert.deepEqual(gw.host.traps, []);
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.on("exit", r)));
    await new Promise<void>((r) => bridge.close(() => r()));
    await Promise.all(servers.map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
    // The filter's queue ticks on the real clock: shut the host down as Envoy would.
    gw.host.close();
  }
});
