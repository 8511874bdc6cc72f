// A starting sidecar warms its filter up from a peer's snapshot before it reports ready: the whole
// sidecar (file mode, no pools) with a stub filter, and peers on loopback.

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSidecar, type Sidecar } from "../../sidecar/app.ts";
import { parseOptions } from "../../sidecar/cli.ts";
import { encode, endpointId, ms32 } from "../../sidecar/peers/records.ts";
import { freePort, startReplica, tokenFile } from "./peer-helpers.ts";
import { memoryLogger, waitUntil } from "./helpers.ts";
import { hashes, PrefixFilterStub } from "./prefix-filter.ts";

async function sidecarWith(filter: PrefixFilterStub, extra: string[]): Promise<{ sidecar: Sidecar; records: Array<Record<string, unknown>> }> {
  const { log, records } = memoryLogger();
  const o = parseOptions([
    "--manifests", mkdtempSync(join(tmpdir(), "wasm-epp-empty-")),
    "--push-url", filter.pushUrl,
    "--metrics-port", "0",
    "--peer-port", "0",
    "--peer-address", "127.0.0.1",
    "--peer-token-file", tokenFile("peer-secret"),
    ...extra,
  ]);
  const sidecar = await startSidecar(o, { log, env: { WASM_EPP_PUSH_TOKEN: filter.token }, manifestPollMs: 50, localAddresses: new Set() });
  return { sidecar, records };
}

// A peer whose snapshot answer waits `delayMs` (forever when undefined).
async function slowPeer(body: Buffer, delayMs: number | undefined): Promise<{ port: number; requests: number; close(): Promise<void> }> {
  const state = { requests: 0 };
  const server = http.createServer((req, res) => {
    state.requests++;
    if (req.headers.authorization !== "Bearer peer-secret") return void res.writeHead(401).end();
    if (req.url === "/peers/v1/share") return void req.resume().on("end", () => res.writeHead(204).end());
    if (delayMs === undefined) return;
    setTimeout(() => res.writeHead(200, { "content-type": "application/vnd.wasm-epp.prefix-records" }).end(body), delayMs);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as import("node:net").AddressInfo).port,
    get requests() {
      return state.requests;
    },
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

test("warm-up: the new replica's filter holds the peer's records before the sidecar reports ready", async () => {
  const peerPort = await freePort();
  const peer = await startReplica({ port: peerPort, peers: [] });
  const filter = await PrefixFilterStub.start();
  let s: Sidecar | undefined;
  try {
    const ep = endpointId("10.0.0.3:8000");
    for (let i = 0; i < 50; i++) peer.filter.route(ep, hashes(i, 1 + (i % 25)));
    await waitUntil(() => peer.exchange.store.records === 50, 5000, "the peer's store");
    const started = await sidecarWith(filter, ["--peer", peer.id, "--peer-warmup-timeout", "5s"]);
    s = started.sidecar;
    await waitUntil(() => s!.ready(), 10_000, "ready");
    // At the moment it is ready, every record is in the filter.
    assert.ok(hashes(49, 25).every((h) => filter.holds(h, ep)), "the last record's hashes");
    assert.ok(hashes(0, 1).every((h) => filter.holds(h, ep)), "the first record's hashes");
    const done = started.records.find((r) => r.event === "warmup_done");
    assert.equal(done?.records, 50);
    assert.equal(done?.imported, 50);
    assert.equal(done?.peer, peer.id);
    assert.equal(s.peers!.store.records, 50, "kept for the replicas that start after it");
    assert.ok(filter.statePushes.length > 0);
  } finally {
    await s?.stop();
    await peer.stop();
    await filter.down();
  }
});

test("warm-up: a slow snapshot holds readiness back although the state push was accepted", async () => {
  const t = ms32(Date.now());
  const body = Buffer.concat([encode(7, t, new Uint8Array(16).fill(1)), encode(8, t, new Uint8Array(8).fill(2))]);
  const peer = await slowPeer(Buffer.from(body), 700);
  const filter = await PrefixFilterStub.start();
  let s: Sidecar | undefined;
  try {
    const started = await sidecarWith(filter, ["--peer", `127.0.0.1:${peer.port}`, "--peer-warmup-timeout", "5s"]);
    s = started.sidecar;
    await waitUntil(() => filter.statePushes.length > 0, 5000, "a push accepted");
    assert.equal(s.ready(), false, "the warm-up is not over");
    const readyz = await fetch(`http://127.0.0.1:${s.metricsPort}/readyz`);
    assert.equal(readyz.status, 503);
    assert.equal(await readyz.text(), "warming up from a peer's snapshot\n");
    assert.equal(filter.imports.length, 0);
    await waitUntil(() => s!.ready(), 5000, "ready");
    assert.equal(filter.imports.filter((i) => i.status === 204).reduce((n, i) => n + i.records, 0), 2);
    assert.ok(filter.holds(0x0101010101010101n, 7) && filter.holds(0x0202020202020202n, 8));
  } finally {
    await s?.stop();
    await peer.close();
    await filter.down();
  }
});

test("warm-up: a peer that never answers delays readiness by --peer-warmup-timeout at most", async () => {
  const peer = await slowPeer(Buffer.alloc(0), undefined);
  const filter = await PrefixFilterStub.start();
  let s: Sidecar | undefined;
  try {
    const started = await sidecarWith(filter, ["--peer", `127.0.0.1:${peer.port}`, "--peer-warmup-timeout", "800ms"]);
    s = started.sidecar;
    await waitUntil(() => filter.statePushes.length > 0, 5000, "a push accepted");
    assert.equal(s.ready(), false);
    await waitUntil(() => s!.ready(), 5000, "ready after the timeout");
    const failed = started.records.find((r) => r.event === "warmup_failed");
    assert.ok(failed, "warmup_failed logged");
    assert.match(String(failed!.msg), /--peer-warmup-timeout/);
  } finally {
    await s?.stop();
    await peer.close();
    await filter.down();
  }
});

test("warm-up: no reachable peer, or none at all, leaves readiness to the state push", async () => {
  const dead = await freePort();
  const filter = await PrefixFilterStub.start();
  let s: Sidecar | undefined;
  try {
    const started = await sidecarWith(filter, ["--peer", `127.0.0.1:${dead}`, "--peer-warmup-timeout", "30s"]);
    s = started.sidecar;
    await waitUntil(() => s!.ready(), 5000, "ready without waiting 30 s");
    const failed = started.records.find((r) => r.event === "warmup_failed");
    assert.deepEqual(failed?.tried, [`127.0.0.1:${dead}`]);
  } finally {
    await s?.stop();
  }
  try {
    // A replica whose only peer is itself (a static list naming every replica).
    const port = await freePort();
    const started = await sidecarWith(filter, ["--peer", `127.0.0.1:${port}`, "--peer-port", String(port), "--pod-ip", "127.0.0.1", "--peer-warmup-timeout", "30s"]);
    s = started.sidecar;
    await waitUntil(() => s!.ready(), 5000, "ready");
    assert.ok(started.records.some((r) => r.event === "warmup_skipped"));
  } finally {
    await s?.stop();
    await filter.down();
  }
});
