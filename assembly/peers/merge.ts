// Merging the records other gateway replicas journaled (peers/journal.ts has the format) into
// this replica's prefix index. The whole batch is checked before anything is merged: a batch
// cut short or with an impossible count is refused as a whole, never half applied.
// Merging is idempotent and newer wins (IndexSet.merge). A record from a clock running ahead is
// taken as recorded now, so no replica can make its entries outlive the TTL. Merged entries do
// not go into this replica's journal: nothing echoes back.

import { PrefixIndex, ms32 } from "../prefix/index";
import { MAX_HASHES, RECORD_HEADER } from "./journal";

export class MergeResult {
  // Empty when the batch was merged; else why it was refused.
  error: string = "";
  records: i32 = 0;
  merged: i32 = 0;
  skipped: i32 = 0;
}

// The byte offset of the first malformed record, or -1 when the batch is well formed.
export function checkBatch(p: usize, len: i32): i32 {
  let off = 0;
  while (off < len) {
    if (off + RECORD_HEADER > len) return off;
    const n = <i32>load<u8>(p + <usize>off + 8);
    if (n == 0 || n > MAX_HASHES || off + RECORD_HEADER + 8 * n > len) return off;
    off += RECORD_HEADER + 8 * n;
  }
  return -1;
}

export function mergeBatch(index: PrefixIndex, body: ArrayBuffer, nowMs: f64): MergeResult {
  const r = new MergeResult();
  const p = changetype<usize>(body);
  const len = body.byteLength;
  const bad = checkBatch(p, len);
  if (bad >= 0) {
    r.error = "malformed prefix record at byte " + bad.toString() + " of " + len.toString();
    return r;
  }
  const now = ms32(nowMs);
  let off = 0;
  while (off < len) {
    const ep = load<u32>(p + <usize>off);
    let t = load<u32>(p + <usize>off + 4);
    const n = <i32>load<u8>(p + <usize>off + 8);
    if (<i32>(t - now) > 0) t = now; // ahead of this replica's clock
    const hp = p + <usize>(off + RECORD_HEADER);
    for (let k = 0; k < n; k++) {
      if (ep != 0 && index.merge(load<u64>(hp + <usize>(k * 8)), ep, t, now)) r.merged++;
      else r.skipped++;
    }
    r.records++;
    off += RECORD_HEADER + 8 * n;
  }
  return r;
}
