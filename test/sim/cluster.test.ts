import { test } from "node:test";
import assert from "node:assert/strict";
import { simulate, type Router, type SimRequest } from "./cluster.ts";
import { leastRequest, random, roundRobin } from "./routers.ts";
import { fromList, multiTurn, randomDataset, randomRequests } from "./workload.ts";
import { hashString } from "./rng.ts";
import { seedsBenchmark } from "./seeds-benchmark.ts";
import { scanExposition, type Sample } from "../../sidecar/metrics/exposition.ts";
import { extract } from "../../sidecar/metrics/runtime.ts";

// A pool under KV pressure: 4 pods with 1800 blocks (28.8k tokens) each, 96 requests of ~1.3k
// tokens in flight.
const loaded = (seed: number) => ({
  cluster: { pods: 4, engine: { kvBlocks: 1800 }, seed },
  source: randomDataset({ numPrompts: 800, inputLen: 1000, outputLen: 300, rangeRatio: 0.2, seed }),
  arrival: { kind: "closed" as const, concurrency: 96 },
});

test("routing matters: least-request beats random on TTFT p90 under load, and balances KV usage", async () => {
  for (const seed of [1, 2]) {
    const lr = await simulate({ ...loaded(seed), router: leastRequest({ seed }) });
    const rnd = await simulate({ ...loaded(seed), router: random(seed) });
    assert.equal(lr.requests.length, 800);
    assert.equal(rnd.requests.length, 800);
    assert.ok(lr.ttft.p90 < rnd.ttft.p90 / 2, `seed ${seed}: least-request p90 ${lr.ttft.p90} ms vs random ${rnd.ttft.p90} ms`);
    assert.ok(lr.kvSpread.meanRange < rnd.kvSpread.meanRange / 2, `KV spread ${lr.kvSpread.meanRange} vs ${rnd.kvSpread.meanRange}`);
    assert.ok(rnd.preemptions > lr.preemptions, `preemptions ${rnd.preemptions} vs ${lr.preemptions}`);
  }
});

