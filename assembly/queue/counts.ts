// How many requests every worker holds, per band, in shared data: one record with an entry per
// worker (u32 worker id, u32 pool hash, f64 updated ms, i32 x 3 counts). A worker rewrites its own
// entry when its counts change and at least every REFRESH_MS; entries not refreshed for STALE_MS
// belong to workers that are gone (a VM that failed or was replaced) and count for nothing, so a
// lost worker can never block the lower bands for good.

import { SharedStore } from "../util/store";
import { BANDS } from "./band";

const ENTRY: i32 = 4 + 4 + 8 + 4 * BANDS;
const AT_POOL: usize = 4;
const AT_TIME: usize = 8;
const AT_COUNTS: usize = 16;
export const COUNTS_KEY = "wasm-epp.queue";
export const REFRESH_MS: f64 = 1000;
export const STALE_MS: f64 = 3000;
const MAX_WORKERS: i32 = 1024;

// Requests of pool `pool` (its name's hash) held per band on every live worker (this one included).
export function heldEverywhere(shared: SharedStore, pool: u32, nowMs: f64): StaticArray<i32> {
  const out = new StaticArray<i32>(BANDS);
  const v = shared.get(COUNTS_KEY);
  if (v === null) return out;
  const p = changetype<usize>(v);
  const n = v.byteLength / ENTRY;
  for (let i = 0; i < n; i++) {
    const at = p + <usize>(i * ENTRY);
    if (load<u32>(at + AT_POOL) != pool || nowMs - load<f64>(at + AT_TIME) > STALE_MS) continue;
    for (let b = 0; b < BANDS; b++) out[b] += load<i32>(at + AT_COUNTS + <usize>(b * 4));
  }
  return out;
}

// Ids of the live workers holding any request (of any pool): the ones a wake-up is for.
export function holders(shared: SharedStore, nowMs: f64): Array<u32> {
  const out = new Array<u32>();
  const v = shared.get(COUNTS_KEY);
  if (v === null) return out;
  const p = changetype<usize>(v);
  const n = v.byteLength / ENTRY;
  for (let i = 0; i < n; i++) {
    const at = p + <usize>(i * ENTRY);
    if (nowMs - load<f64>(at + AT_TIME) > STALE_MS) continue;
    let any = false;
    for (let b = 0; b < BANDS; b++) if (load<i32>(at + AT_COUNTS + <usize>(b * 4)) > 0) any = true;
    if (any) out.push(load<u32>(at));
  }
  return out;
}

// Writes this worker's counts (dropping entries of gone workers). False when it lost the race to
// other workers too many times (the next change or refresh writes it again).
export function publishCounts(shared: SharedStore, pool: u32, worker: u32, counts: StaticArray<i32>, nowMs: f64): bool {
  const key = COUNTS_KEY;
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = shared.get(key);
    const cas = shared.cas;
    const n = v === null ? 0 : v.byteLength / ENTRY;
    const keep = new Array<i32>();
    for (let i = 0; i < n; i++) {
      const at = changetype<usize>(v) + <usize>(i * ENTRY);
      if (load<u32>(at) == worker || nowMs - load<f64>(at + AT_TIME) > STALE_MS) continue;
      keep.push(i);
    }
    if (keep.length >= MAX_WORKERS) keep.length = MAX_WORKERS - 1;
    const buf = new ArrayBuffer((keep.length + 1) * ENTRY);
    const q = changetype<usize>(buf);
    for (let k = 0; k < keep.length; k++) {
      memory.copy(q + <usize>(k * ENTRY), changetype<usize>(v) + <usize>(keep[k] * ENTRY), <usize>ENTRY);
    }
    const at = q + <usize>(keep.length * ENTRY);
    store<u32>(at, worker);
    store<u32>(at + AT_POOL, pool);
    store<f64>(at + AT_TIME, nowMs);
    for (let b = 0; b < BANDS; b++) store<i32>(at + AT_COUNTS + <usize>(b * 4), counts[b]);
    if (shared.set(key, buf, v === null ? 0 : cas)) return true;
  }
  return false;
}

// Whether any worker holds a request of a band above `band` (a lower index).
export function higherWaiting(counts: StaticArray<i32>, band: i32): bool {
  for (let b = 0; b < band; b++) if (counts[b] > 0) return true;
  return false;
}

// Whether any worker holds a request of `band` or above: a new request of `band` queues behind them.
export function sameOrHigherWaiting(counts: StaticArray<i32>, band: i32): bool {
  for (let b = 0; b <= band; b++) if (counts[b] > 0) return true;
  return false;
}
