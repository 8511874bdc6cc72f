// The other gateway replicas' loads (docs/replicas.md): what each of them has in flight to each
// endpoint, its net dispatches and its prefill backlog, as its sidecar last read it from its
// filter (schedule/load.ts's record, unchanged) and passed it on.
//
// The push listener keeps the latest record of each replica of a pool under one key, dropping
// those older than the TTL (a replica that went away), and after each update writes their sum
// under a second key with the time it was made. A pick reads only the sum, and ignores a sum
// older than the TTL (no replica has reported since).
//
// Keys: "wasm-epp/loadpeers/<pool>": u32 magic, u32 count, then count x { u32 replica (FNV-1a of
// its name), f64 received (ms since the epoch), u32 length, length bytes of record };
// "wasm-epp/loadsum/<pool>": f64 made (ms since the epoch), then the summed record.

import { SharedStore } from "../util/store";
import { LoadView, sumRecords } from "../schedule/load";

const MAGIC: u32 = 0x50455257; // "WREP"
export const MAX_REPLICAS: i32 = 64;
const MAX_ATTEMPTS: i32 = 8;

export function peersKey(pool: string): string {
  return "wasm-epp/loadpeers/" + pool;
}

export function sumKey(pool: string): string {
  return "wasm-epp/loadsum/" + pool;
}

class Entry {
  replica: u32 = 0;
  receivedMs: f64 = 0;
  record: ArrayBuffer = new ArrayBuffer(0);
}

function decodeEntries(buf: ArrayBuffer | null): Array<Entry> {
  const out = new Array<Entry>();
  if (buf === null || buf.byteLength < 8) return out;
  const p = changetype<usize>(buf);
  if (load<u32>(p) != MAGIC) return out;
  const count = <i32>load<u32>(p, 4);
  let off = 8;
  for (let i = 0; i < count && i < MAX_REPLICAS; i++) {
    if (off + 16 > buf.byteLength) return new Array<Entry>();
    const e = new Entry();
    e.replica = load<u32>(p + <usize>off);
    e.receivedMs = load<f64>(p + <usize>off + 4);
    const len = <i32>load<u32>(p + <usize>off + 12);
    off += 16;
    if (len < 0 || off + len > buf.byteLength) return new Array<Entry>();
    e.record = buf.slice(off, off + len);
    off += len;
    out.push(e);
  }
  return out;
}

function encodeEntries(entries: Array<Entry>): ArrayBuffer {
  let size = 8;
  for (let i = 0; i < entries.length; i++) size += 16 + unchecked(entries[i]).record.byteLength;
  const out = new ArrayBuffer(size);
  const p = changetype<usize>(out);
  store<u32>(p, MAGIC);
  store<u32>(p, <u32>entries.length, 4);
  let off = 8;
  for (let i = 0; i < entries.length; i++) {
    const e = unchecked(entries[i]);
    store<u32>(p + <usize>off, e.replica);
    store<f64>(p + <usize>off + 4, e.receivedMs);
    store<u32>(p + <usize>off + 12, <u32>e.record.byteLength);
    memory.copy(p + <usize>off + 16, changetype<usize>(e.record), <usize>e.record.byteLength);
    off += 16 + e.record.byteLength;
  }
  return out;
}

// Whether `record` is a load record a pick can read (the same check LoadView makes).
export function isLoadRecord(record: ArrayBuffer): bool {
  return record.byteLength == 0 || new LoadView(record).buf !== null;
}

// Keeps `replica`'s latest record of `pool` and rewrites the sum. Returns the number of replicas
// whose records the sum holds, or -1 when the shared data kept changing under the update.
export function updatePeerLoad(shared: SharedStore, pool: string, replica: u32, record: ArrayBuffer, nowMs: f64, ttlMs: f64, maxEntries: i32): i32 {
  const key = peersKey(pool);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const entries = decodeEntries(shared.get(key));
    const cas = shared.cas;
    const kept = new Array<Entry>();
    for (let i = 0; i < entries.length; i++) {
      const e = unchecked(entries[i]);
      if (e.replica == replica || nowMs - e.receivedMs > ttlMs) continue;
      kept.push(e);
    }
    const mine = new Entry();
    mine.replica = replica;
    mine.receivedMs = nowMs;
    mine.record = record;
    kept.push(mine);
    // The oldest go first when there are too many.
    while (kept.length > MAX_REPLICAS) kept.shift();
    if (!shared.set(key, encodeEntries(kept), cas)) continue;
    const views = new Array<LoadView>();
    for (let i = 0; i < kept.length; i++) views.push(new LoadView(unchecked(kept[i]).record));
    const sum = sumRecords(views, nowMs, maxEntries);
    const out = new ArrayBuffer(8 + sum.byteLength);
    store<f64>(changetype<usize>(out), nowMs);
    memory.copy(changetype<usize>(out) + 8, changetype<usize>(sum), <usize>sum.byteLength);
    shared.set(sumKey(pool), out, 0);
    return kept.length;
  }
  return -1;
}

// The other replicas' summed load of `pool` for a pick at `nowMs`: null when sharing is off,
// nothing was received, or the sum is older than the TTL.
export function peersLoad(shared: SharedStore, pool: string, nowMs: f64, ttlMs: f64): LoadView | null {
  const buf = shared.get(sumKey(pool));
  if (buf === null || buf.byteLength < 8) return null;
  const made = load<f64>(changetype<usize>(buf));
  if (!(nowMs - made <= ttlMs)) return null;
  const v = new LoadView(buf.slice(8));
  return v.buf !== null ? v : null;
}
