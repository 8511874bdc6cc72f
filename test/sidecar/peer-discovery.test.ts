// Peer discovery: the pure reading of EndpointSlices, and EndpointSlicePeers against the fake API
// server through the real @kubernetes/client-node informer.

import { test } from "node:test";
import assert from "node:assert/strict";
import { BUILTIN_RESOURCES, FakeApiServer, type Obj } from "../fakes/apiserver.ts";
import { EndpointSlicePeers, parsePeerAddress, peersFromSlices, type EndpointSlice } from "../../sidecar/peers/discovery.ts";
import { startSidecar } from "../../sidecar/app.ts";
import { parseOptions } from "../../sidecar/cli.ts";
import { kubeConfigFor, memoryLogger, waitUntil } from "./helpers.ts";
import { tokenFile } from "./peer-helpers.ts";
import { PrefixFilterStub } from "./prefix-filter.ts";

// The fake API server serves the resources of this list; EndpointSlices join it for these tests.
if (!BUILTIN_RESOURCES.some((d) => d.plural === "endpointslices")) {
  BUILTIN_RESOURCES.push({ group: "discovery.k8s.io", version: "v1", plural: "endpointslices", kind: "EndpointSlice", namespaced: true });
}

const NS = "envoy-gateway-system";
const SERVICE = "envoy-default-qwen-inference-gateway-ab12cd34";
const GATEWAY_LABELS = {
  "app.kubernetes.io/name": "envoy",
  "app.kubernetes.io/component": "proxy",
  "app.kubernetes.io/managed-by": "envoy-gateway",
  "gateway.envoyproxy.io/owning-gateway-name": "qwen-inference-gateway",
  "gateway.envoyproxy.io/owning-gateway-namespace": "default",
};

type Ep = { ip: string; ready?: boolean; terminating?: boolean };

function slice(name: string, eps: Ep[], opts: { service?: string; labels?: Record<string, string>; addressType?: string; ports?: Array<{ name: string; port: number }> } = {}): Obj {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name,
      namespace: NS,
      // What the EndpointSlice controller writes: the Service's labels plus the reserved ones.
      labels: { ...(opts.labels ?? GATEWAY_LABELS), "kubernetes.io/service-name": opts.service ?? SERVICE, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
    },
    addressType: opts.addressType ?? "IPv4",
    endpoints: eps.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: e.terminating ?? false }, targetRef: { kind: "Pod", name: `envoy-${e.ip}`, namespace: NS } })),
    ports: opts.ports ?? [{ name: "http-8080", port: 8080 }, { name: "http-8081", port: 8081 }],
  };
}

test("peersFromSlices: every address not terminating, on the given or named port, without this pod, once each", () => {
  const slices = [
    slice("a", [{ ip: "10.0.0.1" }, { ip: "10.0.0.2", ready: false }, { ip: "10.0.0.3", terminating: true, ready: false }, { ip: "10.0.0.9" }]),
    slice("b", [{ ip: "10.0.0.1" }, { ip: "10.0.0.4" }]),
    slice("c", [{ ip: "FD00::5" }], { addressType: "IPv6" }),
    slice("d", [{ ip: "gw.example" }], { addressType: "FQDN" }),
  ] as unknown as EndpointSlice[];
  const self = (a: string) => a === "10.0.0.9";
  const { peers, problems } = peersFromSlices(slices, 19200, self);
  assert.deepEqual(peers.map((p) => p.id), ["10.0.0.1:19200", "10.0.0.2:19200", "10.0.0.4:19200", "[fd00::5]:19200"]);
  assert.deepEqual(problems, []);
  const named = peersFromSlices([slice("a", [{ ip: "10.0.0.1" }], { ports: [{ name: "wasm-epp-peers", port: 19300 }] }), slice("b", [{ ip: "10.0.0.2" }])] as unknown as EndpointSlice[], "wasm-epp-peers", () => false);
  assert.deepEqual(named.peers.map((p) => p.id), ["10.0.0.1:19300"]);
  assert.match(named.problems[0], /EndpointSlice b has no port named wasm-epp-peers/);
  assert.deepEqual(parsePeerAddress("[FD00::1]:19200"), { id: "[fd00::1]:19200", host: "fd00::1", port: 19200 });
  assert.equal(parsePeerAddress("10.0.0.1"), undefined);
  assert.equal(parsePeerAddress("10.0.0.1:70000"), undefined);
  assert.equal(parsePeerAddress("gw-1.example:19200")?.host, "gw-1.example");
});

