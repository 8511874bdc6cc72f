// Prefill/decode pools in the state document (pd on the pool, role on each endpoint, role-less
// Pods left out), SGLang's per-role queues in the scraped metrics, and the reconciler scraping
// each Pod for its role.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { PdSpec } from "../../sidecar/k8s/pd.ts";
import type { PoolSpec } from "../../sidecar/k8s/pool-spec.ts";
import type { Pod, Snapshot } from "../../sidecar/k8s/types.ts";
import { extract, metricNames, selectorFor, type ServerMetrics } from "../../sidecar/metrics/runtime.ts";
import type { ScrapeTarget, TargetRecord } from "../../sidecar/metrics/scraper.ts";
import { buildDocument, renderDocument, type BuildInput, type EndpointInput } from "../../sidecar/state/document.ts";
import { Reconciler, type ScrapeSet } from "../../sidecar/state/reconciler.ts";
import { validateState } from "../fakes/state-validator.ts";
import { memoryLogger, podObj, poolObj } from "./helpers.ts";

const NOW = 1_763_600_000_000;
const RBG = "rolebasedgroup.workloads.x-k8s.io/role";
const SELECTOR = { "alibabacloud.com/inference_backend": "sglang" };

const PD: PdSpec = { policy: "default/inference-policy", roleLabel: RBG, bootstrapPort: 34000, prefill: { strategy: "PREFIX_CACHE" }, decode: { strategy: "DEFAULT" } };

function spec(over: Partial<PoolSpec> = {}): PoolSpec {
  return { key: "default/qwen-inference-pool", namespace: "default", name: "qwen-inference-pool", port: 8000, ports: [8000], api: "v1alpha2", selector: SELECTOR, strategy: "DEFAULT", runtime: "sglang", pd: PD, ...over };
}

function ep(pod: string, ip: string, role: string | undefined, metrics: Partial<ServerMetrics> = {}): EndpointInput {
  const rec: TargetRecord = { firstSeenMs: NOW - 10_000, attempts: 3, consecutiveUnreachable: 0, unreachable: false, lastSuccessMs: NOW - 20, metrics: { waiting: 1, running: 2, kvUsage: 0.25, ...metrics } };
  return { pod, ip, k8sReady: true, firstSeenMs: NOW - 10_000, record: rec, labels: role === undefined ? { ...SELECTOR } : { ...SELECTOR, [RBG]: role } };
}

function input(endpoints: EndpointInput[], over: Partial<PoolSpec> = {}): BuildInput {
  return { pools: [{ spec: spec(over), endpoints }], models: [], defaultNamespace: "default", metricsStaleMs: 1000, nowMs: NOW };
}

function render(i: BuildInput) {
  const built = buildDocument(i);
  return { built, doc: JSON.parse(renderDocument(built, 7, NOW)) };
}

test("a P/D pool: pd before the endpoints, each endpoint's role after its address, the filter's checks pass", () => {
  const { built, doc } = render(input([ep("decode-0", "10.0.0.3", "decode"), ep("prefill-0", "10.0.0.1", "prefill"), ep("prefill-1", "10.0.0.2", " Prefill ")]));
  assert.deepEqual(built.issues, []);
  const pool = doc.pools[0];
  assert.deepEqual(Object.keys(pool), ["name", "strategy", "runtime", "pd", "endpoints"]);
  assert.deepEqual(pool.pd, { role_label: RBG, bootstrap_port: 34000, prefill: { strategy: "PREFIX_CACHE" }, decode: { strategy: "DEFAULT" } });
  assert.deepEqual(pool.endpoints.map((e: Record<string, unknown>) => [e.pod, e.role]), [["decode-0", "decode"], ["prefill-0", "prefill"], ["prefill-1", "prefill"]]);
  assert.deepEqual(Object.keys(pool.endpoints[0]).slice(0, 4), ["pod", "address", "role", "ready"]);
  assert.equal(validateState(doc), undefined);
});

