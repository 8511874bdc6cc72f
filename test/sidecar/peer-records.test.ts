// The prefix-record codec (sidecar/peers/records.ts).

import { test } from "node:test";
import assert from "node:assert/strict";
import { count, diff32, encode, endpointId, endpointOf, hashCountOf, hashOf, join, MalformedBatch, MAX_RECORD_BYTES, ms32, rebatch, recordSize, split, timeOf, validate } from "../../sidecar/peers/records.ts";

function hashBytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(8 * n);
  for (let i = 0; i < b.length; i++) b[i] = (seed * 31 + i) & 0xff;
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

test("a record is 9 + 8n bytes, little-endian endpoint and time, then n and the hashes", () => {
  const r = encode(0x01020304, 0xa0b0c0d0, hashBytes(2));
  assert.equal(r.length, recordSize(2));
  assert.deepEqual([...r.subarray(0, 9)], [0x04, 0x03, 0x02, 0x01, 0xd0, 0xc0, 0xb0, 0xa0, 2]);
  assert.equal(endpointOf(r), 0x01020304);
  assert.equal(timeOf(r), 0xa0b0c0d0);
  assert.equal(hashCountOf(r), 2);
  assert.deepEqual([...hashOf(r, 1)], [...hashBytes(2).subarray(8, 16)]);
  assert.equal(MAX_RECORD_BYTES, 9 + 8 * 64);
  assert.throws(() => encode(1, 1, new Uint8Array(0)), RangeError);
  assert.throws(() => encode(1, 1, new Uint8Array(7)), RangeError);
  assert.throws(() => encode(1, 1, hashBytes(65)), RangeError);
});

test("split and validate a batch; the fields of each record", () => {
  const a = encode(1, 100, hashBytes(1, 1));
  const b = encode(2, 200, hashBytes(25, 2));
  const c = encode(3, 300, hashBytes(64, 3));
  const batch = concat(a, b, c);
  const recs = split(batch);
  assert.equal(recs.length, 3);
  assert.deepEqual(recs.map((r) => endpointOf(r)), [1, 2, 3]);
  assert.deepEqual(recs.map((r) => timeOf(r)), [100, 200, 300]);
  assert.deepEqual(recs.map((r) => r.length), [17, 209, 521]);
  assert.equal(count(batch), 3);
  const v = validate(batch);
  assert.ok(v.ok);
  assert.deepEqual(v.offsets, [0, 17, 226]);
  assert.equal(endpointOf(batch, 17), 2);
  assert.deepEqual(split(new Uint8Array(0)), [], "an empty batch holds no records");
});

test("malformed batches: the error names the byte offset", () => {
  const a = encode(1, 100, hashBytes(2));
  const cases: Array<[Uint8Array, number, RegExp]> = [
    [a.subarray(0, 5), 0, /needs 9 header bytes, 5 left/],
    [concat(a, a.subarray(0, 20)), 25, /needs 25 bytes, 20 left/],
    [concat(a, Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0])), 33, /n is 0/],
    [concat(a, Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 65]), hashBytes(65)), 33, /n is 65, more than 64/],
  ];
  for (const [batch, offset, re] of cases) {
    const v = validate(batch);
    assert.equal(v.ok, false);
    if (v.ok) continue;
    assert.equal(v.error.offset, offset, re.source);
    assert.match(v.error.message, new RegExp(`at byte ${offset}: `));
    assert.match(v.error.message, re);
    assert.throws(() => split(batch), (e: unknown) => e instanceof MalformedBatch && e.offset === offset);
  }
});

test("join: records into batches of at most N bytes, in order, nothing lost", () => {
  const recs = Array.from({ length: 50 }, (_, i) => encode(i + 1, i, hashBytes(1 + (i % 25), i)));
  const total = recs.reduce((n, r) => n + r.length, 0);
  for (const max of [521, 1000, 4096, total, total * 2]) {
    const batches = join(recs, max);
    assert.ok(batches.every((b) => b.length <= max && b.length > 0), `max ${max}`);
    assert.deepEqual(batches.flatMap((b) => split(b).map((r) => endpointOf(r))), recs.map((_, i) => i + 1));
    if (max >= total) assert.equal(batches.length, 1);
  }
  assert.throws(() => join([encode(1, 1, hashBytes(10))], 50), RangeError);
  assert.deepEqual(join([], 100), []);
});

test("rebatch: a batch cut between records into pieces of at most N bytes, without copying", () => {
  const batch = concat(...Array.from({ length: 40 }, (_, i) => encode(i + 1, i, hashBytes(1 + (i % 7), i))));
  const pieces = rebatch(batch, 300);
  assert.ok(pieces.length > 1);
  assert.ok(pieces.every((p) => p.length <= 300));
  assert.equal(pieces.reduce((n, p) => n + p.length, 0), batch.length);
  assert.equal(pieces[0].buffer, batch.buffer, "views into the batch");
  assert.deepEqual(pieces.flatMap((p) => split(p).map((r) => endpointOf(r))), Array.from({ length: 40 }, (_, i) => i + 1));
  assert.deepEqual(rebatch(batch, batch.length), [batch]);
  assert.throws(() => rebatch(batch, 20), RangeError);
  assert.throws(() => rebatch(batch.subarray(0, batch.length - 1), 300), MalformedBatch);
});

test("endpoint ids are FNV-1a 32 of ip:port; ms32 times compare across the wrap", () => {
  assert.equal(endpointId(""), 0x811c9dc5);
  assert.equal(endpointId("a"), 0xe40c292c);
  assert.equal(endpointId("foobar"), 0xbf9cf968);
  assert.notEqual(endpointId("10.0.0.1:8000"), endpointId("10.0.0.2:8000"));
  assert.equal(ms32(2 ** 32 + 5), 5);
  assert.equal(ms32(1_764_000_000_000), 1_764_000_000_000 % 2 ** 32);
  assert.equal(diff32(5, 2 ** 32 - 5), 10, "10 ms after the wrap");
  assert.equal(diff32(2 ** 32 - 5, 5), -10);
  assert.equal(diff32(1000, 400), 600);
});
