// Routers that hold and reject requests in the cluster driver: decisions from route(), onTick and
// attach()'s control, conservation of requests, TTFT counted from the client's send.

import { test } from "node:test";
import assert from "node:assert/strict";
import { simulate, type ClusterResult, type HoldControl, type Router, type SimRequest } from "./cluster.ts";
import { roundRobin } from "./routers.ts";
import { atTimes, fromList, mergeSources, randomRequests, type Criticality, type RequestSource } from "./workload.ts";
import { priorityTraffic } from "./traffic.ts";

const reqs = (n: number, seed = 4) => randomRequests({ numPrompts: n, inputLen: 400, outputLen: 30, rangeRatio: 0.5, seed });

/** sent == completed + rejected, and no request in two places. */
function conserved(r: ClusterResult, sent: number): void {
  const rejected = r.rejected ?? [];
  assert.equal(r.requests.length + rejected.length, sent, `completed ${r.requests.length} + rejected ${rejected.length} of ${sent}`);
  assert.equal(r.unfinished, 0);
  const ids = new Set([...r.requests.map((q) => q.id), ...rejected.map((q) => q.id)]);
  assert.equal(ids.size, sent);
  // (On a P/D cluster each request counts on its decode pod and its prefill pod.)
  assert.equal(r.pods.filter((p) => p.role !== "prefill").reduce((a, p) => a + p.requests, 0), r.requests.length, "a rejected request never reached a pod");
}

test("route() may reject: the request is recorded with its status, never runs, and the source hears of it", async () => {
  const list = reqs(40);
  const heard: string[] = [];
  const src = fromList(list);
  src.onFinished = (req, out) => {
    if (out.length === 0) heard.push(req.id);
  };
  let k = 0;
  const router: Router = { name: "every-third-429", route: () => (k++ % 3 === 0 ? { reject: 429 } : k % 2) };
  const r = await simulate({ cluster: { pods: 2 }, source: src, router, arrival: { kind: "closed", concurrency: 4 } });
  conserved(r, 40);
  assert.equal(r.rejected!.length, 14);
  assert.ok(r.rejected!.every((x) => x.status === 429 && x.queuedMs === 0 && x.rejectedMs === x.sentMs));
  assert.deepEqual(heard, r.rejected!.map((x) => x.id), "without onRejected the source hears of a rejection as a request with no output");
  assert.equal(r.sentByCriticality, undefined, "no criticalities, no counts");
});

test("a held request's TTFT counts from the client's send: held 500 ms on an idle pod, TTFT grows by 500 ms", async () => {
  const [one] = reqs(1);
  const direct = await simulate({ cluster: { pods: 1, seed: 3 }, source: fromList([one]), router: roundRobin(), arrival: { kind: "open" } });
  const ticks: number[] = [];
  const router: Router = {
    name: "hold-500",
    route: () => ({ hold: true }),
    onTick(now) {
      ticks.push(now);
      return now >= 500 ? [{ id: one.id, pod: 0 }] : [];
    },
  };
  const held = await simulate({ cluster: { pods: 1, seed: 3 }, source: fromList([one]), router, arrival: { kind: "open" } });
  conserved(held, 1);
  const [a] = direct.requests, [b] = held.requests;
  assert.equal(b.sentMs, 0);
  assert.equal(b.queuedMs, 500);
  assert.equal(a.queuedMs, undefined, "only held requests have queuedMs");
  assert.ok(Math.abs(b.ttftMs - (a.ttftMs + 500)) < 1e-6, `${b.ttftMs} vs ${a.ttftMs} + 500`);
  assert.ok(Math.abs(b.e2eMs - (a.e2eMs + 500)) < 1e-6);
  assert.deepEqual(ticks, Array.from({ length: 50 }, (_, i) => (i + 1) * 10), "every 10 ms until nothing is held, then no more");
  assert.deepEqual(held.rejected, []);
});

test("requests still held when the source is exhausted are ticked to completion: released or timed out", async () => {
  const list = reqs(30);
  const items = list.map((req, i) => ({ at: i * 20, req }));
  // Holds everything; from 2 s on releases one request every other 25 ms tick, oldest first, and
  // answers 429 to any request held 2.5 s.
  const queue: Array<{ id: string; at: number }> = [];
  const router: Router = {
    name: "late-releaser",
    tickMs: 25,
    route(req, now) {
      queue.push({ id: req.id, at: now });
      return { hold: true };
    },
    onTick(now) {
      const out = [];
      while (queue.length > 0 && now - queue[0].at >= 2500) out.push({ id: queue.shift()!.id, reject: 429 });
      if (now >= 2000 && now % 50 === 0 && queue.length > 0) out.push({ id: queue.shift()!.id, pod: 0 });
      return out;
    },
  };
  const r = await simulate({ cluster: { pods: 1 }, source: atTimes(items), router, arrival: { kind: "open" } });
  conserved(r, 30);
  assert.ok(r.rejected!.length > 0 && r.requests.length > 0, `${r.requests.length} completed, ${r.rejected!.length} rejected`);
  for (const x of r.rejected!) assert.ok(x.queuedMs >= 2500 && x.queuedMs < 2525, `${x.id} held ${x.queuedMs}`);
  for (const q of r.requests) {
    assert.ok(q.queuedMs! >= 2000 - q.sentMs && q.ttftMs > q.queuedMs!, `${q.id}: queued ${q.queuedMs}, ttft ${q.ttftMs}`);
    assert.equal(q.firstTokenMs - q.sentMs, q.ttftMs);
  }
  assert.ok(Math.max(...r.requests.map((q) => q.sentMs + q.queuedMs!)) > items.at(-1)!.at, "released after the last was sent");
});

