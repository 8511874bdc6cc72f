// The peer stream: frames cut out of chunks whatever their boundaries (FrameSplitter), and sidecars
// exchanging through one long-lived POST /peers/v1/stream per peer over loopback: a mesh, a peer
// killed and started again, a refused token, a frame too large or malformed, an idle stream, and
// a peer of the previous version that takes POSTs only.

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { encodeFrame, FrameSplitter } from "../../sidecar/peers/frames.ts";
import { encode, endpointId, ms32 } from "../../sidecar/peers/records.ts";
import { concat, decodeShare, encodeLoad, encodePrefix } from "../../sidecar/peers/sections.ts";
import { freePort, startMesh, startReplica, type Replica } from "./peer-helpers.ts";
import { waitUntil } from "./helpers.ts";
import { hashes } from "./prefix-filter.ts";

const POOL = "default/pool-a";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function bodyOf(n: number, fill: number): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

// --- FrameSplitter ---------------------------------------------------------------------------

test("frames: cut out whatever the chunk boundaries, empty frames included", () => {
  const bodies = [bodyOf(10, 1), bodyOf(0, 0), bodyOf(1, 2), bodyOf(300, 3), bodyOf(0, 0), bodyOf(7, 4)];
  const wire = Buffer.concat(bodies.map((b) => encodeFrame(b)));
  const same = (got: Uint8Array[]) => assert.deepEqual(got.map((f) => Buffer.from(f).toString("hex")), bodies.map((b) => Buffer.from(b).toString("hex")));
  // Every single cut, and every pair of cuts.
  for (let i = 0; i <= wire.length; i++) {
    const s = new FrameSplitter(1024);
    const got = [...(s.push(wire.subarray(0, i)) as { frames: Uint8Array[] }).frames, ...(s.push(wire.subarray(i)) as { frames: Uint8Array[] }).frames];
    same(got);
    assert.equal(s.pending, 0);
  }
  for (let i = 0; i <= wire.length; i += 3) {
    for (let j = i; j <= wire.length; j += 5) {
      const s = new FrameSplitter(1024);
      const got = [wire.subarray(0, i), wire.subarray(i, j), wire.subarray(j)].flatMap((c) => s.push(c).frames);
      same(got);
    }
  }
  // Byte by byte.
  const s = new FrameSplitter(1024);
  const got: Uint8Array[] = [];
  for (let i = 0; i < wire.length; i++) {
    got.push(...s.push(wire.subarray(i, i + 1)).frames);
    if (i < wire.length - 1) assert.ok(s.pending <= 4 + 300);
  }
  same(got);
  // A frame whole in one chunk is a view into it, not a copy.
  const whole = new FrameSplitter(1024).push(wire).frames;
  assert.equal(whole[0].buffer, wire.buffer);
});

