// Loads between replicas: each sidecar reads its filter's load of every pool it serves in the same
// request as the prefix records, sends it to every peer every interval, and posts peers' loads
// into its filter once per interval, the latest per sending replica and pool.

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { FrameSplitter } from "../../sidecar/peers/frames.ts";
import { decodeShare, encodeLoad, encodePrefix, concat } from "../../sidecar/peers/sections.ts";
import { encode, ms32 } from "../../sidecar/peers/records.ts";
import { freePort, startMesh, startReplica, type Replica } from "./peer-helpers.ts";
import { waitUntil } from "./helpers.ts";
import { hashes } from "./prefix-filter.ts";

const POOL = "default/pool-a";
const POOL2 = "default/pool-b";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// A peer that records every body it is sent: each non-empty frame of a stream, and POSTs.
async function recordingPeer(): Promise<{ id: string; bodies: Array<{ at: number; body: Buffer }>; close(): Promise<void> }> {
  const bodies: Array<{ at: number; body: Buffer }> = [];
  const server = http.createServer((req, res) => {
    if (req.url === "/peers/v1/stream" && req.headers.authorization === "Bearer peer-secret") {
      res.writeHead(200).flushHeaders();
      const splitter = new FrameSplitter(1024 * 1024);
      req.on("data", (c: Buffer) => {
        for (const f of splitter.push(c).frames) if (f.length > 0) bodies.push({ at: Date.now(), body: Buffer.from(f) });
      });
      req.on("end", () => res.end());
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.headers.authorization !== "Bearer peer-secret" || req.url !== "/peers/v1/share" || req.method !== "POST") return void res.writeHead(400).end();
      bodies.push({ at: Date.now(), body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    id: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

function post(r: Replica, body: Uint8Array): Promise<Response> {
  return fetch(`http://${r.id}/peers/v1/share`, { method: "POST", headers: { authorization: "Bearer peer-secret" }, body: new Uint8Array(body) });
}

test("the loads go to every peer every interval, with no prefix record to send, named with the replica's name", async () => {
  const p1 = await recordingPeer();
  const p2 = await recordingPeer();
  const port = await freePort();
  const r = await startReplica({ port, peers: [p1.id, p2.id], intervalMs: 50, pools: [POOL, POOL2], replicaName: "gw-0" });
  try {
    r.filter.ownLoads.set(POOL, new Uint8Array(24 + 32 * 3).fill(3));
    await waitUntil(() => p1.bodies.length >= 2 && p2.bodies.length >= 2, 5000, "first sends");
    const from = Date.now();
    const c1 = p1.bodies.length;
    const c2 = p2.bodies.length;
    await sleep(600);
    const n1 = p1.bodies.length - c1;
    const n2 = p2.bodies.length - c2;
    // One frame per peer per 50 ms interval: 12 in 600 ms, give or take timer slack.
    for (const n of [n1, n2]) assert.ok(n >= 8 && n <= 13, `${n} frames in ${Date.now() - from} ms`);
    assert.equal(r.observer.records.exported, 0, "no record journaled");
    for (const { body } of [...p1.bodies, ...p2.bodies]) {
      const d = decodeShare(body);
      assert.ok(d.ok);
      assert.equal(d.share.prefix.length, 0, "no PREFIX section without records");
      assert.deepEqual(d.share.loads.map((l) => [l.pool, l.replica, l.record.length]), [[POOL, "gw-0", 24 + 96], [POOL2, "gw-0", 0]]);
    }
    assert.ok(r.filter.pulls.every((p) => p.pools.join() === `${POOL},${POOL2}`), "every pull asks for every pool served");
    assert.ok(r.observer.records.load_sent >= 2 * 2 * (n1 + n2) / 2, "two sections per frame, counted per peer");
    // A record journaled meanwhile goes along with the loads, in the same frame.
    const before = p1.bodies.length;
    r.filter.route(7, hashes(1, 3));
    await waitUntil(() => p1.bodies.slice(before).some((b) => (decodeShare(b.body) as any).share.prefixRecords === 1), 5000, "the record");
    const withRecord = p1.bodies.slice(before).map((b) => (decodeShare(b.body) as any).share).find((s) => s.prefixRecords === 1);
    assert.equal(withRecord.loads.length, 2);
    // The own filter's loads stop when a pull fails: stale loads are not sent.
    await r.filter.down();
    await sleep(150);
    const after = p1.bodies.length;
    await sleep(300);
    assert.equal(p1.bodies.length, after, "nothing to send: no records, no current loads");
  } finally {
    await r.stop();
    await p1.close();
    await p2.close();
  }
});

test("no pool known yet: the pull names none and only records go", async () => {
  let pools: string[] = [];
  const p1 = await recordingPeer();
  const port = await freePort();
  const r = await startReplica({ port, peers: [p1.id], intervalMs: 30, pools: () => pools });
  try {
    await waitUntil(() => r.filter.pulls.length >= 3, 5000, "pulls");
    assert.ok(r.filter.pulls.every((p) => p.pools.length === 0));
    assert.equal(p1.bodies.length, 0, "nothing to send");
    pools = [POOL];
    await waitUntil(() => p1.bodies.length >= 1, 5000, "the loads once a pool is known");
    const d = decodeShare(p1.bodies[0].body);
    assert.ok(d.ok);
    assert.deepEqual(d.share.loads.map((l) => [l.pool, l.replica]), [[POOL, `replica-${port}`]]);
  } finally {
    await r.stop();
    await p1.close();
  }
});

test("three replicas: each filter holds the other two's loads, under their names, never its own; one import per interval", async () => {
  const rs = await startMesh(3, { intervalMs: 50, pools: [POOL] });
  try {
    rs.forEach((r, i) => r.filter.ownLoads.set(POOL, new Uint8Array(24 + 32 * 100).fill(i + 1)));
    const names = rs.map((r) => `replica-${r.exchange.port}`);
    await waitUntil(() => rs.every((r) => (r.filter.peerLoads.get(POOL)?.size ?? 0) === 2), 5000, "every filter holds two peers' loads");
    rs.forEach((r, i) => {
      const held = r.filter.peerLoads.get(POOL)!;
      assert.deepEqual([...held.keys()].sort(), names.filter((_, j) => j !== i).sort());
      for (const [name, record] of held) assert.equal(record[0], names.indexOf(name) + 1, "the sender's own record");
    });
    // Loads keep coming: a change reaches the peers within a few intervals.
    rs[0].filter.ownLoads.set(POOL, new Uint8Array(24 + 32 * 100).fill(9));
    await waitUntil(() => rs.slice(1).every((r) => r.filter.peerLoads.get(POOL)!.get(names[0])![0] === 9), 5000, "the new load");
    // Records flow along with the loads.
    rs[1].filter.route(11, hashes(5, 4));
    await waitUntil(() => rs[0].filter.holds(hashes(5, 4)[3], 11) && rs[2].filter.holds(hashes(5, 4)[3], 11), 5000, "the record");
    // One POST into each filter per interval (one pull per interval too): two peers' loads together.
    const marks = rs.map((r) => ({ imports: r.filter.imports.length, pulls: r.filter.pulls.length }));
    await sleep(500);
    for (const [i, r] of rs.entries()) {
      const imports = r.filter.imports.length - marks[i].imports;
      const pulls = r.filter.pulls.length - marks[i].pulls;
      assert.ok(imports <= pulls + 1, `replica ${i}: ${imports} imports for ${pulls} pulls`);
      assert.ok(pulls >= 6, `replica ${i}: ${pulls} pulls in 500 ms`);
      assert.ok(r.filter.imports.every((x) => x.status === 204));
      assert.ok(r.filter.imports.slice(marks[i].imports).every((x) => x.loads.length <= 2), "at most one load per peer and pool in an import");
    }
    assert.ok(rs[0].observer.records.load_received > 0);
  } finally {
    await Promise.all(rs.map((r) => r.stop()));
  }
});

test("only the latest load per sending replica and pool reaches the filter, in one post with every peer's records", async () => {
  const port = await freePort();
  const r = await startReplica({ port, peers: [], intervalMs: 1500 });
  try {
    await waitUntil(() => r.filter.pulls.length === 1, 5000, "the first pull");
    await sleep(50);
    const t = ms32(Date.now());
    const rec = (seed: number) => encode(seed, t, new Uint8Array(16).fill(seed));
    const load = (replica: string, pool: string, v: number) => encodeLoad(pool, replica, new Uint8Array(24).fill(v));
    for (const body of [
      concat([load("gw-1", POOL, 1), encodePrefix(rec(1))]),
      concat([load("gw-1", POOL, 2), load("gw-1", POOL2, 5), encodePrefix(rec(2))]),
      concat([load("gw-2", POOL, 7)]),
      concat([encodePrefix(rec(3)), load("gw-1", POOL, 3)]),
    ]) assert.equal((await post(r, body)).status, 204);
    assert.equal(r.observer.records.load_received, 5);
    assert.equal(r.observer.records.received, 3);
    assert.equal(r.filter.imports.length, 0, "nothing posted before the interval ends");
    await waitUntil(() => r.filter.imports.length === 1, 5000, "the import");
    await sleep(100);
    assert.equal(r.filter.imports.length, 1, "one post");
    const [imp] = r.filter.imports;
    assert.equal(imp.status, 204);
    assert.equal(imp.records, 3);
    assert.deepEqual(imp.loads.map((l) => [l.replica, l.pool, l.record[0]]).sort(), [["gw-1", POOL, 3], ["gw-1", POOL2, 5], ["gw-2", POOL, 7]]);
    assert.equal(r.filter.peerLoads.get(POOL)!.get("gw-1")![0], 3);
    assert.equal(r.exchange.store.records, 3, "records kept for snapshots; loads are not");
  } finally {
    await r.stop();
  }
});

test("peers' loads above the filter's import limit go in more posts at once", async () => {
  const { PrefixFilterStub } = await import("./prefix-filter.ts");
  const small = await PrefixFilterStub.start({ maxImportBytes: 2048 });
  const port = await freePort();
  const r = await startReplica({ port, peers: [], intervalMs: 1500, filter: small, maxBytes: 2048 });
  try {
    await waitUntil(() => small.pulls.length === 1, 5000, "the first pull");
    await sleep(50);
    // Five replicas' loads of 600 bytes: more than 2048 bytes together.
    for (let i = 0; i < 5; i++) assert.equal((await post(r, encodeLoad(POOL, `gw-${i}`, new Uint8Array(600).fill(i)))).status, 204);
    await waitUntil(() => (small.peerLoads.get(POOL)?.size ?? 0) === 5, 5000, "all five");
    assert.ok(small.imports.length >= 2 && small.imports.every((i) => i.status === 204 && i.bytes <= 2048));
  } finally {
    await r.stop();
  }
});

test("the whole sidecar: the pools of its state document are asked for, its loads named from --replica-name, else POD_NAME", async () => {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { startSidecar } = await import("../../sidecar/app.ts");
  const { parseOptions } = await import("../../sidecar/cli.ts");
  const { PrefixFilterStub } = await import("./prefix-filter.ts");
  const { memoryLogger } = await import("./helpers.ts");
  const { tokenFile } = await import("./peer-helpers.ts");
  const dir = mkdtempSync(join(tmpdir(), "wasm-epp-pools-"));
  writeFileSync(join(dir, "pool.yaml"), "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\nmetadata: {name: qwen-pool, namespace: inference}\nspec: {targetPortNumber: 8000, selector: {app: qwen}}\n");
  for (const [extra, env, want] of [
    [["--replica-name", "gw-flag"], { POD_NAME: "gw-pod" }, "gw-flag"],
    [[], { POD_NAME: "gw-pod" }, "gw-pod"],
  ] as Array<[string[], Record<string, string>, string]>) {
    const filter = await PrefixFilterStub.start();
    const peer = await recordingPeer();
    const { log } = memoryLogger();
    const o = parseOptions(["--manifests", dir, "--push-url", filter.pushUrl, "--metrics-port", "0", "--peer-port", "0", "--peer-address", "127.0.0.1", "--peer-token-file", tokenFile("peer-secret"), "--peer", peer.id, "--peer-interval", "20ms", "--peer-warmup-timeout", "0", ...extra]);
    const s = await startSidecar(o, { log, env: { WASM_EPP_PUSH_TOKEN: filter.token, ...env }, manifestPollMs: 50, localAddresses: new Set() });
    try {
      await waitUntil(() => filter.pulls.some((p) => p.pools.includes("inference/qwen-pool")), 5000, "a pull naming the pool");
      assert.equal(filter.pulls[0].pools.length, 0, "before the first state document no pool is named");
      await waitUntil(() => peer.bodies.length > 0, 5000, "a frame to the peer");
      const d = decodeShare(peer.bodies.at(-1)!.body);
      assert.ok(d.ok);
      assert.deepEqual(d.share.loads.map((l) => [l.pool, l.replica]), [["inference/qwen-pool", want]]);
    } finally {
      await s.stop();
      await peer.close();
      await filter.down();
    }
  }
});
