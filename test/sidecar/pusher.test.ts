// The pusher against a receiver that answers like the filter's push listener.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pusher, type PusherOptions } from "../../sidecar/push/pusher.ts";
import { TokenSource } from "../../sidecar/push/token.ts";
import { buildDocument, type Built } from "../../sidecar/state/document.ts";
import type { ErrorCode } from "../../sidecar/errors.ts";
import { PushReceiver } from "../fakes/push-receiver.ts";
import { memoryLogger, sleep, waitUntil } from "./helpers.ts";

function built(waiting = 0): Built {
  const now = Date.now();
  return buildDocument({
    pools: [{
      spec: { key: "default/p", namespace: "default", name: "p", port: 8000, ports: [8000], api: "v1alpha2", selector: { app: "q" }, strategy: "DEFAULT", runtime: "vllm" },
      endpoints: [{ pod: "p-0", ip: "10.0.0.1", k8sReady: true, firstSeenMs: now - 5000, record: { firstSeenMs: now - 5000, attempts: 1, consecutiveUnreachable: 0, unreachable: false, lastSuccessMs: now - 20, metrics: { waiting, running: 1, kvUsage: 0.1 } } }],
    }],
    models: [],
    defaultNamespace: "default",
    metricsStaleMs: 1000,
    nowMs: now,
  });
}

function pusher(urls: string[], over: Partial<PusherOptions> = {}, token = "push-secret") {
  const { log, records } = memoryLogger();
  const failures: Array<[string, ErrorCode]> = [];
  const accepted: number[] = [];
  const p = new Pusher({
    urls,
    token: new TokenSource(undefined, { WASM_EPP_PUSH_TOKEN: token }),
    timeoutMs: 500,
    intervalMs: 60_000,
    log,
    backoffBaseMs: 20,
    backoffMaxMs: 100,
    observer: { pushed: () => {}, failed: (url, code) => failures.push([url, code]) },
    onAccepted: (_url, v) => accepted.push(v),
    ...over,
  });
  return { p, records, failures, accepted };
}

test("pushes the document with the bearer token; the listener stores it", async () => {
  const r = await PushReceiver.start();
  const t = pusher([r.url]);
  try {
    t.p.offer({ version: 1, built: built(3) });
    const doc = await r.waitFor((d) => d.version === 1, 2000);
    assert.equal(doc.pools[0].endpoints[0].waiting, 3);
    assert.ok(Math.abs(doc.generated_at_ms - Date.now()) < 1000, "generated_at_ms is wall-clock time");
    assert.ok(doc.pools[0].endpoints[0].metrics_age_ms >= 20, "metrics age counts from the scrape");
    await waitUntil(() => t.accepted.length === 1, 1000, "accepted callback");
    assert.deepEqual(r.answers.map((a) => a.status), [204]);
  } finally {
    await t.p.stop();
    await r.down();
  }
});

test("bursts coalesce: one request in flight, then only the newest document", async () => {
  const r = await PushReceiver.start();
  r.delayMs = 60;
  const t = pusher([r.url]);
  try {
    for (let v = 1; v <= 50; v++) {
      t.p.offer({ version: v, built: built(v) });
      await sleep(2);
    }
    await r.waitFor((d) => d.version === 50, 3000);
    const versions = r.docs.map((d) => d.version);
    assert.ok(versions.length < 10, `sent ${versions.length} documents for 50 offers: ${versions}`);
    assert.deepEqual([...versions].sort((a, b) => a - b), versions, "versions only go up");
    assert.equal(r.latest!.pools[0].endpoints[0].waiting, 50);
  } finally {
    await t.p.stop();
    await r.down();
  }
});

