// The benchmark's priority side: GIE's saturation detector and legacy shedding, the flow-control
// strategy's bands, TTL and capacity, the priority workloads and checks, and wasm-epp's adapter
// for held and rejected streams.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { simulate, type HeldDecision, type HoldControl, type PodMetrics, type PodView, type RouterView, type SimRequest } from "../../test/sim/cluster.ts";
import { priorityTraffic } from "../../test/sim/traffic.ts";
import type { Criticality } from "../../test/sim/workload.ts";
import { gie, poolSaturation } from "../../scripts/bench/strategies/gie.ts";
import { gieFlowControl, priorityOf } from "../../scripts/bench/strategies/gie-flow-control.ts";
import { wasmEpp } from "../../scripts/bench/strategies/wasm-epp.ts";
import { builtinWorkloads } from "../../scripts/bench/workloads.ts";
import { CRITICAL_SHARE, OVERLOAD, PRIORITY_CAPACITY, PRIORITY_PODS, PRIORITY_TRAFFIC, priorityBands, SHEDDABLE_SHARE } from "../../scripts/bench/priority-workloads.ts";
import { SEEDS_ENGINE } from "../../scripts/bench/trace-workload.ts";
import { priorityVerdicts, verdicts } from "../../scripts/bench/verdict.ts";
import { byCriticality } from "../../scripts/bench/metrics.ts";

const metrics = (waiting: number, kvUsage: number, scrapedAtMs = 0): PodMetrics => ({
  scrapedAtMs, waiting, running: 4, kvUsage, kvBlocksTotal: 1000, blockSize: 16, prefixCacheQueries: 0, prefixCacheHits: 0, lora: null,
});

/** A view whose pods' metrics the test sets. */
function fakeView(n: number): RouterView & { set(i: number, m: PodMetrics | null): void; now: number } {
  const ms: Array<PodMetrics | null> = new Array(n).fill(null).map(() => metrics(0, 0));
  const pods: PodView[] = ms.map((_, i) => ({ index: i, name: `pod-${i}`, address: `10.0.0.${10 + i}:8000`, get metrics() { return ms[i]; }, outstanding: 0 }));
  return { now: 0, pods, set: (i, m) => void (ms[i] = m) };
}

const req = (id: string, criticality?: Criticality): SimRequest => ({ id, tokens: Array.from({ length: 64 }, (_, i) => (i * 7 + id.length) % 1000), maxTokens: 8, ...(criticality ? { criticality } : {}) });

test("GIE's saturation: the mean over pods of max(waiting / 5, KV / 0.8); stale (> 200 ms) or missing metrics count 1.0", () => {
  const v = fakeView(4);
  v.set(0, metrics(5, 0.1)); // 1.0 by queue
  v.set(1, metrics(0, 0.4)); // 0.5 by KV
  v.set(2, metrics(2, 0.2)); // 0.4
  v.set(3, metrics(0, 0)); // 0
  assert.equal(poolSaturation(v.pods, 100), (1 + 0.5 + 0.4 + 0) / 4);
  assert.equal(poolSaturation(v.pods, 200), (1 + 0.5 + 0.4 + 0) / 4, "200 ms old is not stale");
  assert.equal(poolSaturation(v.pods, 201), 1, "every pod stale");
  v.set(3, null);
  assert.equal(poolSaturation(v.pods, 100), (1 + 0.5 + 0.4 + 1) / 4);
  assert.equal(poolSaturation([], 0), 1);
});

test("gie (legacy admission): Sheddable answered 429 while the pool is saturated, Critical and Standard always forwarded", () => {
  const v = fakeView(2);
  const r = gie(3);
  for (const c of ["Critical", "Standard", "Sheddable", undefined] as const) assert.equal(typeof r.route(req(`a-${c}`, c), 0, v), "number", `${c} forwarded when not saturated`);
  v.set(0, metrics(10, 0.5));
  v.set(1, metrics(0, 0.0)); // (2 + 0) / 2 = 1.0: saturated
  assert.deepEqual(r.route(req("s", "Sheddable"), 0, v), { reject: 429 });
  assert.equal(typeof r.route(req("c", "Critical"), 0, v), "number");
  assert.equal(typeof r.route(req("n"), 0, v), "number");
});

