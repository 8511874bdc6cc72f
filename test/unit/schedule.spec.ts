import { LoadView, PoolLoad, recordLoad, BUCKET_MS, BUCKETS } from "../../assembly/schedule/load";
import { queueScore, kvCacheScore, loraScore, prefixScore, ttftScore } from "../../assembly/schedule/scorers";
import { PickInput, pickEndpoint, isSaturated, outstanding, queued, cachedTokens, workMs, estimateTtftMs, podSaturation, PICKED, SHED, NO_ENDPOINT } from "../../assembly/schedule/pick";
import { Config } from "../../assembly/config";
import { Endpoint, Pool, SHEDDABLE, CRITICAL, STANDARD } from "../../assembly/state/document";
import { PrefixMatch } from "../../assembly/prefix/index";
import { MemoryStore } from "../../assembly/util/store";
import { Rng } from "../../assembly/util/rng";
import { fnv1a32 } from "../../assembly/util/hash";

const NOW: f64 = 1_000_000;



function ep(pod: string, waiting: f64, running: f64, kv: f64, score: f64 = 0.5): Endpoint {
  const e = new Endpoint();
  e.pod = pod;
  e.address = "10.0.0." + (pod.charCodeAt(pod.length - 1) - 0x30 + 1).toString() + ":8000";
  e.id = fnv1a32(e.address);
  e.waiting = waiting;
  e.running = running;
  e.kvUsage = kv;
  e.score = score;
  return e;
}

function pool(eps: Array<Endpoint>): Pool {
  const p = new Pool();
  p.name = "ns/p";
  for (let i = 0; i < eps.length; i++) p.addEndpoint(eps[i]);
  return p;
}

function input(p: Pool, load: LoadView = new LoadView(null)): PickInput {
  const i = new PickInput(p, new Config(), new PoolLoad(load));
  i.nowMs = NOW;
  i.generatedAtMs = NOW - 20;
  return i;
}

// Applies deltas to a record the way workers do, through fresh views.
function apply(buf: ArrayBuffer | null, id: u32, delta: i32, now: f64, max: i32 = 16, work: f64 = 0): ArrayBuffer | null {
  const next = new LoadView(buf).with(id, delta, now, max, work);
  return next !== null ? next : buf;
}

