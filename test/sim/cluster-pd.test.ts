import { test } from "node:test";
import assert from "node:assert/strict";
import { simulate, type PdRoute, type Router, type SimRequest } from "./cluster.ts";
import type { Engine } from "./engine.ts";
import { kvBytesPerToken, QWEN25_7B, RDMA_200G, TCP_25G } from "./cost-model.ts";
import { pdLeastRequest, pdRoundRobin, roundRobin } from "./routers.ts";
import { fromList, randomDataset, randomRequests, sharedPrefix } from "./workload.ts";
import { scanExposition, type Sample } from "../../sidecar/metrics/exposition.ts";
import { extract } from "../../sidecar/metrics/runtime.ts";

/** Wraps a router to see the engines (oracle) and count prefill-done calls. */
function probe(inner: Router) {
  const done: { id: string; pod: number; ok: boolean; now: number }[] = [];
  let engines: readonly Engine[] = [];
  const router: Router = {
    name: inner.name,
    oracle: true,
    route(req, now, view) {
      engines = view.engines!;
      return inner.route(req, now, view);
    },
    onPrefillDone(req, pod, ok, now) {
      done.push({ id: req.id, pod, ok, now });
    },
  };
  return { router, done, engines: () => engines };
}

test("P/D cluster: every request is prefilled once on a prefill pod and decoded once on a decode pod; the decode side never computes a prompt", async () => {
  const reqs = randomRequests({ numPrompts: 120, inputLen: 800, outputLen: 60, rangeRatio: 0.5, seed: 11 });
  const p = probe(pdLeastRequest({ seed: 3 }));
  const r = await simulate({ cluster: { pods: 5, pd: { prefill: 2 }, seed: 4 }, source: fromList(reqs), router: p.router, arrival: { kind: "closed", concurrency: 24 } });
  assert.equal(r.requests.length, 120);
  assert.equal(r.unfinished, 0);
  assert.deepEqual(r.failed, []);
  assert.deepEqual(r.pods.map((x) => x.role), ["prefill", "prefill", "decode", "decode", "decode"]);
  const byId = new Map(reqs.map((q) => [q.id, q]));
  for (const rec of r.requests) {
    assert.ok(rec.pod >= 2, `decoded on a decode pod: ${rec.pod}`);
    assert.ok(rec.prefillPod === 0 || rec.prefillPod === 1, `prefilled on a prefill pod: ${rec.prefillPod}`);
    assert.equal(rec.outputTokens, byId.get(rec.id)!.maxTokens);
    assert.ok(rec.sentMs < rec.prefillFirstTokenMs! && rec.prefillFirstTokenMs! < rec.kvArrivedMs! && rec.kvArrivedMs! <= rec.firstTokenMs);
    assert.ok(Math.abs(rec.kvTransferMs! - (rec.kvArrivedMs! - rec.prefillFirstTokenMs!)) < 1e-9);
  }
  // One prefill-done call per request, all successful, at the moment its KV arrived.
  assert.equal(p.done.length, 120);
  assert.equal(new Set(p.done.map((d) => d.id)).size, 120);
  const arrived = new Map(r.requests.map((x) => [x.id, x]));
  for (const d of p.done) {
    assert.ok(d.ok);
    assert.equal(d.pod, arrived.get(d.id)!.prefillPod);
    assert.equal(d.now, arrived.get(d.id)!.kvArrivedMs);
  }
  // Conservation on the engines: prefill pods finished 120 one-token requests, decode pods 120 full
  // ones, and no decode pod computed a prompt token (nothing was preempted).
  const snaps = p.engines().map((e) => e.snapshot());
  assert.equal(snaps[0].finished + snaps[1].finished, 120);
  assert.equal(snaps[0].generationTokens + snaps[1].generationTokens, 120);
  assert.equal(snaps[0].promptTokens + snaps[1].promptTokens, reqs.reduce((a, q) => a + q.tokens.length, 0));
  assert.equal(snaps[2].finished + snaps[3].finished + snaps[4].finished, 120);
  assert.equal(r.preemptions, 0);
  for (const s of snaps.slice(2)) assert.equal(s.promptTokens, 0, "decode pods never prefill");
  for (const s of snaps) {
    assert.equal(s.kvBlocksUsed, 0, "nothing held at the end");
    assert.deepEqual([s.pd!.bootstrapQueue, s.pd!.inflightQueue, s.pd!.preallocQueue, s.pd!.transferQueue], [0, 0, 0, 0]);
  }
  assert.equal(r.pods[0].requests + r.pods[1].requests, 120);
  assert.equal(r.pods[2].requests + r.pods[3].requests + r.pods[4].requests, 120);
});