test("every request finishes with its output length; records are consistent; runs are deterministic", async () => {
  const reqs = randomRequests({ numPrompts: 60, inputLen: 300, outputLen: 50, rangeRatio: 0.5, seed: 3 });
  const run = () => simulate({ cluster: { pods: 3 }, source: fromList(reqs), router: roundRobin(), arrival: { kind: "closed", concurrency: 12 } });
  const a = await run();
  const b = await run();
  assert.equal(a.requests.length, 60);
  assert.equal(a.unfinished, 0);
  const byId = new Map(reqs.map((r) => [r.id, r]));
  for (const r of a.requests) {
    const q = byId.get(r.id)!;
    assert.equal(r.outputTokens, q.maxTokens);
    assert.equal(r.promptTokens, q.tokens.length);
    assert.ok(r.sentMs <= r.firstTokenMs && r.firstTokenMs <= r.finishedMs);
    assert.ok(Math.abs(r.ttftMs + (r.outputTokens - 1) * r.tpotMs - r.e2eMs) < 1e-6);
  }
  assert.deepEqual(a.pods.map((p) => p.requests), [20, 20, 20]);
  assert.deepEqual(
    a.requests.map((r) => [r.id, r.pod, r.ttftMs]),
    b.requests.map((r) => [r.id, r.pod, r.ttftMs]),
  );
  // At most 12 requests in flight at any time.
  const edges = a.requests.flatMap((r) => [[r.sentMs, 1], [r.finishedMs, -1]]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let live = 0, peak = 0;
  for (const [, d] of edges) peak = Math.max(peak, (live += d));
  assert.equal(peak, 12);
  assert.ok(a.samples.tMs.length > 2 && a.samples.kvUsage.length === 3);
});

test("the router sees scraped metrics at most one scrape period old; only an oracle sees the engines", async () => {
  const ages: number[] = [];
  let sawEngines = false;
  const probe: Router = {
    name: "probe",
    route(_req, now, view) {
      for (const p of view.pods) {
        assert.ok(p.metrics, "metrics before routing");
        ages.push(now - p.metrics.scrapedAtMs);
      }
      sawEngines ||= view.engines !== undefined;
      return 0;
    },
  };
  const src = () => randomDataset({ numPrompts: 40, inputLen: 200, outputLen: 40, seed: 5 });
  await simulate({ cluster: { pods: 2 }, source: src(), router: probe, arrival: { kind: "closed", concurrency: 4 } });
  assert.equal(sawEngines, false);
  assert.ok(Math.max(...ages) <= 100, `max age ${Math.max(...ages)}`);
  assert.ok(ages.some((a) => a > 50), "ages reach past the base interval");
  // An oracle can ask the engines which one holds a prompt's prefix.
  let cachedSeen = 0;
  const oracle: Router = {
    name: "oracle",
    oracle: true,
    route(req, _now, view) {
      const hits = view.engines!.map((e) => e.cachedPrefixTokens(req.tokens, req.lora ?? null));
      cachedSeen = Math.max(cachedSeen, ...hits);
      return hits.indexOf(Math.max(...hits));
    },
  };
  const shared = Array.from({ length: 512 }, (_, i) => (i * 31) % 1000);
  const reqs: SimRequest[] = Array.from({ length: 6 }, (_, i) => ({ id: `o${i}`, tokens: shared.concat([i + 1, i + 2]), maxTokens: 4 }));
  const r = await simulate({ cluster: { pods: 3 }, source: fromList(reqs), router: oracle, arrival: { kind: "closed", concurrency: 1 } });
  assert.equal(cachedSeen, 512);
  assert.equal(new Set(r.requests.map((x) => x.pod)).size, 1);
  assert.ok(r.prefixHitRate > 0.8, `hit rate ${r.prefixHitRate}`);
});

test("multi-turn sessions: a turn is sent after the previous one finished and extends its prompt with the answer", async () => {
  const opts = { sessions: 24, turns: 4, systemLen: 600, userLen: 60, outputLen: 80, thinkTimeMs: 500, seed: 9 };
  const sent: SimRequest[] = [];
  const sticky: Router = {
    name: "session-affinity",
    route(req, _now, view) {
      sent.push(req);
      return hashString(req.sessionId ?? req.id) % view.pods.length;
    },
  };
  const cluster = { pods: 4 };
  const arrival = { kind: "closed" as const, concurrency: 16 };
  const aff = await simulate({ cluster, source: multiTurn(opts), router: sticky, arrival });
  assert.equal(aff.requests.length, 96);
  const rec = new Map(aff.requests.map((r) => [r.id, r]));
  for (const req of sent) {
    if (!req.turn) continue;
    const prev = rec.get(`${req.sessionId}-t${req.turn - 1}`)!;
    const cur = rec.get(req.id)!;
    assert.ok(cur.sentMs >= prev.finishedMs + 500, `${req.id} sent before its previous turn finished`);
    assert.equal(cur.promptTokens, prev.promptTokens + prev.outputTokens + 60);
  }
  const rnd = await simulate({ cluster, source: multiTurn(opts), router: random(4), arrival });
  assert.ok(aff.prefixHitRate > 0.6, `affinity hit rate ${aff.prefixHitRate}`);
  assert.ok(aff.prefixHitRate > rnd.prefixHitRate + 0.2, `affinity ${aff.prefixHitRate} vs random ${rnd.prefixHitRate}`);
});

test("poisson arrivals at a low rate: requests are sent at about the rate and never wait", async () => {
  const r = await simulate({
    cluster: { pods: 2, seed: 3 },
    source: randomDataset({ numPrompts: 200, inputLen: 100, outputLen: 10, seed: 4 }),
    router: leastRequest(),
    arrival: { kind: "poisson", ratePerSec: 2 },
  });
  assert.equal(r.requests.length, 200);
  const sends = r.requests.map((x) => x.sentMs).sort((a, b) => a - b);
  const meanGap = (sends[sends.length - 1] - sends[0]) / (sends.length - 1);
  assert.ok(meanGap > 400 && meanGap < 600, `mean gap ${meanGap} ms`);
  assert.ok(r.ttft.max < 200, `ttft max ${r.ttft.max}`);
});

test("a router may answer with a promise", async () => {
  const rr = roundRobin();
  const slow: Router = { name: "async", route: async (req, now, view) => rr.route(req, now, view) };
  const r = await simulate({
    cluster: { pods: 2 },
    source: randomDataset({ numPrompts: 10, inputLen: 50, outputLen: 5, seed: 1 }),
    router: slow,
    arrival: { kind: "closed", concurrency: 3 },
  });
  assert.equal(r.requests.length, 10);
  assert.deepEqual(r.pods.map((p) => p.requests), [5, 5]);
  await assert.rejects(
    simulate({ cluster: { pods: 2 }, source: randomDataset({ numPrompts: 1, inputLen: 5, outputLen: 1 }), router: { name: "bad", route: () => 7 }, arrival: { kind: "closed", concurrency: 1 } }),
    /returned pod 7/,
  );
});

test("the seeds' benchmark (5 pods, 3000 prompts of ~1550 in / ~1800 out, concurrency 200) simulates in seconds", async () => {
  const r = await simulate(seedsBenchmark(leastRequest()));
  assert.equal(r.requests.length, 3000);
  assert.ok(r.wallMs < 20_000, `wall ${r.wallMs} ms`);
  const prompts = r.requests.map((x) => x.promptTokens);
  assert.ok(Math.min(...prompts) >= 10 + 1240 && Math.max(...prompts) <= 10 + 1860);
  const outs = r.requests.map((x) => x.outputTokens);
  assert.ok(Math.min(...outs) >= 1440 && Math.max(...outs) <= 2160);
  // Five A10s at ~40 sequences each: roughly 700-900 output tokens/s per pod.
  assert.ok(r.outputTokensPerSec > 2500 && r.outputTokensPerSec < 6000, `throughput ${r.outputTokensPerSec}`);
  assert.ok(r.ttft.p50 > 250 && r.ttft.p50 < 1500, `ttft p50 ${r.ttft.p50}`);
  assert.ok(r.tpot.p50 > 35 && r.tpot.p50 < 80, `tpot p50 ${r.tpot.p50}`);
  // The workload fills an A10's KV cache: every pod runs hot.
  for (const p of r.pods) assert.ok(p.meanKvUsage > 0.7, `pod KV ${p.meanKvUsage}`);
});

test("onScrape hands a router each scrape and the pod's /metrics page as of that scrape", async () => {
  let checked = 0;
  const router: Router = {
    name: "scrape-probe",
    route: (_req, _now, view) => checked % view.pods.length,
    onScrape(pod, m, now, page) {
      assert.equal(m.scrapedAtMs, now);
      const samples = new Map<string, Sample[]>();
      scanExposition(page(), (s: Sample) => samples.set(s.name, [...(samples.get(s.name) ?? []), s]));
      const x = extract("vllm", samples);
      assert.ok(x.ok);
      assert.equal(x.metrics.running, m.running);
      assert.equal(x.metrics.waiting, m.waiting);
      assert.equal(x.metrics.kvUsage, m.kvUsage);
      assert.ok(pod >= 0 && pod < 2);
      checked++;
    },
  };
  await simulate({ cluster: { pods: 2 }, source: randomDataset({ numPrompts: 20, inputLen: 500, outputLen: 100, seed: 2 }), router, arrival: { kind: "closed", concurrency: 6 } });
  assert.ok(checked > 20, `${checked} scrapes`);
});
