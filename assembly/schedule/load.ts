import { SharedStore } from "../util/store";

// What this proxy has sent to each endpoint, shared by all worker VMs.
//
// Model-server metrics arrive every 50-100 ms and are already some tens of milliseconds old; a
// burst picked between two refreshes would all land on the momentary best pod. So every worker
// records each dispatch and completion in one shared record per pool:
//   - in-flight: requests sent and not finished (a hard lower bound on the pod's load), and
//   - net dispatches (sent minus finished) in BUCKETS time buckets of BUCKET_MS each,
// and a pick estimates an endpoint's outstanding requests as
//   max(in-flight, running + waiting at metrics time + net dispatches since metrics time).
// The record lives under one shared-data key per pool, updated with compare-and-swap. Its size
// is bounded: entries for endpoints with nothing in flight and no recent traffic are dropped, and
// there are at most `maxEntries` entries.
//
// Layout (little-endian): u32 magic, u32 head bucket, u32 count, then count entries of
// u32 endpoint id, i32 in-flight, i16 net[BUCKETS] (net[0] is the head bucket, newest).

export const BUCKET_MS: f64 = 64;
export const BUCKETS: i32 = 8;
const MAGIC: u32 = 0x314c4557; // "WEL1"
const HEADER: i32 = 12;
const ENTRY: i32 = 8 + 2 * BUCKETS;

export function bucketOf(ms: f64): u32 {
  return <u32>(<u64>Math.floor(ms / BUCKET_MS));
}

export class LoadRecord {
  head: u32 = 0;
  ids: Array<u32> = new Array<u32>();
  inflight: Array<i32> = new Array<i32>();
  net: Array<i32> = new Array<i32>(); // BUCKETS per entry

  static decode(buf: ArrayBuffer | null): LoadRecord {
    const r = new LoadRecord();
    if (buf === null || buf.byteLength < HEADER) return r;
    const p = changetype<usize>(buf);
    if (load<u32>(p) != MAGIC) return r;
    const count = <i32>load<u32>(p, 8);
    if (count < 0 || HEADER + count * ENTRY > buf.byteLength) return r;
    r.head = load<u32>(p, 4);
    for (let i = 0; i < count; i++) {
      const e = p + <usize>(HEADER + i * ENTRY);
      r.ids.push(load<u32>(e));
      r.inflight.push(load<i32>(e, 4));
      for (let b = 0; b < BUCKETS; b++) r.net.push(<i32>load<i16>(e + 8 + <usize>(2 * b)));
    }
    return r;
  }

  encode(): ArrayBuffer {
    const count = this.ids.length;
    const out = new ArrayBuffer(HEADER + count * ENTRY);
    const p = changetype<usize>(out);
    store<u32>(p, MAGIC);
    store<u32>(p, this.head, 4);
    store<u32>(p, <u32>count, 8);
    for (let i = 0; i < count; i++) {
      const e = p + <usize>(HEADER + i * ENTRY);
      store<u32>(e, unchecked(this.ids[i]));
      store<i32>(e, unchecked(this.inflight[i]), 4);
      for (let b = 0; b < BUCKETS; b++) store<i16>(e + 8 + <usize>(2 * b), <i16>clampI16(unchecked(this.net[i * BUCKETS + b])));
    }
    return out;
  }

  indexOf(id: u32): i32 {
    const ids = this.ids;
    for (let i = 0; i < ids.length; i++) if (unchecked(ids[i]) == id) return i;
    return -1;
  }

  // Moves the head to `bucket`, shifting every entry's buckets (older ones fall off).
  advance(bucket: u32): void {
    if (bucket <= this.head) return;
    const shift = bucket - this.head;
    this.head = bucket;
    const n = this.ids.length;
    for (let i = 0; i < n; i++) {
      const base = i * BUCKETS;
      for (let b = BUCKETS - 1; b >= 0; b--) {
        const from = <u32>b >= shift ? b - <i32>shift : -1;
        unchecked((this.net[base + b] = from >= 0 ? this.net[base + from] : 0));
      }
    }
  }

  // Records `delta` requests (+1 dispatch, -1 completion) for endpoint `id` at time `nowMs`.
  add(id: u32, delta: i32, nowMs: f64, maxEntries: i32): void {
    this.advance(bucketOf(nowMs));
    let i = this.indexOf(id);
    if (i < 0) {
      if (delta < 0) return; // a completion for an endpoint already forgotten
      if (this.ids.length >= maxEntries) this.evictIdle();
      if (this.ids.length >= maxEntries) return;
      i = this.ids.length;
      this.ids.push(id);
      this.inflight.push(0);
      for (let b = 0; b < BUCKETS; b++) this.net.push(0);
    }
    const v = unchecked(this.inflight[i]) + delta;
    unchecked((this.inflight[i] = v < 0 ? 0 : v));
    const bucket = bucketOf(nowMs);
    const age = <i32>(this.head - bucket);
    if (age >= 0 && age < BUCKETS) unchecked((this.net[i * BUCKETS + age] += delta));
  }

  inflightOf(i: i32): i32 {
    return i < 0 ? 0 : unchecked(this.inflight[i]);
  }

  // Net dispatches to entry i at or after `sinceMs` that metrics taken at `sinceMs` cannot show.
  netSince(i: i32, sinceMs: f64, nowMs: f64): i32 {
    if (i < 0) return 0;
    const nowBucket = bucketOf(nowMs);
    const since = bucketOf(sinceMs);
    let sum = 0;
    for (let b = 0; b < BUCKETS; b++) {
      // Bucket b of the record holds time bucket head - b; the head may lag behind now.
      const t = this.head - <u32>b;
      if (t < since || t > nowBucket) continue;
      sum += unchecked(this.net[i * BUCKETS + b]);
    }
    return sum;
  }

  // Drops entries with nothing in flight and no recent traffic.
  private evictIdle(): void {
    for (let i = this.ids.length - 1; i >= 0; i--) {
      if (unchecked(this.inflight[i]) != 0) continue;
      let quiet = true;
      for (let b = 0; b < BUCKETS; b++) {
        if (unchecked(this.net[i * BUCKETS + b]) != 0) {
          quiet = false;
          break;
        }
      }
      if (!quiet) continue;
      this.ids.splice(i, 1);
      this.inflight.splice(i, 1);
      this.net.splice(i * BUCKETS, BUCKETS);
    }
  }
}

function clampI16(v: i32): i32 {
  return v < -32768 ? -32768 : v > 32767 ? 32767 : v;
}

export function loadKey(pool: string): string {
  return "wasm-epp/load/" + pool;
}

// Read-modify-write of the shared record with compare-and-swap; false when the record kept
// changing under us (the update is then lost, which the caller counts).
export function recordLoad(shared: SharedStore, key: string, id: u32, delta: i32, nowMs: f64, maxEntries: i32): bool {
  for (let attempt = 0; attempt < 8; attempt++) {
    const rec = LoadRecord.decode(shared.get(key));
    const cas = shared.cas;
    rec.add(id, delta, nowMs, maxEntries);
    if (shared.set(key, rec.encode(), cas)) return true;
  }
  return false;
}