test("P/D cluster: the client's TTFT includes the prefill, the KV transfer and the wait for the decode step", async () => {
  const reqs = randomRequests({ numPrompts: 6, inputLen: 3000, outputLen: 20, seed: 5 });
  const run = (link = RDMA_200G) =>
    simulate({ cluster: { pods: 2, pd: { prefill: 1, link }, seed: 1 }, source: fromList(reqs), router: pdRoundRobin(), arrival: { kind: "closed", concurrency: 1 } });
  const rdma = await run();
  const tcp = await run(TCP_25G);
  const bpt = kvBytesPerToken(QWEN25_7B);
  for (let k = 0; k < reqs.length; k++) {
    const a = rdma.requests[k];
    const b = tcp.requests[k];
    // One request at a time: the decode pod is idle when the KV lands, so the first token is
    // delivered at once; the prefill's last chunk (3000 = 2048 + 952) is the transfer's critical path.
    assert.equal(a.firstTokenMs, a.kvArrivedMs);
    const last = a.promptTokens - 2048;
    assert.ok(Math.abs(a.kvTransferMs! - ((last * bpt) / RDMA_200G.bandwidth) * 1000 - RDMA_200G.setupMs) < 1e-6, `${a.kvTransferMs}`);
    assert.ok(Math.abs(b.kvTransferMs! - ((last * bpt) / TCP_25G.bandwidth) * 1000 - TCP_25G.setupMs) < 1e-6, `${b.kvTransferMs}`);
    assert.ok(Math.abs(b.ttftMs - a.ttftMs - (b.kvTransferMs! - a.kvTransferMs!)) < 1e-6, "TTFT moves with the transfer time");
    assert.ok(a.ttftMs >= a.prefillFirstTokenMs! - a.sentMs + a.kvTransferMs!);
    assert.equal(a.promptTokens, reqs[k].tokens.length);
  }
  assert.ok(tcp.ttft.mean > rdma.ttft.mean);

  // Under load the first token waits for the decode pod's current step to end.
  const busy = await simulate({
    cluster: { pods: 3, pd: { prefill: 2 }, seed: 2 },
    source: randomDataset({ numPrompts: 80, inputLen: 1200, outputLen: 200, seed: 7 }),
    router: pdRoundRobin(),
    arrival: { kind: "closed", concurrency: 30 },
  });
  const waits = busy.requests.map((x) => x.firstTokenMs - x.kvArrivedMs!);
  assert.ok(waits.every((w) => w >= 0));
  assert.ok(waits.some((w) => w > 1), "some first tokens waited for a decode step boundary");
  assert.ok(busy.requests.every((x) => x.ttftMs >= x.prefillFirstTokenMs! - x.sentMs + x.kvTransferMs!));
});

test("P/D cluster: prefix-cache hits are on the prefill side and recorded per request", async () => {
  const src = () => sharedPrefix({ groups: 2, perGroup: 20, prefixLen: 1600, questionLen: 100, outputLen: 30, seed: 3 });
  // Both groups on one prefill pod: only the first request of each group misses.
  const r = await simulate({
    cluster: { pods: 3, pd: { prefill: 1 }, seed: 1 },
    source: src(),
    router: { name: "p0", route: (_q, _n, v) => ({ prefill: 0, decode: v.pods.length - 1 }) },
    arrival: { kind: "closed", concurrency: 4 },
  });
  const hits = r.requests.filter((x) => x.prefillCachedTokens! >= 1600).length;
  assert.ok(hits >= 36, `${hits} of 40 hit the shared prompt`);
  for (const x of r.requests) assert.equal(x.cachedTokens, x.prefillCachedTokens, "the decode side reports the prefill's hit, as SGLang does");
  assert.ok(r.prefixHitRate > 0.8);
  assert.ok(r.pods[0].prefixCacheHitRate > 0.8);
  assert.equal(r.pods[2].prefixCacheHitRate, 0, "no prefix cache on the decode side");
});

