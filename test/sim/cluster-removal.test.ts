// Deleting pods during a run (cluster.removals): the view shows the deletion at once, the pod is
// no longer scraped, it serves for its grace period, and a request sent to it after that fails.

import { test } from "node:test";
import assert from "node:assert/strict";
import { simulate, type Router, type SimRequest } from "./cluster.ts";
import { atTimes, randomRequests } from "./workload.ts";

const list = randomRequests({ numPrompts: 60, inputLen: 200, outputLen: 10, rangeRatio: 0.5, seed: 3 });
// One request every 200 ms: 0 .. 11.8 s.
const items = list.map((req, k) => ({ at: k * 200, req }));

test("a deleted pod: removed in the view at once, not scraped, serves its grace, then refuses", async () => {
  const seen: Array<{ t: number; removed: boolean | undefined }> = [];
  const scrapedAfter: number[] = [];
  const finishedWithout: string[] = [];
  // Sends everything to pod 1, whatever the view says: the driver decides what becomes of it.
  const stubborn: Router = {
    name: "stubborn",
    route(_req, now, view) {
      seen.push({ t: now, removed: view.pods[1].removed });
      return 1;
    },
    onScrape(pod, _m, now) {
      if (pod === 1 && now >= 3000) scrapedAfter.push(now);
    },
    onFinished(req, _pod, _now, usage) {
      if (!usage) finishedWithout.push(req.id);
    },
  };
  const r = await simulate({
    cluster: { pods: 2, seed: 1, removals: [{ pod: 1, atMs: 3000, graceMs: 2000 }] },
    source: atTimes(items),
    router: stubborn,
    arrival: { kind: "open" },
  });
  assert.deepEqual(seen.filter((s) => s.t < 3000).map((s) => s.removed), seen.filter((s) => s.t < 3000).map(() => false));
  assert.ok(seen.filter((s) => s.t >= 3000).every((s) => s.removed === true));
  assert.deepEqual(scrapedAfter, [], "no scrape of the deleted pod");
  // Sent before 5 s (deletion + grace): served. From 5 s on: refused at once.
  const failed = r.failed ?? [];
  assert.equal(failed.length, items.filter((x) => x.at >= 5000).length);
  for (const f of failed) {
    assert.ok(f.sentMs >= 5000);
    assert.equal(f.failedMs, f.sentMs);
    assert.match(f.error, /pod-1 was removed: connection refused/);
  }
  assert.equal(r.requests.length, items.filter((x) => x.at < 5000).length);
  assert.deepEqual(finishedWithout.sort(), failed.map((f) => f.id).sort(), "the router hears of each failure");
  assert.equal(r.unfinished, 0);
});

test("a router that follows the view loses nothing; a closed loop goes on after failures", async () => {
  const follow: Router = {
    name: "follow",
    route(req, _now, view) {
      const live = view.pods.filter((p) => !p.removed);
      return live[Number(req.id.replace(/\D/g, "")) % live.length].index;
    },
  };
  const r = await simulate({
    cluster: { pods: 3, seed: 2, removals: [{ pod: 0, atMs: 1000, graceMs: 0 }] },
    source: atTimes(items),
    router: follow,
    arrival: { kind: "open" },
  });
  assert.equal(r.requests.length, items.length);
  assert.deepEqual(r.failed, []);
  assert.equal(r.requests.filter((q) => q.pod === 0 && q.sentMs >= 1000).length, 0);

  // Closed loop, every request to the deleted pod: the client goes on after each failure.
  const src = randomRequests({ numPrompts: 30, inputLen: 100, outputLen: 5, rangeRatio: 0.5, seed: 5 });
  let k = 0;
  const closed = await simulate({
    cluster: { pods: 2, seed: 2, removals: [{ pod: 1, atMs: 0, graceMs: 0 }] },
    source: { next: () => (k < src.length ? src[k++] : null), nextReadyAt: () => Infinity, exhausted: () => k >= src.length },
    router: { name: "to-1", route: () => 1 },
    arrival: { kind: "closed", concurrency: 4 },
  });
  assert.equal(closed.failed!.length, 30);
  assert.equal(closed.requests.length, 0);
  assert.equal(closed.unfinished, 0);
});

test("removals are checked", async () => {
  const run = (removals: Array<{ pod: number; atMs: number; graceMs?: number }>) =>
    simulate({ cluster: { pods: 2, removals }, source: atTimes([]), router: { name: "x", route: () => 0 }, arrival: { kind: "open" } });
  await assert.rejects(run([{ pod: 2, atMs: 0 }]), /pod 2 of 2/);
  await assert.rejects(run([{ pod: 0, atMs: -1 }]), /atMs and graceMs/);
});
