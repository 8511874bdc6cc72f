// Prefix sharing between sidecars over loopback HTTP: real peer servers and senders (PeerExchange),
// each with a stub of its filter's prefix endpoint that follows the contract.

import { test } from "node:test";
import assert from "node:assert/strict";
import { encode, endpointId, ms32 } from "../../sidecar/peers/records.ts";
import { encodeLoad, encodePrefix, encodeSection } from "../../sidecar/peers/sections.ts";
import { freePort, startMesh, startReplica, type Replica } from "./peer-helpers.ts";
import { waitUntil } from "./helpers.ts";
import { hashes, PrefixFilterStub } from "./prefix-filter.ts";

async function stopAll(rs: Replica[]): Promise<void> {
  await Promise.all(rs.map((r) => r.stop()));
}

test("three replicas: records one filter writes reach the other two filters' indexes, and never come back", async () => {
  const rs = await startMesh(3);
  try {
    const [a, b, c] = rs;
    for (const r of rs) assert.equal(r.exchange.peers().length, 2, "the mesh list names every replica; each leaves itself out");
    const ep = endpointId("10.0.0.7:8000");
    const hs = hashes(1, 5);
    a.filter.route(ep, hs);
    a.filter.route(endpointId("10.0.0.8:8000"), hashes(2, 25));
    await waitUntil(() => [b, c].every((r) => hs.every((h) => r.filter.holds(h, ep))), 5000, "records in b's and c's index");
    await waitUntil(() => b.observer.records.imported === 2 && c.observer.records.imported === 2, 5000, "both imported");
    assert.equal(a.observer.records.exported, 2);
    assert.equal(a.observer.records.sent, 4, "two records, two peers");
    assert.equal(b.observer.records.received, 2);
    const totalMerged = (r: Replica) => r.filter.imports.reduce((n, i) => n + i.merged, 0);
    assert.equal(totalMerged(b), 30, "5 + 25 hashes merged");
    // The peers' own journals stay empty: imports do not re-enter them, so nothing echoes back.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(a.filter.imports.length, 0, "a's filter never receives its own records");
    assert.equal(b.observer.records.exported, 0);
    // Bytes are counted per peer, under the peer's id (its address and announced peer port):
    // frames, 4 header bytes each, one of them with a PREFIX section (5 header bytes and the records).
    const sentToB = a.observer.sent.get(b.id)!;
    assert.ok(sentToB >= 4 + 5 + 9 + 8 * 5 + 9 + 8 * 25 && (sentToB - (5 + 9 + 8 * 5 + 9 + 8 * 25)) % 4 === 0, `${sentToB} bytes`);
    await waitUntil(() => (b.observer.received.get(a.id) ?? 0) >= sentToB, 5000, "b received what a sent");
    assert.deepEqual(a.observer.counts, { known: 2, reachable: 2 });
    // Every replica keeps what it exported and received, for a later snapshot.
    for (const r of rs) assert.equal(r.exchange.store.records, 2);
    // Later records keep flowing, pulled with since = the last next.
    b.filter.route(ep, hashes(3, 2));
    await waitUntil(() => a.filter.holds(hashes(3, 2)[1], ep) && c.filter.holds(hashes(3, 2)[1], ep), 5000, "b's record at a and c");
    await waitUntil(() => b.filter.pulls.some((p) => p.since === 1), 5000, "the next pull asks from sequence 1");
    assert.equal(b.filter.pulls[0].since, undefined, "the first pull asks from the oldest held");
    assert.equal(b.filter.pulls.filter((p) => p.records > 0).length, 1, "each record is pulled once");
  } finally {
    await stopAll(rs);
  }
});