describe("LoadView", () => {
  it("keeps each endpoint's prefill backlog as a leaky bucket", () => {
    let b: ArrayBuffer | null = null;
    b = apply(b, 7, 1, NOW, 16, 200);
    b = apply(b, 7, 1, NOW + 50, 16, 100); // queued behind the first: due at NOW + 300
    b = apply(b, 9, 1, NOW + 50, 16, 0);
    let v = new LoadView(b);
    expect(v.backlogMs(v.find(7), NOW + 50)).toBe(250);
    expect(v.backlogMs(v.find(7), NOW + 400)).toBe(0);
    expect(v.backlogMs(v.find(9), NOW + 50)).toBe(0);
    expect(v.backlogMs(-1, NOW)).toBe(0);
    // A completion leaves it; work sent after the backlog drained starts from now.
    b = apply(b, 7, -1, NOW + 60);
    v = new LoadView(b);
    expect(v.backlogMs(v.find(7), NOW + 100)).toBe(200);
    b = apply(b, 7, 1, NOW + 1000, 16, 40);
    v = new LoadView(b);
    expect(v.backlogMs(v.find(7), NOW + 1000)).toBe(40);
    // The bucket survives the slow path (a new time bucket, a new entry before it).
    b = apply(b, 3, 1, NOW + 1000 + 5 * BUCKET_MS, 16, 10);
    v = new LoadView(b);
    expect(v.backlogMs(v.find(7), NOW + 1010)).toBe(30);
    expect(v.backlogMs(v.find(3), NOW + 1000 + 5 * BUCKET_MS)).toBe(10);
  });

  it("tells closed-loop clients (dispatches right after completions) from open-loop ones", () => {
    expect(new LoadView(null).coupled).toBe(1); // assumed until shown otherwise
    let b: ArrayBuffer | null = apply(null, 1, 1, NOW);
    // A burst before anything finished is no evidence.
    for (let i = 0; i < 50; i++) b = apply(b, 1, 1, NOW + <f64>i);
    expect(new LoadView(b).coupled).toBe(1);
    // Dispatches long after any completion: the share falls.
    let t = NOW;
    for (let i = 0; i < 100; i++) {
      t += 100;
      b = apply(b, 1, 1, t);
      b = apply(b, 1, -1, t + 50);
    }
    let v = new LoadView(b);
    expect(v.coupled).toBeLessThan(0.1);
    expect(v.lastFinishMs).toBe(t + 50);
    // Each dispatch within COUPLED_MS of a completion: it rises past one half.
    for (let i = 0; i < 30; i++) {
      t += 100;
      b = apply(b, 1, -1, t);
      b = apply(b, 1, 1, t + 1);
    }
    v = new LoadView(b);
    expect(v.coupled).toBeGreaterThan(0.5);
  });

  it("does not drop an idle-looking entry whose prefill is still due", () => {
    let b: ArrayBuffer | null = null;
    b = apply(b, 1, 1, NOW, 2, 5000);
    b = apply(b, 1, -1, NOW + 1);
    b = apply(b, 2, 1, NOW + 1, 2);
    b = apply(b, 2, -1, NOW + 2);
    // Entry 2 is idle, entry 1 still has prefill due: a third endpoint replaces entry 2.
    b = apply(b, 3, 1, NOW + 20 * BUCKET_MS, 2);
    const v = new LoadView(b);
    expect(v.find(1)).toBeGreaterThanOrEqual(0);
    expect(v.find(2)).toBe(-1);
    expect(v.find(3)).toBeGreaterThanOrEqual(0);
  });

  it("counts in-flight requests per endpoint, entries sorted by id", () => {
    let b: ArrayBuffer | null = null;
    b = apply(b, 7, 1, NOW);
    b = apply(b, 7, 1, NOW);
    b = apply(b, 9, 1, NOW);
    b = apply(b, 3, 1, NOW);
    b = apply(b, 7, -1, NOW + 10);
    const v = new LoadView(b);
    expect(v.count).toBe(3);
    expect(v.idAt(0)).toBe(3);
    expect(v.idAt(2)).toBe(9);
    expect(v.inflightAt(v.find(7))).toBe(1);
    expect(v.inflightAt(v.find(9))).toBe(1);
    expect(v.find(8)).toBe(-1);
    expect(v.inflightAt(-1)).toBe(0);
  });

  it("never goes below zero and ignores completions of forgotten endpoints", () => {
    expect(new LoadView(null).with(7, -1, NOW, 16)).toBeNull();
    let b = apply(null, 7, 1, NOW);
    b = apply(b, 7, -1, NOW);
    b = apply(b, 7, -1, NOW);
    const v = new LoadView(b);
    expect(v.inflightAt(v.find(7))).toBe(0);
  });

  it("counts net dispatches since a time, ageing them out of the window", () => {
    let b = apply(null, 7, 1, NOW);
    b = apply(b, 7, 1, NOW + BUCKET_MS);
    b = apply(b, 7, 1, NOW + 2 * BUCKET_MS);
    b = apply(b, 7, -1, NOW + 2 * BUCKET_MS);
    let v = new LoadView(b);
    const i = v.find(7);
    expect(v.netSince(i, NOW, NOW + 2 * BUCKET_MS)).toBe(2);
    expect(v.netSince(i, NOW + BUCKET_MS, NOW + 2 * BUCKET_MS)).toBe(1);
    expect(v.netSince(i, NOW + 3 * BUCKET_MS, NOW + 3 * BUCKET_MS)).toBe(0);
    // Another endpoint's traffic much later moves the head: old buckets fall off.
    b = apply(b, 9, 1, NOW + 2 * BUCKET_MS + BUCKETS * BUCKET_MS);
    v = new LoadView(b);
    expect(v.netSince(v.find(7), NOW, NOW + 20 * BUCKET_MS)).toBe(0);
    expect(v.inflightAt(v.find(7))).toBe(2);
  });

  it("drops idle entries first when full, refuses when nothing is idle", () => {
    let b = apply(null, 1, 1, NOW, 2);
    b = apply(b, 2, 1, NOW, 2);
    // Both in flight: no room for a third endpoint.
    expect(new LoadView(b).with(3, 1, NOW, 2)).toBeNull();
    // Endpoint 2 finishes; its completion stays visible while in the window.
    b = apply(b, 2, -1, NOW + 10 * BUCKET_MS, 2);
    expect(new LoadView(b).with(3, 1, NOW + 10 * BUCKET_MS, 2)).toBeNull();
    // Once the window has passed, the idle entry makes room.
    b = apply(b, 3, 1, NOW + 30 * BUCKET_MS, 2);
    const v = new LoadView(b);
    expect(v.find(2)).toBe(-1);
    expect(v.find(3)).toBeGreaterThanOrEqual(0);
    expect(v.find(1)).toBeGreaterThanOrEqual(0);
  });

  it("treats garbage as an empty record", () => {
    expect(new LoadView(new ArrayBuffer(5)).count).toBe(0);
    const bad = new ArrayBuffer(12);
    store<u32>(changetype<usize>(bad), 0x314c4557);
    store<u32>(changetype<usize>(bad), 1000, 8);
    expect(new LoadView(bad).count).toBe(0);
  });

  it("is shared through the store with compare-and-swap", () => {
    const shared = new MemoryStore();
    expect(recordLoad(shared, "k", 5, 1, NOW, 16)).toBe(true);
    expect(recordLoad(shared, "k", 5, 1, NOW, 16)).toBe(true);
    const v = new LoadView(shared.get("k"));
    expect(v.inflightAt(v.find(5))).toBe(2);
  });
});