test("an unchanged document is re-pushed every push interval with a fresh generated_at_ms", async () => {
  const r = await PushReceiver.start();
  const t = pusher([r.url], { intervalMs: 60 });
  try {
    t.p.offer({ version: 7, built: built() });
    await waitUntil(() => r.docs.length >= 4, 2000, "periodic pushes");
    assert.ok(r.docs.every((d) => d.version === 7), "same version");
    const gens = r.docs.map((d) => d.generated_at_ms);
    assert.ok(gens.every((g, i) => i === 0 || g > gens[i - 1]), `generated_at_ms grows: ${gens}`);
    const ages = r.docs.map((d) => d.pools[0].endpoints[0].metrics_age_ms);
    assert.ok(ages[ages.length - 1] > ages[0], `metrics age grows: ${ages}`);
  } finally {
    await t.p.stop();
    await r.down();
  }
});

test("listener down, then up: failures back off, the newest document arrives once it is back", async () => {
  const r = await PushReceiver.start();
  const url = r.url;
  await r.down();
  const t = pusher([url]);
  try {
    t.p.offer({ version: 1, built: built(1) });
    await waitUntil(() => t.failures.length >= 3, 2000, "failed attempts");
    assert.ok(t.failures.every(([, c]) => c === "push_unreachable"), JSON.stringify(t.failures));
    t.p.offer({ version: 2, built: built(2) });
    assert.equal(t.records.filter((x) => x.event === "push_failed").length, 1, "logged once while it lasts");
    await r.up();
    const doc = await r.waitFor((d) => d.version === 2, 3000);
    assert.equal(doc.pools[0].endpoints[0].waiting, 2);
    assert.ok(!r.docs.some((d) => d.version === 1), "the stale version is not sent after the newer one");
    await waitUntil(() => t.records.some((x) => x.event === "push_recovered"), 1000, "recovery logged");
  } finally {
    await t.p.stop();
    await r.down();
  }
});

test("409: generated_at_ms moves past the stored document's and the push is retried", async () => {
  const r = await PushReceiver.start();
  const future = Date.now() + 3_600_000;
  r.preload({ version: 900, generated_at_ms: future, pools: [], models: [] });
  const t = pusher([r.url]);
  try {
    t.p.offer({ version: 1, built: built(5) });
    const doc = await r.waitFor((d) => d.version === 1, 2000);
    assert.ok(doc.generated_at_ms > future, "moved forward");
    assert.deepEqual(r.answers.map((a) => a.status), [409, 204]);
    assert.ok(t.failures.some(([, c]) => c === "push_conflict"), "counted");
    // Ages stay relative to generated_at_ms, so the filter computes the true metrics time.
    assert.ok(doc.pools[0].endpoints[0].metrics_age_ms > 3_600_000, "age includes the forward shift");
  } finally {
    await t.p.stop();
    await r.down();
  }
});

test("409 without a readable time in the message: the stored document is read back", async () => {
  const r = await PushReceiver.start();
  const future = Date.now() + 120_000;
  r.preload({ version: 900, generated_at_ms: future, pools: [], models: [] });
  // A listener whose 409 message carries no number.
  const original = (r as unknown as { answer: (...a: unknown[]) => void }).answer.bind(r);
  let first = true;
  (r as unknown as { answer: (...a: unknown[]) => void }).answer = (req: any, res: any, body: any, size: any) => {
    if (first && req.method === "POST") {
      first = false;
      res.writeHead(409, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "stale", type: "conflict_error", code: "stale_state" } }));
      return;
    }
    original(req, res, body, size);
  };
  const t = pusher([r.url]);
  try {
    t.p.offer({ version: 1, built: built() });
    const doc = await r.waitFor((d) => d.version === 1, 2000);
    assert.ok(doc.generated_at_ms > future, "moved past the stored time read with GET");
    assert.ok(r.answers.some((a) => a.status === 200), "GET used");
  } finally {
    await t.p.stop();
    await r.down();
  }
});

