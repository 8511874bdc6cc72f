// The journal of prefix-index records, for the sidecar to pass on to the gateway's other
// replicas (docs/replicas.md). Each time the routing filter records that an endpoint was sent a
// prompt, the index positions it wrote go into a fixed ring of `slots` records in shared data;
// the sidecar reads the ring with a cursor (GET /wasm-epp/v1/share?since=N) and never waits on
// the filter, nor the filter on it.
//
// Shared data has no append: a writer first claims a sequence number on the head key (CAS),
// then writes its record into slot seq % slots, prefixed with seq. A reader trusts a slot only
// when its prefix is the sequence it expects; a slot overwritten (the ring went round) or not
// written yet (claimed a moment ago) is counted lost.
//
// Keys: "wasm-epp/pj/head" (u64 next sequence), "wasm-epp/pj/<slot in hex>" (u64 seq, record),
// "wasm-epp/pj/params" (the routing filter's settings, for the push listener: see SharingParams).
//
// A record (little-endian), as exchanged between replicas:
//   u32 endpoint id (FNV-1a of "ip:port": the same on every replica), u32 time (ms32),
//   u8 n (1..MAX_HASHES), n x u64 chained prefix hashes.

import { SharedStore } from "../util/store";

export const MAX_HASHES: i32 = 64;
export const RECORD_HEADER: i32 = 9;
const HEAD_KEY = "wasm-epp/pj/head";
const PARAMS_KEY = "wasm-epp/pj/params";
const MAX_CLAIM_ATTEMPTS: i32 = 8;

export function recordSize(n: i32): i32 {
  return RECORD_HEADER + 8 * n;
}

// Writes one record at p (the caller sized the buffer with recordSize).
export function writeRecord(p: usize, ep: u32, time: u32, hashes: Array<u64>): void {
  store<u32>(p, ep);
  store<u32>(p + 4, time);
  store<u8>(p + 8, <u8>hashes.length);
  for (let i = 0; i < hashes.length; i++) store<u64>(p + RECORD_HEADER + <usize>(i * 8), unchecked(hashes[i]));
}

// The routing filter's settings the push listener needs to serve and merge records: the ring
// size, the index's geometry and TTL, the import limit, how long a peer's load counts, and the
// load record's bound. slots == 0: sharing is off.
export class SharingParams {
  slots: u32 = 0;
  sets: u32 = 0;
  ttlMs: u32 = 0;
  maxImportBytes: u32 = 0;
  loadTtlMs: u32 = 0;
  maxEndpoints: u32 = 0;

  static load(shared: SharedStore): SharingParams | null {
    const buf = shared.get(PARAMS_KEY);
    if (buf === null || buf.byteLength != 24) return null;
    const p = changetype<usize>(buf);
    const s = new SharingParams();
    s.slots = load<u32>(p);
    s.sets = load<u32>(p + 4);
    s.ttlMs = load<u32>(p + 8);
    s.maxImportBytes = load<u32>(p + 12);
    s.loadTtlMs = load<u32>(p + 16);
    s.maxEndpoints = load<u32>(p + 20);
    return s.slots > 0 && s.sets > 0 ? s : null;
  }

  save(shared: SharedStore): void {
    const buf = new ArrayBuffer(24);
    const p = changetype<usize>(buf);
    store<u32>(p, this.slots);
    store<u32>(p + 4, this.sets);
    store<u32>(p + 8, this.ttlMs);
    store<u32>(p + 12, this.maxImportBytes);
    store<u32>(p + 16, this.loadTtlMs);
    store<u32>(p + 20, this.maxEndpoints);
    shared.set(PARAMS_KEY, buf, 0);
  }
}

export class JournalRead {
  body: ArrayBuffer = new ArrayBuffer(0);
  records: i32 = 0;
  next: u64 = 0;
  lost: u64 = 0;
}

export class PrefixJournal {
  store: SharedStore;
  slots: u32;
  // Records that could not claim a sequence (the head kept changing under contention).
  dropped: i32 = 0;

  constructor(store: SharedStore, slots: u32) {
    this.store = store;
    this.slots = slots;
  }

  slotKey(seq: u64): string {
    return "wasm-epp/pj/" + (<u32>(seq % <u64>this.slots)).toString(16);
  }

  head(): u64 {
    const buf = this.store.get(HEAD_KEY);
    return buf !== null && buf.byteLength == 8 ? load<u64>(changetype<usize>(buf)) : 0;
  }

  // Appends one record; false when no sequence could be claimed (the record is dropped).
  append(ep: u32, time: u32, hashes: Array<u64>): bool {
    const n = hashes.length;
    if (n == 0) return true;
    if (n > MAX_HASHES) hashes = hashes.slice(0, MAX_HASHES);
    let seq: u64 = 0;
    let claimed = false;
    const next = new ArrayBuffer(8);
    for (let attempt = 0; attempt < MAX_CLAIM_ATTEMPTS && !claimed; attempt++) {
      const buf = this.store.get(HEAD_KEY);
      const cas = this.store.cas;
      seq = buf !== null && buf.byteLength == 8 ? load<u64>(changetype<usize>(buf)) : 0;
      store<u64>(changetype<usize>(next), seq + 1);
      claimed = this.store.set(HEAD_KEY, next, cas);
    }
    if (!claimed) {
      this.dropped++;
      return false;
    }
    const value = new ArrayBuffer(8 + recordSize(hashes.length));
    const p = changetype<usize>(value);
    store<u64>(p, seq);
    writeRecord(p + 8, ep, time, hashes);
    this.store.set(this.slotKey(seq), value, 0);
    return true;
  }

  // The records from `since` on (from the oldest the ring holds when since < 0), at most
  // maxBytes of them (at least one record when there is one). A cursor ahead of the head
  // belongs to an earlier life of the shared data (Envoy restarted): reading starts over.
  read(since: i64, maxBytes: i32): JournalRead {
    const r = new JournalRead();
    const head = this.head();
    const oldest: u64 = head > <u64>this.slots ? head - <u64>this.slots : 0;
    let seq: u64 = since < 0 || <u64>since > head ? oldest : <u64>since;
    if (seq < oldest) {
      r.lost = oldest - seq;
      seq = oldest;
    }
    const parts = new Array<ArrayBuffer>();
    let size = 0;
    for (; seq < head; seq++) {
      const buf = this.store.get(this.slotKey(seq));
      if (buf === null || buf.byteLength < 8 + RECORD_HEADER || load<u64>(changetype<usize>(buf)) != seq) {
        r.lost++;
        continue;
      }
      const len = buf.byteLength - 8;
      if (size > 0 && size + len > maxBytes) break;
      parts.push(buf);
      size += len;
    }
    r.next = seq;
    r.records = parts.length;
    const out = new ArrayBuffer(size);
    let off = 0;
    for (let i = 0; i < parts.length; i++) {
      const b = unchecked(parts[i]);
      const len = b.byteLength - 8;
      memory.copy(changetype<usize>(out) + <usize>off, changetype<usize>(b) + 8, <usize>len);
      off += len;
    }
    r.body = out;
    return r;
  }
}