describe("scorers", () => {
  it("queue: least loaded gets 1, most loaded 0, equal all 1", () => {
    // loads 4, 2, 6: min 2, span 4
    expect(queueScore(4, 2, 4)).toBe(0.5);
    expect(queueScore(2, 2, 4)).toBe(1);
    expect(queueScore(6, 2, 4)).toBe(0);
    expect(queueScore(3, 3, 0)).toBe(1);
  });

  it("kv_cache, prefix", () => {
    expect(kvCacheScore(ep("a0", 0, 0, 0.25))).toBe(0.75);
    expect(prefixScore(3, 4)).toBe(0.75);
    expect(prefixScore(0, 0)).toBe(0);
    // Blocks every endpoint holds are no evidence: only what lies beyond them counts.
    expect(prefixScore(6, 10, 2)).toBe(0.5);
    expect(prefixScore(2, 10, 2)).toBe(0);
    expect(prefixScore(5, 5, 5)).toBe(0);
  });

  it("lora: loaded 1, free slot 0.8, queued 0.6, full 0", () => {
    const e = ep("a0", 0, 0, 0);
    e.maxLora = 2;
    e.loraRunning = ["x"];
    expect(loraScore(e, "x")).toBe(1);
    expect(loraScore(e, "y")).toBe(0.8);
    e.loraRunning = ["x", "z"];
    expect(loraScore(e, "y")).toBe(0);
    e.loraRunning = ["x"];
    e.loraWaiting = ["y"];
    expect(loraScore(e, "y")).toBe(0.6);
  });
});