test("EndpointSlicePeers follows the gateway Service's slices through list and watch, by label selector", async () => {
  const api = await FakeApiServer.start();
  const { log, records } = memoryLogger();
  const source = new EndpointSlicePeers({
    kubeconfig: kubeConfigFor(api.kubeconfigYaml()),
    namespace: NS,
    labelSelector: "gateway.envoyproxy.io/owning-gateway-name=qwen-inference-gateway,gateway.envoyproxy.io/owning-gateway-namespace=default",
    port: 19200,
    exclude: (a) => a === "10.0.0.1",
    log,
  });
  let changes = 0;
  try {
    api.apply(slice(`${SERVICE}-x1`, [{ ip: "10.0.0.1" }, { ip: "10.0.0.2" }]));
    api.apply(slice("other-service-y", [{ ip: "10.9.9.9" }], { service: "other", labels: { app: "other" } }));
    source.start(() => changes++);
    await waitUntil(() => source.synced(), 5000, "listed");
    assert.deepEqual(source.peers().map((p) => p.id), ["10.0.0.2:19200"], "this pod and the other Service's slice left out");
    const list = api.requests.find((r) => !r.watch && r.path === `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`);
    assert.equal(list?.query.labelSelector, "gateway.envoyproxy.io/owning-gateway-name=qwen-inference-gateway,gateway.envoyproxy.io/owning-gateway-namespace=default");
    await waitUntil(() => api.watchesOf("endpointslices").length > 0, 5000, "watch");
    assert.equal(api.watchesOf("endpointslices")[0].query.labelSelector, list?.query.labelSelector);
    // A replica comes, one starts terminating, a second slice appears.
    api.apply(slice(`${SERVICE}-x1`, [{ ip: "10.0.0.1" }, { ip: "10.0.0.2", terminating: true, ready: false }, { ip: "10.0.0.3", ready: false }]));
    await waitUntil(() => source.peers().map((p) => p.id).join() === "10.0.0.3:19200", 5000, "10.0.0.2 terminating, 10.0.0.3 starting");
    api.apply(slice(`${SERVICE}-x2`, [{ ip: "10.0.0.4" }]));
    await waitUntil(() => source.peers().length === 2, 5000, "second slice");
    api.remove("EndpointSlice", NS, `${SERVICE}-x2`);
    await waitUntil(() => source.peers().length === 1, 5000, "slice removed");
    assert.ok(changes >= 4);
    assert.equal(records.filter((r) => r.level === "warn").length, 0);
  } finally {
    await source.stop();
    await api.close();
  }
});

test("the sidecar with --peer-service: peers from the Service's slices, followed as replicas come and go, minus --pod-ip", async () => {
  const api = await FakeApiServer.start();
  const filter = await PrefixFilterStub.start();
  const { log, records } = memoryLogger();
  const o = parseOptions([
    "--push-url", filter.pushUrl,
    "--metrics-port", "0",
    "--peer-port", "0",
    "--peer-address", "127.0.0.1",
    "--peer-token-file", tokenFile("peer-secret"),
    "--peer-service", SERVICE,
    "--peer-namespace", NS,
    "--pod-ip", "10.0.0.1",
    "--peer-warmup-timeout", "0",
  ]);
  const s = await startSidecar(o, { log, env: { WASM_EPP_PUSH_TOKEN: filter.token }, kubeConfig: kubeConfigFor(api.kubeconfigYaml()), localAddresses: new Set() });
  try {
    api.apply(slice(`${SERVICE}-a`, [{ ip: "10.0.0.1" }, { ip: "10.0.0.2" }, { ip: "10.0.0.3" }]));
    await waitUntil(() => s.peers!.peers().length === 2, 5000, "two peers");
    assert.deepEqual(s.peers!.peers().map((p) => p.id).sort(), ["10.0.0.2:19200", "10.0.0.3:19200"], "the default port is --peer-port's default, the same on every replica");
    const list = api.requests.find((r) => !r.watch && r.path.endsWith("/endpointslices"));
    assert.equal(list?.query.labelSelector, `kubernetes.io/service-name=${SERVICE}`);
    assert.equal(list?.path, `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`);
    api.apply(slice(`${SERVICE}-a`, [{ ip: "10.0.0.1" }, { ip: "10.0.0.3" }]));
    await waitUntil(() => s.peers!.peers().length === 1, 5000, "10.0.0.2 gone");
    const changed = records.filter((r) => r.event === "peers_changed");
    assert.deepEqual(changed.at(-1)?.removed, ["10.0.0.2:19200"]);
  } finally {
    await s.stop();
    await api.close();
    await filter.down();
  }
});