test("attach(): decisions from any hook — a router that lets one request run at a time releases the next when one finishes", async () => {
  const list = reqs(12);
  let control!: HoldControl;
  const waiting: string[] = [];
  let running = 0;
  const router: Router = {
    name: "one-at-a-time",
    attach: (c) => (control = c),
    route(req) {
      if (running === 0) {
        running++;
        return 0;
      }
      waiting.push(req.id);
      return { hold: true };
    },
    onFinished() {
      running--;
      const next = waiting.shift();
      if (next !== undefined) {
        running++;
        control.dispatch(next, 1);
      }
    },
  };
  const r = await simulate({ cluster: { pods: 2 }, source: fromList(list), router, arrival: { kind: "open" } });
  conserved(r, 12);
  const byStart = r.requests.slice().sort((a, b) => a.sentMs + (a.queuedMs ?? 0) - (b.sentMs + (b.queuedMs ?? 0)));
  for (let i = 1; i < byStart.length; i++) {
    const start = byStart[i].sentMs + byStart[i].queuedMs!;
    assert.equal(start, byStart[i - 1].finishedMs, "released the moment the previous one finished");
  }
  assert.deepEqual(r.pods.map((p) => p.requests), [1, 11]);
});

test("closed loop: held requests count as in flight, rejections free their slot", async () => {
  const list = reqs(30);
  const maxHeld: number[] = [];
  const holding = new Set<string>();
  const router: Router = {
    name: "hold-then-reject",
    route(req) {
      holding.add(req.id);
      maxHeld.push(holding.size);
      return { hold: true };
    },
    onTick() {
      const out = [...holding].map((id) => ({ id, reject: 429 }));
      holding.clear();
      return out;
    },
  };
  const r = await simulate({ cluster: { pods: 1 }, source: fromList(list), router, arrival: { kind: "closed", concurrency: 5 } });
  conserved(r, 30);
  assert.equal(r.requests.length, 0);
  assert.equal(Math.max(...maxHeld), 5, "never more held than the concurrency");
  assert.deepEqual([...new Set(r.rejected!.map((x) => x.rejectedMs))], [10, 20, 30, 40, 50, 60]);
});

test("a router that holds needs onTick or attach; a decision on a request it does not hold is an error", async () => {
  const list = reqs(3);
  await assert.rejects(
    simulate({ cluster: { pods: 1 }, source: fromList(list), router: { name: "bad", route: () => ({ hold: true }) }, arrival: { kind: "open" } }),
    /holds req-0 but has neither onTick nor attach/,
  );
  await assert.rejects(
    simulate({ cluster: { pods: 1 }, source: fromList(list), router: { name: "bad", route: () => ({ hold: true }), onTick: () => [{ id: "nope", pod: 0 }] }, arrival: { kind: "open" } }),
    /decided on nope, a request it does not hold/,
  );
  await assert.rejects(
    simulate({ cluster: { pods: 1 }, source: fromList(list), router: { name: "bad", route: () => ({ reject: 42 }) }, arrival: { kind: "open" } }),
    /rejected req-0 with status 42/,
  );
});

test("criticalities: records keep them, sentByCriticality counts them, rejections carry them", async () => {
  const bands: Criticality[] = ["Critical", "Standard", "Sheddable"];
  const list = reqs(30).map((q, i) => ({ ...q, criticality: bands[i % 3] }));
  const router: Router = { name: "shed", route: (req) => (req.criticality === "Sheddable" ? { reject: 429 } : 0) };
  const r = await simulate({ cluster: { pods: 1 }, source: fromList(list), router, arrival: { kind: "open" } });
  conserved(r, 30);
  assert.deepEqual(r.sentByCriticality, { Critical: 10, Standard: 10, Sheddable: 10 });
  assert.ok(r.rejected!.every((x) => x.criticality === "Sheddable"));
  assert.deepEqual(r.requests.map((q) => q.criticality).sort(), [...Array(10).fill("Critical"), ...Array(10).fill("Standard")]);
});