/** A flow-control router driven by hand: its decisions in order. */
function driven(options = {}) {
  const r = gieFlowControl(5, options);
  const decided: HeldDecision[] = [];
  const control: HoldControl = { dispatch: (id, pod) => void decided.push({ id, pod }), reject: (id, status) => void decided.push({ id, reject: status }) };
  r.attach!(control);
  const tick = (now: number, v: RouterView) => decided.push(...((r.onTick!(now, v) as HeldDecision[]) ?? []));
  return { r, decided, tick };
}

test("gie-flow-control: bands Critical > Standard > Sheddable, FCFS within a band, one dispatch per cycle, gated by saturation", () => {
  assert.deepEqual(["Critical", "Standard", undefined, "Sheddable"].map((c) => priorityOf(req("x", c as Criticality | undefined))), [1, 0, 0, -1]);
  const v = fakeView(2);
  v.set(0, metrics(10, 0.9));
  v.set(1, metrics(10, 0.9)); // saturated
  const { r, decided, tick } = driven();
  const arrivals: Array<[string, Criticality | undefined]> = [["sh1", "Sheddable"], ["st1", "Standard"], ["c1", "Critical"], ["st2", undefined], ["c2", "Critical"], ["sh2", "Sheddable"]];
  for (const [id, c] of arrivals) assert.deepEqual(r.route(req(id, c), 0, v), { hold: true }, `${id} held while saturated`);
  for (let t = 1; t <= 5; t++) tick(t, v);
  assert.equal(decided.length, 0, "nothing dispatched while saturated");
  v.set(0, metrics(0, 0.1)); // mean (0.125 + 2) / 2 = 1.06: still saturated
  tick(6, v);
  assert.equal(decided.length, 0);
  v.set(1, metrics(1, 0.2)); // (0.125 + 0.25) / 2: not saturated
  for (let t = 7; t <= 12; t++) tick(t, v);
  assert.deepEqual(decided.map((d) => d.id), ["c1", "c2", "st1", "st2", "sh1", "sh2"], "one per 1 ms cycle, highest band first, FCFS within");
  assert.ok(decided.every((d) => "pod" in d && (d.pod === 0 || d.pod === 1)));
  // No in-flight credits: the same metrics let every later arrival through at once.
  assert.equal(typeof r.route(req("late", "Standard"), 13, v), "number");
});

test("gie-flow-control: a request still queued after the TTL (60 s) is answered 429; a full band answers 429 at once", () => {
  const v = fakeView(1);
  v.set(0, metrics(20, 0.9));
  const { r, decided, tick } = driven({ maxRequests: 2 });
  assert.deepEqual(r.route(req("a", "Critical"), 0, v), { hold: true });
  assert.deepEqual(r.route(req("b", "Critical"), 10, v), { hold: true });
  assert.deepEqual(r.route(req("c", "Critical"), 20, v), { reject: 429 }, "band full (2 requests)");
  assert.deepEqual(r.route(req("d", "Standard"), 20, v), { hold: true }, "another band has room");
  tick(59_999, v);
  assert.equal(decided.length, 0);
  tick(60_000, v);
  assert.deepEqual(decided, [{ id: "a", reject: 429 }]);
  tick(60_010, v);
  assert.deepEqual(decided.slice(1), [{ id: "b", reject: 429 }]);
  const bytes = driven({ maxBytes: 700 });
  assert.deepEqual(bytes.r.route(req("big", "Standard"), 0, v), { hold: true }, "64 tokens: 320 bytes");
  assert.deepEqual(bytes.r.route(req("big2", "Standard"), 0, v), { hold: true });
  assert.deepEqual(bytes.r.route(req("big3", "Standard"), 0, v), { reject: 429 }, "bytes over the band's limit");
});

