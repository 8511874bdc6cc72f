import { Held, WorkerQueue } from "../../assembly/queue/band";
import { heldEverywhere, holders, publishCounts, higherWaiting, sameOrHigherWaiting, STALE_MS } from "../../assembly/queue/counts";
import { poolSaturation } from "../../assembly/queue/gate";
import { LoadView, PoolLoad, recordLoad, loadKey } from "../../assembly/schedule/load";
import { PickInput } from "../../assembly/schedule/pick";
import { Config, parseConfig } from "../../assembly/config";
import { Endpoint, Pool } from "../../assembly/state/document";
import { MemoryStore } from "../../assembly/util/store";
import { fnv1a32 } from "../../assembly/util/hash";

const NOW: f64 = 1_000_000;

function held(id: u32, band: i32, at: f64, ttl: f64, bytes: i32 = 10): Held<u32> {
  return new Held<u32>(id, band, at, at + ttl, bytes, id);
}

describe("WorkerQueue", () => {
  it("releases the highest band first, first in first out within a band", () => {
    const q = new WorkerQueue<u32>();
    q.push(held(1, 1, 0, 100));
    q.push(held(2, 2, 1, 100));
    q.push(held(3, 0, 2, 100));
    q.push(held(4, 1, 3, 100));
    expect(q.total).toBe(4);
    expect(q.pop()!.id).toBe(3);
    expect(q.pop()!.id).toBe(1);
    expect(q.peek()!.id).toBe(4);
    expect(q.pop()!.id).toBe(4);
    expect(q.pop()!.id).toBe(2);
    expect(q.pop()).toBeNull();
  });

  it("bounds each band in requests and bytes", () => {
    const q = new WorkerQueue<u32>();
    expect(q.fits(1, 100, 2, 150)).toBe(true);
    q.push(held(1, 1, 0, 100, 100));
    expect(q.fits(1, 60, 2, 150)).toBe(false);
    expect(q.fits(1, 50, 2, 150)).toBe(true);
    q.push(held(2, 1, 0, 100, 10));
    expect(q.fits(1, 1, 2, 150)).toBe(false);
    expect(q.fits(0, 100, 2, 150)).toBe(true);
    expect(q.bytes(1)).toBe(110);
  });

  it("removes a request whose client went away, and expires those whose time is up", () => {
    const q = new WorkerQueue<u32>();
    q.push(held(1, 1, 0, 100));
    q.push(held(2, 1, 10, 100));
    q.push(held(3, 0, 0, 1000));
    expect(q.remove(2)!.id).toBe(2);
    expect(q.remove(2)).toBeNull();
    expect(q.expire(99).length).toBe(0);
    const gone = q.expire(100);
    expect(gone.length).toBe(1);
    expect(gone[0].id).toBe(1);
    expect(q.total).toBe(1);
    expect(q.bytes(1)).toBe(0);
  });
});

describe("shared held counts", () => {
  it("sums the live workers of one pool and ignores gone ones", () => {
    const s = new MemoryStore();
    const a: StaticArray<i32> = [1, 0, 2];
    const b: StaticArray<i32> = [0, 3, 0];
    expect(publishCounts(s, 7, 100, a, NOW)).toBe(true);
    expect(publishCounts(s, 7, 200, b, NOW)).toBe(true);
    expect(publishCounts(s, 8, 300, b, NOW)).toBe(true);
    const all = heldEverywhere(s, 7, NOW + 10);
    expect(all[0]).toBe(1);
    expect(all[1]).toBe(3);
    expect(all[2]).toBe(2);
    expect(heldEverywhere(s, 7, NOW + STALE_MS + 1)[1]).toBe(0);
    expect(holders(s, NOW).length).toBe(3);
    const zero: StaticArray<i32> = [0, 0, 0];
    publishCounts(s, 7, 200, zero, NOW);
    expect(heldEverywhere(s, 7, NOW)[1]).toBe(0);
    expect(holders(s, NOW).length).toBe(2);
  });

  it("tells which bands wait ahead", () => {
    const c: StaticArray<i32> = [0, 1, 0];
    expect(higherWaiting(c, 1)).toBe(false);
    expect(higherWaiting(c, 2)).toBe(true);
    expect(sameOrHigherWaiting(c, 1)).toBe(true);
    expect(sameOrHigherWaiting(c, 0)).toBe(false);
  });
});

function ep(n: i32, waiting: f64, kv: f64): Endpoint {
  const e = new Endpoint();
  e.pod = "p" + n.toString();
  e.address = "10.0.0." + (n + 1).toString() + ":8000";
  e.id = fnv1a32(e.address);
  e.waiting = waiting;
  e.kvUsage = kv;
  return e;
}

function input(eps: Array<Endpoint>, load: LoadView = new LoadView(null)): PickInput {
  const p = new Pool();
  p.name = "ns/p";
  for (let i = 0; i < eps.length; i++) p.addEndpoint(eps[i]);
  const i = new PickInput(p, new Config(), new PoolLoad(load));
  i.nowMs = NOW;
  i.generatedAtMs = NOW - 20;
  return i;
}

describe("poolSaturation", () => {
  it("is the mean of max(waiting / 5, kv / 0.8) over ready endpoints", () => {
    expect(poolSaturation(input([ep(0, 5, 0.1), ep(1, 0, 0.4)]), false)).toBeCloseTo(0.75);
    const notReady = ep(2, 100, 1);
    notReady.ready = false;
    expect(poolSaturation(input([ep(0, 0, 0.8), notReady]), false)).toBeCloseTo(1);
  });

  it("counts an endpoint with stale metrics as saturated, and knows nothing in degraded mode", () => {
    const stale = ep(1, 0, 0);
    stale.metricsAgeMs = 5000;
    expect(poolSaturation(input([ep(0, 0, 0), stale]), false)).toBeCloseTo(0.5);
    const i = input([ep(0, 50, 1)]);
    i.degraded = true;
    expect(poolSaturation(i, false)).toBe(0);
  });

  it("counts this proxy's dispatches since the scrape as waiting, with credits", () => {
    const s = new MemoryStore();
    const e = ep(0, 3, 0.1);
    for (let k = 0; k < 2; k++) recordLoad(s, loadKey("ns/p"), e.id, 1, NOW - 5, 64);
    const i = input([e], new LoadView(s.get(loadKey("ns/p"))));
    expect(poolSaturation(i, false)).toBeCloseTo(0.6);
    expect(poolSaturation(i, true)).toBeCloseTo(1);
  });
});

describe("queue configuration", () => {
  it("has defaults and reads the queue section", () => {
    const d = new Config();
    expect(d.queueEnabled).toBe(true);
    expect(d.queueTtlMs).toBe(30000);
    expect(d.queueShedSheddable).toBe(true);
    expect(d.queueHeadroom).toBe(0.3);
    expect(d.queueWindowMs).toBe(60000);
    const c = parseConfig("{\"queue\":{\"enabled\":false,\"ttl_ms\":500,\"sheddable\":\"queue\",\"max_requests\":3}}").config as Config;
    expect(c.queueEnabled).toBe(false);
    expect(c.queueTtlMs).toBe(500);
    expect(c.queueShedSheddable).toBe(false);
    expect(c.queueMaxRequests).toBe(3);
    expect(parseConfig("{\"queue\":{\"sheddable\":\"drop\"}}").error.startsWith("queue.sheddable:")).toBe(true);
  });
});
