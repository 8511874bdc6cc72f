import { SharedStore } from "../util/store";

// What this proxy has sent to each endpoint, shared by all worker VMs.
//
// Model-server metrics arrive every 50-100 ms and are already some tens of milliseconds old; a
// burst picked between two refreshes would all land on the momentary best pod. So every worker
// records each dispatch and completion in one shared record per pool:
//   - in-flight: requests sent and not finished (a hard lower bound on the pod's load), and
//   - net dispatches (sent minus finished) in BUCKETS time buckets of BUCKET_MS each, and
//   - prefill work: the time at which the endpoint will have prefilled every prompt this proxy
//     sent it, a leaky bucket kept as one timestamp (each dispatch adds its uncached prompt
//     tokens at the endpoint's prefill rate, after whatever was still due),
// and a pick estimates an endpoint's outstanding requests as
//   max(in-flight, running + waiting at metrics time + net dispatches since metrics time),
// and the wait a new request would have before its own prefill starts as busy-until - now.
// The record lives under one shared-data key per pool, updated with compare-and-swap, and is
// read and rewritten in place as bytes (no decoding into objects: it is touched three times per
// request). Its size is bounded: at most `maxEntries` entries, idle ones dropped first.
//
// The record also tells whether the pool's clients run closed loop (a fixed number of requests
// in flight, each sent as another finishes, as a load test with a concurrency limit does): it
// keeps when a request last finished and a moving average of how many dispatches came within
// COUPLED_MS of a completion. Open-loop traffic lands there only by chance.
//
// Layout (little-endian): u32 magic, u32 head bucket, u32 count, f32 coupled share, f64 last
// completion (ms since the epoch), then count entries sorted by
// endpoint id: u32 id, i32 in-flight, f64 busy-until (ms since the epoch), i16 net[BUCKETS]
// (net[0] is the head bucket, the newest).

export const BUCKET_MS: f64 = 64;
export const BUCKETS: i32 = 8;
const MAGIC: u32 = 0x334c4557; // "WEL3"
const HEADER: i32 = 24;
export const COUPLED_MS: f64 = 5;
const COUPLED_ALPHA: f32 = 0.05;
const NET: i32 = 16; // offset of net[0] in an entry
const ENTRY: i32 = NET + 2 * BUCKETS;

export function bucketOf(ms: f64): u32 {
  return <u32>(<u64>Math.floor(ms / BUCKET_MS));
}

// A read-only view of a record (or of nothing: an empty record).
export class LoadView {
  buf: ArrayBuffer | null = null;
  ptr: usize = 0;
  count: i32 = 0;
  head: u32 = 0;
  // Share of recent dispatches sent within COUPLED_MS of a completion; 1 (closed loop assumed)
  // until dispatches show otherwise.
  coupled: f64 = 1;
  lastFinishMs: f64 = 0;

  constructor(buf: ArrayBuffer | null) {
    if (buf !== null) this.attach(buf);
  }

  private attach(buf: ArrayBuffer): void {
    if (buf.byteLength < HEADER) return;
    const p = changetype<usize>(buf);
    const count = <i32>load<u32>(p, 8);
    if (load<u32>(p) != MAGIC || count < 0 || count > (buf.byteLength - HEADER) / ENTRY) return;
    this.buf = buf;
    this.ptr = p;
    this.count = count;
    this.head = load<u32>(p, 4);
    this.coupled = <f64>load<f32>(p, 12);
    this.lastFinishMs = load<f64>(p, 16);
  }

  @inline entry(i: i32): usize {
    return this.ptr + <usize>(HEADER + i * ENTRY);
  }

  idAt(i: i32): u32 {
    return load<u32>(this.entry(i));
  }