test("P/D cluster: routers see roles, per-role queues and SGLang's role-specific /metrics", async () => {
  const pages: Map<number, string> = new Map();
  const seen: string[] = [];
  const inner = pdLeastRequest();
  const router: Router = {
    name: "watch",
    route(req, now, view) {
      seen.push(view.pods.map((p) => p.role).join(","));
      for (const p of view.pods) assert.ok(p.metrics?.pd && p.metrics.pd.role === p.role);
      return inner.route(req, now, view);
    },
    onScrape(pod, m, _now, page) {
      assert.equal(m.pd!.role, pod === 0 ? "prefill" : "decode");
      pages.set(pod, page());
    },
  };
  await simulate({ cluster: { pods: 2, pd: { prefill: 1 } }, source: randomDataset({ numPrompts: 30, inputLen: 500, outputLen: 40, seed: 1 }), router, arrival: { kind: "closed", concurrency: 6 } });
  assert.ok(seen.every((s) => s === "prefill,decode"));
  const parse = (text: string) => {
    const samples = new Map<string, Sample[]>();
    const res = scanExposition(text, (s) => samples.set(s.name, [...(samples.get(s.name) ?? []), s]));
    assert.equal(res.invalid, 0);
    return samples;
  };
  const pre = parse(pages.get(0)!);
  const dec = parse(pages.get(1)!);
  assert.ok(pre.has("sglang:num_prefill_bootstrap_queue_reqs") && pre.has("sglang:num_prefill_inflight_queue_reqs"));
  assert.ok(!pre.has("sglang:num_decode_prealloc_queue_reqs"));
  assert.ok(pre.has("sglang:kv_transfer_latency_ms_bucket"));
  assert.ok(dec.has("sglang:num_decode_prealloc_queue_reqs") && dec.has("sglang:num_decode_transfer_queue_reqs"));
  assert.ok(!dec.has("sglang:num_prefill_bootstrap_queue_reqs"));
  for (const s of [pre, dec]) {
    assert.ok(s.has("sglang:num_bootstrap_failed_reqs_total") && s.has("sglang:num_transfer_failed_reqs_total"));
    // The sidecar reads SGLang's core gauges from either role's page.
    const x = extract("sglang", s);
    assert.ok(x.ok, JSON.stringify(x));
  }
});

test("P/D cluster: a router must name one pod of each role", async () => {
  const src = () => fromList(randomRequests({ numPrompts: 2, inputLen: 50, outputLen: 5, seed: 1 }));
  const arrival = { kind: "closed" as const, concurrency: 1 };
  await assert.rejects(simulate({ cluster: { pods: 2, pd: { prefill: 1 } }, source: src(), router: roundRobin(), arrival }), /P\/D cluster needs/);
  const swapped: Router = { name: "swapped", route: (): PdRoute => ({ prefill: 1, decode: 0 }) };
  await assert.rejects(simulate({ cluster: { pods: 2, pd: { prefill: 1 } }, source: src(), router: swapped, arrival }), /P\/D cluster needs/);
  const pair: Router = { name: "pair", route: (): PdRoute => ({ prefill: 0, decode: 1 }) };
  await assert.rejects(simulate({ cluster: { pods: 2 }, source: src(), router: pair, arrival }), /returned pod/);
  await assert.rejects(simulate({ cluster: { pods: 2, pd: { prefill: 2 } }, source: src(), router: pair, arrival }), RangeError);
});

test("P/D cluster: a decode request whose KV does not arrive in time fails on both sides and frees everything", async () => {
  // One prefill pod, long prompts, a 1.5 s waiting timeout: the queue behind the prefill outlasts it.
  const reqs: SimRequest[] = randomRequests({ numPrompts: 20, inputLen: 3000, outputLen: 10, seed: 9 });
  const p = probe(pdRoundRobin());
  const r = await simulate({ cluster: { pods: 2, pd: { prefill: 1, waitingTimeoutMs: 1500 } }, source: fromList(reqs), router: p.router, arrival: { kind: "open" } });
  assert.ok(r.failed!.length > 0 && r.requests.length > 0, `${r.failed!.length} failed, ${r.requests.length} finished`);
  assert.equal(r.failed!.length + r.requests.length, 20);
  for (const f of r.failed!) {
    assert.match(f.error, /^Request \S+ timed out after 1\.5s in KVPoll\.WaitingForInput$/);
    assert.equal(f.failedMs - f.sentMs, 1500);
  }
  assert.equal(p.done.length, 20, "every prefill ended once");
  assert.equal(p.done.filter((d) => !d.ok).length, r.failed!.length);
  for (const s of p.engines().map((e) => e.snapshot())) assert.equal(s.kvBlocksUsed, 0);
  assert.equal(r.unfinished, 0);
});

test("P/D cluster: runs are deterministic", async () => {
  const run = () =>
    simulate({ cluster: { pods: 4, pd: { prefill: 2 }, seed: 8 }, source: randomDataset({ numPrompts: 60, inputLen: 600, outputLen: 50, seed: 2 }), router: pdLeastRequest({ seed: 4 }), arrival: { kind: "poisson", ratePerSec: 8 } });
  const a = await run();
  const b = await run();
  assert.deepEqual(
    a.requests.map((x) => [x.id, x.pod, x.prefillPod, x.ttftMs, x.e2eMs]),
    b.requests.map((x) => [x.id, x.pod, x.prefillPod, x.ttftMs, x.e2eMs]),
  );
});
