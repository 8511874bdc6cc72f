// The scraper against fake model servers that behave and misbehave.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Scraper, type ScrapeTarget, type ScraperOptions } from "../../sidecar/metrics/scraper.ts";
import type { ErrorCode } from "../../sidecar/errors.ts";
import { FakeModelServer, type Flavour } from "../fakes/model-metrics.ts";
import { memoryLogger, sleep, waitUntil } from "./helpers.ts";

function target(s: FakeModelServer, pod: string, runtime: "vllm" | "sglang" = "vllm"): ScrapeTarget {
  return { key: `p|${pod}|${s.host}|${s.port}|${runtime}`, pool: "default/p", pod, host: s.host, port: s.port, runtime };
}

function scraper(over: Partial<ScraperOptions> = {}) {
  const { log, records } = memoryLogger();
  const errors: Array<[string, ErrorCode]> = [];
  const ok: string[] = [];
  const updates: string[] = [];
  const forgotten: string[] = [];
  const s = new Scraper({
    intervalMs: 20,
    jitter: 0.5,
    timeoutMs: 200,
    concurrency: 8,
    maxBytes: 256 * 1024,
    unreachableAfter: 2,
    log,
    onUpdate: (k) => updates.push(k),
    observer: {
      scraped: (t) => ok.push(t.pod),
      failed: (t, code) => errors.push([t.pod, code]),
      forget: (t) => forgotten.push(t.pod),
    },
    ...over,
  });
  return { s, records, errors, ok, updates, forgotten };
}

async function servers(n: number, flavour: Flavour = "vllm-v1"): Promise<FakeModelServer[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => FakeModelServer.start({ flavour, state: { waiting: i, running: 2 * i, kvUsage: i / 10 } })));
}

test("scrapes each target repeatedly and records its metrics", async () => {
  const srv = await servers(3);
  srv.push(await FakeModelServer.start({ flavour: "sglang", state: { waiting: 7, kvUsage: 0.5 } }));
  srv.push(await FakeModelServer.start({ flavour: "vllm-v0", state: { waiting: 5, kvUsage: 0.25 } }));
  const t = scraper();
  try {
    const targets = srv.map((s, i) => target(s, `pod-${i}`, s.flavour === "sglang" ? "sglang" : "vllm"));
    t.s.setTargets(targets);
    await waitUntil(() => targets.every((tg) => (t.s.record(tg.key)?.attempts ?? 0) >= 3), 3000, "three scrapes of every pod");
    assert.equal(t.s.allAttempted(), true);
    assert.deepEqual(t.s.record(targets[2].key)!.metrics, { waiting: 2, running: 4, kvUsage: 0.2, loraRunning: [], loraWaiting: [], maxLora: 2, kvBlockSize: 16, kvBlocks: 27235 });
    assert.equal(t.s.record(targets[3].key)!.metrics!.waiting, 7);
    assert.equal(t.s.record(targets[4].key)!.metrics!.kvUsage, 0.25);
    assert.deepEqual(t.errors, []);
    assert.ok(t.updates.length >= 15, "t.updates.length >= 15");
    assert.ok(t.s.bytesParsed > 3 * 40_000, "t.s.bytesParsed > 3 * 40_000");
    // New values show up in the next scrape.
    srv[0].set({ waiting: 9 });
    await waitUntil(() => t.s.record(targets[0].key)!.metrics!.waiting === 9, 2000, "new value");
  } finally {
    await t.s.stop();
    await Promise.all(srv.map((s) => s.close()));
  }
});