test("Pods without a known role are left out, each with a pd_role_unknown warning", () => {
  const { built, doc } = render(input([ep("prefill-0", "10.0.0.1", "prefill"), ep("router-0", "10.0.0.9", "router"), ep("bare-0", "10.0.0.8", undefined), ep("decode-0", "10.0.0.3", "decode")]));
  assert.deepEqual(doc.pools[0].endpoints.map((e: Record<string, unknown>) => e.pod), ["decode-0", "prefill-0"]);
  assert.deepEqual(built.issues, [
    { code: "pd_role_unknown", message: `pool default/qwen-inference-pool pod bare-0: label ${RBG} is missing, not prefill or decode; pod left out` },
    { code: "pd_role_unknown", message: `pool default/qwen-inference-pool pod router-0: label ${RBG} is "router", not prefill or decode; pod left out` },
  ]);
  // Stats count only published pods.
  assert.equal(built.stats[0].readyPods, 2);
});

test("pools without pd, and their endpoints, carry neither member even when Pods have the label", () => {
  const { doc } = render(input([ep("prefill-0", "10.0.0.1", "prefill"), ep("x-0", "10.0.0.2", undefined)], { pd: undefined }));
  assert.equal("pd" in doc.pools[0], false);
  assert.deepEqual(doc.pools[0].endpoints.map((e: Record<string, unknown>) => [e.pod, "role" in e]), [["prefill-0", false], ["x-0", false]]);
});

test("a pool whose profile.pd cannot be used is published with no endpoints and no pd", () => {
  const { built, doc } = render(input([ep("prefill-0", "10.0.0.1", "prefill")], { pd: undefined, pdBlocked: true }));
  assert.deepEqual(doc.pools[0], { name: "default/qwen-inference-pool", strategy: "DEFAULT", runtime: "sglang", endpoints: [] });
  assert.deepEqual(built.issues, []);
});

test("an SGLang server whose engine_type disagrees with its role is reported, and still routed by its label", () => {
  const { built, doc } = render(input([ep("prefill-0", "10.0.0.1", "prefill", { engineType: "decode" }), ep("decode-0", "10.0.0.2", "decode", { engineType: "decode" }), ep("decode-1", "10.0.0.3", "decode", { engineType: "unified" })]));
  assert.equal(doc.pools[0].endpoints.length, 3);
  assert.deepEqual(built.issues.map((i) => i.code), ["pd_role_mismatch", "pd_role_mismatch"]);
  assert.match(built.issues[0].message, /pod decode-1: labelled decode \(rolebasedgroup.workloads.x-k8s.io\/role\) but the server reports engine_type unified; routed as decode/);
  assert.match(built.issues[1].message, /pod prefill-0: labelled prefill .* engine_type decode; routed as prefill/);
  // A disaggregated server in a pool without pd.
  const plain = render(input([ep("p-0", "10.0.0.1", undefined, { engineType: "prefill" }), ep("u-0", "10.0.0.2", undefined, { engineType: "unified" })], { pd: undefined }));
  assert.deepEqual(plain.built.issues.map((i) => i.code), ["pd_role_mismatch"]);
  assert.match(plain.built.issues[0].message, /pod p-0: the server reports engine_type prefill .* but no InferenceTrafficPolicy with profile.pd names the pool/);
});

// --- SGLang's per-role queues ----------------------------------------------------------------

function page(lines: string[]): Buffer {
  return Buffer.from(["# HELP sglang:num_queue_reqs The number of requests in the waiting queue.", "# TYPE sglang:num_queue_reqs gauge", ...lines, ""].join("\n"));
}

function scrape(text: Buffer, role?: "prefill" | "decode") {
  return extract("sglang", selectorFor("sglang", role).select(text).samples, role);
}

const CORE = (engine: string) => [
  `sglang:num_queue_reqs{engine_type="${engine}",model_name="qwen",pp_rank="0",tp_rank="0"} 3.0`,
  `sglang:num_running_reqs{engine_type="${engine}",model_name="qwen",pp_rank="0",tp_rank="0"} 5.0`,
  `sglang:token_usage{engine_type="${engine}",model_name="qwen",pp_rank="0",tp_rank="0"} 0.4`,
];

test("prefill: waiting adds the bootstrap queue, running the inflight (KV transfer) queue; decode queues are not read", () => {
  const text = page([
    ...CORE("prefill"),
    'sglang:num_prefill_bootstrap_queue_reqs{engine_type="prefill",model_name="qwen",pp_rank="0",tp_rank="0"} 4.0',
    'sglang:num_prefill_inflight_queue_reqs{engine_type="prefill",model_name="qwen",pp_rank="0",tp_rank="0"} 2.0',
    'sglang:num_decode_prealloc_queue_reqs{engine_type="prefill",model_name="qwen",pp_rank="0",tp_rank="0"} 100.0',
  ]);
  assert.deepEqual(scrape(text, "prefill"), { ok: true, metrics: { waiting: 7, running: 7, kvUsage: 0.4, engineType: "prefill" } });
  // Without a role (a pool without pd) only the core gauges count.
  assert.deepEqual(scrape(text), { ok: true, metrics: { waiting: 3, running: 5, kvUsage: 0.4, engineType: "prefill" } });
});

