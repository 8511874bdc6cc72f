// When the reconciler builds documents: at once after a quiet window (leading edge), changes
// within the window folded into one run at its end (trailing edge), never more than one per
// window, and a steady stream of scrapes neither starves nor postpones the trailing edge. Driven
// by a manual clock, so every time below is exact.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { Pod, Snapshot } from "../../sidecar/k8s/types.ts";
import type { ScrapeTarget, TargetRecord } from "../../sidecar/metrics/scraper.ts";
import type { Payload } from "../../sidecar/push/pusher.ts";
import { Reconciler, type ScrapeSet, type Timers } from "../../sidecar/state/reconciler.ts";
import { memoryLogger, podObj, poolObj } from "./helpers.ts";

const T0 = 1_763_600_000_000;
const WINDOW = 20;

// A clock that only moves when told to. after(0) is "the next turn": it runs on flush() or on the
// next advance(), never inside the call that scheduled it.
class ManualTimers implements Timers {
  private t = 0;
  private seq = 0;
  private queue: Array<{ due: number; seq: number; fn: () => void }> = [];

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): () => void {
    const entry = { due: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.queue.push(entry);
    return () => {
      this.queue = this.queue.filter((e) => e !== entry);
    };
  }

  // Runs what is due now, including what that schedules for now.
  flush(): void {
    this.advanceTo(this.t);
  }

  advanceTo(until: number): void {
    for (;;) {
      const due = this.queue.filter((e) => e.due <= until).sort((a, b) => a.due - b.due || a.seq - b.seq)[0];
      if (!due) break;
      this.queue = this.queue.filter((e) => e !== due);
      this.t = Math.max(this.t, due.due);
      due.fn();
    }
    this.t = until;
  }

  advance(ms: number): void {
    this.advanceTo(this.t + ms);
  }
}

// Pods p-0 … p-(n-1) of one pool; "scraping" one sets its record and marks the state dirty, as
// the scraper's onUpdate does.
class FakeScraper implements ScrapeSet {
  readonly records = new Map<string, TargetRecord>();
  private readonly keys = new Map<string, string>();
  attempted = true;

  constructor(private readonly timers: ManualTimers) {}

  setTargets(targets: ScrapeTarget[]): void {
    for (const t of targets) {
      this.keys.set(t.pod, t.key);
      if (!this.records.has(t.key)) this.records.set(t.key, { firstSeenMs: T0, attempts: 0, consecutiveUnreachable: 0, unreachable: false });
    }
  }

  record(key: string): TargetRecord | undefined {
    return this.records.get(key);
  }

  allAttempted(): boolean {
    return this.attempted;
  }

  scrape(pod: string, waiting: number): void {
    const rec = this.records.get(this.keys.get(pod)!)!;
    rec.attempts++;
    rec.metrics = { waiting, running: 1, kvUsage: 0.5 };
    rec.lastSuccessMs = T0 + this.timers.now();
    rec.completedAt = this.timers.now();
  }
}

function setup(pods = 1, spacingMs = WINDOW) {
  const timers = new ManualTimers();
  const scraper = new FakeScraper(timers);
  const podList: Pod[] = Array.from({ length: pods }, (_, i) => podObj(`p-${i}`, `10.0.0.${i + 1}`, { app: "q" }));
  const snapshot: Snapshot = { pools: [poolObj("pool", { app: "q" })], models: [], policies: [], poolsV1: [], objectives: [], rewrites: [], podsFor: () => podList };
  const docs: Array<{ at: number; payload: Payload }> = [];
  const rec = new Reconciler({
    source: { start: async () => {}, stop: async () => {}, synced: () => true, snapshot: () => snapshot },
    scraper,
    offer: (payload) => docs.push({ at: timers.now(), payload }),
    pools: [],
    defaultNamespace: "default",
    metricsStaleMs: 1000,
    spacingMs,
    firstPushWaitMs: 600,
    tickMs: 60_000,
    log: memoryLogger("error").log,
    now: () => T0 + timers.now(),
    timers,
  });
  // The pod's value in a document.
  const waiting = (d: { payload: Payload }, pod = "p-0") => d.payload.built.pools[0].endpoints.find((e) => e.pod === pod)!.waiting;
  const scrape = (pod: string, value: number) => {
    scraper.scrape(pod, value);
    rec.markDirty();
  };
  return { timers, scraper, rec, docs, waiting, scrape };
}

// A started reconciler that has pushed its first document and then been quiet for a while.
function quiet(pods = 1, spacingMs = WINDOW) {
  const s = setup(pods, spacingMs);
  s.rec.markDirty();
  s.timers.flush();
  for (let i = 0; i < pods; i++) s.scrape(`p-${i}`, 0);
  s.timers.advance(1000);
  s.docs.length = 0;
  return s;
}

