import { LoadRecord, recordLoad, bucketOf, BUCKET_MS, BUCKETS } from "../../assembly/schedule/load";
import { queueScores, kvCacheScore, loraScore, prefixScore } from "../../assembly/schedule/scorers";
import { PickInput, pickEndpoint, isSaturated, outstanding, PICKED, SHED, NO_ENDPOINT } from "../../assembly/schedule/pick";
import { Config } from "../../assembly/config";
import { Endpoint, Pool, SHEDDABLE, CRITICAL, STANDARD } from "../../assembly/state/document";
import { PrefixMatch } from "../../assembly/prefix/index";
import { MemoryStore } from "../../assembly/util/store";
import { Rng } from "../../assembly/util/rng";
import { fnv1a32 } from "../../assembly/util/hash";

const NOW: f64 = 1_000_000;

function f64s(values: Array<f64>): Float64Array {
  const a = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) a[i] = values[i];
  return a;
}

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
  p.endpoints = eps;
  for (let i = 0; i < eps.length; i++) p.ids.push(eps[i].id);
  return p;
}

function input(p: Pool, load: LoadRecord = new LoadRecord()): PickInput {
  const i = new PickInput(p, new Config(), load);
  i.nowMs = NOW;
  i.generatedAtMs = NOW - 20;
  return i;
}

describe("LoadRecord", () => {
  it("counts in-flight requests and round-trips its encoding", () => {
    const r = new LoadRecord();
    r.add(7, 1, NOW, 16);
    r.add(7, 1, NOW, 16);
    r.add(9, 1, NOW, 16);
    r.add(7, -1, NOW + 10, 16);
    const d = LoadRecord.decode(r.encode());
    expect(d.inflightOf(d.indexOf(7))).toBe(1);
    expect(d.inflightOf(d.indexOf(9))).toBe(1);
    expect(d.indexOf(8)).toBe(-1);
    expect(d.inflightOf(-1)).toBe(0);
  });

  it("never goes below zero and ignores completions of forgotten endpoints", () => {
    const r = new LoadRecord();
    r.add(7, -1, NOW, 16);
    expect(r.indexOf(7)).toBe(-1);
    r.add(7, 1, NOW, 16);
    r.add(7, -1, NOW, 16);
    r.add(7, -1, NOW, 16);
    expect(r.inflightOf(r.indexOf(7))).toBe(0);
  });

  it("counts net dispatches since a time, ageing them out of the window", () => {
    const r = new LoadRecord();
    r.add(7, 1, NOW, 16);
    r.add(7, 1, NOW + BUCKET_MS, 16);
    r.add(7, 1, NOW + 2 * BUCKET_MS, 16);
    r.add(7, -1, NOW + 2 * BUCKET_MS, 16);
    const i = r.indexOf(7);
    expect(r.netSince(i, NOW, NOW + 2 * BUCKET_MS)).toBe(2);
    expect(r.netSince(i, NOW + BUCKET_MS, NOW + 2 * BUCKET_MS)).toBe(1);
    expect(r.netSince(i, NOW + 3 * BUCKET_MS, NOW + 3 * BUCKET_MS)).toBe(0);
    r.advance(bucketOf(NOW + 2 * BUCKET_MS + BUCKETS * BUCKET_MS));
    expect(r.netSince(i, NOW, NOW + 20 * BUCKET_MS)).toBe(0);
    expect(r.inflightOf(i)).toBe(2);
  });

  it("drops idle entries first when full, and treats garbage as empty", () => {
    const r = new LoadRecord();
    r.add(1, 1, NOW, 2);
    r.add(2, 1, NOW, 2);
    r.add(2, -1, NOW, 2);
    r.advance(bucketOf(NOW + 100 * BUCKET_MS));
    r.add(3, 1, NOW + 100 * BUCKET_MS, 2);
    expect(r.indexOf(2)).toBe(-1);
    expect(r.indexOf(3)).toBeGreaterThanOrEqual(0);
    expect(LoadRecord.decode(new ArrayBuffer(5)).ids.length).toBe(0);
    const bad = new ArrayBuffer(12);
    store<u32>(changetype<usize>(bad), 0x314c4557);
    store<u32>(changetype<usize>(bad), 1000, 8);
    expect(LoadRecord.decode(bad).ids.length).toBe(0);
  });

  it("is shared through the store with compare-and-swap", () => {
    const shared = new MemoryStore();
    expect(recordLoad(shared, "k", 5, 1, NOW, 16)).toBe(true);
    expect(recordLoad(shared, "k", 5, 1, NOW, 16)).toBe(true);
    const r = LoadRecord.decode(shared.get("k"));
    expect(r.inflightOf(r.indexOf(5))).toBe(2);
  });
});

describe("scorers", () => {
  it("queue: least loaded gets 1, most loaded 0, equal all 1", () => {
    const q = queueScores(f64s([4, 2, 6]));
    expect(q[0]).toBe(0.5);
    expect(q[1]).toBe(1);
    expect(q[2]).toBe(0);
    const eq = queueScores(f64s([3, 3]));
    expect(eq[0]).toBe(1);
    expect(eq[1]).toBe(1);
  });

  it("kv_cache, prefix", () => {
    expect(kvCacheScore(ep("a0", 0, 0, 0.25))).toBe(0.75);
    expect(prefixScore(3, 4)).toBe(0.75);
    expect(prefixScore(0, 0)).toBe(0);
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

  it("spreads a burst using its own dispatches before metrics catch up", () => {
    const p = pool([ep("p0", 0, 2, 0.1), ep("p1", 0, 2, 0.1)]);
    const load = new LoadRecord();
    const picks = [0, 0];
    for (let i = 0; i < 10; i++) {
      const inp = input(p, load);
      const r = pickEndpoint(inp, new Rng(<u64>(i + 1)));
      picks[r.index]++;
      load.add(p.endpoints[r.index].id, 1, NOW, 64);
    }
    expect(picks[0]).toBe(5);
    expect(picks[1]).toBe(5);
  });

  it("estimates outstanding requests from metrics, recent dispatches and in-flight", () => {
    const e = ep("p0", 1, 3, 0.1);
    e.metricsAgeMs = 30;
    const load = new LoadRecord();
    const inp = input(pool([e]), load);
    expect(outstanding(e, inp)).toBe(4);
    load.add(e.id, 1, NOW - 10, 64); // after the metrics were taken
    expect(outstanding(e, inp)).toBe(5);
    for (let i = 0; i < 9; i++) load.add(e.id, 1, NOW - 10, 64);
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
    // p0 far beyond min * 1.5 + 8: affinity no longer counts.
    p.endpoints[0].running = 40;
    r = pickEndpoint(inp, new Rng(1));
    expect(r.index).toBe(1);
    expect(r.prefixBlocks).toBe(0);
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
