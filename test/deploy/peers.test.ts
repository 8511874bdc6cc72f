// deploy/kubernetes: prefix sharing between the gateway's replicas (docs/replicas.md) — the
// sidecar's peer flags, port, POD_IP and peer token, the endpointslices Role, and the filter's
// peers.enabled, consistent with each other and with the Gateway they serve.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseOptions, peerSharing, POD_IP_ENV } from "../../sidecar/cli.ts";
import { parseLabelSelector } from "../fakes/apiserver.ts";
import { base64, baseSources, KUBECTL, kustomize, render, scratchCopy, PEER_TEST_TOKEN } from "./kustomize.ts";

const rendered = KUBECTL !== null;
const NO_KUBECTL = "kubectl not installed: kubectl kustomize not run";
const docs: any[] = rendered ? render("base") : baseSources();
const envoyProxy = docs.find((d) => d.kind === "EnvoyProxy");
const k8s = envoyProxy.spec.provider.kubernetes;
const sidecar = k8s.envoyDeployment.patch.value.spec.template.spec.containers.find((c: any) => c.name === "wasm-epp-sidecar");
const opts = parseOptions(sidecar.args);
const gateway = docs.find((d) => d.kind === "Gateway");

test("the sidecar shares prefixes with the replicas of its own Gateway's Service", () => {
  assert.equal(peerSharing(opts), true);
  assert.ok(opts.peerTokenFile);
  // The selector matches the labels Envoy Gateway puts on the Gateway's Service (and the
  // EndpointSlice controller copies onto its slices), and not the sidecar's metrics Service.
  const matches = parseLabelSelector(opts.peerSelector!);
  const egService = {
    metadata: {
      name: `envoy-${gateway.metadata.namespace}-${gateway.metadata.name}-0123abcd`,
      labels: {
        "app.kubernetes.io/name": "envoy",
        "app.kubernetes.io/component": "proxy",
        "app.kubernetes.io/managed-by": "envoy-gateway",
        "gateway.envoyproxy.io/owning-gateway-name": gateway.metadata.name,
        "gateway.envoyproxy.io/owning-gateway-namespace": gateway.metadata.namespace,
        "kubernetes.io/service-name": `envoy-${gateway.metadata.namespace}-${gateway.metadata.name}-0123abcd`,
      },
    },
  };
  assert.ok(matches(egService), "the Gateway's EndpointSlices");
  const metricsService = docs.find((d) => d.kind === "Service" && d.metadata.name === "wasm-epp-sidecar-metrics");
  assert.equal(matches({ metadata: { name: "x", labels: { ...metricsService.metadata.labels, "kubernetes.io/service-name": metricsService.metadata.name } } }), false);
  assert.equal(matches({ metadata: { name: "y", labels: { ...egService.metadata.labels, "gateway.envoyproxy.io/owning-gateway-name": "another-gateway" } } }), false);
  assert.equal(opts.peerNamespace, envoyProxy.metadata.namespace, "Envoy Gateway creates the Service in its own namespace");
});

test("the peer port is a container port, not on the gateway's Service; POD_IP from the downward API", () => {
  const port = sidecar.ports.find((p: any) => p.containerPort === opts.peerPort);
  assert.ok(port, `container port ${opts.peerPort}`);
  assert.equal(port.protocol, "TCP");
  assert.notEqual(opts.peerPort, opts.metricsPort);
  const servicePatch = JSON.stringify(k8s.envoyService?.patch?.value ?? {});
  assert.doesNotMatch(servicePatch, new RegExp(`"port":${opts.peerPort}\\b(?!,"\\$patch")`), "not added to the gateway's Service");
  for (const svc of docs.filter((d) => d.kind === "Service")) {
    assert.ok(svc.spec.ports.every((p: any) => p.port !== opts.peerPort && p.targetPort !== port.name), `${svc.metadata.name} does not expose the peer port`);
  }
  const podIp = sidecar.env.find((e: any) => e.name === POD_IP_ENV);
  assert.deepEqual(podIp?.valueFrom, { fieldRef: { fieldPath: "status.podIP" } });
});

