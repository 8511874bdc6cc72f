// The share format's codec (sidecar/peers/sections.ts): sections of prefix records and loads.

import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "../../sidecar/peers/records.ts";
import { concat, decodeShare, encodeLoad, encodePrefix, encodeSection, isPoolName, isReplicaName, loadSectionSize, MalformedShare, prefixSectionSize, SECTION_LOAD, SECTION_PREFIX } from "../../sidecar/peers/sections.ts";

const rec1 = encode(1, 1000, new Uint8Array(8).fill(1));
const rec2 = encode(2, 2000, new Uint8Array(24).fill(2));

test("a section is u8 kind, u32 little-endian payload length, payload", () => {
  const p = encodePrefix([rec1, rec2]);
  assert.equal(p.length, prefixSectionSize(rec1.length + rec2.length));
  assert.equal(p[0], SECTION_PREFIX);
  assert.equal(Buffer.from(p).readUInt32LE(1), 17 + 33);
  assert.deepEqual(p.subarray(5), concat([rec1, rec2]));
  const l = encodeLoad("default/pool-a", "gw-0", new Uint8Array([9, 8, 7]));
  assert.equal(l.length, loadSectionSize("default/pool-a", "gw-0", 3));
  assert.deepEqual([...l], [SECTION_LOAD, 2 + 14 + 4 + 3, 0, 0, 0, 14, ...Buffer.from("default/pool-a"), 4, ...Buffer.from("gw-0"), 9, 8, 7]);
  assert.deepEqual([...encodePrefix([])], [1, 0, 0, 0, 0]);
});

test("decode: PREFIX payloads and LOAD sections, in order, as views; an empty body is valid", () => {
  const body = concat([encodeLoad("ns/a", "r1", new Uint8Array([1, 2])), encodePrefix(rec1), encodeLoad("ns/b", "r1", new Uint8Array(0)), encodePrefix(rec2)]);
  const d = decodeShare(body);
  assert.ok(d.ok);
  assert.equal(d.share.prefixRecords, 2);
  assert.equal(d.share.prefixBytes, rec1.length + rec2.length);
  assert.deepEqual(d.share.prefix, [rec1, rec2]);
  assert.equal(d.share.prefix[0].buffer, body.buffer, "a view, not a copy");
  assert.deepEqual(d.share.loads.map((l) => [l.pool, l.replica, [...l.record]]), [["ns/a", "r1", [1, 2]], ["ns/b", "r1", []]]);
  assert.deepEqual(d.share.loads[0].section, encodeLoad("ns/a", "r1", new Uint8Array([1, 2])), "the whole section, to pass on as it came");
  const empty = decodeShare(new Uint8Array(0));
  assert.ok(empty.ok && empty.share.loads.length === 0 && empty.share.prefix.length === 0);
  const emptyPrefix = decodeShare(encodePrefix([]));
  assert.ok(emptyPrefix.ok && emptyPrefix.share.prefix.length === 0 && emptyPrefix.share.prefixRecords === 0);
});

test("decode: unknown kinds are skipped and counted", () => {
  const body = concat([encodeSection(0, new Uint8Array(2)), encodePrefix(rec1), encodeSection(7, new Uint8Array(300).fill(1)), encodeSection(255, new Uint8Array(0)), encodeLoad("ns/a", "r", new Uint8Array(1))]);
  const d = decodeShare(body);
  assert.ok(d.ok);
  assert.equal(d.share.unknown, 3);
  assert.equal(d.share.prefixRecords, 1);
  assert.equal(d.share.loads.length, 1);
});

test("decode: an empty replica name only where allowed (the filter's GET answer)", () => {
  const own = encodeLoad("ns/a", "", new Uint8Array([5]));
  const strict = decodeShare(own);
  assert.ok(!strict.ok);
  assert.match(strict.error.message, /at byte 10: the replica name is empty/);
  const lax = decodeShare(own, { emptyReplica: true });
  assert.ok(lax.ok);
  assert.equal(lax.share.loads[0].replica, "");
});