test("prefill on servers that name the bootstrap queue num_prefill_prealloc_queue_reqs", () => {
  const text = page([...CORE("prefill"), 'sglang:num_prefill_prealloc_queue_reqs{model_name="qwen",tp_rank="0"} 6.0', 'sglang:num_prefill_inflight_queue_reqs{model_name="qwen",tp_rank="0"} 1.0']);
  assert.deepEqual(scrape(text, "prefill"), { ok: true, metrics: { waiting: 9, running: 6, kvUsage: 0.4, engineType: "prefill" } });
  // When both names are present the current one wins (they count the same queue).
  const both = page([...CORE("prefill"), "sglang:num_prefill_bootstrap_queue_reqs 1.0", "sglang:num_prefill_prealloc_queue_reqs 6.0"]);
  assert.equal((scrape(both, "prefill") as { metrics: ServerMetrics }).metrics.waiting, 4);
});

test("decode: waiting adds the prealloc queue, running the transfer queue; prefill queues are not read", () => {
  const text = page([
    ...CORE("decode"),
    'sglang:num_decode_prealloc_queue_reqs{engine_type="decode",model_name="qwen",pp_rank="0",tp_rank="0"} 2.0',
    'sglang:num_decode_transfer_queue_reqs{engine_type="decode",model_name="qwen",pp_rank="0",tp_rank="0"} 8.0',
    'sglang:num_prefill_inflight_queue_reqs{engine_type="decode",model_name="qwen",pp_rank="0",tp_rank="0"} 50.0',
  ]);
  assert.deepEqual(scrape(text, "decode"), { ok: true, metrics: { waiting: 5, running: 13, kvUsage: 0.4, engineType: "decode" } });
});

test("the role queues are optional: servers without them count 0; NaN and negative values count 0", () => {
  assert.deepEqual(scrape(page(CORE("decode")), "decode"), { ok: true, metrics: { waiting: 3, running: 5, kvUsage: 0.4, engineType: "decode" } });
  const odd = page([...CORE("decode"), "sglang:num_decode_prealloc_queue_reqs NaN", "sglang:num_decode_transfer_queue_reqs -4.0"]);
  assert.deepEqual((scrape(odd, "decode") as { metrics: ServerMetrics }).metrics, { waiting: 3, running: 5, kvUsage: 0.4, engineType: "decode" });
  // A missing core gauge is still an error.
  const x = scrape(page(CORE("decode").slice(1)), "decode");
  assert.deepEqual(x, { ok: false, missing: ["sglang:num_queue_reqs"] });
});

test("per-priority breakdowns are not added to the total series", () => {
  const text = page([
    'sglang:num_queue_reqs{engine_type="decode",priority="",tp_rank="0"} 5.0',
    'sglang:num_queue_reqs{engine_type="decode",priority="0",tp_rank="0"} 2.0',
    'sglang:num_queue_reqs{engine_type="decode",priority="1",tp_rank="0"} 3.0',
    'sglang:num_running_reqs{engine_type="decode",priority="",tp_rank="0"} 4.0',
    'sglang:num_running_reqs{engine_type="decode",priority="1",tp_rank="0"} 4.0',
    'sglang:token_usage{engine_type="decode",priority="",tp_rank="0"} 0.5',
    'sglang:num_decode_transfer_queue_reqs{engine_type="decode",priority="",tp_rank="0"} 1.0',
    'sglang:num_decode_transfer_queue_reqs{engine_type="decode",priority="3",tp_rank="0"} 1.0',
  ]);
  assert.deepEqual(scrape(text, "decode"), { ok: true, metrics: { waiting: 5, running: 5, kvUsage: 0.5, engineType: "decode" } });
  // Data-parallel ranks still add up; breakdown-only pages are summed as they are.
  const dp = page(['sglang:num_queue_reqs{dp_rank="0"} 1.0', 'sglang:num_queue_reqs{dp_rank="1"} 2.0', 'sglang:num_running_reqs{priority="1"} 1.0', 'sglang:num_running_reqs{priority="2"} 2.0', "sglang:token_usage 0.1"]);
  assert.deepEqual(scrape(dp), { ok: true, metrics: { waiting: 3, running: 3, kvUsage: 0.1 } });
});