  // Index of endpoint `id`, or -1 (binary search: entries are sorted by id).
  find(id: u32): i32 {
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = load<u32>(this.entry(mid));
      if (v == id) return mid;
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  // Where an entry for `id` (absent) would go to keep the order.
  private insertionPoint(id: u32): i32 {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (load<u32>(this.entry(mid)) < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  inflightAt(i: i32): i32 {
    return i < 0 ? 0 : load<i32>(this.entry(i), 4);
  }

  netAt(i: i32, b: i32): i32 {
    return <i32>load<i16>(this.entry(i) + <usize>(NET + 2 * b));
  }

  // When entry i will have prefilled what this proxy sent it (0: nothing recorded).
  busyUntilAt(i: i32): f64 {
    return i < 0 ? 0 : load<f64>(this.entry(i), 8);
  }

  // Milliseconds of prefill still due on entry i at `nowMs`.
  backlogMs(i: i32, nowMs: f64): f64 {
    const b = this.busyUntilAt(i) - nowMs;
    return b > 0 ? b : 0;
  }

  // Net dispatches to entry i at or after `sinceMs` (up to now) that metrics taken at `sinceMs`
  // cannot show.
  netSince(i: i32, sinceMs: f64, nowMs: f64): i32 {
    if (i < 0) return 0;
    const nowBucket = bucketOf(nowMs);
    const since = bucketOf(sinceMs);
    let sum = 0;
    for (let b = 0; b < BUCKETS; b++) {
      // Bucket b holds time bucket head - b; the head may lag behind now.
      const t = this.head - <u32>b;
      if (t < since || t > nowBucket) continue;
      sum += this.netAt(i, b);
    }
    return sum;
  }

  private idle(i: i32, shift: u32, nowMs: f64): bool {
    if (this.inflightAt(i) != 0 || this.busyUntilAt(i) > nowMs) return false;
    for (let b = 0; b < BUCKETS; b++) {
      if (<u32>b + shift >= <u32>BUCKETS) break;
      if (this.netAt(i, b) != 0) return false;
    }
    return true;
  }

  // A new record with `delta` (+1 dispatch, -1 completion) applied to endpoint `id` at `nowMs`,
  // a dispatch adding `workMs` of prefill after what is still due; null when nothing changes (a
  // completion for an endpoint already forgotten, or no room).
  with(id: u32, delta: i32, nowMs: f64, maxEntries: i32, workMs: f64 = 0): ArrayBuffer | null {
    const now = bucketOf(nowMs);
    const newHead = now > this.head ? now : this.head;
    const shift = newHead - this.head;
    let at = this.find(id);
    const insert = at < 0;
    if (insert && delta < 0) return null;
    // Drop idle entries only when the new one would not fit otherwise.
    const compact = insert && this.count >= maxEntries;
    let kept = 0;
    for (let i = 0; i < this.count; i++) if (!compact || !this.idle(i, shift, nowMs)) kept++;
    if (insert && kept >= maxEntries) return null;
    const out = new ArrayBuffer(HEADER + (kept + (insert ? 1 : 0)) * ENTRY);
    const o = changetype<usize>(out);
    store<u32>(o, MAGIC);
    store<u32>(o, newHead, 4);
    store<u32>(o, <u32>(kept + (insert ? 1 : 0)), 8);
    let coupled = <f32>this.coupled;
    // Before any request has finished there is no evidence either way.
    if (delta > 0 && this.lastFinishMs > 0) {
      const c: f32 = nowMs - this.lastFinishMs <= COUPLED_MS ? 1 : 0;
      coupled += COUPLED_ALPHA * (c - coupled);
    }
    store<f32>(o, coupled, 12);
    store<f64>(o, delta < 0 ? nowMs : this.lastFinishMs, 16);
    const age = <i32>(newHead - now); // bucket index of `now` in the new record
    if (shift == 0 && !compact) {
      // The common case: same time bucket, nothing dropped. Copy in bulk, then touch one entry.
      if (insert) {
        at = this.insertionPoint(id);
        memory.copy(o + <usize>HEADER, this.entry(0), <usize>(at * ENTRY));
        const e = o + <usize>(HEADER + at * ENTRY);
        store<u32>(e, id);
        store<i32>(e, delta, 4);
        store<f64>(e, busyAfter(0, nowMs, delta, workMs), 8);
        memory.fill(e + <usize>NET, 0, <usize>(2 * BUCKETS));
        if (age < BUCKETS) store<i16>(e + <usize>(NET + 2 * age), <i16>delta);
        memory.copy(e + <usize>ENTRY, this.entry(at), <usize>((this.count - at) * ENTRY));
      } else {
        memory.copy(o + <usize>HEADER, this.entry(0), <usize>(this.count * ENTRY));
        const e = o + <usize>(HEADER + at * ENTRY);
        const inflight = load<i32>(e, 4) + delta;
        store<i32>(e, inflight < 0 ? 0 : inflight, 4);
        store<f64>(e, busyAfter(load<f64>(e, 8), nowMs, delta, workMs), 8);
        if (age < BUCKETS) {
          const v = <i32>load<i16>(e + <usize>(NET + 2 * age)) + delta;
          store<i16>(e + <usize>(NET + 2 * age), <i16>(v < -32768 ? -32768 : v > 32767 ? 32767 : v));
        }
      }
      return out;
    }
    let w = o + <usize>HEADER;
    let placed = !insert;
    for (let i = 0; i <= this.count; i++) {
      if (!placed && (i == this.count || this.idAt(i) > id)) {
        store<u32>(w, id);
        store<i32>(w, delta > 0 ? delta : 0, 4);
        store<f64>(w, busyAfter(0, nowMs, delta, workMs), 8);
        for (let b = 0; b < BUCKETS; b++) store<i16>(w + <usize>(NET + 2 * b), <i16>(b == age ? delta : 0));
        w += <usize>ENTRY;
        placed = true;
      }
      if (i == this.count) break;
      if (compact && this.idle(i, shift, nowMs)) continue;
      const e = this.entry(i);
      const mine = load<u32>(e) == id;
      store<u32>(w, load<u32>(e));
      let inflight = load<i32>(e, 4);
      if (mine) {
        inflight += delta;
        if (inflight < 0) inflight = 0;
      }
      store<i32>(w, inflight, 4);
      const busy = load<f64>(e, 8);
      store<f64>(w, mine ? busyAfter(busy, nowMs, delta, workMs) : busy, 8);
      for (let b = 0; b < BUCKETS; b++) {
        const from = b - <i32>shift;
        let v = from >= 0 ? <i32>load<i16>(e + <usize>(NET + 2 * from)) : 0;
        if (mine && b == age) v += delta;
        store<i16>(w + <usize>(NET + 2 * b), <i16>(v < -32768 ? -32768 : v > 32767 ? 32767 : v));
      }
      w += <usize>ENTRY;
    }
    return out;
  }
}

// Busy-until after a dispatch of `workMs` of prefill at `nowMs`: the work starts once what was
// due is done. A completion leaves it as it is.
function busyAfter(busy: f64, nowMs: f64, delta: i32, workMs: f64): f64 {
  if (delta <= 0 || !(workMs > 0)) return busy;
  return (busy > nowMs ? busy : nowMs) + workMs;
}

// Read-modify-write of the shared record with compare-and-swap; false when the record kept
// changing under us (the update is then lost, which the caller counts).
export function recordLoad(shared: SharedStore, key: string, id: u32, delta: i32, nowMs: f64, maxEntries: i32, workMs: f64 = 0): bool {
  for (let attempt = 0; attempt < 8; attempt++) {
    const view = new LoadView(shared.get(key));
    const cas = shared.cas;
    const next = view.with(id, delta, nowMs, maxEntries, workMs);
    if (next === null) return true;
    if (shared.set(key, next, cas)) return true;
  }
  return false;
}

export function loadKey(pool: string): string {
  return "wasm-epp/load/" + pool;
}

// What a pick sees of an endpoint's load: this gateway's record, plus (when the gateway's
// replicas share their loads, peers/load.ts) the sum of the other replicas' records as their
// sidecars last sent them. In-flight requests and net dispatches add up; so does prefill
// backlog, since an endpoint prefills one request after another whoever sent it.
export class PoolLoad {
  local: LoadView;
  peers: LoadView;

  constructor(local: LoadView, peers: LoadView | null = null) {
    this.local = local;
    this.peers = peers !== null ? peers : new LoadView(null);
  }

  // Whether this gateway's clients run closed loop: its own record alone says.
  get coupled(): f64 {
    return this.local.coupled;
  }

  inflightOf(id: u32): i32 {
    let n = this.local.inflightAt(this.local.find(id));
    if (this.peers.count > 0) n += this.peers.inflightAt(this.peers.find(id));
    return n;
  }

  netSinceOf(id: u32, sinceMs: f64, nowMs: f64): i32 {
    let n = this.local.netSince(this.local.find(id), sinceMs, nowMs);
    if (this.peers.count > 0) n += this.peers.netSince(this.peers.find(id), sinceMs, nowMs);
    return n;
  }

  backlogOf(id: u32, nowMs: f64): f64 {
    let b = this.local.backlogMs(this.local.find(id), nowMs);
    if (this.peers.count > 0) b += this.peers.backlogMs(this.peers.find(id), nowMs);
    return b;
  }
}

// One record summing several (peers' records, as peers/load.ts keeps them) at `nowMs`: the
// union of their endpoints; in-flight and net dispatches per time bucket added (buckets aligned
// on the newest head); busy-until as now plus the sum of the backlogs. Header fields other than
// the head are zero (only this gateway's own record says whether its clients run closed loop).
export function sumRecords(views: Array<LoadView>, nowMs: f64, maxEntries: i32): ArrayBuffer {
  let head: u32 = 0;
  const ids = new Array<u32>();
  for (let v = 0; v < views.length; v++) {
    const lv = unchecked(views[v]);
    if (lv.head > head) head = lv.head;
    for (let i = 0; i < lv.count; i++) ids.push(lv.idAt(i));
  }
  ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let distinct = 0;
  for (let i = 0; i < ids.length; i++) if (i == 0 || unchecked(ids[i]) != unchecked(ids[i - 1])) unchecked((ids[distinct++] = ids[i]));
  ids.length = distinct < maxEntries ? distinct : maxEntries;
  const out = new ArrayBuffer(HEADER + ids.length * ENTRY);
  const o = changetype<usize>(out);
  store<u32>(o, MAGIC);
  store<u32>(o, head, 4);
  store<u32>(o, <u32>ids.length, 8);
  for (let k = 0; k < ids.length; k++) {
    const id = unchecked(ids[k]);
    const e = o + <usize>(HEADER + k * ENTRY);
    let inflight = 0;
    let backlog: f64 = 0;
    store<u32>(e, id);
    for (let v = 0; v < views.length; v++) {
      const lv = unchecked(views[v]);
      const i = lv.find(id);
      if (i < 0) continue;
      inflight += lv.inflightAt(i);
      backlog += lv.backlogMs(i, nowMs);
      const shift = <i32>(head - lv.head);
      for (let b = 0; b + shift < BUCKETS; b++) {
        const at = e + <usize>(NET + 2 * (b + shift));
        const s = <i32>load<i16>(at) + lv.netAt(i, b);
        store<i16>(at, <i16>(s < -32768 ? -32768 : s > 32767 ? 32767 : s));
      }
    }
    store<i32>(e, inflight, 4);
    store<f64>(e, backlog > 0 ? nowMs + backlog : 0, 8);
  }
  return out;
}
