// The seeds' SGLang prefill/decode manifests served by the sidecar, in file mode and in
// Kubernetes mode: the pool published with `pd`, its Pods with their roles and role-specific
// queues, role-less Pods left out, policy and label changes followed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseOptions } from "../../sidecar/cli.ts";
import { startSidecar, type Sidecar } from "../../sidecar/app.ts";
import { parseManifests } from "../../sidecar/k8s/manifests.ts";
import { FakeApiServer, type Obj } from "../fakes/apiserver.ts";
import { PushReceiver, type StoredDoc } from "../fakes/push-receiver.ts";
import { validateState } from "../fakes/state-validator.ts";
import { memoryLogger, podObj, toYaml } from "./helpers.ts";
import { ROOT } from "./process.ts";

const RBG = "rolebasedgroup.workloads.x-k8s.io/role";
const SELECTOR = { "alibabacloud.com/inference_backend": "sglang" };
const POOL = "default/qwen-inference-pool";

// An SGLang /metrics page of one role, as a disaggregated server exposes it.
function sglangPage(role: "prefill" | "decode", q: { queue: number; running: number; usage: number; a: number; b: number }): string {
  const l = `{engine_type="${role}",model_name="qwen",pp_rank="0",tp_rank="0"}`;
  const lines = [
    "# HELP sglang:num_running_reqs The number of running requests.",
    "# TYPE sglang:num_running_reqs gauge",
    `sglang:num_running_reqs${l} ${q.running}.0`,
    `sglang:num_queue_reqs${l} ${q.queue}.0`,
    `sglang:token_usage${l} ${q.usage}`,
    `sglang:gen_throughput${l} 12.5`,
  ];
  if (role === "prefill") lines.push(`sglang:num_prefill_bootstrap_queue_reqs${l} ${q.a}.0`, `sglang:num_prefill_inflight_queue_reqs${l} ${q.b}.0`);
  else lines.push(`sglang:num_decode_prealloc_queue_reqs${l} ${q.a}.0`, `sglang:num_decode_transfer_queue_reqs${l} ${q.b}.0`);
  for (const le of ["0.1", "1.0", "+Inf"]) lines.push(`sglang:time_to_first_token_seconds_bucket{le="${le}",model_name="qwen"} 10.0`);
  return lines.join("\n") + "\n";
}

interface PodServer {
  name: string;
  ip: string;
  role: string;
  page: string;
  server: http.Server;
}

// One metrics server per Pod, all on one port (the pool's targetPortNumber).
async function podServers(pods: Array<{ name: string; ip: string; role: string; page: string }>): Promise<{ port: number; servers: PodServer[] }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const started: PodServer[] = [];
    let port = 0;
    try {
      for (const p of pods) {
        const entry = { ...p } as PodServer;
        entry.server = http.createServer((req, res) => {
          if (req.url !== "/metrics") return void res.writeHead(404).end();
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(entry.page);
        });
        await new Promise<void>((resolve, reject) => {
          entry.server.once("error", reject);
          entry.server.listen(port, p.ip, () => resolve());
        });
        port = (entry.server.address() as AddressInfo).port;
        started.push(entry);
      }
      return { port, servers: started };
    } catch {
      await closeAll(started);
    }
  }
  throw new Error("no common free port on the loopback addresses");
}

async function closeAll(servers: PodServer[]): Promise<void> {
  for (const s of servers) {
    s.server.closeAllConnections();
    await new Promise<void>((resolve) => s.server.close(() => resolve()));
  }
}

const PODS = [
  { name: "prefill-0", ip: "127.0.0.51", role: "prefill", page: sglangPage("prefill", { queue: 1, running: 2, usage: 0.3, a: 4, b: 3 }) },
  { name: "prefill-1", ip: "127.0.0.52", role: "prefill", page: sglangPage("prefill", { queue: 0, running: 1, usage: 0.1, a: 0, b: 0 }) },
  { name: "decode-0", ip: "127.0.0.53", role: "decode", page: sglangPage("decode", { queue: 2, running: 30, usage: 0.6, a: 1, b: 5 }) },
  { name: "decode-1", ip: "127.0.0.54", role: " Decode ", page: sglangPage("decode", { queue: 0, running: 20, usage: 0.4, a: 0, b: 1 }) },
];
// Selected by the pool but neither prefill nor decode: never scraped, never published.
const ROUTER = { name: "router-0", ip: "127.0.0.55", role: "router" };

function podObjects(roles: Record<string, string | undefined> = {}): Obj[] {
  return [...PODS, ROUTER].map((p) => {
    const role = p.name in roles ? roles[p.name] : p.role;
    return podObj(p.name, p.ip, role === undefined ? { ...SELECTOR } : { ...SELECTOR, [RBG]: role });
  });
}