test("the priority workloads: rates from the capacity, the baseline the same Critical and Sheddable requests without Standard", () => {
  const ws = builtinWorkloads(true);
  const over = ws.find((w) => w.name === "priority-overload")!;
  const base = ws.find((w) => w.name === "priority-baseline")!;
  assert.equal(over.pods, PRIORITY_PODS);
  assert.equal(over.baseline, "priority-baseline");
  const bands = priorityBands(OVERLOAD * PRIORITY_CAPACITY);
  assert.deepEqual(bands.map((b) => [b.criticality, Math.round(b.ratePerSec * 100) / 100]), [["Critical", 2.49], ["Standard", 24.9], ["Sheddable", 4.98]]);
  assert.equal(CRITICAL_SHARE, 0.1);
  assert.equal(SHEDDABLE_SHARE, 0.2);
  const ids = (w: typeof over) => {
    const src = w.source(7);
    const out: string[] = [];
    let now = 0;
    while (now !== Infinity) {
      for (let q = src.next(now); q; q = src.next(now)) {
        out.push(`${q.criticality}:${q.id}@${now.toFixed(3)}:${q.tokens.length}`);
        src.onFinished?.(q, [], now);
      }
      now = src.nextReadyAt(now);
    }
    return out;
  };
  const o = ids(over), b = ids(base);
  assert.deepEqual(o.filter((x) => !x.startsWith("Standard:")), b, "the baseline's requests are the overload's minus Standard");
  const share = (c: string) => o.filter((x) => x.startsWith(`${c}:`)).length / o.filter((x) => x.startsWith("Standard:")).length;
  assert.ok(Math.abs(share("Critical") - 0.1) < 0.01 && Math.abs(share("Sheddable") - 0.2) < 0.01, `${share("Critical")} ${share("Sheddable")}`);
  const last = Math.max(...o.map((x) => Number(x.split("@")[1].split(":")[0])));
  assert.ok(last > 170_000 && last < 190_000, `quick: 3 minutes (${last} ms)`);
  const doc = readFileSync(new URL("../../docs/benchmark.md", import.meta.url), "utf8");
  const row = doc.split("\n").find((l) => l.startsWith("| `priority-overload` |") && l.split("|").length === 6);
  assert.ok(row, "priority-overload is in the calibration table");
  assert.equal(parseFloat(row!.split("|")[3].trim()), PRIORITY_CAPACITY);
});

test("gie-flow-control through the driver on a small overload: every request completed or answered 429, Critical ahead", async () => {
  const r = await simulate({
    cluster: { pods: 2, engine: SEEDS_ENGINE, seed: 7 },
    source: priorityTraffic({ traffic: PRIORITY_TRAFFIC, bands: priorityBands(1.5 * 8, { runSeed: 7 }), durationMs: 40_000 }),
    router: gieFlowControl(7, { ttlMs: 10_000 }),
    arrival: { kind: "open" },
  });
  const b = byCriticality([r]);
  for (const c of ["Critical", "Standard", "Sheddable"] as const) assert.equal(b[c].sent, b[c].completed + b[c].rejected, c);
  assert.ok(r.rejected!.every((x) => x.status === 429));
  assert.ok(b.Standard.rejected > 0, "the overload is shed at the TTL");
  // Without in-flight credits the pods' own queues overshoot, so even Critical requests can wait
  // out a short TTL behind them; but far fewer than Standard's.
  assert.ok(b.Critical.rejected / b.Critical.sent < b.Standard.rejected / b.Standard.sent / 2, `Critical ${b.Critical.rejected}/${b.Critical.sent}, Standard ${b.Standard.rejected}/${b.Standard.sent}`);
  assert.ok(b.Critical.ttft_p50_ms < b.Standard.ttft_p50_ms / 2, `Critical p50 ${b.Critical.ttft_p50_ms} vs Standard p50 ${b.Standard.ttft_p50_ms}`);
  assert.ok(r.requests.some((q) => q.queuedMs !== undefined));
});