test("decode: malformed bodies name the byte offset", () => {
  const good = encodePrefix(rec1); // 22 bytes
  const cases: Array<[Uint8Array, RegExp]> = [
    [new Uint8Array([1, 0, 0]), /at byte 0: a section needs 5 header bytes, 3 left/],
    [concat([good, new Uint8Array([2, 9, 0, 0, 0, 1, 2])]), /at byte 23: a section of 9 bytes, 2 left/],
    [concat([good, encodePrefix(new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0, 0]))]), /at byte 35: in a PREFIX section: n is 0/],
    [concat([good, encodePrefix(rec1.subarray(0, 12))]), /at byte 27: in a PREFIX section: a record of 1 hashes needs 17 bytes, 12 left/],
    [encodeSection(2, new Uint8Array([1])), /at byte 5: a LOAD section needs at least 2 bytes, has 1/],
    [encodeSection(2, new Uint8Array([9, 0x61, 0x2f, 0x62, 0])), /at byte 5: a pool of 9 bytes/],
    [encodeSection(2, new Uint8Array([3, 0x41, 0x2f, 0x62, 1, 0x72])), /at byte 6: the pool is not namespace\/name/],
    [encodeSection(2, new Uint8Array([3, 0x61, 0x2f, 0x62, 5, 0x72])), /at byte 9: a replica name of 5 bytes does not fit/],
    [encodeSection(2, new Uint8Array([3, 0x61, 0x2f, 0x62, 2, 0x72, 0x20])), /at byte 9: the replica name is not 1 to 253 printable ASCII/],
  ];
  for (const [body, re] of cases) {
    const d = decodeShare(body);
    assert.ok(!d.ok, String(re));
    assert.ok(d.error instanceof MalformedShare);
    assert.match(d.error.message, re);
  }
  const d = decodeShare(concat([good, new Uint8Array([2, 9, 0, 0, 0, 1, 2])]));
  assert.ok(!d.ok && d.error.offset === 23);
});

test("bounds: pool and replica names", () => {
  assert.ok(isPoolName("default/qwen-pool"));
  assert.ok(isPoolName("a.b/c-d.e"));
  for (const bad of ["", "default", "/x", "x/", "a/b/c", "Default/x", "a b/c", "a/" + "x".repeat(254)]) assert.equal(isPoolName(bad), false, bad);
  assert.ok(isReplicaName("envoy-default-gw-5f6d8-abcde"));
  assert.ok(isReplicaName("x".repeat(253)));
  for (const bad of ["", "x".repeat(254), "a b", "é", "a\tb"]) assert.equal(isReplicaName(bad), false, bad);
  assert.throws(() => encodeLoad("nope", "r", new Uint8Array(0)), RangeError);
  assert.throws(() => encodeLoad("ns/a", "x".repeat(254), new Uint8Array(0)), RangeError);
  assert.throws(() => encodeSection(256, new Uint8Array(0)), RangeError);
  // The longest names round-trip.
  const pool = `${"a".repeat(127)}/${"b".repeat(127)}`;
  const replica = "r".repeat(253);
  const d = decodeShare(encodeLoad(pool, replica, new Uint8Array(3224)));
  assert.ok(d.ok);
  assert.equal(d.share.loads[0].pool, pool);
  assert.equal(d.share.loads[0].replica, replica);
  assert.equal(d.share.loads[0].record.length, 3224);
});

test("round trip: any mix of sections decodes to what was encoded", () => {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
  for (let round = 0; round < 200; round++) {
    const sections: Uint8Array[] = [];
    const wantLoads: string[] = [];
    let wantRecords = 0;
    for (let i = rand(6); i > 0; i--) {
      if (rand(2) === 0) {
        const recs = Array.from({ length: rand(4) }, () => encode(rand(1000), rand(1 << 30), new Uint8Array(8 * (1 + rand(64)))));
        wantRecords += recs.length;
        sections.push(encodePrefix(recs));
      } else {
        const pool = `ns${rand(9)}/p${rand(9)}`;
        const replica = `r${rand(99)}`;
        wantLoads.push(`${pool} ${replica} ${rand(1) + 24}`);
        sections.push(encodeLoad(pool, replica, new Uint8Array(24)));
      }
    }
    const d = decodeShare(concat(sections));
    assert.ok(d.ok);
    assert.equal(d.share.prefixRecords, wantRecords);
    assert.deepEqual(d.share.loads.map((l) => `${l.pool} ${l.replica} ${l.record.length}`), wantLoads);
  }
});