test("the peer token: a file from its own Secret, mounted into the sidecar only", () => {
  const mount = sidecar.volumeMounts.find((m: any) => opts.peerTokenFile!.startsWith(m.mountPath + "/"));
  assert.ok(mount, `a volume mounted above ${opts.peerTokenFile}`);
  assert.equal(mount.readOnly, true);
  assert.equal(opts.peerTokenFile, `${mount.mountPath}/token`);
  const volume = k8s.envoyDeployment.pod.volumes.find((v: any) => v.name === mount.name);
  assert.match(volume.secret.secretName, /^wasm-epp-peer-token/);
  assert.ok(!JSON.stringify(k8s.envoyDeployment.container ?? {}).includes("peer-token"), "not in the envoy container");
});

test("rendered: the peer token Secret is generated from base/peer-token and referenced by its hashed name", { skip: rendered ? false : NO_KUBECTL }, () => {
  const secrets = docs.filter((d) => d.kind === "Secret" && d.metadata.name.startsWith("wasm-epp-peer-token"));
  assert.equal(secrets.length, 1);
  assert.match(secrets[0].metadata.name, /^wasm-epp-peer-token-[a-z0-9]{10}$/);
  assert.equal(secrets[0].metadata.namespace, envoyProxy.metadata.namespace);
  assert.equal(secrets[0].data.token, base64(PEER_TEST_TOKEN));
  const mount = sidecar.volumeMounts.find((m: any) => opts.peerTokenFile!.startsWith(m.mountPath + "/"));
  assert.equal(k8s.envoyDeployment.pod.volumes.find((v: any) => v.name === mount.name).secret.secretName, secrets[0].metadata.name);
  const push = docs.find((d) => d.kind === "Secret" && d.metadata.name.startsWith("wasm-epp-push-token"));
  assert.notEqual(push.data.token, secrets[0].data.token, "its own token, not the push token");
});

test("rendered: no peer token is committed; rendering without base/peer-token fails", { skip: rendered ? false : NO_KUBECTL }, () => {
  const copy = scratchCopy(undefined, null);
  try {
    const r = kustomize(join(copy.dir, "base"));
    assert.equal(r.ok, false);
    assert.match(r.stderr, /peer-token/);
  } finally {
    copy.cleanup();
  }
});

test("RBAC for discovery: get, list, watch on endpointslices in the Service's namespace, nothing more", () => {
  const role = docs.find((d) => d.kind === "Role" && d.metadata.name === "wasm-epp-sidecar-peers");
  assert.ok(role);
  assert.equal(role.metadata.namespace, opts.peerNamespace);
  assert.deepEqual(role.rules, [{ apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["get", "list", "watch"] }]);
  const binding = docs.find((d) => d.kind === "RoleBinding" && d.roleRef?.name === role.metadata.name);
  assert.equal(binding.metadata.namespace, role.metadata.namespace);
  assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: k8s.envoyServiceAccount.name, namespace: envoyProxy.metadata.namespace }]);
});

test("the routing filter journals its prefix records (peers.enabled), since the sidecar shares them", () => {
  const eeps = docs.filter((d) => d.kind === "EnvoyExtensionPolicy");
  const routing = eeps.find((e) => e.spec.wasm.some((w: any) => w.config?.accept_push !== true));
  assert.equal(routing.spec.wasm[0].config.peers.enabled, true);
  assert.ok(!("journal" in routing.spec.wasm[0].config.peers) || routing.spec.wasm[0].config.peers.journal > 0);
  // The sidecar's batches fit the filter's import limit (its default, 1 MiB, unless configured).
  assert.ok(opts.peerMaxBytes <= (routing.spec.wasm[0].config.peers.max_import_bytes ?? 1024 * 1024));
});
