// wasm-epp's gateway replicas sharing prefix records and loads through their sidecars, in the
// benchmark (scripts/bench/exchange.ts), and the chaos legs (scripts/bench/chaos.ts).

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PeerNet } from "../../scripts/bench/exchange.ts";
import { setup } from "../../scripts/bench/setup.ts";
import { runJob } from "../../scripts/bench/runner.ts";
import { runLeg } from "../../scripts/bench/chaos.ts";
import { loadWorkloadFile } from "../../scripts/bench/workloads.ts";
import { encode } from "../../sidecar/peers/records.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "bench-exchange-"));
// A one-record batch: endpoint `ep`, recorded at virtual time `at` (epoch 0), one hash.
const b = (ep: number, at = 0) => encode(ep, at, new Uint8Array(8).fill(ep));

test("PeerNet: a batch goes to every other replica after the latency; reads are phased over the interval", () => {
  const net = new PeerNet({ intervalMs: 100, latencyMs: 3 });
  const l = [net.join(), net.join(), net.join(), net.join()];
  assert.deepEqual(l.map((x) => x.next), [0, 25, 50, 75]);
  l[1].pulled();
  assert.equal(l[1].next, 125);
  l[0].send(b(1, 40), 40);
  assert.deepEqual(l[0].inbox, []);
  for (const k of [1, 2, 3]) assert.deepEqual(l[k].inbox, [{ at: 43, from: 0, kind: "prefix", batch: b(1, 40) }]);
  l[2].sendLoad(new Uint8Array([9, 9, 9]), 50);
  assert.deepEqual(l[1].inbox.map((d) => [d.at, d.kind]), [[43, "prefix"], [53, "load"]]);
  // An empty read sends nothing.
  l[3].send(new Uint8Array(), 60);
  assert.equal(l[1].inbox.length, 2);
  assert.equal(net.totals.pulls, 2);
  assert.equal(net.totals.bytesSent, 3 * 17);
  assert.equal(net.totals.loadBytes, 3 * 3);
  // A replica of its own pace.
  const own = new PeerNet({ intervalMs: 100 });
  const x = own.join();
  x.setInterval(20);
  x.pulled();
  assert.equal(x.next, 20);
});

test("PeerNet: a replica cut off loses its batches both ways, and only while cut", () => {
  const net = new PeerNet({ intervalMs: 100, latencyMs: 2 });
  const l = [net.join(), net.join(), net.join()];
  net.cut(1, 100, 200);
  l[0].send(b(1, 150), 150); // to 1: lost; to 2: delivered
  l[1].send(b(2, 150), 150); // from 1: lost everywhere
  l[1].sendLoad(new Uint8Array([3]), 150);
  l[0].send(b(4, 250), 250); // after the cut: delivered
  assert.deepEqual(l[1].inbox.map((d) => d.batch[0]), [4]);
  assert.deepEqual(l[2].inbox.map((d) => d.batch[0]), [1, 4]);
  assert.equal(net.totals.bytesLost, 17 + 17 + 17);
});

test("PeerNet: a restarted replica's snapshot comes from a reachable peer's store (the sidecar's), within the TTL", () => {
  const net = new PeerNet({ intervalMs: 100, latencyMs: 2, ttlMs: 1000 });
  const l = [net.join(), net.join(), net.join()];
  l[1].send(b(1, 0), 0);
  l[2].send(b(2, 500), 500);
  // Replica 0 merges what it got (the router does this as deliveries arrive).
  for (const d of l[0].inbox.splice(0)) l[0].merged(d, 1);
  // Replica 0 asks: its first peer (1) holds what it exported, b(1), and nothing received yet.
  assert.deepEqual(l[0].snapshot(600), [b(1, 0)]);
  net.cut(1, 0, 10_000);
  // Peer 1 unreachable: peer 2, which exported b(2).
  assert.deepEqual(l[0].snapshot(700), [b(2, 500)]);
  // Past the TTL of b(2): nothing.
  assert.deepEqual(l[0].snapshot(1600), []);
  assert.equal(net.totals.snapshots, 3);
});

// A small multi-turn workload: 3 pods, 24 conversations of 5 turns, each turn repeating the last.
const MULTI = join(dir, "multi.json");
writeFileSync(MULTI, JSON.stringify({ name: "multi", pods: 3, arrival: { kind: "closed", concurrency: 1000 }, source: { type: "multi-turn", sessions: 24, turns: 5, systemLen: 300, userLen: 120, outputLen: 30, thinkTimeMs: 500, startGapMs: 100, seed: 4 } }));
const VARIANTS = join(dir, "variants.json");
writeFileSync(VARIANTS, JSON.stringify({ alone: { peers: { enabled: false } } }));

test("4 wasm-epp replicas sharing through their sidecars keep one replica's prefix hits; without sharing they fade", async () => {
  const hit = async (strategy: string, gateways: number) => {
    const s = setup(["--workload", MULTI, "--strategies", strategy, "--gateways", String(gateways), "--jobs", "1", "--variants", VARIANTS]);
    const r = await runJob(s, { workload: 0, strategy, seed: 7 });
    assert.equal(r.unfinished, 0);
    assert.equal(r.requests.length, 120);
    return r;
  };
  const one = await hit("wasm-epp", 1);
  assert.equal(one.routerStats?.peer_records_journaled, undefined, "one gateway: no sharing");
  const shared = await hit("wasm-epp", 4);
  const alone = await hit("wasm-epp:alone", 4);
  assert.ok(one.prefixHitRate > 0.6, `one gateway: ${one.prefixHitRate}`);
  assert.ok(shared.prefixHitRate >= 0.95 * one.prefixHitRate, `4 sharing: ${shared.prefixHitRate}, one: ${one.prefixHitRate}`);
  assert.ok(alone.prefixHitRate < one.prefixHitRate - 0.1, `4 alone: ${alone.prefixHitRate}, one: ${one.prefixHitRate}`);
  // Every record journaled reached the other three (nothing lost on the way).
  const st = shared.routerStats!;
  assert.ok(st.peer_records_journaled > 0);
  assert.ok(st.peer_hashes_merged > 0);
  assert.equal(st.peer_journal_lost, 0);
});

test("chaos legs on 4 replicas: a restart warms up from a peer, a cut-off replica and a deleted pod lose no request", async () => {
  const wasm = new Uint8Array(readFileSync(join(ROOT, "build/wasm-epp.wasm")));
  const workload = loadWorkloadFile(MULTI, {});
  const calm = await runLeg({ wasm, workload, seed: 7, gateways: 4, leg: "none", makespanMs: 0 });
  assert.equal(calm.leg.passed, true);
  const makespanMs = calm.result.makespanMs;
  const all = await runLeg({ wasm, workload, seed: 7, gateways: 4, leg: "all", makespanMs });
  assert.equal(all.leg.completed, 120, JSON.stringify(all.leg.failures));
  assert.equal(all.leg.failed, 0);
  assert.equal(all.leg.unfinished, 0);
  assert.equal(all.leg.passed, true);
  assert.equal(all.leg.router.restarts, 1);
  assert.ok(all.leg.router.warmup_hashes_merged > 0, "the new instance merged a peer's snapshot");
  assert.ok(all.leg.exchange.bytesLost > 0, "the cut-off replica's batches were lost");
  // Nothing reached the deleted pod after its grace; it served nothing sent after the deletion
  // had reached the replicas' filters.
  assert.equal(all.result.requests.filter((q) => q.pod === 2 && q.sentMs >= makespanMs * 0.5 + 5000).length, 0);
});