test("the peer port refuses a missing or wrong token (401), too large a body (413), malformed sections (400, with the offset); skips unknown kinds", async () => {
  const [r] = await startMesh(1, { maxBytes: 2048 });
  try {
    const url = `http://${r.id}/peers/v1/share`;
    const raw = Buffer.alloc(17);
    raw[8] = 1;
    const rec = Buffer.from(encodePrefix(raw));
    const post = (headers: Record<string, string>, body: Buffer) => fetch(url, { method: "POST", headers, body: new Uint8Array(body) });
    const none = await post({}, rec);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error.code, "invalid_peer_token");
    assert.equal((await post({ authorization: "Bearer peer-secreT" }, rec)).status, 401);
    assert.equal((await post({ authorization: "Bearer peer-secret-and-more" }, rec)).status, 401);
    assert.equal((await post({ authorization: "peer-secret" }, rec)).status, 401);
    const snapshot = await fetch(`http://${r.id}/peers/v1/snapshot`);
    assert.equal(snapshot.status, 401);
    const big = await post({ authorization: "Bearer peer-secret" }, Buffer.alloc(4096));
    assert.equal(big.status, 413);
    assert.match((await big.json()).error.message, /2048 bytes/);
    const bad = Buffer.from(encodePrefix(Buffer.concat([raw, Buffer.from([1, 0, 0, 0, 2, 0, 0, 0, 0])]))); // second record: n = 0
    const malformed = await post({ authorization: "Bearer peer-secret" }, bad);
    assert.equal(malformed.status, 400);
    assert.match((await malformed.json()).error.message, /at byte 30: in a PREFIX section: n is 0/);
    const cut = await post({ authorization: "Bearer peer-secret" }, Buffer.concat([rec, Buffer.from([2, 200, 0, 0, 0, 1])]));
    assert.equal(cut.status, 400);
    assert.match((await cut.json()).error.message, /at byte 23: a section of 200 bytes, 1 left/);
    const unnamed = await post({ authorization: "Bearer peer-secret" }, Buffer.from(encodeLoad("default/pool", "", new Uint8Array(4))));
    assert.equal(unnamed.status, 400, "a peer's load must name its replica");
    assert.match((await unnamed.json()).error.message, /replica name is empty/);
    const ok = await post({ authorization: "Bearer peer-secret" }, Buffer.concat([Buffer.from(encodeSection(9, new Uint8Array(3))), rec]));
    assert.equal(ok.status, 204, "an unknown kind is skipped, the rest taken");
    assert.equal(ok.headers.get("x-wasm-epp-peer-records"), "1");
    assert.equal((await fetch(url, { headers: { authorization: "Bearer peer-secret" } })).status, 405);
    // A sidecar of the previous version posts bare records to /peers/v1/prefix: still taken.
    const legacy = await fetch(`http://${r.id}/peers/v1/prefix`, { method: "POST", headers: { authorization: "Bearer peer-secret" }, body: new Uint8Array(encode(2, ms32(Date.now()), new Uint8Array(8).fill(7))) });
    assert.equal(legacy.status, 204);
    assert.equal((await fetch(`http://${r.id}/nothing`)).status, 404);
    assert.equal(r.observer.errorsOf("inbound_unauthorized", "other"), 5);
    assert.equal(r.observer.errorsOf("inbound_too_large"), 1);
    assert.equal(r.observer.errorsOf("inbound_malformed"), 3);
    assert.equal(r.observer.records.received, 2, "only the valid bodies were taken");
    await waitUntil(() => r.filter.imports.reduce((n, i) => n + i.records, 0) === 2, 5000, "the valid records forwarded");
    assert.ok(r.filter.imports.every((i) => i.status === 204));
    assert.ok(r.records.some((l) => l.event === "peer_request_refused" && l.reason === "inbound_unauthorized"));
  } finally {
    await r.stop();
  }
});

test("replicas with different peer tokens exchange nothing and say why", async () => {
  const pa = await freePort();
  const pb = await freePort();
  const a = await startReplica({ port: pa, peers: [`127.0.0.1:${pb}`], peerToken: "token-a" });
  const b = await startReplica({ port: pb, peers: [`127.0.0.1:${pa}`], peerToken: "token-b" });
  try {
    a.filter.route(1, hashes(1, 3));
    await waitUntil(() => a.observer.errorsOf("unauthorized", b.id) > 0, 5000, "a 401 from b");
    assert.equal(b.filter.imports.length, 0);
    assert.ok(b.observer.errorsOf("inbound_unauthorized") > 0);
    const failed = a.records.find((l) => l.event === "peer_failed");
    assert.equal(failed?.level, "error");
    assert.match(String(failed?.msg), /peer tokens differ/);
    assert.equal(a.observer.counts.reachable, 0);
  } finally {
    await stopAll([a, b]);
  }
});

test("a peer that is down costs nothing: the others get every record, the pull keeps its pace, the dead peer's queue is bounded", async () => {
  const dead = await freePort(); // nothing listens there
  const pa = await freePort();
  const pb = await freePort();
  const a = await startReplica({ port: pa, peers: [`127.0.0.1:${pb}`, `127.0.0.1:${dead}`], maxBytes: 1024 });
  const b = await startReplica({ port: pb, peers: [] });
  try {
    const n = 60;
    for (let i = 0; i < n; i++) {
      a.filter.route(endpointId(`10.0.0.${i % 5}:8000`), hashes(i, 8)); // 73 bytes
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 30));
    }
    await waitUntil(() => b.observer.records.received === n, 5000, "every record at the live peer");
    assert.ok(a.observer.errorsOf("unreachable", `127.0.0.1:${dead}`) > 0, "the dead peer's failures are counted");
    const pullsBefore = a.filter.pulls.length;
    await waitUntil(() => a.filter.pulls.length >= pullsBefore + 5, 5000, "pulls continue");
    // Its queue holds at most 2 x --peer-max-bytes: 60 records of 73 bytes do not fit in 2048.
    assert.ok(a.observer.errorsOf("queue_full", `127.0.0.1:${dead}`) > 0, "old records for the dead peer were dropped");
    assert.equal(a.observer.errorsOf("queue_full", b.id), 0);
    assert.deepEqual(a.observer.counts, { known: 2, reachable: 1 });
    assert.ok(a.records.some((l) => l.event === "peer_failed" && l.peer === `127.0.0.1:${dead}` && l.level === "warn"));
  } finally {
    await stopAll([a, b]);
  }
});