test("401: the token file is re-read, so a corrected token is used on the next retry", async () => {
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-token-"));
  const file = join(dir, "token");
  await writeFile(file, "wrong-token\n");
  const r = await PushReceiver.start({ token: "right-token" });
  const { log, records } = memoryLogger();
  const failures: ErrorCode[] = [];
  const p = new Pusher({ urls: [r.url], token: new TokenSource(file), timeoutMs: 500, intervalMs: 60_000, log, backoffBaseMs: 20, backoffMaxMs: 50, observer: { pushed: () => {}, failed: (_u, c) => failures.push(c) } });
  try {
    p.offer({ version: 1, built: built() });
    await waitUntil(() => failures.length >= 2, 2000, "401s");
    assert.ok(failures.every((c) => c === "push_unauthorized"), String(failures));
    assert.ok(records.some((x) => x.event === "push_failed" && x.level === "error" && x.code === "push_unauthorized"), "logged as an error");
    await writeFile(file, "right-token\n");
    await r.waitFor((d) => d.version === 1, 3000);
  } finally {
    await p.stop();
    await r.down();
    await rm(dir, { recursive: true, force: true });
  }
});

test("413 and 400 are reported with the listener's reason", async () => {
  const r = await PushReceiver.start({ maxBytes: 100 });
  const t = pusher([r.url]);
  try {
    t.p.offer({ version: 1, built: built() });
    await waitUntil(() => t.failures.some(([, c]) => c === "push_too_large"), 2000, "413");
    const rec = t.records.find((x) => x.event === "push_failed");
    assert.match(String(rec?.msg), /larger than 100 bytes/);
  } finally {
    await t.p.stop();
    await r.down();
  }
});

test("every URL is pushed independently: one down does not hold back the other", async () => {
  const up = await PushReceiver.start();
  const gone = await PushReceiver.start();
  await gone.down();
  const t = pusher([gone.url, up.url]);
  try {
    for (let v = 1; v <= 3; v++) {
      t.p.offer({ version: v, built: built(v) });
      await up.waitFor((d) => d.version === v, 2000);
    }
    assert.ok(t.failures.every(([u]) => u === gone.url), "only the absent listener fails");
  } finally {
    await t.p.stop();
    await up.down();
  }
});

test("stop() lets the push in flight finish", async () => {
  const r = await PushReceiver.start();
  r.delayMs = 200;
  const t = pusher([r.url]);
  try {
    t.p.offer({ version: 1, built: built() });
    await sleep(20);
    const t0 = Date.now();
    await t.p.stop();
    assert.ok(Date.now() - t0 >= 150, "waited for the answer");
    assert.equal(r.docs.length, 1);
    assert.deepEqual(t.accepted, [1]);
  } finally {
    await r.down();
  }
});

test("token: missing everywhere, unreadable file, empty file are clear errors", async () => {
  assert.throws(() => new TokenSource(undefined, {}), (e: Error & { code?: string }) => e.code === "token_missing" && /WASM_EPP_PUSH_TOKEN/.test(e.message));
  assert.throws(() => new TokenSource("/nonexistent/token"), (e: Error & { code?: string }) => e.code === "token_file_unreadable" && /no such file/.test(e.message));
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-token-"));
  try {
    await writeFile(join(dir, "empty"), "\n");
    assert.throws(() => new TokenSource(join(dir, "empty")), (e: Error & { code?: string }) => e.code === "token_file_unreadable" && /empty/.test(e.message));
    await writeFile(join(dir, "ok"), "  s3cret\n");
    assert.equal(new TokenSource(join(dir, "ok")).token, "s3cret");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("storedVersion reads the version the listeners hold, for a restarted sidecar to continue from", async () => {
  const a = await PushReceiver.start();
  const b = await PushReceiver.start();
  const gone = await PushReceiver.start();
  await gone.down();
  a.preload({ version: 41, generated_at_ms: Date.now() - 1000, pools: [], models: [] });
  b.preload({ version: 57, generated_at_ms: Date.now() - 1000, pools: [], models: [] });
  const none = await PushReceiver.start();
  const t = pusher([a.url, b.url, gone.url]);
  const empty = pusher([none.url]);
  try {
    assert.equal(await t.p.storedVersion(500), 57);
    assert.equal(await empty.p.storedVersion(500), undefined, "nothing stored yet (404)");
  } finally {
    await t.p.stop();
    await empty.p.stop();
    await a.down();
    await b.down();
    await none.down();
  }
});