// A seed manifest with the pool's port replaced by the test's.
async function seedText(name: string, port: number): Promise<string> {
  const text = await readFile(join(ROOT, "deploy/examples/seeds", name), "utf8");
  assert.match(text, /targetPortNumber: 8000/);
  return text.replace("targetPortNumber: 8000", `targetPortNumber: ${port}`);
}

function pool(d: StoredDoc): Record<string, any> | undefined {
  return d.pools.find((p) => p.name === POOL);
}

function roles(d: StoredDoc): Array<[string, string, number, number]> {
  return (pool(d)?.endpoints ?? []).map((e: Record<string, any>) => [e.pod, e.role, e.waiting, e.running]);
}

const EXPECTED: Array<[string, string, number, number]> = [
  // decode: waiting = queue + prealloc, running + transfer; prefill: waiting = queue + bootstrap, running + inflight.
  ["decode-0", "decode", 3, 35],
  ["decode-1", "decode", 0, 21],
  ["prefill-0", "prefill", 5, 5],
  ["prefill-1", "prefill", 0, 1],
];

const PD_DEFAULT = { role_label: RBG, bootstrap_port: 34000, prefill: { strategy: "DEFAULT" }, decode: { strategy: "DEFAULT" } };
const PD_PREFIX = { role_label: RBG, bootstrap_port: 34000, prefill: { strategy: "PREFIX_CACHE" }, decode: { strategy: "PREFIX_CACHE" } };

function options(extra: string[], receiver: PushReceiver) {
  return parseOptions([...extra, "--push-url", receiver.url, "--metrics-port", "0", "--metrics-address", "127.0.0.1", "--scrape-interval", "50ms", "--push-coalesce", "20ms", "--push-interval", "500ms"]);
}

function complete(d: StoredDoc): boolean {
  const eps = pool(d)?.endpoints ?? [];
  return eps.length === 4 && eps.every((e: Record<string, any>) => e.metrics_age_ms < 1000);
}

test("file mode: the seeds' P/D manifests with labelled Pods", async (t) => {
  const { port, servers } = await podServers(PODS);
  const receiver = await PushReceiver.start({ token: "pd-files" });
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-pd-files-"));
  const manifests = join(dir, "manifests");
  await mkdir(manifests);
  await writeFile(join(manifests, "pd.yaml"), await seedText("default-sglang-prefill-decode.yaml", port));
  await writeFile(join(manifests, "pods.yaml"), toYaml(podObjects()));
  const { log, records } = memoryLogger("info");
  let sidecar: Sidecar | undefined;
  try {
    sidecar = await startSidecar(options(["--manifests", manifests], receiver), { log, env: { WASM_EPP_PUSH_TOKEN: "pd-files" }, manifestPollMs: 100 });

    await t.test("the pool carries pd; each endpoint its role and its role's queues; the router Pod is left out", async () => {
      const d = await receiver.waitFor(complete, 10_000, "P/D state");
      assert.deepEqual(pool(d)!.pd, PD_DEFAULT);
      assert.equal(pool(d)!.runtime, "sglang");
      assert.deepEqual(roles(d), EXPECTED);
      assert.deepEqual(pool(d)!.endpoints.map((e: Record<string, any>) => e.address), ["127.0.0.53", "127.0.0.54", "127.0.0.51", "127.0.0.52"].map((ip) => `${ip}:${port}`));
      const warning = records.find((r) => r.event === "pd_role_unknown");
      assert.ok(warning, "pd_role_unknown logged");
      assert.match(String(warning.msg), /pod router-0: label rolebasedgroup.workloads.x-k8s.io\/role is "router", not prefill or decode; pod left out/);
      assert.equal(sidecar!.scraper.size, 4, "the router Pod is not scraped");
    });

    await t.test("the prefix-cache seed's policy switches both roles to PREFIX_CACHE", async () => {
      await writeFile(join(manifests, "pd.yaml"), await seedText("prefix-cache-sglang-prefill-decode.yaml", port));
      const d = await receiver.waitFor((x) => JSON.stringify(pool(x)?.pd) === JSON.stringify(PD_PREFIX), 5000, "prefix-cache policy");
      assert.deepEqual(roles(d), EXPECTED);
    });

    await t.test("a Pod losing its role label leaves the document; a bad port empties the pool", async () => {
      await writeFile(join(manifests, "pods.yaml"), toYaml(podObjects({ "decode-1": undefined })));
      const d = await receiver.waitFor((x) => roles(x).length === 3, 5000, "decode-1 left out");
      assert.deepEqual(roles(d).map((r) => r[0]), ["decode-0", "prefill-0", "prefill-1"]);
      await writeFile(join(manifests, "pd.yaml"), (await seedText("prefix-cache-sglang-prefill-decode.yaml", port)).replace("bootstrapPort: 34000", "bootstrapPort: 340000"));
      const blocked = await receiver.waitFor((x) => pool(x)?.endpoints.length === 0, 5000, "blocked pool");
      assert.equal(pool(blocked)!.pd, undefined);
      assert.ok(records.some((r) => r.event === "pd_invalid" && /bootstrapPort must be a port number \(1-65535\), got 340000/.test(String(r.msg))));
    });

    await t.test("every pushed document passes the filter's checks", () => {
      for (const d of receiver.docs) assert.equal(validateState(d), undefined, `version ${d.version}`);
    });
  } finally {
    await sidecar?.stop();
    await receiver.down();
    await closeAll(servers);
    await rm(dir, { recursive: true, force: true });
  }
});