test("a pod whose endpoint refuses connections is unreachable after N scrapes, and back after one success", async () => {
  const [srv, other] = await servers(2);
  const t = scraper({ unreachableAfter: 2 });
  try {
    const tg = target(srv, "a");
    t.s.setTargets([tg, target(other, "b")]);
    await waitUntil(() => t.s.record(tg.key)?.lastSuccessMs !== undefined, 2000, "first scrape");
    await srv.close();
    await waitUntil(() => t.s.record(tg.key)!.unreachable, 2000, "unreachable");
    // A scrape answered just before the close may have completed after it; none after that.
    const last = t.s.record(tg.key)!.lastSuccessMs!;
    await sleep(60);
    const rec = t.s.record(tg.key)!;
    assert.ok(rec.consecutiveUnreachable >= 2, "rec.consecutiveUnreachable >= 2");
    assert.equal(rec.lastError, "scrape_refused");
    assert.equal(rec.lastSuccessMs, last, "the last values and their time are kept");
    assert.equal(rec.metrics!.waiting, 0);
    assert.ok(t.records.some((r) => r.event === "pod_unreachable" && r.pod === "a"), "t.records.some((r) => r.event === \"pod_unreachable\" && r.pod === \"a\")");
    // Logged once when it starts, not on every attempt.
    await sleep(100);
    assert.equal(t.records.filter((r) => r.event === "scrape_failed" && r.pod === "a").length, 1);
    assert.ok(t.errors.filter(([p]) => p === "a").length >= 3, "t.errors.filter(([p]) => p === \"a\").length >= 3");
    await srv.listen();
    await waitUntil(() => !t.s.record(tg.key)!.unreachable, 2000, "reachable again");
    assert.ok(t.records.some((r) => r.event === "pod_reachable"), "t.records.some((r) => r.event === \"pod_reachable\")");
    assert.ok(t.s.record(tg.key)!.lastSuccessMs! > last, "t.s.record(tg.key)!.lastSuccessMs! > last");
  } finally {
    await t.s.stop();
    await srv.close();
    await other.close();
  }
});

test("a hung endpoint times out, counts as unreachable and does not stall the others", async () => {
  const [slow, fast] = await servers(2);
  slow.behaviour = "hang";
  const t = scraper({ timeoutMs: 100, concurrency: 2 });
  try {
    const tg = target(slow, "slow");
    t.s.setTargets([tg, target(fast, "fast")]);
    await sleep(400);
    assert.ok(fast.requests >= 8, `fast pod scraped ${fast.requests} times while the slow one hung`);
    assert.equal(t.s.record(tg.key)!.lastError, "scrape_timeout");
    assert.equal(t.s.record(tg.key)!.unreachable, true);
    // Slow but within the deadline is fine.
    slow.behaviour = "slow";
    slow.delayMs = 30;
    await waitUntil(() => !t.s.record(tg.key)!.unreachable, 2000, "slow pod answers within the deadline");
  } finally {
    await t.s.stop();
    await slow.close();
    await fast.close();
  }
});

test("garbage, truncated, huge and HTTP 500 answers keep the last values and the pod reachable", async () => {
  const [srv, other] = await servers(2);
  srv.set({ waiting: 4 });
  const t = scraper({ maxBytes: 200 * 1024 });
  try {
    const tg = target(srv, "bad");
    t.s.setTargets([tg, target(other, "good")]);
    await waitUntil(() => t.s.record(tg.key)?.metrics?.waiting === 4, 2000, "first scrape");
    for (const [behaviour, code] of [["garbage", "metrics_missing"], ["truncated", "scrape_truncated"], ["huge", "scrape_too_large"], ["status500", "scrape_http_status"]] as const) {
      srv.behaviour = behaviour;
      srv.set({ waiting: 99 });
      const otherBefore = other.requests;
      const errorsBefore = t.errors.filter(([p, c]) => p === "bad" && c === code).length;
      await waitUntil(() => t.errors.filter(([p, c]) => p === "bad" && c === code).length >= errorsBefore + 3, 3000, `${behaviour} -> ${code}`);
      // Meanwhile the other pod keeps being scraped.
      await waitUntil(() => other.requests >= otherBefore + 3, 3000, `${behaviour}: the other pod scraped`);
      const rec = t.s.record(tg.key)!;
      assert.equal(rec.metrics!.waiting, 4, `${behaviour}: last values kept`);
      assert.equal(rec.unreachable, false, `${behaviour}: the server answers, so it stays reachable`);
    }
    srv.behaviour = "ok";
    await waitUntil(() => t.s.record(tg.key)!.metrics!.waiting === 99, 2000, "recovered");
    assert.ok(t.records.some((r) => r.event === "scrape_recovered" && r.pod === "bad"), "t.records.some((r) => r.event === \"scrape_recovered\" && r.pod === \"bad\")");
  } finally {
    await t.s.stop();
    await srv.close();
    await other.close();
  }
});