test("the role's gauge names are the only extra lines decoded", () => {
  const base = metricNames("sglang");
  assert.deepEqual(metricNames("sglang", "prefill").filter((n) => !base.includes(n)), ["sglang:num_prefill_bootstrap_queue_reqs", "sglang:num_prefill_prealloc_queue_reqs", "sglang:num_prefill_inflight_queue_reqs"]);
  assert.deepEqual(metricNames("sglang", "decode").filter((n) => !base.includes(n)), ["sglang:num_decode_prealloc_queue_reqs", "sglang:num_decode_transfer_queue_reqs"]);
  assert.deepEqual(metricNames("vllm", "decode"), metricNames("vllm"));
  assert.notEqual(selectorFor("sglang", "prefill"), selectorFor("sglang"));
  assert.equal(selectorFor("sglang", "prefill"), selectorFor("sglang", "prefill"));
});

// --- The reconciler -----------------------------------------------------------------------------

class RecordingScraper implements ScrapeSet {
  targets: ScrapeTarget[] = [];
  setTargets(targets: ScrapeTarget[]): void {
    this.targets = targets;
  }
  record(): TargetRecord | undefined {
    return undefined;
  }
  allAttempted(): boolean {
    return true;
  }
}

test("the reconciler scrapes each P/D Pod for its role, skips role-less Pods, and reports them once", () => {
  const pool = poolObj("qwen-inference-pool", SELECTOR);
  const pods: Pod[] = [
    podObj("prefill-0", "10.0.0.1", { ...SELECTOR, [RBG]: "prefill" }),
    podObj("decode-0", "10.0.0.2", { ...SELECTOR, [RBG]: "decode" }),
    podObj("router-0", "10.0.0.3", { ...SELECTOR, [RBG]: "router" }),
  ];
  const policies = [{ metadata: { name: "inference-policy", namespace: "default" }, spec: { poolRef: { name: "qwen-inference-pool" }, modelServerRuntime: "sglang", profile: { pd: { pdRoleLabelName: RBG, kvTransfer: { bootstrapPort: 34000 } } } } }];
  const snapshot: Snapshot = { pools: [pool], models: [], policies, poolsV1: [], objectives: [], rewrites: [], podsFor: () => pods };
  const scraper = new RecordingScraper();
  const { log, records } = memoryLogger("warn");
  const offered: unknown[] = [];
  const rec = new Reconciler({
    source: { start: async () => {}, stop: async () => {}, synced: () => true, snapshot: () => snapshot },
    scraper,
    offer: (p) => offered.push(p),
    pools: [],
    defaultNamespace: "default",
    metricsStaleMs: 1000,
    spacingMs: 0,
    firstPushWaitMs: 0,
    tickMs: 60_000,
    log,
    now: () => NOW,
  });
  rec.run();
  rec.run();
  assert.deepEqual(scraper.targets.map((t) => [t.pod, t.runtime, t.role]), [["prefill-0", "sglang", "prefill"], ["decode-0", "sglang", "decode"]]);
  assert.ok(scraper.targets.every((t) => t.key.endsWith(`|${t.role}`)), "the role is part of the target's identity");
  const built = rec.last!;
  assert.deepEqual(built.pools[0].pd, { role_label: RBG, bootstrap_port: 34000, prefill: { strategy: "DEFAULT" }, decode: { strategy: "DEFAULT" } });
  assert.deepEqual(built.pools[0].endpoints.map((e) => [e.pod, e.role]), [["decode-0", "decode"], ["prefill-0", "prefill"]]);
  assert.deepEqual(records.map((r) => [r.event, r.code]), [["pd_role_unknown", "pd_role_unknown"]], "logged once while it lasts");

  // A blocked profile: no Pods watched or scraped, no endpoints.
  policies[0].spec.profile.pd = { pdRoleLabelName: RBG, kvTransfer: { bootstrapPort: -1 } };
  rec.run();
  assert.deepEqual(scraper.targets, []);
  assert.deepEqual(rec.last!.pools[0].endpoints, []);
  assert.equal(rec.last!.pools[0].pd, undefined);
  assert.ok(records.some((r) => r.event === "pd_invalid"));
});