describe("pickEndpoint", () => {
  it("prefers the endpoint with the shortest queue and the most free KV cache", () => {
    const p = pool([ep("p0", 3, 10, 0.6), ep("p1", 0, 4, 0.2), ep("p2", 1, 8, 0.5)]);
    const r = pickEndpoint(input(p), new Rng(1));
    expect(r.status).toBe(PICKED);
    expect(r.index).toBe(1);
    expect(r.candidates).toBe(3);
  });

  it("skips endpoints that are not ready and answers 503 when none is", () => {
    const a = ep("p0", 0, 0, 0);
    a.ready = false;
    const b = ep("p1", 9, 9, 0.9);
    expect(pickEndpoint(input(pool([a, b])), new Rng(1)).index).toBe(1);
    b.ready = false;
    expect(pickEndpoint(input(pool([a, b])), new Rng(1)).status).toBe(NO_ENDPOINT);
    expect(pickEndpoint(input(pool([])), new Rng(1)).status).toBe(NO_ENDPOINT);
  });

  it("breaks exact ties at random", () => {
    const p = pool([ep("p0", 0, 1, 0.1), ep("p1", 0, 1, 0.1), ep("p2", 0, 1, 0.1)]);
    const rng = new Rng(42);
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[pickEndpoint(input(p), rng).index]++;
    for (let i = 0; i < 3; i++) {
      expect(counts[i]).toBeGreaterThan(850);
      expect(counts[i]).toBeLessThan(1150);
    }
  });

  it("counts its own dispatches as queued on pods whose KV cache is full, spreading a burst", () => {
    // Full pods (KV past the threshold): what the filter sent since the scrape will wait there.
    const p = pool([ep("p0", 0, 30, 0.9), ep("p1", 0, 30, 0.9)]);
    let load: ArrayBuffer | null = null;
    const picks = [0, 0];
    for (let i = 0; i < 10; i++) {
      const inp = input(p, new LoadView(load));
      const r = pickEndpoint(inp, new Rng(<u64>(i + 1)));
      picks[r.index]++;
      load = apply(load, p.endpoints[r.index].id, 1, NOW);
    }
    expect(picks[0]).toBe(5);
    expect(picks[1]).toBe(5);
  });

  it("leaves pods with free KV cache to the metrics, sharing ties at random", () => {
    const p = pool([ep("p0", 0, 2, 0.1), ep("p1", 0, 2, 0.1)]);
    let load: ArrayBuffer | null = null;
    const picks = [0, 0];
    const rng = new Rng(9);
    for (let i = 0; i < 200; i++) {
      const inp = input(p, new LoadView(load));
      const r = pickEndpoint(inp, rng);
      picks[r.index]++;
      load = apply(load, p.endpoints[r.index].id, 1, NOW);
      expect(queued(p.endpoints[r.index], inp)).toBe(0);
    }
    expect(picks[0]).toBeGreaterThan(70);
    expect(picks[1]).toBeGreaterThan(70);
  });

  it("estimates outstanding requests from metrics, recent dispatches and in-flight", () => {
    const e = ep("p0", 1, 3, 0.1);
    e.metricsAgeMs = 30;
    const inp = input(pool([e]));
    expect(outstanding(e, inp)).toBe(4);
    let load = apply(null, e.id, 1, NOW - 10); // after the metrics were taken
    inp.load = new PoolLoad(new LoadView(load));
    expect(outstanding(e, inp)).toBe(5);
    for (let i = 0; i < 9; i++) load = apply(load, e.id, 1, NOW - 10);
    inp.load = new PoolLoad(new LoadView(load));
    expect(outstanding(e, inp)).toBe(14);
    inp.degraded = true;
    expect(outstanding(e, inp)).toBe(10);
  });

  it("sheds Sheddable requests only while every endpoint is saturated", () => {
    const busy = ep("p0", 5, 10, 0.3);
    const full = ep("p1", 0, 10, 0.85);
    const inp = input(pool([busy, full]));
    inp.criticality = SHEDDABLE;
    expect(isSaturated(busy, inp)).toBe(true);
    expect(isSaturated(full, inp)).toBe(true);
    expect(pickEndpoint(inp, new Rng(1)).status).toBe(SHED);
    inp.criticality = CRITICAL;
    expect(pickEndpoint(inp, new Rng(1)).status).toBe(PICKED);
    inp.criticality = STANDARD;
    expect(pickEndpoint(inp, new Rng(1)).status).toBe(PICKED);
    const free = ep("p2", 4, 10, 0.79);
    const inp2 = input(pool([busy, full, free]));
    inp2.criticality = SHEDDABLE;
    const r = pickEndpoint(inp2, new Rng(1));
    expect(r.index).toBe(2);
    expect(r.candidates).toBe(1);
  });

  it("counts stale metrics as saturated, but not in degraded mode", () => {
    const e = ep("p0", 0, 0, 0);
    e.metricsAgeMs = 5000;
    const inp = input(pool([e]));
    expect(isSaturated(e, inp)).toBe(true);
    inp.degraded = true;
    expect(isSaturated(e, inp)).toBe(false);
  });

  it("follows the prefix within the load band and leaves it when the pod is overloaded", () => {
    const p = pool([ep("p0", 0, 10, 0.3), ep("p1", 0, 8, 0.3)]);
    const m = new PrefixMatch(2, 10);
    m.matched[0] = 10;
    const inp = input(p);
    inp.prefix = m;
    let r = pickEndpoint(inp, new Rng(1));
    expect(r.index).toBe(0);
    expect(r.prefixBlocks).toBe(10);
    // p0 far beyond min * 3 + 16: affinity no longer counts.
    p.endpoints[0].running = 50;
    p.endpoints[0].kvUsage = 0.6;
    r = pickEndpoint(inp, new Rng(1));
    expect(r.index).toBe(1);
    expect(r.prefixBlocks).toBe(0);
  });

  it("estimates time to first token from the backlog and the uncached part of the prompt", () => {
    const p = pool([ep("p0", 0, 1, 0.1), ep("p1", 0, 1, 0.1)]);
    const inp = input(p);
    inp.promptTokens = 1000; // 4000 bytes at 4 bytes per token
    const m = new PrefixMatch(2, 60);
    m.matched[0] = 40; // 40 blocks of 64 bytes = 640 tokens
    inp.prefix = m;
    expect(cachedTokens(0, inp)).toBe(640);
    expect(cachedTokens(1, inp)).toBe(0);
    expect(workMs(0, inp)).toBe(72); // 360 tokens at 5000 tokens/s
    expect(workMs(1, inp)).toBe(200);
    m.common = 10; // 160 tokens every endpoint holds
    expect(cachedTokens(1, inp)).toBe(160);
    // Never more than the prompt.
    m.matched[0] = 100;
    expect(cachedTokens(0, inp)).toBe(1000);
    m.matched[0] = 40;
    // p0 has 500 ms of prefill due: p1, without the prefix, is sooner.
    inp.load = new PoolLoad(new LoadView(apply(null, p.endpoints[0].id, 1, NOW, 16, 500)));
    expect(estimateTtftMs(p.endpoints[0], 0, inp)).toBe(572);
    expect(estimateTtftMs(p.endpoints[1], 1, inp)).toBe(168);
    inp.cfg.weights.ttft = 10;
    inp.cfg.ttftTolerance = 0;
    inp.cfg.ttftClosedLoopTolerance = -1; // open loop: no completions recorded here
    const r = pickEndpoint(inp, new Rng(1));
    expect(r.index).toBe(1);
    expect(r.workMs).toBe(168);
    expect(r.ttftMs).toBe(168);
    expect(ttftScore(168, 168, 100)).toBe(1);
    expect(ttftScore(572, 168, 100)).toBeCloseTo(268.0 / 672.0);
  });

  it("adds the wait for an adapter slot where the adapter cannot be loaded now", () => {
    const a = ep("p0", 0, 2, 0.2);
    const b = ep("p1", 0, 2, 0.2);
    a.maxLora = 1;
    a.loraRunning = ["other"];
    b.maxLora = 1;
    b.loraRunning = ["travel-helper-v1"];
    const inp = input(pool([a, b]));
    inp.target = "travel-helper-v1";
    inp.promptTokens = 500;
    inp.cfg.weights.ttft = 4;
    const r = pickEndpoint(inp, new Rng(1));
    expect(r.index).toBe(1);
    expect(estimateTtftMs(a, 0, inp)).toBe(100 + 5000);
    expect(estimateTtftMs(b, 1, inp)).toBe(100);
  });

  it("lets the estimate stand aside while every endpoint has more than overload_ms of prefill queued", () => {
    const p = pool([ep("p0", 0, 1, 0.1), ep("p1", 0, 1, 0.1)]);
    let load = apply(null, p.endpoints[0].id, 1, NOW, 16, 5000);
    load = apply(load, p.endpoints[1].id, 1, NOW, 16, 9000);
    const inp = input(p, new LoadView(load));
    inp.promptTokens = 100;
    inp.cfg.weights.ttft = 10;
    inp.cfg.ttftTolerance = 0;
    inp.cfg.ttftClosedLoopTolerance = -1; // open loop: no completions recorded here
    // p0 is 4 s sooner: it always wins.
    for (let s = 1; s < 20; s++) expect(pickEndpoint(inp, new Rng(<u64>s)).index).toBe(0);
    // Overloaded: both are ties for the estimate, and the pick is shared at random.
    inp.cfg.ttftOverloadMs = 3000;
    const counts = [0, 0];
    for (let s = 1; s < 200; s++) counts[pickEndpoint(inp, new Rng(<u64>s)).index]++;
    expect(counts[0]).toBeGreaterThan(50);
    expect(counts[1]).toBeGreaterThan(50);
    // A backlog tolerance widens the tie by a share of the smallest backlog.
    inp.cfg.ttftOverloadMs = Infinity;
    inp.cfg.ttftBacklogTolerance = 1; // ties up to min + 5000 ms
    const c2 = [0, 0];
    for (let s = 1; s < 200; s++) c2[pickEndpoint(inp, new Rng(<u64>s)).index]++;
    expect(c2[1]).toBeGreaterThan(50);
  });

  it("widens the tolerance while the pool is saturated", () => {
    const p = pool([ep("p0", 0, 1, 0.5), ep("p1", 0, 1, 0.5)]);
    let load = apply(null, p.endpoints[0].id, 1, NOW, 16, 100);
    load = apply(load, p.endpoints[1].id, 1, NOW, 16, 250);
    const inp = input(p, new LoadView(load));
    inp.promptTokens = 500; // 100 ms each: estimates 200 and 350 ms
    inp.cfg.weights.ttft = 10;
    inp.cfg.ttftTolerance = 0;
    inp.cfg.ttftClosedLoopTolerance = -1; // open loop: no completions recorded here
    inp.cfg.ttftSaturatedTolerance = 3;
    expect(podSaturation(p.endpoints[0], inp)).toBe(0.625);
    for (let s = 1; s < 20; s++) expect(pickEndpoint(inp, new Rng(<u64>s)).index).toBe(0);
    // KV usage past the threshold on both: saturated, and 350 ms is within 4 x 200 ms.
    p.endpoints[0].kvUsage = 0.85;
    p.endpoints[1].kvUsage = 0.85;
    expect(podSaturation(p.endpoints[1], inp)).toBeGreaterThan(1);
    const counts = [0, 0];
    for (let s = 1; s < 200; s++) counts[pickEndpoint(inp, new Rng(<u64>s)).index]++;
    expect(counts[1]).toBeGreaterThan(50);
    // Waiting requests count too (5 = the queue threshold).
    expect(podSaturation(ep("p9", 10, 1, 0.1), inp)).toBe(2);
  });

  it("uses the closed-loop tolerance while clients run closed loop", () => {
    const p = pool([ep("p0", 0, 1, 0.1), ep("p1", 0, 1, 0.1)]);
    let load = apply(null, p.endpoints[0].id, 1, NOW, 16, 100);
    load = apply(load, p.endpoints[1].id, 1, NOW, 16, 250);
    const view = new LoadView(load);
    const inp = input(p, view);
    inp.promptTokens = 500;
    inp.cfg.weights.ttft = 10;
    inp.cfg.ttftTolerance = 0;
    inp.cfg.ttftClosedLoopTolerance = -1; // open loop: no completions recorded here
    inp.cfg.ttftClosedLoopTolerance = 3;
    view.coupled = 0.2;
    for (let s = 1; s < 20; s++) expect(pickEndpoint(inp, new Rng(<u64>s)).index).toBe(0);
    view.coupled = 0.8;
    const counts = [0, 0];
    for (let s = 1; s < 200; s++) counts[pickEndpoint(inp, new Rng(<u64>s)).index]++;
    expect(counts[1]).toBeGreaterThan(50);
  });

  it("scores estimates within the tolerance as well as the best", () => {
    expect(ttftScore(120, 100 * 1.3, 100, 0)).toBe(1);
    expect(ttftScore(200, 100, 100, 50)).toBe(250.0 / 300.0);
    expect(ttftScore(150, 100, 100, 50)).toBe(1);
  });

  it("keeps an endpoint far above the mean load from winning when load is bounded", () => {
    const p = pool([ep("p0", 0, 30, 0.3), ep("p1", 0, 4, 0.3), ep("p2", 0, 5, 0.3)]);
    const m = new PrefixMatch(3, 10);
    m.matched[0] = 10;
    const inp = input(p);
    inp.prefix = m;
    inp.cfg.prefixLoadRatio = 100; // the prefix band alone would allow p0
    expect(pickEndpoint(inp, new Rng(1)).index).toBe(0);
    inp.cfg.balanceLoadFactor = 1.5; // mean 13: cap max(19.5, 17)
    expect(pickEndpoint(inp, new Rng(1)).index).not.toBe(0);
    // Within the cap (mean 6.3: max(9.5, 10.3)), affinity wins again.
    p.endpoints[0].running = 10;
    expect(pickEndpoint(inp, new Rng(1)).index).toBe(0);
  });

  it("prefers endpoints holding the requested LoRA adapter", () => {
    const a = ep("p0", 0, 2, 0.2);
    const b = ep("p1", 0, 2, 0.2);
    b.loraRunning = ["travel-helper-v1"];
    b.maxLora = 1;
    a.maxLora = 1;
    a.loraRunning = ["other"];
    const inp = input(pool([a, b]));
    inp.target = "travel-helper-v1";
    expect(pickEndpoint(inp, new Rng(1)).index).toBe(1);
  });
});