test("a peer coming back after a failure gets the queued records and is reachable again", async () => {
  const pa = await freePort();
  const pb = await freePort();
  const a = await startReplica({ port: pa, peers: [`127.0.0.1:${pb}`] });
  let b: Replica | undefined;
  try {
    a.filter.route(5, hashes(9, 4));
    await waitUntil(() => a.observer.errorsOf("unreachable") > 0, 5000, "b down");
    b = await startReplica({ port: pb, peers: [] });
    await waitUntil(() => b!.filter.holds(hashes(9, 4)[3], 5), 15_000, "the record after b came back");
    await waitUntil(() => a.observer.counts.reachable === 1, 5000, "reachable again");
    assert.ok(a.records.some((l) => l.event === "peer_recovered"));
  } finally {
    await a.stop();
    await b?.stop();
  }
});

test("the filter with prefix sharing off: one clear error, pulls retried slowly, the peer port still answers", async () => {
  const filter = await PrefixFilterStub.start({ peersEnabled: false });
  const port = await freePort();
  const r = await startReplica({ port, peers: [], filter, intervalMs: 10 });
  try {
    await waitUntil(() => r.records.some((l) => l.event === "prefix_sharing_off"), 5000, "the error");
    await new Promise((res) => setTimeout(res, 300));
    const off = r.records.filter((l) => l.event === "prefix_sharing_off");
    assert.equal(off.length, 1, "logged once");
    assert.equal(off[0].level, "error");
    assert.match(String(off[0].msg), /"peers": \{"enabled": true\}/);
    assert.equal(filter.pulls.length, 1, "not pulled again within 10 s");
    assert.equal(r.observer.errorsOf("sharing_off", "filter"), 1);
    const res = await fetch(`http://${r.id}/peers/v1/snapshot`, { headers: { authorization: "Bearer peer-secret" } });
    assert.equal(res.status, 200);
  } finally {
    await r.stop();
  }
});

test("records the journal overwrote before a pull are counted as lost", async () => {
  const filter = await PrefixFilterStub.start({ journal: 4 });
  const port = await freePort();
  const r = await startReplica({ port, peers: [], filter, intervalMs: 50 });
  try {
    await waitUntil(() => filter.pulls.length >= 1, 5000, "first pull");
    for (let i = 0; i < 10; i++) filter.route(1, hashes(i, 1));
    await waitUntil(() => r.observer.records.exported === 4, 5000, "the 4 records still held");
    assert.equal(r.observer.lost, 6);
    assert.ok(r.records.some((l) => l.event === "prefix_journal_lost" && l.lost === 6));
  } finally {
    await r.stop();
  }
});

test("the filter's import limit: a 413 naming a smaller limit makes the sidecar split its batches", async () => {
  const small = await PrefixFilterStub.start({ maxImportBytes: 1024 });
  const pa = await freePort();
  const pb = await freePort();
  const a = await startReplica({ port: pa, peers: [`127.0.0.1:${pb}`], intervalMs: 200 });
  const b = await startReplica({ port: pb, peers: [], filter: small });
  try {
    for (let i = 0; i < 40; i++) a.filter.route(endpointId(`10.0.1.${i}:8000`), hashes(100 + i, 8)); // 73 bytes each
    await waitUntil(() => b.observer.records.imported === 40, 10_000, "all 40 imported");
    assert.ok(small.imports.some((i) => i.status === 413));
    assert.ok(small.imports.filter((i) => i.status === 204).every((i) => i.bytes <= 1024));
    assert.ok(small.imports.filter((i) => i.status === 204).length > 1, "split over several posts");
    assert.ok(hashes(139, 8).every((h) => small.holds(h, endpointId("10.0.1.39:8000"))));
    assert.ok(b.records.some((l) => l.event === "prefix_import_limit" && l.limit === 1024));
  } finally {
    await stopAll([a, b]);
  }
});

test("the snapshot: every live record kept, oldest first, behind the token", async () => {
  const rs = await startMesh(2);
  try {
    const [a, b] = rs;
    const now = Date.now();
    a.filter.route(1, hashes(1, 2), now - 2000);
    b.filter.route(2, hashes(2, 3), now - 5000);
    await waitUntil(() => a.exchange.store.records === 2 && b.exchange.store.records === 2, 5000, "both stores");
    const res = await fetch(`http://${a.id}/peers/v1/snapshot`, { headers: { authorization: "Bearer peer-secret" } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/vnd.wasm-epp.prefix-records");
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(body.length, 25 + 33);
    assert.equal(body.readUInt32LE(0), 2, "b's older record first");
    assert.equal(body.readUInt32LE(33), 1);
  } finally {
    await stopAll(rs);
  }
});