test("mergeSources tags each part's requests and sends completions and rejections back to it, as it made them", async () => {
  const made = (tag: string) => {
    const list = reqs(5, tag.length);
    const done: string[] = [];
    const src = fromList(list);
    src.onFinished = (req, out) => done.push(`${req.id}:${out.length > 0 ? "ok" : "none"}`);
    return { src, done };
  };
  const a = made("a"), b = made("bb");
  const merged = mergeSources([
    { tag: "a-", source: a.src, criticality: "Critical" },
    { tag: "b-", source: b.src },
  ]);
  const router: Router = { name: "r", route: (req) => (req.id === "b-req-1" ? { reject: 429 } : 0) };
  const r = await simulate({ cluster: { pods: 1 }, source: merged, router, arrival: { kind: "open" } });
  conserved(r, 10);
  assert.ok(r.requests.every((q) => (q.id.startsWith("a-") ? q.criticality === "Critical" : q.criticality === undefined)));
  assert.deepEqual(r.sentByCriticality, { Critical: 5 });
  assert.deepEqual(a.done.sort(), ["req-0:ok", "req-1:ok", "req-2:ok", "req-3:ok", "req-4:ok"]);
  assert.deepEqual(b.done.sort(), ["req-0:ok", "req-1:none", "req-2:ok", "req-3:ok", "req-4:ok"]);
});

test("priorityTraffic: each band at its rate for the duration, tagged; a band's requests the same without the others", () => {
  const traffic = { systemLen: 50, userLen: { median: 40, sigma: 0.5 }, outputLen: { median: 20, sigma: 0.3, min: 4 }, maxTurns: 1, turnGapMs: { median: 1000, sigma: 0 }, swing: 0, burstEveryMs: 0 };
  const bands = [
    { criticality: "Critical" as const, ratePerSec: 1, seed: 1 },
    { criticality: "Standard" as const, ratePerSec: 10, seed: 2 },
    { criticality: "Sheddable" as const, ratePerSec: 2, seed: 3 },
  ];
  const drain = (src: RequestSource) => {
    const out: Array<SimRequest & { at: number }> = [];
    let now = 0;
    while (!src.exhausted()) {
      for (let q = src.next(now); q; q = src.next(now)) {
        out.push({ ...q, at: now });
        src.onFinished?.(q, [1], now);
      }
      now = src.nextReadyAt(now);
      if (now === Infinity) break;
    }
    return out;
  };
  const all = drain(priorityTraffic({ traffic, bands, durationMs: 120_000 }));
  const count = (c: Criticality) => all.filter((q) => q.criticality === c).length;
  assert.deepEqual([count("Critical"), count("Standard"), count("Sheddable")], [120, 1200, 240]);
  assert.equal(new Set(all.map((q) => q.id)).size, all.length);
  assert.ok(all.every((q) => q.id.startsWith(`${q.criticality!.toLowerCase()}-`)));
  for (const c of ["Critical", "Standard", "Sheddable"] as const) {
    const ats = all.filter((q) => q.criticality === c).map((q) => q.at);
    assert.ok(ats[0] === 0 && ats.at(-1)! > 100_000 && ats.at(-1)! < 140_000, `${c} spans ~2 minutes: ${ats.at(-1)}`);
  }
  const alone = drain(priorityTraffic({ traffic, bands: bands.map((b) => (b.criticality === "Standard" ? { ...b, ratePerSec: 0 } : b)), durationMs: 120_000 }));
  const strip = (qs: typeof all) => qs.filter((q) => q.criticality !== "Standard").map((q) => [q.id, q.at, q.tokens.length, q.maxTokens]);
  assert.deepEqual(strip(alone), strip(all), "Critical and Sheddable requests identical without Standard");
});

test("P/D: a held request is released to a decode and a prefill pod; its TTFT counts from the client's send", async () => {
  const list = reqs(8);
  const waiting: string[] = [];
  const router: Router = {
    name: "pd-hold",
    route(req) {
      waiting.push(req.id);
      return { hold: true };
    },
    onTick(now) {
      // Releases one request every 100 ms.
      return now % 100 === 0 && waiting.length > 0 ? [{ id: waiting.shift()!, pod: { prefill: 0, decode: 1 } }] : [];
    },
  };
  const r = await simulate({ cluster: { pods: 2, pd: { prefill: 1 } }, source: fromList(list), router, arrival: { kind: "open" } });
  conserved(r, 8);
  assert.deepEqual(r.failed, []);
  assert.deepEqual(r.requests.map((q) => q.queuedMs).sort((a, b) => a! - b!), [100, 200, 300, 400, 500, 600, 700, 800]);
  for (const q of r.requests) {
    assert.equal(q.prefillPod, 0);
    assert.equal(q.pod, 1);
    assert.ok(q.sentMs === 0 && q.prefillFirstTokenMs! > q.queuedMs! && q.ttftMs > q.queuedMs!);
  }
});