test("frames: a header announcing more than maxBytes is an error, and nothing after it is taken", () => {
  const s = new FrameSplitter(100);
  const ok = encodeFrame(bodyOf(100, 1)); // exactly the bound: taken
  const big = encodeFrame(bodyOf(101, 2));
  const r = s.push(Buffer.concat([ok, big.subarray(0, 6)]));
  assert.equal(r.ok, false);
  assert.equal(r.frames.length, 1, "the frame before it still comes out");
  assert.equal(!r.ok && r.length, 101);
  // The header split over two chunks: the error at the chunk that completes it.
  const t = new FrameSplitter(100);
  assert.equal(t.push(big.subarray(0, 2)).ok, true);
  assert.equal(t.push(big.subarray(2, 4)).ok, false);
  assert.equal(t.push(encodeFrame(bodyOf(1, 1))).ok, false, "failed for good");
  // A huge announced length allocates nothing.
  const u = new FrameSplitter(1024 * 1024);
  const r2 = u.push(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  assert.equal(r2.ok, false);
  assert.equal(!r2.ok && r2.length, 0xffffffff);
  assert.equal(u.pending, 0);
});

test("frames: a stream cut inside a frame leaves it pending", () => {
  const wire = Buffer.concat([encodeFrame(bodyOf(5, 1)), encodeFrame(bodyOf(50, 2))]);
  const s = new FrameSplitter(1024);
  assert.equal(s.push(wire.subarray(0, wire.length - 10)).frames.length, 1);
  assert.equal(s.pending, 4 + 40, "the header and the 40 bytes of the second frame that came");
  const t = new FrameSplitter(1024);
  t.push(wire.subarray(0, 11));
  assert.equal(t.pending, 2, "half a header");
});

// --- sidecars over loopback ------------------------------------------------------------------

async function stopAll(rs: Array<Replica | undefined>): Promise<void> {
  await Promise.all(rs.map((r) => r?.stop()));
}

test("a mesh of 3 over streams: records and loads reach every filter, every interval, one stream per peer", async () => {
  const rs = await startMesh(3, { intervalMs: 50, pools: [POOL] });
  try {
    rs.forEach((r, i) => r.filter.ownLoads.set(POOL, new Uint8Array(24 + 32 * 10).fill(i + 1)));
    await waitUntil(() => rs.every((r) => r.exchange.sender.streamsOpen() === 2), 5000, "every stream open");
    const errorsBefore = rs.map((r) => r.observer.errors.length); // a peer not listening yet at the start
    const names = rs.map((r) => `replica-${r.exchange.port}`);
    rs.forEach((r, i) => r.filter.route(endpointId(`10.0.0.${i}:8000`), hashes(i + 1, 4)));
    await waitUntil(() => rs.every((r, i) => rs.every((o, j) => i === j || hashes(j + 1, 4).every((h) => r.filter.holds(h, endpointId(`10.0.0.${j}:8000`))))), 5000, "every record at every other filter");
    await waitUntil(() => rs.every((r) => (r.filter.peerLoads.get(POOL)?.size ?? 0) === 2), 5000, "every filter holds two peers' loads");
    // Every interval each filter gets both peers' loads, in one import.
    const before = rs.map((r) => r.filter.imports.length);
    await sleep(600);
    rs.forEach((r, i) => {
      const imports = r.filter.imports.slice(before[i]);
      const both = imports.filter((m) => m.loads.length === 2);
      assert.ok(both.length >= 6, `${both.length} imports with both peers' loads in 600 ms at 50 ms`);
      for (const m of both) assert.deepEqual(m.loads.map((l) => l.replica).sort(), names.filter((_, j) => j !== i).sort());
    });
    for (const [i, r] of rs.entries()) {
      assert.equal(r.observer.errors.length, errorsBefore[i], JSON.stringify(r.observer.errors));
      assert.ok(!r.records.some((l) => l.event === "peer_stream_unsupported"));
      assert.deepEqual(r.observer.counts, { known: 2, reachable: 2 });
    }
    assert.equal(rs[1].observer.records.received, 2);
  } finally {
    await stopAll(rs);
  }
});

test("a peer killed and started again: its stream fails, the others go on, and it is reopened", async () => {
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const all = ports.map((p) => `127.0.0.1:${p}`);
  const [a, c] = await Promise.all([startReplica({ port: ports[0], peers: all }), startReplica({ port: ports[2], peers: all })]);
  let b: Replica | undefined = await startReplica({ port: ports[1], peers: all });
  try {
    await waitUntil(() => a.exchange.sender.streamsOpen() === 2, 5000, "a's streams open");
    await b.stop();
    b = undefined;
    await waitUntil(() => a.observer.counts.reachable === 1, 5000, "b unreachable");
    // Nothing blocks: a's pulls and c's records go on.
    const pulls = a.filter.pulls.length;
    a.filter.route(1, hashes(1, 3));
    await waitUntil(() => c.filter.holds(hashes(1, 3)[2], 1), 5000, "a's record at c while b is down");
    await waitUntil(() => a.filter.pulls.length >= pulls + 5, 5000, "pulls go on");
    b = await startReplica({ port: ports[1], peers: all });
    await waitUntil(() => a.exchange.sender.streamsOpen() === 2 && c.exchange.sender.streamsOpen() === 2, 15_000, "the streams to b reopened");
    a.filter.route(2, hashes(2, 3));
    await waitUntil(() => b!.filter.holds(hashes(2, 3)[2], 2), 5000, "a's next record at b");
    assert.ok(a.records.some((l) => l.event === "peer_recovered" && l.peer === b!.id));
  } finally {
    await stopAll([a, b, c]);
  }
});

// Opens a stream to a replica's peer port by hand; `answer` resolves with the status and the
// whole answer once the replica closes it.
function openStream(r: Replica, token: string): { req: http.ClientRequest; answer: Promise<{ status: number; body: string }> } {
  const [host, port] = r.id.split(":");
  const req = http.request({ host, port: Number(port), path: "/peers/v1/stream", method: "POST", agent: false, headers: { authorization: `Bearer ${token}`, "transfer-encoding": "chunked" } });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
  });
  req.flushHeaders();
  return { req, answer };
}

test("the stream's token is checked when it opens: 401, counted", async () => {
  const [r] = await startMesh(1);
  try {
    const { req, answer } = openStream(r, "wrong");
    const a = await answer;
    req.destroy();
    assert.equal(a.status, 401);
    assert.equal(JSON.parse(a.body).error.code, "invalid_peer_token");
    assert.equal(r.observer.errorsOf("inbound_unauthorized"), 1);
    assert.equal(r.observer.records.received, 0);
  } finally {
    await r.stop();
  }
});