test("removed targets stop being scraped and are forgotten", async () => {
  const [a, b] = await servers(2);
  const t = scraper();
  try {
    const ta = target(a, "a");
    t.s.setTargets([ta, target(b, "b")]);
    await waitUntil(() => a.requests >= 2 && b.requests >= 2, 2000, "both scraped");
    t.s.setTargets([target(b, "b")]);
    assert.equal(t.s.record(ta.key), undefined);
    assert.deepEqual(t.forgotten, ["a"]);
    await sleep(30);
    const frozen = a.requests;
    await sleep(150);
    assert.equal(a.requests, frozen);
    assert.ok(b.requests > 5, "b.requests > 5");
  } finally {
    await t.s.stop();
    await a.close();
    await b.close();
  }
});

test("the concurrency limit bounds scrapes in flight", async () => {
  const srv = await servers(6);
  for (const s of srv) {
    s.behaviour = "slow";
    s.delayMs = 40;
  }
  const t = scraper({ concurrency: 2, intervalMs: 10, timeoutMs: 1000 });
  try {
    t.s.setTargets(srv.map((s, i) => target(s, `p${i}`)));
    await sleep(400);
    const total = srv.reduce((n, s) => n + s.requests, 0);
    // At most 2 at a time, each >= 40 ms: at most ~2 * 400 / 40 = 20 in 400 ms.
    assert.ok(total <= 22, `${total} scrapes`);
    assert.ok(total >= 8, `${total} scrapes`);
  } finally {
    await t.s.stop();
    await Promise.all(srv.map((s) => s.close()));
  }
});

function filtered(s: FakeModelServer, pod: string, runtime: "vllm" | "sglang" = "vllm"): ScrapeTarget {
  return { ...target(s, pod, runtime), key: `f|${pod}`, nameFilter: true };
}

test("name[]: a filtered target asks for exactly the series it reads and gets a page a fraction of the size, with the same values", async () => {
  const [a, b] = await servers(2);
  const t = scraper();
  try {
    const whole = target(a, "whole");
    const some = filtered(b, "some");
    b.set({ waiting: 0, running: 0, kvUsage: 0 }); // the same state as a's
    t.s.setTargets([whole, some]);
    await waitUntil(() => (t.s.record(whole.key)?.attempts ?? 0) >= 2 && (t.s.record(some.key)?.attempts ?? 0) >= 2, 3000, "two scrapes each");
    assert.deepEqual(t.s.record(some.key)!.metrics, t.s.record(whole.key)!.metrics);
    assert.equal(a.urls.at(-1), "/metrics");
    const url = new URL(b.urls.at(-1)!, "http://x");
    assert.equal(url.pathname, "/metrics");
    assert.deepEqual(url.searchParams.getAll("name[]"), ["vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:lora_requests_info", "vllm:cache_config_info"]);
    assert.match(b.urls.at(-1)!, /^\/metrics\?name%5B%5D=vllm%3Anum_requests_waiting&/, "brackets and colons percent-encoded");
    const big = (await (await fetch(`http://${a.host}:${a.port}/metrics`)).arrayBuffer()).byteLength;
    const small = (await (await fetch(`http://${b.host}:${b.port}${b.urls.at(-1)}`)).arrayBuffer()).byteLength;
    assert.ok(small * 10 < big, `filtered ${small} bytes against ${big}`);
    assert.ok(!t.records.some((r) => r.event === "scrape_unfiltered"));
  } finally {
    await t.s.stop();
    await Promise.all([a, b].map((s) => s.close()));
  }
});

test("name[]: a server that ignores it works as before and keeps being asked filtered", async () => {
  const srv = await FakeModelServer.start({ state: { waiting: 4 }, nameFilter: "ignore" });
  const t = scraper();
  try {
    const tg = filtered(srv, "pod");
    t.s.setTargets([tg]);
    await waitUntil(() => (t.s.record(tg.key)?.attempts ?? 0) >= 3, 3000, "three scrapes");
    assert.equal(t.s.record(tg.key)!.metrics!.waiting, 4);
    assert.ok(srv.urls.every((u) => u.startsWith("/metrics?name%5B%5D=")), "every request filtered");
    assert.deepEqual(t.errors, []);
  } finally {
    await t.s.stop();
    await srv.close();
  }
});

