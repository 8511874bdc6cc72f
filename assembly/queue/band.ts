// One worker's held requests: three bands (Critical, Standard, Sheddable, the state document's
// criticality order), each bounded in requests and bytes. Bands are strict: a band releases only
// while every band above it is empty. Within a band, requests belong to fairness flows (the hash
// of their fairness id, objective/flow.ts) and are released round-robin over the flows holding
// any: the flow served least recently goes next (a flow that joins counts as served when it
// joins, so that a new flow cannot starve the others), ties by arrival, each flow first in first
// out. With round-robin off (queue.fairness "fcfs"), a band releases oldest first. Requests
// without a fairness id all share one flow: one flow is first in first out either way.
// Per-flow bookkeeping exists only while the flow holds requests, so it is bounded like the queue.
// Plain logic: the filter keeps what it needs to finish routing a request in `ref`.

export const BANDS: i32 = 3;

export class Held<T> {
  id: u32;
  band: i32;
  arrivedMs: f64;
  expiresMs: f64;
  bytes: i32;
  ref: T;
  // The fairness flow.
  flow: u64;
  // Arrival order in the queue (set when pushed).
  seq: u64 = 0;

  constructor(id: u32, band: i32, arrivedMs: f64, expiresMs: f64, bytes: i32, ref: T, flow: u64 = 0) {
    this.id = id;
    this.band = band;
    this.arrivedMs = arrivedMs;
    this.expiresMs = expiresMs;
    this.bytes = bytes;
    this.ref = ref;
    this.flow = flow;
  }
}

// A flow's held requests in one band, oldest first.
class Flow<T> {
  id: u64;
  items: Array<Held<T>> = new Array<Held<T>>();
  // The band's release count when the flow was last served, or when it joined if not served since.
  stamp: u64;

  constructor(id: u64, stamp: u64) {
    this.id = id;
    this.stamp = stamp;
  }
}

class Band<T> {
  // Every held request of the band, oldest first (expiry, first come first served).
  fifo: Array<Held<T>> = new Array<Held<T>>();
  bytes: i64 = 0;
  flows: Map<u64, Flow<T>> = new Map<u64, Flow<T>>();
  // The flows of `flows`, for iteration.
  active: Array<Flow<T>> = new Array<Flow<T>>();
  releases: u64 = 0;

  // The request the band releases next.
  next(roundRobin: bool): Held<T> | null {
    if (this.fifo.length == 0) return null;
    if (!roundRobin || this.active.length == 1) return this.fifo[0];
    let best = this.active[0];
    for (let i = 1; i < this.active.length; i++) {
      const f = this.active[i];
      if (f.stamp < best.stamp || (f.stamp == best.stamp && f.items[0].seq < best.items[0].seq)) best = f;
    }
    return best.items[0];
  }

  add(h: Held<T>): void {
    this.fifo.push(h);
    this.bytes += <i64>h.bytes;
    let f: Flow<T>;
    if (this.flows.has(h.flow)) f = this.flows.get(h.flow);
    else {
      f = new Flow<T>(h.flow, this.releases);
      this.flows.set(h.flow, f);
      this.active.push(f);
    }
    f.items.push(h);
  }

  // Takes `h` out of the band; `served`: it was released (its flow goes to the back).
  take(h: Held<T>, served: bool): void {
    removeItem(this.fifo, h);
    this.bytes -= <i64>h.bytes;
    if (!this.flows.has(h.flow)) return;
    const f = this.flows.get(h.flow);
    removeItem(f.items, h);
    if (served) {
      this.releases++;
      f.stamp = this.releases;
    }
    if (f.items.length > 0) return;
    this.flows.delete(h.flow);
    const i = this.active.indexOf(f);
    if (i >= 0) {
      const last = this.active.length - 1;
      this.active[i] = this.active[last];
      this.active.length = last;
    }
  }
}

function removeItem<T>(a: Array<Held<T>>, h: Held<T>): void {
  if (a.length > 0 && a[0] === h) {
    a.shift();
    return;
  }
  const i = a.indexOf(h);
  if (i >= 0) a.splice(i, 1);
}

export class WorkerQueue<T> {
  private bands: StaticArray<Band<T>> = [new Band<T>(), new Band<T>(), new Band<T>()];
  private seq: u64 = 0;
  // Round-robin over fairness flows within a band (queue.fairness "round_robin"); false: oldest first.
  roundRobin: bool = true;

  count(band: i32): i32 {
    return this.bands[band].fifo.length;
  }

  bytes(band: i32): i64 {
    return this.bands[band].bytes;
  }

  // Flows holding requests in `band`.
  flows(band: i32): i32 {
    return this.bands[band].active.length;
  }

  get total(): i32 {
    return this.count(0) + this.count(1) + this.count(2);
  }

  // Whether a request of `bytes` fits in `band` under the limits.
  fits(band: i32, bytes: i32, maxRequests: i32, maxBytes: i64): bool {
    return this.count(band) < maxRequests && this.bands[band].bytes + <i64>bytes <= maxBytes;
  }

  push(h: Held<T>): void {
    h.seq = this.seq++;
    this.bands[h.band].add(h);
  }

  // The next request to release: the highest band holding any, and in it the next by fairness.
  peek(): Held<T> | null {
    for (let b = 0; b < BANDS; b++) {
      const h = this.bands[b].next(this.roundRobin);
      if (h !== null) return h;
    }
    return null;
  }

  // Takes out the request peek() returns.
  pop(): Held<T> | null {
    for (let b = 0; b < BANDS; b++) {
      const band = this.bands[b];
      const h = band.next(this.roundRobin);
      if (h === null) continue;
      band.take(h, true);
      return h;
    }
    return null;
  }

  // Removes the request of stream `id` (a client that went away); null when it is not held.
  remove(id: u32): Held<T> | null {
    for (let b = 0; b < BANDS; b++) {
      const band = this.bands[b];
      const f = band.fifo;
      for (let i = 0; i < f.length; i++) {
        const h = f[i];
        if (h.id != id) continue;
        band.take(h, false);
        return h;
      }
    }
    return null;
  }

  // Removes and returns the requests whose time in the queue is up at `nowMs`. Within a band they
  // share one TTL, so the expired ones are at its head.
  expire(nowMs: f64): Array<Held<T>> {
    const out = new Array<Held<T>>();
    for (let b = 0; b < BANDS; b++) {
      const band = this.bands[b];
      const f = band.fifo;
      while (f.length > 0 && f[0].expiresMs <= nowMs) {
        const h = f[0];
        band.take(h, false);
        out.push(h);
      }
    }
    return out;
  }
}
