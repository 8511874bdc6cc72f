// Peer sharing's flags and metrics.

import { test } from "node:test";
import assert from "node:assert/strict";
import { parseOptions, peerSharing } from "../../sidecar/cli.ts";
import { SidecarMetrics } from "../../sidecar/observability/metrics.ts";

test("peer flags: defaults, and on only with a peer source", () => {
  const o = parseOptions([]);
  assert.equal(peerSharing(o), false);
  assert.deepEqual(o.peers, []);
  assert.equal(o.peerPort, 19200);
  assert.equal(o.peerAddress, "0.0.0.0");
  assert.equal(o.peerIntervalMs, 100);
  assert.equal(o.peerMaxBytes, 1024 * 1024);
  assert.equal(o.peerTimeoutMs, 1000);
  assert.equal(o.peerTtlMs, 600_000);
  assert.equal(o.peerWarmupTimeoutMs, 5000);
  assert.equal(o.peerStoreBytes, 64 * 1024 * 1024);
  assert.equal(o.replicaName, undefined, "default: POD_NAME, else the host name (resolved at start)");
  assert.equal(parseOptions(["--replica-name", "envoy-gw-7c9-x2k"]).replicaName, "envoy-gw-7c9-x2k");
  const p = parseOptions(["--peer", "10.0.0.2:19200", "--peer", "[fd00::3]:19200", "--peer-token-file", "/t", "--peer-interval", "250ms", "--peer-max-bytes", "256KiB", "--peer-ttl", "5m"]);
  assert.equal(peerSharing(p), true);
  assert.deepEqual(p.peers, ["10.0.0.2:19200", "[fd00::3]:19200"]);
  assert.equal(p.peerIntervalMs, 250);
  assert.equal(p.peerMaxBytes, 256 * 1024);
  assert.equal(p.peerTtlMs, 300_000);
  const k = parseOptions(["--peer-selector", "gateway.envoyproxy.io/owning-gateway-name=qwen-inference-gateway,gateway.envoyproxy.io/owning-gateway-namespace=default", "--peer-token-file", "/t", "--peer-discovery-port", "wasm-epp-peers"]);
  assert.equal(peerSharing(k), true);
  assert.equal(k.peerDiscoveryPort, "wasm-epp-peers");
  // Peer flags without a source are accepted and do nothing.
  assert.equal(peerSharing(parseOptions(["--peer-interval", "1s", "--peer-port", "19300"])), false);
});

test("peer flags: usage errors name the flag", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--peer", "10.0.0.2:19200"], /needs --peer-token-file/],
    [["--peer-service", "envoy-gw", "--peer-token-file", "/t", "--manifests", "d"], /need Kubernetes mode/],
    [["--peer", "10.0.0.2"], /--peer 10.0.0.2: must be ADDR:PORT/],
    [["--peer", "10.0.0.2:0", "--peer-token-file", "/t"], /must be ADDR:PORT/],
    [["--peer-service", "Not_A_Name", "--peer-token-file", "/t"], /not a Service name/],
    [["--peer-selector", "a=b,=c", "--peer-token-file", "/t"], /not a label requirement/],
    [["--peer-service", "a", "--peer-selector", "b=c", "--peer-token-file", "/t"], /exclude each other/],
    [["--peer-discovery-port", "70000"], /must be a port number or a port name/],
    [["--pod-ip", "pod-1"], /--pod-ip pod-1: not an IP address/],
    [["--peer", "10.0.0.2:1", "--peer-token-file", "/t", "--peer-port", "9090"], /--peer-port and --metrics-port are both 9090/],
    [["--peer-max-bytes", "100"], /--peer-max-bytes 100: must be between 1KiB and 64MiB/],
    [["--peer-interval", "1ms"], /--peer-interval 1ms: must be between 10ms/],
    [["--replica-name", "a b"], /--replica-name a b: must be 1 to 253 printable ASCII characters/],
    [["--replica-name", "x".repeat(254)], /--replica-name x+: must be 1 to 253/],
  ];
  for (const [args, re] of cases) {
    assert.throws(() => parseOptions(args), (e: Error & { code?: string }) => e.code === "usage" && re.test(e.message), args.join(" "));
  }
});

test("peer metrics: the names, and a peer's series go when it leaves", async () => {
  const m = new SidecarMetrics();
  m.peerSent("10.0.0.2:19200", 100);
  m.peerReceived("10.0.0.2:19200", 50);
  m.peerRecords("exported", 3);
  m.peerRecords("load_sent", 4);
  m.peerError("10.0.0.2:19200", "timeout");
  m.peerError("filter", "sharing_off");
  m.peerCounts(2, 1);
  m.peerStoreBytes(1234);
  m.journalLost(6);
  let text = await m.registry.metrics();
  assert.match(text, /wasm_epp_sidecar_peer_sent_bytes_total\{peer="10\.0\.0\.2:19200"\} 100/);
  assert.match(text, /wasm_epp_sidecar_peer_received_bytes_total\{peer="10\.0\.0\.2:19200"\} 50/);
  assert.match(text, /wasm_epp_sidecar_peer_records_total\{direction="exported"\} 3/);
  assert.match(text, /wasm_epp_sidecar_peer_records_total\{direction="imported"\} 0/);
  assert.match(text, /wasm_epp_sidecar_peer_records_total\{direction="load_sent"\} 4/);
  assert.match(text, /wasm_epp_sidecar_peer_records_total\{direction="load_received"\} 0/);
  assert.match(text, /wasm_epp_sidecar_peer_errors_total\{peer="10\.0\.0\.2:19200",reason="timeout"\} 1/);
  assert.match(text, /wasm_epp_sidecar_peers\{state="known"\} 2/);
  assert.match(text, /wasm_epp_sidecar_peers\{state="reachable"\} 1/);
  assert.match(text, /wasm_epp_sidecar_peer_store_bytes 1234/);
  assert.match(text, /wasm_epp_sidecar_prefix_journal_lost_total 6/);
  m.forgetPeer("10.0.0.2:19200");
  text = await m.registry.metrics();
  assert.doesNotMatch(text, /10\.0\.0\.2:19200/);
  assert.match(text, /peer="filter",reason="sharing_off"/);
});
