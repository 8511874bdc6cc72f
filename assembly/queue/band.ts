// One worker's held requests: three bands (Critical, Standard, Sheddable, the state document's
// criticality order), first in first out within a band, each bounded in requests and bytes.
// Plain logic: the filter keeps what it needs to finish routing a request in `ref`.

export const BANDS: i32 = 3;

export class Held<T> {
  id: u32;
  band: i32;
  arrivedMs: f64;
  expiresMs: f64;
  bytes: i32;
  ref: T;

  constructor(id: u32, band: i32, arrivedMs: f64, expiresMs: f64, bytes: i32, ref: T) {
    this.id = id;
    this.band = band;
    this.arrivedMs = arrivedMs;
    this.expiresMs = expiresMs;
    this.bytes = bytes;
    this.ref = ref;
  }
}

export class WorkerQueue<T> {
  private fifo: StaticArray<Array<Held<T>>> = [new Array<Held<T>>(), new Array<Held<T>>(), new Array<Held<T>>()];
  private sizes: StaticArray<i64> = [0, 0, 0];

  count(band: i32): i32 {
    return this.fifo[band].length;
  }

  bytes(band: i32): i64 {
    return this.sizes[band];
  }

  get total(): i32 {
    return this.fifo[0].length + this.fifo[1].length + this.fifo[2].length;
  }

  // Whether a request of `bytes` fits in `band` under the limits.
  fits(band: i32, bytes: i32, maxRequests: i32, maxBytes: i64): bool {
    return this.fifo[band].length < maxRequests && this.sizes[band] + <i64>bytes <= maxBytes;
  }

  push(h: Held<T>): void {
    this.fifo[h.band].push(h);
    this.sizes[h.band] += <i64>h.bytes;
  }

  // The next request to release: the oldest of the highest band holding any.
  peek(): Held<T> | null {
    for (let b = 0; b < BANDS; b++) {
      const f = this.fifo[b];
      if (f.length > 0) return f[0];
    }
    return null;
  }

  pop(): Held<T> | null {
    for (let b = 0; b < BANDS; b++) {
      const f = this.fifo[b];
      if (f.length > 0) {
        const h = f.shift();
        this.sizes[b] -= <i64>h.bytes;
        return h;
      }
    }
    return null;
  }

  // Removes the request of stream `id` (a client that went away); null when it is not held.
  remove(id: u32): Held<T> | null {
    for (let b = 0; b < BANDS; b++) {
      const f = this.fifo[b];
      for (let i = 0; i < f.length; i++) {
        const h = f[i];
        if (h.id != id) continue;
        f.splice(i, 1);
        this.sizes[b] -= <i64>h.bytes;
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
      const f = this.fifo[b];
      while (f.length > 0 && f[0].expiresMs <= nowMs) {
        const h = f.shift();
        this.sizes[b] -= <i64>h.bytes;
        out.push(h);
      }
    }
    return out;
  }
}