test("leading edge: a change after a quiet window is built on the next turn, not after the window", () => {
  const s = quiet(3);
  const at = s.timers.now();
  s.scrape("p-0", 7);
  s.scrape("p-1", 8); // completes in the same I/O turn
  assert.equal(s.docs.length, 0, "not built inside the scrape's own callback");
  s.timers.flush();
  assert.equal(s.docs.length, 1, "built without waiting for the window");
  assert.equal(s.docs[0].at, at);
  assert.deepEqual([s.waiting(s.docs[0], "p-0"), s.waiting(s.docs[0], "p-1")], [7, 8], "scrapes of one turn make one document");
});

test("rate bound: changes all through one window make two documents, the leading and the trailing one", () => {
  const s = quiet();
  const start = s.timers.now();
  for (let i = 0; i < 10; i++) {
    s.timers.advanceTo(start + (i * (WINDOW - 1)) / 9); // from the window's start to 1 ms before its end
    s.scrape("p-0", i + 1);
  }
  s.timers.advance(5 * WINDOW);
  assert.deepEqual(s.docs.map((d) => d.at - start), [0, WINDOW]);
  assert.deepEqual(s.docs.map((d) => s.waiting(d)), [1, 10]);
});

test("trailing edge: it carries the last change of the window and comes at the window's end", () => {
  const s = quiet();
  const start = s.timers.now();
  s.scrape("p-0", 1);
  s.timers.advance(3);
  s.scrape("p-0", 2);
  s.timers.advance(WINDOW - 4);
  s.scrape("p-0", 3); // 1 ms before the window ends
  s.timers.advance(1);
  assert.equal(s.docs.length, 2);
  assert.equal(s.docs[1].at - start, WINDOW);
  assert.equal(s.waiting(s.docs[1]), 3);
  s.timers.advance(10 * WINDOW);
  assert.equal(s.docs.length, 2, "nothing more without a change");
});

test("no starvation: a steady stream from 100 pods gives one document per window, each with the newest values", () => {
  const pods = 100;
  const s = quiet(pods);
  // Each pod every 50–100 ms (the default jitter), with a fixed pseudo-random sequence.
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const start = s.timers.now();
  const next = Array.from({ length: pods }, () => start + random() * 100);
  let value = 0;
  const scrapedAt: number[] = [];
  const last = new Map<string, number>();
  const end = start + 2000;
  for (;;) {
    const t = Math.min(...next);
    if (t >= end) break;
    const i = next.indexOf(t);
    s.timers.advanceTo(t);
    s.scrape(`p-${i}`, ++value);
    scrapedAt.push(t);
    last.set(`p-${i}`, value);
    next[i] = t + 100 * (1 - 0.5 * random());
  }
  s.timers.advanceTo(end + 5 * WINDOW);
  assert.ok(scrapedAt.length > 2500, `${scrapedAt.length} scrapes`);
  const gaps = s.docs.slice(1).map((d, i) => d.at - s.docs[i].at);
  assert.ok(gaps.every((g) => g >= WINDOW), `never two documents within a window: ${gaps.filter((g) => g < WINDOW)}`);
  assert.ok(gaps.every((g) => g <= WINDOW), `no window without a document while scrapes arrive: ${Math.max(...gaps)}`);
  assert.ok(s.docs.length >= 2000 / WINDOW && s.docs.length <= 2000 / WINDOW + 1, `${s.docs.length} documents in 2 s`);
  const waits = scrapedAt.map((t) => s.docs.find((d) => d.at > t)!.at - t);
  assert.ok(Math.max(...waits) <= WINDOW, `every scrape is in a document within one window: ${Math.max(...waits)} ms`);
  const final = s.docs[s.docs.length - 1];
  for (const [pod, v] of last) assert.equal(s.waiting(final, pod), v, `${pod}: the last document has its newest value`);
});

test("--push-coalesce 0: every change is built on the next turn", () => {
  const s = quiet(1, 0);
  for (let i = 1; i <= 5; i++) {
    s.scrape("p-0", i);
    s.timers.flush();
  }
  assert.deepEqual(s.docs.map((d) => s.waiting(d)), [1, 2, 3, 4, 5]);
});

test("first push: waits for every pod's first scrape, then goes out on the next turn; or at the deadline", () => {
  const s = setup(2);
  s.scraper.attempted = false;
  s.rec.markDirty();
  s.timers.flush();
  s.scrape("p-0", 4);
  s.timers.advance(100);
  assert.equal(s.docs.length, 0, "p-1 not scraped yet");
  s.scraper.attempted = true;
  s.scrape("p-1", 5);
  s.timers.flush();
  assert.equal(s.docs.length, 1);
  assert.equal(s.docs[0].at, 100, "as soon as the last first scrape completes");

  const d = setup(2);
  d.scraper.attempted = false; // p-1 never answers
  d.rec.markDirty();
  d.timers.flush();
  d.timers.advance(599);
  assert.equal(d.docs.length, 0);
  d.timers.advance(WINDOW);
  assert.equal(d.docs.length, 1, "the deadline (firstPushWaitMs) lets the first document go");
  assert.equal(d.docs[0].at, 600);
});