test("frames on a stream are taken as posts are; a frame above --peer-max-bytes or malformed closes the stream", async () => {
  const [r] = await startMesh(1, { maxBytes: 2048 });
  try {
    const rec = encode(7, ms32(Date.now()), new Uint8Array(16).fill(1));
    const frame = encodeFrame(concat([encodeLoad(POOL, "gw-x", new Uint8Array(8)), encodePrefix(rec)]));
    const s = openStream(r, "peer-secret");
    // A frame written in three pieces, then one whole, then an empty one.
    s.req.write(frame.subarray(0, 3));
    await sleep(20);
    s.req.write(frame.subarray(3, 20));
    await sleep(20);
    s.req.write(Buffer.concat([frame.subarray(20), frame, encodeFrame(new Uint8Array(0))]));
    await waitUntil(() => r.observer.records.received === 2 && r.observer.records.load_received === 2, 5000, "two frames taken");
    assert.equal(r.observer.received.get("other"), 2 * frame.length + 4, "frame bytes, headers included");
    await waitUntil(() => r.filter.imports.some((i) => i.records > 0), 5000, "forwarded to the filter");
    // Above the bound: closed, with the reason.
    const big = Buffer.alloc(4);
    big.writeUInt32LE(4096);
    s.req.write(big);
    const a = await s.answer;
    s.req.destroy();
    assert.equal(a.status, 200);
    assert.equal(JSON.parse(a.body).error.code, "frame_too_large");
    assert.match(JSON.parse(a.body).error.message, /4096 bytes is larger than 2048/);
    assert.equal(r.observer.errorsOf("inbound_too_large"), 1);
    // Malformed sections: closed, naming the offset.
    const m = openStream(r, "peer-secret");
    m.req.write(encodeFrame(Buffer.from([1, 200, 0, 0, 0, 1])));
    const b = await m.answer;
    m.req.destroy();
    assert.equal(JSON.parse(b.body).error.code, "malformed_share");
    assert.match(JSON.parse(b.body).error.message, /at byte 1: a section of 200 bytes/);
    assert.equal(r.observer.errorsOf("inbound_malformed"), 1);
    // Cut short by the end of the stream.
    const t = openStream(r, "peer-secret");
    t.req.end(frame.subarray(0, 10));
    const c = await t.answer;
    assert.equal(JSON.parse(c.body).error.code, "malformed_share");
    assert.match(JSON.parse(c.body).error.message, /ended inside a frame/);
    assert.equal(r.observer.errorsOf("inbound_malformed"), 2);
    assert.equal(r.observer.records.received, 2, "nothing else taken");
  } finally {
    await r.stop();
  }
});

test("a stream with no frame for 3 intervals (at least 1 s) is closed", async () => {
  const [r] = await startMesh(1, { intervalMs: 20 });
  try {
    const s = openStream(r, "peer-secret");
    const t0 = Date.now();
    const a = await s.answer;
    s.req.destroy();
    assert.equal(JSON.parse(a.body).error.code, "stream_idle");
    assert.ok(Date.now() - t0 >= 900, "not before 1 s");
  } finally {
    await r.stop();
  }
});

test("a sender whose frames are too large for the peer: the peer closes the stream, the sender says why and backs off", async () => {
  const pa = await freePort();
  const pb = await freePort();
  const a = await startReplica({ port: pa, peers: [`127.0.0.1:${pb}`], maxBytes: 64 * 1024 });
  const b = await startReplica({ port: pb, peers: [], maxBytes: 1024 });
  try {
    await waitUntil(() => a.exchange.sender.streamsOpen() === 1, 5000, "the stream open");
    for (let i = 0; i < 40; i++) a.filter.route(endpointId(`10.0.2.${i}:8000`), hashes(200 + i, 8)); // 73 bytes each
    await waitUntil(() => a.observer.errorsOf("too_large", b.id) > 0, 5000, "the refusal seen by a");
    assert.ok(b.observer.errorsOf("inbound_too_large") > 0);
    const failed = a.records.find((l) => l.event === "peer_failed" && l.reason === "too_large");
    assert.equal(failed?.level, "error");
    assert.match(String(failed?.msg), /--peer-max-bytes is smaller/);
  } finally {
    await stopAll([a, b]);
  }
});

test("a peer without /peers/v1/stream (the previous version) gets one POST /peers/v1/share per interval", async () => {
  const bodies: Buffer[] = [];
  const paths: string[] = [];
  const server = http.createServer((req, res) => {
    paths.push(req.url ?? "");
    if (req.url !== "/peers/v1/share") {
      req.resume();
      return void res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "not_found", message: `no such endpoint: ${req.url}` } }));
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      bodies.push(Buffer.concat(chunks));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const old = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const port = await freePort();
  const r = await startReplica({ port, peers: [old], intervalMs: 50, pools: [POOL], replicaName: "gw-new" });
  try {
    await waitUntil(() => bodies.length >= 3, 5000, "posts to the old peer");
    r.filter.route(3, hashes(3, 2));
    await waitUntil(() => bodies.some((b) => (decodeShare(b) as any).share.prefixRecords === 1), 5000, "the record by POST");
    const d = decodeShare(bodies[0]);
    assert.ok(d.ok);
    assert.deepEqual(d.share.loads.map((l) => [l.pool, l.replica]), [[POOL, "gw-new"]]);
    assert.equal(paths.filter((p) => p === "/peers/v1/stream").length, 1, "the stream asked for once");
    assert.ok(r.records.some((l) => l.event === "peer_stream_unsupported" && l.peer === old));
    assert.equal(r.observer.errors.length, 0, "a 404 to the stream is no failure");
    assert.deepEqual(r.observer.counts, { known: 1, reachable: 1 });
  } finally {
    await r.stop();
    server.closeAllConnections();
    await new Promise<void>((res) => server.close(() => res()));
  }
});