test("name[]: an empty page (a multiprocess registry) or a 400 for the query string falls back to the whole page at once, and stays there", async () => {
  const multi = await FakeModelServer.start({ flavour: "sglang", state: { waiting: 6 }, nameFilter: "multiprocess" });
  const proxy = await FakeModelServer.start({ state: { waiting: 8 } });
  proxy.behaviour = "no-query";
  const t = scraper();
  try {
    const a = filtered(multi, "multi", "sglang");
    const b = filtered(proxy, "proxy");
    t.s.setTargets([a, b]);
    await waitUntil(() => (t.s.record(a.key)?.attempts ?? 0) >= 3 && (t.s.record(b.key)?.attempts ?? 0) >= 3, 3000, "three scrapes each");
    assert.equal(t.s.record(a.key)!.metrics!.waiting, 6);
    assert.equal(t.s.record(b.key)!.metrics!.waiting, 8);
    assert.deepEqual(t.errors, [], "the first scrape already succeeded, unfiltered");
    for (const srv of [multi, proxy]) {
      assert.match(srv.urls[0], /\?name%5B%5D=/);
      assert.equal(srv.urls[1], "/metrics");
      assert.ok(srv.urls.slice(1).every((u) => u === "/metrics"), `${srv.urls.join(" ")}`);
    }
    const logged = t.records.filter((r) => r.event === "scrape_unfiltered");
    assert.equal(logged.length, 2, "once per target");
    assert.match(String(logged.find((r) => r.pod === "proxy")!.msg), /failed \(scrape_http_status\)/);
    assert.match(String(logged.find((r) => r.pod === "multi")!.msg), /lacked the series read/);
  } finally {
    await t.s.stop();
    await Promise.all([multi, proxy].map((s) => s.close()));
  }
});

test("name[]: a page missing a series with or without the filter stays filtered and reports metrics_missing", async () => {
  const srv = await FakeModelServer.start();
  srv.behaviour = "garbage";
  const t = scraper();
  try {
    const tg = filtered(srv, "pod");
    t.s.setTargets([tg]);
    await waitUntil(() => (t.s.record(tg.key)?.attempts ?? 0) >= 2, 3000, "two scrapes");
    assert.equal(t.errors[0][1], "metrics_missing");
    assert.ok(!t.records.some((r) => r.event === "scrape_unfiltered"));
    // Every scrape asks filtered first, then for the whole page.
    assert.ok(srv.urls.length >= 4);
    srv.urls.forEach((u, i) => assert.equal(u.includes("?name%5B%5D="), i % 2 === 0, `request ${i}: ${u}`));
  } finally {
    await t.s.stop();
    await srv.close();
  }
});

test("name[]: turning a target's setting off or on applies from its next scrape and keeps its record", async () => {
  const srv = await FakeModelServer.start({ state: { waiting: 5 } });
  const t = scraper();
  try {
    const on = filtered(srv, "pod");
    t.s.setTargets([on]);
    await waitUntil(() => (t.s.record(on.key)?.attempts ?? 0) >= 2, 3000, "two filtered scrapes");
    const rec = t.s.record(on.key)!;
    t.s.setTargets([{ ...on, nameFilter: false }]);
    const from = srv.urls.length;
    await waitUntil(() => srv.urls.length >= from + 3, 3000, "three more scrapes");
    assert.equal(t.s.record(on.key), rec, "the same record");
    assert.ok(srv.urls.slice(from + 1).every((u) => u === "/metrics"), srv.urls.slice(from).join(" "));
    t.s.setTargets([on]);
    const again = srv.urls.length;
    await waitUntil(() => srv.urls.length >= again + 3, 3000, "three more scrapes");
    assert.ok(srv.urls.slice(again + 1).every((u) => u.startsWith("/metrics?name%5B%5D=")), srv.urls.slice(again).join(" "));
    assert.deepEqual(t.forgotten, [], "never forgotten");
  } finally {
    await t.s.stop();
    await srv.close();
  }
});