test("wasm-epp through the filter with criticalities: three models, every request completed, or rejected with 429 (held or not)", async () => {
  const wasm = new Uint8Array(readFileSync(new URL("../../build/wasm-epp.wasm", import.meta.url)));
  const r = await simulate({
    cluster: { pods: 2, engine: SEEDS_ENGINE, seed: 7 },
    source: priorityTraffic({ traffic: PRIORITY_TRAFFIC, bands: priorityBands(1.5 * 8, { runSeed: 7 }), durationMs: 30_000 }),
    router: wasmEpp({ wasm, seed: 7 }),
    arrival: { kind: "open" },
  });
  const b = byCriticality([r]);
  for (const c of ["Critical", "Standard", "Sheddable"] as const) assert.equal(b[c].sent, b[c].completed + b[c].rejected, c);
  assert.ok(b.Sheddable.rejected > 0, "Sheddable shed while saturated");
  assert.ok(r.rejected!.every((x) => x.status === 429));
  assert.equal(r.unfinished, 0);
  for (const q of r.requests) assert.ok(q.queuedMs === undefined || (q.queuedMs >= 0 && q.ttftMs > q.queuedMs));
});

test("priority checks: conservation per band and strategy, Critical never rejected, wasm-epp's Critical p90 within 2x of the baseline, gie's grows", () => {
  const band = (sent: number, completed: number, rejected: number, p90: number) => ({ sent, completed, rejected, ttft_p90_ms: p90 });
  const rows = [
    { workload: "over", strategy: "gie", ttft_p90_ms: 1, baseline: "base", by_criticality: { Critical: band(10, 10, 0, 9000), Standard: band(100, 100, 0, 9000), Sheddable: band(20, 2, 18, 100) } },
    { workload: "over", strategy: "wasm-epp", ttft_p90_ms: 1, baseline: "base", by_criticality: { Critical: band(10, 10, 0, 590), Standard: band(100, 60, 40, 30_000), Sheddable: band(20, 5, 15, 300) } },
    { workload: "base", strategy: "gie", ttft_p90_ms: 1, by_criticality: { Critical: band(10, 10, 0, 400), Standard: band(0, 0, 0, NaN), Sheddable: band(20, 20, 0, 300) } },
    { workload: "base", strategy: "wasm-epp", ttft_p90_ms: 1, by_criticality: { Critical: band(10, 10, 0, 300), Standard: band(0, 0, 0, NaN), Sheddable: band(20, 20, 0, 300) } },
    { workload: "plain", strategy: "wasm-epp", ttft_p90_ms: 500 },
  ];
  const v = priorityVerdicts(rows);
  assert.deepEqual(Object.keys(v), ["over", "base"]);
  assert.deepEqual(Object.keys(verdicts(rows)), ["plain"], "the bar only where there are no criticalities");
  assert.deepEqual(v.over.nothing_lost, { pass: true, problems: [] });
  assert.deepEqual(v.over.critical_never_rejected, { pass: true, rejected: 0 });
  assert.deepEqual(v.over.critical_latency_holds, { pass: true, ratio: 1.9667, wasm_epp_p90_ms: 590, baseline_p90_ms: 300 });
  assert.deepEqual(v.over.gie_critical_grows, { pass: true, ratio: 22.5, gie_p90_ms: 9000, baseline_p90_ms: 400 });
  assert.equal(v.base.critical_latency_holds.pass, null, "no baseline of its own");
  const worse = priorityVerdicts([
    { ...rows[1], by_criticality: { ...rows[1].by_criticality, Critical: band(10, 8, 1, 610) }, rejected_not_429: 1 },
    rows[3],
  ]);
  assert.equal(worse.over.critical_latency_holds.pass, false);
  assert.deepEqual(worse.over.critical_never_rejected, { pass: false, rejected: 1 });
  assert.deepEqual(worse.over.nothing_lost, { pass: false, problems: ["wasm-epp Critical: sent 10, completed 8, rejected 1", "wasm-epp: 1 rejections not 429"] });
  assert.equal(worse.over.gie_critical_grows.pass, null, "gie was not run");
});