test("Kubernetes mode: the seeds' P/D policy and labelled Pods from the API server", async (t) => {
  const { port, servers } = await podServers(PODS);
  const api = await FakeApiServer.start({ bookmarkIntervalMs: 200 });
  const receiver = await PushReceiver.start({ token: "pd-kube" });
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-pd-kube-"));
  const kubeconfig = join(dir, "kubeconfig");
  await writeFile(kubeconfig, api.kubeconfigYaml());
  const seedObjects = async (name: string) => parseManifests(await seedText(name, port), "default", name).objects.map((o) => o.object as Obj);
  for (const o of await seedObjects("default-sglang-prefill-decode.yaml")) api.apply(o);
  for (const o of podObjects()) api.apply(o);
  const { log, records } = memoryLogger("info");
  let sidecar: Sidecar | undefined;
  try {
    sidecar = await startSidecar(options(["--kubeconfig", kubeconfig, "--namespace", "default"], receiver), { log, env: { WASM_EPP_PUSH_TOKEN: "pd-kube" } });

    await t.test("the pool carries pd; each endpoint its role and its role's queues; the router Pod is left out", async () => {
      const d = await receiver.waitFor(complete, 10_000, "P/D state");
      assert.deepEqual(pool(d)!.pd, PD_DEFAULT);
      assert.deepEqual(roles(d), EXPECTED);
      assert.ok(records.some((r) => r.event === "pd_role_unknown"));
    });

    await t.test("the policy updated to the prefix-cache seed's; a Pod relabelled", async () => {
      for (const o of await seedObjects("prefix-cache-sglang-prefill-decode.yaml")) if (o.kind === "InferenceTrafficPolicy") api.apply(o);
      await receiver.waitFor((x) => JSON.stringify(pool(x)?.pd) === JSON.stringify(PD_PREFIX), 5000, "prefix-cache policy");
      api.apply(podObjects({ "router-0": "prefill" }).find((o) => o.metadata.name === "router-0")!);
      // router-0 now has a role but no metrics server: published, stale and scoring 0 until scraped.
      const d = await receiver.waitFor((x) => roles(x).some((r) => r[0] === "router-0"), 5000, "router-0 as prefill");
      assert.equal(pool(d)!.endpoints.find((e: Record<string, any>) => e.pod === "router-0").role, "prefill");
    });

    await t.test("profile.pd removed from the policy: the pool is routed without pd, every selected Pod published without a role", async () => {
      const policy = (await seedObjects("default-sglang-prefill-decode.yaml")).find((o) => o.kind === "InferenceTrafficPolicy")!;
      api.apply({ ...policy, spec: { ...(policy.spec as object), profile: {} } });
      const d = await receiver.waitFor((x) => pool(x) !== undefined && pool(x)!.pd === undefined, 5000, "no pd");
      assert.equal(pool(d)!.endpoints.length, 5);
      assert.ok(pool(d)!.endpoints.every((e: Record<string, any>) => !("role" in e)));
      // The servers still report disaggregated engine types.
      await waitFor(() => records.some((r) => r.event === "pd_role_mismatch" && /no InferenceTrafficPolicy with profile.pd names the pool/.test(String(r.msg))));
    });

    await t.test("every pushed document passes the filter's checks", () => {
      for (const d of receiver.docs) assert.equal(validateState(d), undefined, `version ${d.version}`);
    });
  } finally {
    await sidecar?.stop();
    await receiver.down();
    await api.close();
    await closeAll(servers);
    await rm(dir, { recursive: true, force: true });
  }
});

async function waitFor(pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}
