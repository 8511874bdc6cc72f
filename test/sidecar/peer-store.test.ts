// The bounded record store (sidecar/peers/store.ts), in virtual time.

import { test } from "node:test";
import assert from "node:assert/strict";
import { encode, endpointOf, join, ms32, MalformedBatch, timeOf } from "../../sidecar/peers/records.ts";
import { RecordStore } from "../../sidecar/peers/store.ts";

function rec(endpoint: number, timeMs: number, n = 1): Uint8Array {
  return encode(endpoint, ms32(timeMs), new Uint8Array(8 * n).fill(endpoint & 0xff));
}

function batch(...recs: Uint8Array[]): Uint8Array {
  return join(recs, 1 << 20)[0];
}

const T0 = 1_764_000_000_000;

test("records live until the TTL, then leave the snapshot and the byte count", () => {
  const s = new RecordStore({ maxBytes: 1 << 20, ttlMs: 10_000 });
  assert.equal(s.add(batch(rec(1, T0), rec(2, T0 + 1000)), T0 + 1000), 2);
  assert.equal(s.add(batch(rec(3, T0 + 5000)), T0 + 5000), 1);
  assert.equal(s.bytes, 3 * 17);
  assert.deepEqual(s.snapshot(T0 + 9000).map((r) => endpointOf(r)), [1, 2, 3]);
  assert.deepEqual(s.snapshot(T0 + 10_500).map((r) => endpointOf(r)), [2, 3], "record 1 is 10.5 s old");
  assert.equal(s.bytes, 3 * 17, "its arrival holds a live record still");
  s.expire(T0 + 11_001);
  assert.equal(s.bytes, 17, "the first arrival is dead as a whole");
  assert.deepEqual(s.snapshot(T0 + 15_000).map((r) => endpointOf(r)), [3]);
  assert.deepEqual(s.snapshot(T0 + 15_001), []);
  assert.equal(s.bytes, 0);
  assert.equal(s.add(batch(rec(4, T0)), T0 + 60_000), 0, "an arrival already dead is not kept");
  assert.equal(s.records, 0);
});

test("the byte bound drops the oldest arrivals first; a batch larger than the bound keeps its newest tail", () => {
  const s = new RecordStore({ maxBytes: 100, ttlMs: 60_000 });
  for (let i = 1; i <= 10; i++) s.add(batch(rec(i, T0 + i)), T0 + i); // 17 bytes each
  assert.ok(s.bytes <= 100);
  assert.equal(s.bytes, 5 * 17);
  assert.deepEqual(s.snapshot(T0 + 20).map((r) => endpointOf(r)), [6, 7, 8, 9, 10]);
  assert.equal(s.dropped, 5);
  const big = batch(...Array.from({ length: 8 }, (_, i) => rec(100 + i, T0 + 30)));
  assert.equal(s.add(big, T0 + 30), 5, "the last 5 of 8 records fit in 100 bytes");
  assert.deepEqual(s.snapshot(T0 + 30).map((r) => endpointOf(r)), [103, 104, 105, 106, 107]);
  assert.ok(s.bytes <= 100);
  const tooBig = rec(9, T0 + 40, 20); // 169 bytes
  assert.equal(s.add(tooBig, T0 + 40), 0);
  assert.ok(s.bytes <= 100);
});

test("snapshot: oldest first by record time, arrivals in order between equal times", () => {
  const s = new RecordStore({ maxBytes: 1 << 20, ttlMs: 60_000 });
  s.add(batch(rec(1, T0 + 500), rec(2, T0 + 100)), T0 + 600);
  s.add(batch(rec(3, T0 + 300), rec(4, T0 + 100)), T0 + 700);
  s.add(batch(rec(5, T0 + 900)), T0 + 900);
  const snap = s.snapshot(T0 + 1000);
  assert.deepEqual(snap.map((r) => endpointOf(r)), [2, 4, 3, 1, 5]);
  assert.deepEqual(snap.map((r) => timeOf(r)), [100, 100, 300, 500, 900].map((d) => ms32(T0 + d)));
});

test("times across the 2^32 ms wrap: ages stay right, records from just before the wrap stay live", () => {
  const wrap = 2 ** 32 * 411; // a multiple of 2^32: ms32 is 0 there
  const s = new RecordStore({ maxBytes: 1 << 20, ttlMs: 10_000 });
  s.add(batch(rec(1, wrap - 8000)), wrap - 8000); // ms32 near 2^32
  s.add(batch(rec(2, wrap - 1000)), wrap - 1000);
  s.add(batch(rec(3, wrap + 1000)), wrap + 1000); // ms32 = 1000
  assert.ok(timeOf(s.snapshot(wrap + 1000)[0]) > 2 ** 32 - 10_000);
  assert.deepEqual(s.snapshot(wrap + 1000).map((r) => endpointOf(r)), [1, 2, 3], "oldest first across the wrap");
  assert.deepEqual(s.snapshot(wrap + 2500).map((r) => endpointOf(r)), [2, 3], "record 1 is 10.5 s old");
  assert.deepEqual(s.snapshot(wrap + 9500).map((r) => endpointOf(r)), [3]);
  const f = new RecordStore({ maxBytes: 1 << 20, ttlMs: 10_000 });
  f.add(batch(rec(7, wrap + 3000)), wrap - 1000); // from a clock 4 s ahead
  assert.deepEqual(f.snapshot(wrap - 1000).map((r) => endpointOf(r)), [7], "a time in the future is live");
});

test("malformed batches are refused whole; the snapshot's views are the records as they came", () => {
  const s = new RecordStore({ maxBytes: 1 << 20, ttlMs: 60_000 });
  const good = batch(rec(1, T0), rec(2, T0, 3));
  assert.throws(() => s.add(good.subarray(0, good.length - 2), T0), MalformedBatch);
  assert.equal(s.records, 0);
  s.add(good, T0);
  good.fill(0); // the store keeps its own copy
  const snap = s.snapshot(T0);
  assert.deepEqual(snap.map((r) => r.length), [17, 33]);
  assert.equal(snap[1][9], 2);
  assert.throws(() => new RecordStore({ maxBytes: 10, ttlMs: 2 ** 31 }), RangeError);
});
