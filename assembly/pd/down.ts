// Prefill pods to avoid for a while after a failed prefill, shared by every worker of the proxy
// through shared data: one small record per pool, entries (u32 endpoint id, f64 until ms).
// Until the sidecar's next push drops a dead pod, every worker steers around it after the first
// failure any of them saw.

import { SharedStore } from "../util/store";

const ENTRY: i32 = 12;
// Entries kept at most; the oldest expiry is dropped first.
export const MAX_DOWN: i32 = 64;

export function downKey(pool: string): string {
  return "wasm-epp.pd.down/" + pool;
}

// Endpoint ids avoided at `nowMs` (an empty set when none).
export function downSet(shared: SharedStore, pool: string, nowMs: f64): Set<u32> {
  const out = new Set<u32>();
  const v = shared.get(downKey(pool));
  if (v === null) return out;
  const p = changetype<usize>(v);
  const n = v.byteLength / ENTRY;
  for (let i = 0; i < n; i++) {
    const at = p + <usize>(i * ENTRY);
    if (load<f64>(at + 4) > nowMs) out.add(load<u32>(at));
  }
  return out;
}

// Avoids `id` until `untilMs`; expired entries are dropped. False when the update lost to other
// workers more than a few times.
export function markDown(shared: SharedStore, pool: string, id: u32, untilMs: f64, nowMs: f64): bool {
  const key = downKey(pool);
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = shared.get(key);
    const cas = shared.cas;
    const ids = new Array<u32>();
    const until = new Array<f64>();
    if (v !== null) {
      const p = changetype<usize>(v);
      const n = v.byteLength / ENTRY;
      for (let i = 0; i < n; i++) {
        const at = p + <usize>(i * ENTRY);
        const eid = load<u32>(at);
        const t = load<f64>(at + 4);
        if (t <= nowMs || eid == id) continue;
        ids.push(eid);
        until.push(t);
      }
    }
    ids.push(id);
    until.push(untilMs);
    while (ids.length > MAX_DOWN) {
      let oldest = 0;
      for (let i = 1; i < ids.length; i++) if (until[i] < until[oldest]) oldest = i;
      ids.splice(oldest, 1);
      until.splice(oldest, 1);
    }
    const buf = new ArrayBuffer(ids.length * ENTRY);
    const q = changetype<usize>(buf);
    for (let i = 0; i < ids.length; i++) {
      store<u32>(q + <usize>(i * ENTRY), ids[i]);
      store<f64>(q + <usize>(i * ENTRY + 4), until[i]);
    }
    if (shared.set(key, buf, v === null ? 0 : cas)) return true;
  }
  return false;
}
