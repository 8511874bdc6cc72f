// wasm_epp_sidecar_scrape_to_push_seconds: from a scrape's completion to the listener accepting
// the first document that carries it — once per scrape and URL, never for a scrape a newer one
// overtook before it was sent; and, with real timers, a change after a quiet period reaching the
// listener in a few milliseconds rather than after --push-coalesce.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { Pod, Snapshot } from "../../sidecar/k8s/types.ts";
import type { ScrapeTarget, TargetRecord } from "../../sidecar/metrics/scraper.ts";
import { SidecarMetrics } from "../../sidecar/observability/metrics.ts";
import { Pusher } from "../../sidecar/push/pusher.ts";
import { TokenSource } from "../../sidecar/push/token.ts";
import { buildDocument, type Built } from "../../sidecar/state/document.ts";
import { Reconciler } from "../../sidecar/state/reconciler.ts";
import { PushReceiver } from "../fakes/push-receiver.ts";
import { memoryLogger, podObj, poolObj, sleep, waitUntil } from "./helpers.ts";

const SPEC = { key: "default/p", namespace: "default", name: "p", port: 8000, ports: [8000], api: "v1alpha2" as const, selector: { app: "q" }, strategy: "DEFAULT" as const, runtime: "vllm" as const };

// A document of pods a and b whose scrapes completed at these performance.now() times.
function built(scrapes: { a: number; b: number }): Built {
  const now = Date.now();
  const rec = (completedAt: number): TargetRecord => ({ firstSeenMs: now - 5000, attempts: 1, consecutiveUnreachable: 0, unreachable: false, lastSuccessMs: now, completedAt, metrics: { waiting: 1, running: 1, kvUsage: 0.1 } });
  return buildDocument({
    pools: [{ spec: SPEC, endpoints: [
      { pod: "a", ip: "10.0.0.1", k8sReady: true, firstSeenMs: now - 5000, record: rec(scrapes.a) },
      { pod: "b", ip: "10.0.0.2", k8sReady: true, firstSeenMs: now - 5000, record: rec(scrapes.b) },
    ] }],
    models: [],
    defaultNamespace: "default",
    metricsStaleMs: 1000,
    nowMs: now,
  });
}

function pusher(urls: string[], intervalMs = 60_000) {
  const delivered: Array<{ url: string; seconds: number }> = [];
  const p = new Pusher({
    urls,
    token: new TokenSource(undefined, { WASM_EPP_PUSH_TOKEN: "push-secret" }),
    timeoutMs: 1000,
    intervalMs,
    log: memoryLogger("error").log,
    observer: { pushed: () => {}, failed: () => {}, delivered: (url, seconds) => delivered.push({ url, seconds }) },
  });
  return { p, delivered };
}

test("each scrape is reported once per URL, when the first document carrying it is accepted", async () => {
  const r1 = await PushReceiver.start();
  const r2 = await PushReceiver.start();
  const t = pusher([r1.url, r2.url], 40);
  try {
    const a1 = performance.now() - 30;
    const b1 = performance.now() - 10;
    t.p.offer({ version: 1, built: built({ a: a1, b: b1 }) });
    await waitUntil(() => t.delivered.length === 4, 2000, "both scrapes at both URLs");
    for (const url of [r1.url, r2.url]) {
      const s = t.delivered.filter((d) => d.url === url).map((d) => d.seconds).sort((x, y) => x - y);
      assert.equal(s.length, 2, url);
      assert.ok(s[0] >= 0.01 && s[1] >= 0.03, `measured from the scrapes' completion: ${s}`);
      assert.ok(s[1] < 1, `${s}`);
    }
    t.delivered.length = 0;
    t.p.offer({ version: 2, built: built({ a: performance.now(), b: b1 }) }); // only a scraped again
    const twice = (r: PushReceiver) => r.docs.filter((d) => d.version === 2).length >= 2;
    await waitUntil(() => twice(r1) && twice(r2), 2000, "version 2 and its periodic re-push at both URLs");
    assert.deepEqual(t.delivered.map((d) => d.url).sort(), [r1.url, r2.url].sort(), "a's new scrape once per URL; b and the re-pushes report nothing");
  } finally {
    await t.p.stop();
    await r1.down();
    await r2.down();
  }
});

test("a scrape overtaken by a newer one of the same pod before it was sent is not reported", async () => {
  const r = await PushReceiver.start();
  r.delayMs = 80;
  const t = pusher([r.url]);
  try {
    const b = performance.now();
    t.p.offer({ version: 1, built: built({ a: performance.now(), b }) }); // in flight for 80 ms
    await sleep(10);
    t.p.offer({ version: 2, built: built({ a: performance.now(), b }) }); // waits, then replaced
    t.p.offer({ version: 3, built: built({ a: performance.now(), b }) });
    await r.waitFor((d) => d.version === 3, 2000);
    await waitUntil(() => t.delivered.length === 3, 1000, "reports");
    await sleep(50);
    assert.deepEqual(r.docs.map((d) => d.version), [1, 3]);
    assert.equal(t.delivered.length, 3, "a and b with version 1, a's third scrape with version 3; a's second never reached the listener");
    const last = t.delivered[2].seconds;
    assert.ok(last >= 0.07 && last < 0.5, `version 3 waited for version 1's answer: ${last}`);
  } finally {
    await t.p.stop();
    await r.down();
  }
});

test("real timers: a scrape after a quiet period reaches the listener in a few ms, not after the window; the histogram has it", async () => {
  const WINDOW = 300;
  const receiver = await PushReceiver.start();
  const url = new URL(receiver.url).href;
  const metrics = new SidecarMetrics(Date.now, [url]);
  const log = memoryLogger("error").log;
  const pusher = new Pusher({ urls: [url], token: new TokenSource(undefined, { WASM_EPP_PUSH_TOKEN: "push-secret" }), timeoutMs: 1000, intervalMs: 60_000, log, observer: metrics });
  const pods: Pod[] = [podObj("a", "10.0.0.1", { app: "q" })];
  const snapshot: Snapshot = { pools: [poolObj("p", { app: "q" })], models: [], policies: [], poolsV1: [], objectives: [], rewrites: [], podsFor: () => pods };
  const records = new Map<string, TargetRecord>();
  const reconciler = new Reconciler({
    source: { start: async () => {}, stop: async () => {}, synced: () => true, snapshot: () => snapshot },
    scraper: {
      setTargets: (ts: ScrapeTarget[]) => ts.forEach((x) => records.has(x.key) || records.set(x.key, { firstSeenMs: Date.now(), attempts: 0, consecutiveUnreachable: 0, unreachable: false })),
      record: (k) => records.get(k),
      allAttempted: () => true,
    },
    offer: (p) => pusher.offer(p),
    pools: [],
    defaultNamespace: "default",
    metricsStaleMs: 1000,
    spacingMs: WINDOW,
    firstPushWaitMs: 600,
    tickMs: 60_000,
    log,
  });
  // What the scraper does when a scrape succeeds.
  const scrape = (waiting: number) => {
    const rec = [...records.values()][0];
    rec.attempts++;
    rec.metrics = { waiting, running: 1, kvUsage: 0.2 };
    rec.lastSuccessMs = Date.now();
    rec.completedAt = performance.now();
    reconciler.markDirty();
  };
  const histogram = async () => {
    const text = await metrics.registry.metrics();
    const value = (suffix: string) => Number(new RegExp(`^wasm_epp_sidecar_scrape_to_push_seconds${suffix}\\{url="${url}"\\} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
    return { count: value("_count"), sum: value("_sum") };
  };
  try {
    reconciler.start();
    await waitUntil(() => records.size === 1, 1000, "the scrape target");
    scrape(1);
    await receiver.waitFor((d) => d.pools[0]?.endpoints[0]?.waiting === 1, 2000, "the first scrape");
    await sleep(WINDOW + 50); // quiet
    const before = await histogram();
    const t0 = performance.now();
    scrape(9);
    await receiver.waitFor((d) => d.pools[0].endpoints[0].waiting === 9, 2000, "the new value");
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < WINDOW / 3, `reached the listener after ${elapsed.toFixed(1)} ms; the window is ${WINDOW} ms`);
    // The listener has stored the document and its 204 is on the way back; reading the registry
    // blocks the event loop for a few ms (process metrics), so wait for the answer first.
    await sleep(20);
    let after = await histogram();
    for (let i = 0; i < 100 && after.count === before.count; i++) {
      await sleep(10);
      after = await histogram();
    }
    assert.equal(after.count - before.count, 1, "one scrape delivered");
    const observed = after.sum - before.sum;
    assert.ok(observed > 0 && observed < WINDOW / 3 / 1000, `observed ${(observed * 1000).toFixed(1)} ms`);
    assert.match(await metrics.registry.metrics(), /wasm_epp_sidecar_scrape_to_push_seconds_bucket\{le="0\.005",url="[^"]+"\} \d/);
  } finally {
    reconciler.stop();
    await pusher.stop();
    await receiver.down();
  }
});
