// deploy/kubernetes: the kustomize base and overlays for Envoy Gateway. Rendered with
// `kubectl kustomize` when kubectl is installed (it works offline); otherwise the base's files are
// checked as written and the rendering-only checks say that they were skipped.
//
// Beyond the manifests themselves, the EnvoyPatchPolicies are applied to a model of the xDS Envoy
// Gateway generates (eg-xds-model.ts), and the patched wasm filters are run with the real module
// under the test host, with the token the Secret gives Envoy and the sidecar.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_PUSH_URL, parseOptions, TOKEN_ENV } from "../../sidecar/cli.ts";
import { RESOURCES } from "../../sidecar/k8s/resources.ts";
import { repoPath, yamlFile } from "./files.ts";
import { base64, baseSources, KUBECTL, kustomize, readText, render, scratchCopy, TEST_TOKEN } from "./kustomize.ts";
import { generate, PATCHABLE_TYPES, type EgModel } from "./eg-xds-model.ts";
import { applyPatch } from "./json-patch.ts";
import { hcms, hostClusters, isLoopback, pluginConfig, wasmFilters } from "./envoy-config.ts";
import { exercise, exercisePd, specFromEnvoyFilter } from "./filter-under-host.ts";

const rendered = KUBECTL !== null;
const NO_KUBECTL = "kubectl not installed: kubectl kustomize not run (the base's files were checked as written)";
const docs: any[] = rendered ? render("base") : baseSources();

test("how the manifests were read", (t) => {
  t.diagnostic(rendered ? `rendered with kubectl kustomize (${KUBECTL})` : NO_KUBECTL);
  assert.ok(docs.length >= 14);
});

function one(kind: string, name?: string, from: any[] = docs): any {
  const found = from.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ""}`);
  return found[0];
}

function all(kind: string, from: any[] = docs): any[] {
  return from.filter((d) => d.kind === kind);
}

const gateway = one("Gateway");
const gwListener = (name: string) => gateway.spec.listeners.find((l: any) => l.name === name);
const routes = all("HTTPRoute");
const routeOn = (section: string) => {
  const r = routes.filter((x) => x.spec.parentRefs.some((p: any) => p.name === gateway.metadata.name && p.sectionName === section));
  assert.equal(r.length, 1, `one HTTPRoute on listener ${section}`);
  return r[0];
};
const envoyProxy = one("EnvoyProxy");
const k8s = envoyProxy.spec.provider.kubernetes;
const sidecar = k8s.envoyDeployment.patch.value.spec.template.spec.containers.find((c: any) => c.name === "wasm-epp-sidecar");
const eeps = all("EnvoyExtensionPolicy");
const routingEep = eeps.find((e) => e.spec.wasm.some((w: any) => w.config?.accept_push !== true));
const pushEep = eeps.find((e) => e.spec.wasm.some((w: any) => w.config?.accept_push === true));
const PUSH_PORT = Number(new URL(DEFAULT_PUSH_URL).port);
const PEERS_ROLE = "wasm-epp-sidecar-peers";
const pushSecret = () => {
  const found = all("Secret").filter((x) => x.metadata.name.startsWith("wasm-epp-push-token"));
  assert.equal(found.length, 1, "one push token Secret");
  return found[0];
};

test("the seeds' gateway: 8080 plain, 8081 inference-aware, and the push listener on the sidecar's push port", () => {
  assert.equal(gwListener("http").port, 8080);
  assert.equal(gwListener("llm-gw").port, 8081);
  const push = gateway.spec.listeners.find((l: any) => l.port === PUSH_PORT);
  assert.ok(push, `a listener on ${PUSH_PORT}, the sidecar's default push port`);
  const cls = one("GatewayClass");
  assert.equal(gateway.spec.gatewayClassName, cls.metadata.name);
  assert.equal(cls.spec.controllerName, "gateway.envoyproxy.io/gatewayclass-controller");
  assert.deepEqual(cls.spec.parametersRef, { group: "gateway.envoyproxy.io", kind: "EnvoyProxy", name: envoyProxy.metadata.name, namespace: envoyProxy.metadata.namespace });
});

test("routes: 8080 to the Service, 8081 to the same Service (patched to ORIGINAL_DST), push route without backends", () => {
  const plain = routeOn("http");
  const inference = routeOn("llm-gw");
  for (const r of [plain, inference]) {
    const [ref] = r.spec.rules[0].backendRefs;
    assert.deepEqual([ref.kind, ref.name, ref.port], ["Service", "qwen", 8000]);
  }
  const push = routeOn(gateway.spec.listeners.find((l: any) => l.port === PUSH_PORT).name);
  assert.equal(push.spec.rules[0].backendRefs, undefined);
  assert.ok(push.spec.rules[0].matches.some((m: any) => "/wasm-epp/v1/state".startsWith(m.path.value)));
});

test("EnvoyExtensionPolicies: the module from an OCI image pinned by sha256, attached to the 8081 and push routes only", () => {
  assert.equal(eeps.length, 2);
  const targets = (e: any) => e.spec.targetRefs.map((t: any) => `${t.kind}/${t.name}`);
  assert.deepEqual(targets(routingEep), [`HTTPRoute/${routeOn("llm-gw").metadata.name}`]);
  assert.deepEqual(targets(pushEep), [`HTTPRoute/${routeOn(gateway.spec.listeners.find((l: any) => l.port === PUSH_PORT).name).metadata.name}`]);
  const [routing] = routingEep.spec.wasm;
  const [push] = pushEep.spec.wasm;
  for (const w of [routing, push]) {
    assert.equal(w.rootID, "wasm-epp");
    assert.equal(w.code.type, "Image");
    assert.match(w.code.image.sha256, /^[0-9a-f]{64}$/, "the image manifest's digest, hex");
    assert.equal(w.failOpen, false, "base: fail closed (ORIGINAL_DST)");
    assert.ok(w.env.hostKeys.includes(TOKEN_ENV));
  }
  assert.deepEqual(push.code, routing.code, "both instances run the same module");
  assert.deepEqual(push.env, routing.env, "both instances share one VM: same environment");
  assert.equal(routing.config.pool, "default/vllm-qwen-pool");
  const pools = yamlFile(repoPath("deploy/examples/seeds/quickstart-vllm-qwen-pool.yaml")).filter((o) => o.kind === "InferencePool");
  assert.ok(pools.some((p) => `default/${p.metadata.name}` === routing.config.pool), "the configured pool is the seeds' quick-start pool");
});

test("rendered images: module and sidecar come from the same release", { skip: rendered ? false : NO_KUBECTL }, () => {
  const url = routingEep.spec.wasm[0].code.image.url;
  assert.match(url, /^[a-z0-9.-]+(:\d+)?\/[a-z0-9._/-]+:[A-Za-z0-9._-]+$/, "registry/repository:tag");
  assert.match(sidecar.image, /^[a-z0-9.-]+(:\d+)?\/[a-z0-9._/-]+:[A-Za-z0-9._-]+$/);
  assert.equal(url.split(":").pop(), sidecar.image.split(":").pop(), "same tag");
});

test("ClientTrafficPolicy: listener buffers hold max_body_bytes; BackendTrafficPolicy: one-hour timeout", () => {
  const ctp = one("ClientTrafficPolicy");
  assert.deepEqual(ctp.spec.targetRefs.map((t: any) => `${t.kind}/${t.name}`), [`Gateway/${gateway.metadata.name}`]);
  const limit = /^(\d+)Mi$/.exec(ctp.spec.connection.bufferLimit);
  assert.ok(limit, ctp.spec.connection.bufferLimit);
  assert.ok(Number(limit[1]) * 1024 * 1024 >= routingEep.spec.wasm[0].config.max_body_bytes);
  assert.ok(Number(limit[1]) * 1024 * 1024 >= 4 * 1024 * 1024, "push listener: max_state_bytes");
  const btp = one("BackendTrafficPolicy", "backend-timeout");
  assert.equal(btp.spec.timeout.http.requestTimeout, "1h");
});

test("sidecar RBAC: get, list, watch on pools (both APIs), models, objectives, rewrites, traffic policies and pods, nothing more", () => {
  const roles = [...all("Role"), ...all("ClusterRole")].filter((r) => r.metadata.name !== PEERS_ROLE);
  assert.equal(roles.length, 1);
  const expected = new Set([
    "inference.networking.x-k8s.io/inferencepools",
    "inference.networking.x-k8s.io/inferencemodels",
    "inference.networking.x-k8s.io/inferenceobjectives",
    "inference.networking.x-k8s.io/inferencemodelrewrites",
    "inference.networking.k8s.io/inferencepools",
    "inferenceextension.alibabacloud.com/inferencetrafficpolicies",
    "/pods",
  ]);
  // Exactly what the sidecar lists and watches.
  assert.deepEqual([...expected].sort(), RESOURCES.map((r) => `${r.group}/${r.plural}`).sort());
  const seen = new Set<string>();
  for (const rule of roles[0].rules) {
    assert.deepEqual([...rule.verbs].sort(), ["get", "list", "watch"]);
    assert.equal(rule.resourceNames, undefined);
    assert.equal(rule.nonResourceURLs, undefined);
    for (const g of rule.apiGroups) for (const r of rule.resources) {
      assert.notEqual(g, "*");
      assert.notEqual(r, "*");
      seen.add(`${g}/${r}`);
    }
  }
  assert.deepEqual([...seen].sort(), [...expected].sort());
  const binding = one("RoleBinding", "wasm-epp-sidecar");
  assert.equal(binding.roleRef.name, roles[0].metadata.name);
  const sa = one("ServiceAccount");
  assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace }]);
  assert.equal(k8s.envoyServiceAccount.name, sa.metadata.name, "the Envoy pods run under this ServiceAccount");
  assert.equal(sa.metadata.namespace, envoyProxy.metadata.namespace);
  // The namespaced Role must cover the namespace the sidecar watches.
  const opts = parseOptions(sidecar.args);
  assert.equal(opts.namespace, roles[0].metadata.namespace);
});

test("the sidecar container: valid flags, token from the Secret, API credentials, probes, metrics, non-root", () => {
  const opts = parseOptions(sidecar.args); // throws on an unknown flag
  assert.equal(opts.metricsPort, 9090);
  assert.deepEqual(opts.pushUrls, [DEFAULT_PUSH_URL]);
  const tokenEnv = sidecar.env.find((e: any) => e.name === TOKEN_ENV);
  const envoyTokenEnv = k8s.envoyDeployment.container.env.find((e: any) => e.name === TOKEN_ENV);
  assert.ok(tokenEnv && envoyTokenEnv, "both containers get the token");
  assert.deepEqual(tokenEnv.valueFrom, envoyTokenEnv.valueFrom, "from the same Secret key");
  const mount = sidecar.volumeMounts.find((m: any) => m.mountPath === "/var/run/secrets/kubernetes.io/serviceaccount");
  assert.ok(mount, "Envoy Gateway pods do not mount a service-account token: the sidecar mounts its own");
  const vol = k8s.envoyDeployment.pod.volumes.find((v: any) => v.name === mount.name);
  const sources = vol.projected.sources;
  assert.ok(sources.some((s: any) => s.serviceAccountToken?.path === "token"));
  assert.ok(sources.some((s: any) => s.configMap?.name === "kube-root-ca.crt" && s.configMap.items[0].path === "ca.crt"));
  assert.ok(sources.some((s: any) => s.downwardAPI?.items[0].path === "namespace"));
  const port = sidecar.ports.find((p: any) => p.containerPort === opts.metricsPort);
  assert.ok(port);
  assert.equal(sidecar.readinessProbe.httpGet.path, "/readyz");
  assert.equal(sidecar.livenessProbe.httpGet.path, "/healthz");
  assert.equal(sidecar.securityContext.runAsNonRoot, true);
  assert.equal(sidecar.securityContext.allowPrivilegeEscalation, false);
  assert.equal(sidecar.securityContext.readOnlyRootFilesystem, true);
  const svc = one("Service", "wasm-epp-sidecar-metrics");
  assert.equal(svc.metadata.annotations["prometheus.io/scrape"], "true");
  assert.equal(Number(svc.metadata.annotations["prometheus.io/port"]), opts.metricsPort);
  assert.equal(svc.metadata.annotations["prometheus.io/path"], "/metrics");
  assert.equal(svc.spec.ports[0].targetPort, port.name);
  assert.deepEqual(svc.spec.selector, {
    "gateway.envoyproxy.io/owning-gateway-namespace": gateway.metadata.namespace,
    "gateway.envoyproxy.io/owning-gateway-name": gateway.metadata.name,
  });
  assert.equal(svc.metadata.namespace, envoyProxy.metadata.namespace);
});

test("the push port is removed from the gateway's Service", () => {
  const ports = k8s.envoyService.patch.value.spec.ports;
  assert.deepEqual(ports, [{ port: PUSH_PORT, $patch: "delete" }]);
  assert.equal(k8s.envoyService.patch.type, "StrategicMerge");
});

test("the push token Secret is generated from the user's file and referenced by its hashed name", { skip: rendered ? false : NO_KUBECTL }, () => {
  const secret = pushSecret();
  assert.match(secret.metadata.name, /^wasm-epp-push-token-[a-z0-9]{10}$/);
  assert.equal(secret.metadata.namespace, envoyProxy.metadata.namespace, "the Envoy pods' namespace");
  assert.equal(secret.data.token, base64(TEST_TOKEN));
  for (const env of [sidecar.env, k8s.envoyDeployment.container.env]) {
    assert.equal(env.find((e: any) => e.name === TOKEN_ENV).valueFrom.secretKeyRef.name, secret.metadata.name);
  }
});

test("no token is committed: rendering without push-token fails", { skip: rendered ? false : NO_KUBECTL }, () => {
  const copy = scratchCopy(null);
  try {
    const r = kustomize(join(copy.dir, "base"));
    assert.equal(r.ok, false);
    assert.match(r.stderr, /push-token/);
  } finally {
    copy.cleanup();
  }
  const tracked = execFileSync("git", ["ls-files", "deploy/kubernetes"], { cwd: repoPath(), encoding: "utf8" });
  assert.doesNotMatch(tracked, /push-token(\n|$)/);
  assert.match(readText(repoPath("deploy/kubernetes/.gitignore")), /^push-token$/m);
});

// --- the EnvoyPatchPolicies on the generated xDS ---------------------------------------------------

function patchModel(model: EgModel, policies: any[]): string[] {
  const errors: string[] = [];
  for (const p of policies) {
    assert.equal(p.spec.type, "JSONPatch");
    assert.deepEqual([p.spec.targetRef.kind, p.spec.targetRef.name], ["Gateway", gateway.metadata.name]);
    for (const jp of p.spec.jsonPatches) {
      const table = PATCHABLE_TYPES[jp.type];
      const resource = table ? model[table].get(jp.name) : undefined;
      if (!resource) {
        errors.push(`${p.metadata.name}: no ${jp.type} named ${jp.name}`);
        continue;
      }
      try {
        applyPatch(resource, jp.operation);
      } catch (err) {
        errors.push(`${p.metadata.name}: ${(err as Error).message}`);
      }
    }
  }
  return errors;
}

function wasmEppFilters(listener: any): any[] {
  return hcms(listener).flatMap(wasmFilters).filter((f) => f.typed_config.config.root_id === "wasm-epp");
}

for (const egVersion of ["v1.5", "v1.9"] as const) {
  test(`EnvoyPatchPolicies apply cleanly to Envoy Gateway ${egVersion}'s xDS and yield the wasm-epp wiring`, () => {
    const model = generate(docs, { egVersion });
    const inferenceName = `${gateway.metadata.namespace}/${gateway.metadata.name}/llm-gw`;
    const pushListenerName = `${gateway.metadata.namespace}/${gateway.metadata.name}/${gateway.spec.listeners.find((l: any) => l.port === PUSH_PORT).name}`;
    const before = [...wasmEppFilters(model.listeners.get(inferenceName)), ...wasmEppFilters(model.listeners.get(pushListenerName))];
    assert.equal(before.length, 2);
    assert.notEqual(before[0].typed_config.config.vm_config.vm_id, before[1].typed_config.config.vm_config.vm_id, "unpatched, each instance has its own VM id");

    assert.deepEqual(patchModel(model, all("EnvoyPatchPolicy")), []);

    const inference = model.listeners.get(inferenceName);
    const push = model.listeners.get(pushListenerName);
    assert.ok(isLoopback(push.address.socket_address.address), "push listener on loopback");
    assert.equal(inference.address.socket_address.address, "0.0.0.0");
    const filters = [...wasmEppFilters(inference), ...wasmEppFilters(push)];
    for (const f of filters) {
      assert.equal(f.typed_config.config.allow_on_headers_stop_iteration, true);
      assert.equal(f.typed_config.config.vm_config.vm_id, "wasm-epp");
      assert.deepEqual(f.typed_config.config.vm_config, filters[0].typed_config.config.vm_config, "identical vm_config: one VM");
    }
    for (const other of model.listeners.values()) {
      if (other === inference || other === push) continue;
      assert.equal(wasmEppFilters(other).length, 0, `${other.name}: no wasm-epp filter on the plain listener`);
    }
    const clusterName = `httproute/${routeOn("llm-gw").metadata.namespace}/${routeOn("llm-gw").metadata.name}/rule/0`;
    const c = model.clusters.get(clusterName);
    assert.equal(c.type, "ORIGINAL_DST");
    assert.equal(c.lb_policy, "CLUSTER_PROVIDED");
    assert.equal(c.eds_cluster_config, undefined);
    assert.equal(c.load_balancing_policy, undefined);
    assert.deepEqual(c.original_dst_lb_config, { use_http_header: true, http_header_name: "x-gateway-destination-endpoint" });
    const plainCluster = model.clusters.get(`httproute/${routeOn("http").metadata.namespace}/${routeOn("http").metadata.name}/rule/0`);
    assert.equal(plainCluster.type, "EDS", "the plain route's cluster is untouched");
  });
}

test("the patched filters run the module: the sidecar's token opens the push listener, the pick follows", { skip: rendered ? false : NO_KUBECTL }, () => {
  const model = generate(docs);
  assert.deepEqual(patchModel(model, all("EnvoyPatchPolicy")), []);
  const inference = model.listeners.get(`default/${gateway.metadata.name}/llm-gw`);
  const push = model.listeners.get(`default/${gateway.metadata.name}/${gateway.spec.listeners.find((l: any) => l.port === PUSH_PORT).name}`);
  const secret = pushSecret();
  const token = Buffer.from(secret.data.token, "base64").toString("utf8");
  const envoyEnv = { [TOKEN_ENV]: token }; // EnvoyProxy container env, from the Secret
  const routingSpec = specFromEnvoyFilter(wasmEppFilters(inference)[0], inference.per_connection_buffer_limit_bytes);
  const pushSpec = specFromEnvoyFilter(wasmEppFilters(push)[0], push.per_connection_buffer_limit_bytes);
  assert.equal(pluginConfig(wasmEppFilters(push)[0]).accept_push, true);
  const r = exercise(routingSpec, pushSpec, envoyEnv, token);
  assert.equal(r.pushStatus, 204);
  assert.ok(r.routedTo && r.addresses.includes(r.routedTo), `picked ${r.routedTo}`);
  // Unpatched: without allow_on_headers_stop_iteration the body never reaches the filter...
  const unpatched = generate(docs);
  const uRouting = specFromEnvoyFilter(wasmEppFilters(unpatched.listeners.get(inference.name))[0], 8 << 20);
  const uPush = specFromEnvoyFilter(wasmEppFilters(unpatched.listeners.get(push.name))[0], 8 << 20);
  assert.equal(uPush.allowOnHeadersStopIteration, false);
  assert.throws(() => exercise(uRouting, uPush, envoyEnv, token), /stalled/);
  // ...and with it but separate VM ids, the routing filter never sees the pushed state.
  const u = exercise({ ...uRouting, allowOnHeadersStopIteration: true }, { ...uPush, allowOnHeadersStopIteration: true }, envoyEnv, token);
  assert.equal(u.pushStatus, 204);
  assert.equal(u.routedTo, undefined, "the push landed in another VM");
});

// --- prefill/decode pools -------------------------------------------------------------------------

const BOOTSTRAP_WAIT_MS = 300_000;

function durationMs(d: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(d);
  assert.ok(m, `a Gateway API duration: ${d}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
}

test("prefill/decode: pd.cluster names the 8081 route's cluster the ORIGINAL_DST patch rewrites; the call waits out the bootstrap, the route outlasts it", () => {
  const route = routeOn("llm-gw");
  const routeCluster = `httproute/${route.metadata.namespace}/${route.metadata.name}/rule/0`;
  const pd = routingEep.spec.wasm[0].config.pd;
  assert.ok(pd, "the routing filter's configuration has pd");
  assert.equal(pd.cluster, routeCluster, "Envoy Gateway's name for the cluster of the 8081 route");
  const patched = one("EnvoyPatchPolicy", "wasm-epp-original-dst").spec.jsonPatches;
  assert.ok(patched.some((p: any) => p.name === pd.cluster && p.operation.path === "/type" && p.operation.value === "ORIGINAL_DST"));
  assert.ok((pd.timeout_ms ?? BOOTSTRAP_WAIT_MS) >= BOOTSTRAP_WAIT_MS);
  const btp = one("BackendTrafficPolicy", "backend-timeout");
  assert.ok(durationMs(btp.spec.timeout.http.requestTimeout) >= (pd.timeout_ms ?? BOOTSTRAP_WAIT_MS));
  for (const egVersion of ["v1.5", "v1.9"] as const) {
    const model = generate(docs, { egVersion });
    assert.deepEqual(patchModel(model, all("EnvoyPatchPolicy")), []);
    const c = model.clusters.get(pd.cluster);
    assert.equal(c.type, "ORIGINAL_DST");
    assert.deepEqual(c.original_dst_lb_config, { use_http_header: true, http_header_name: "x-gateway-destination-endpoint" });
  }
});

test("prefill/decode: no retries on the 8081 route (a retry would orphan a prefill)", () => {
  const route = routeOn("llm-gw");
  for (const rule of route.spec.rules) assert.equal(rule.retry, undefined, "HTTPRoute retry");
  const attached = (p: any) => p.spec.targetRefs?.some((t: any) => (t.kind === "Gateway" && t.name === gateway.metadata.name) || (t.kind === "HTTPRoute" && t.name === route.metadata.name));
  for (const btp of all("BackendTrafficPolicy").filter(attached)) assert.equal(btp.spec.retry, undefined, `${btp.metadata.name}: retry`);
});

test("prefill/decode: the patched routing filter sends its prefill call on the patched ORIGINAL_DST cluster, to a prefill pod", () => {
  const model = generate(docs);
  assert.deepEqual(patchModel(model, all("EnvoyPatchPolicy")), []);
  const inference = model.listeners.get(`default/${gateway.metadata.name}/llm-gw`);
  const push = model.listeners.get(`default/${gateway.metadata.name}/${gateway.spec.listeners.find((l: any) => l.port === PUSH_PORT).name}`);
  const token = "pd-test-token-0123456789abcdef";
  const routingSpec = specFromEnvoyFilter(wasmEppFilters(inference)[0], 8 << 20);
  const pushSpec = specFromEnvoyFilter(wasmEppFilters(push)[0], 8 << 20);
  const r = exercisePd(routingSpec, pushSpec, { [TOKEN_ENV]: token }, token, hostClusters(model.clusters.values()));
  assert.ok(r.call, "a prefill call was made");
  assert.equal(r.call.cluster, routingEep.spec.wasm[0].config.pd.cluster);
  assert.equal(r.call.clusterType, "original_dst");
  assert.ok(r.call.target && r.prefill.includes(r.call.target), `the call went to ${r.call.target}`);
  assert.ok(r.routedTo && r.decode.includes(r.routedTo), `the request went to ${r.routedTo}`);
});

test("prefill/decode with the fail-open component: calls go over the Service's EDS cluster with the endpoint override", { skip: rendered ? false : NO_KUBECTL }, () => {
  const o = render("overlays/fail-open");
  const routing = all("EnvoyExtensionPolicy", o).find((e) => e.spec.wasm[0].config.accept_push !== true);
  const btp = one("BackendTrafficPolicy", "wasm-epp-endpoint-override", o);
  assert.equal(routing.spec.wasm[0].config.pd.cluster, `httproute/default/${routeOn("llm-gw").metadata.name}/rule/0`, "the same cluster, left EDS");
  assert.deepEqual(btp.spec.loadBalancer.endpointOverride.extractFrom, [{ header: "x-gateway-destination-endpoint" }]);
  assert.equal(btp.spec.retry, undefined);
});

// --- overlays ------------------------------------------------------------------------------------

test("overlay fail-open: no ORIGINAL_DST patch, endpoint override on the 8081 route, failOpen", { skip: rendered ? false : NO_KUBECTL }, () => {
  const o = render("overlays/fail-open");
  assert.equal(all("EnvoyPatchPolicy", o).length, 1);
  const epp = one("EnvoyPatchPolicy", undefined, o);
  assert.ok(epp.spec.jsonPatches.every((p: any) => !p.type.endsWith("Cluster")), "clusters stay Envoy Gateway's");
  const routing = all("EnvoyExtensionPolicy", o).find((e) => e.spec.wasm[0].config.accept_push !== true);
  assert.equal(routing.spec.wasm[0].failOpen, true);
  const pushE = all("EnvoyExtensionPolicy", o).find((e) => e.spec.wasm[0].config.accept_push === true);
  assert.equal(pushE.spec.wasm[0].failOpen, false);
  const btp = one("BackendTrafficPolicy", "wasm-epp-endpoint-override", o);
  assert.deepEqual(btp.spec.targetRefs.map((t: any) => `${t.kind}/${t.name}`), [`HTTPRoute/${routeOn("llm-gw").metadata.name}`]);
  assert.deepEqual(btp.spec.loadBalancer.endpointOverride.extractFrom, [{ header: "x-gateway-destination-endpoint" }]);
  assert.equal(btp.spec.timeout.http.requestTimeout, "1h", "a route-level policy replaces the gateway's timeout");
  const model = generate(o);
  assert.deepEqual(patchModel(model, all("EnvoyPatchPolicy", o)), []);
  assert.equal(model.clusters.get(`httproute/default/${routeOn("llm-gw").metadata.name}/rule/0`).type, "EDS");
});

test("overlay cluster-wide: a ClusterRole with the same rights, the sidecar watching every namespace", { skip: rendered ? false : NO_KUBECTL }, () => {
  const o = render("overlays/cluster-wide");
  assert.deepEqual(all("Role", o).map((r) => r.metadata.name), [PEERS_ROLE], "only the endpointslices Role stays namespaced");
  assert.deepEqual(all("RoleBinding", o).map((r) => r.metadata.name), [PEERS_ROLE]);
  const cr = one("ClusterRole", undefined, o);
  const baseRole = one("Role", "wasm-epp-sidecar");
  assert.deepEqual(cr.rules, baseRole.rules);
  const crb = one("ClusterRoleBinding", undefined, o);
  assert.equal(crb.roleRef.kind, "ClusterRole");
  assert.deepEqual(crb.subjects, one("RoleBinding", "wasm-epp-sidecar").subjects);
  const c = one("EnvoyProxy", undefined, o).spec.provider.kubernetes.envoyDeployment.patch.value.spec.template.spec.containers[0];
  assert.equal(parseOptions(c.args).namespace, undefined);
  assert.deepEqual(parseOptions(c.args).peerSelector, parseOptions(sidecar.args).peerSelector, "peer sharing stays on");
});

test("overlay xds-name-scheme-v2: the same patches on listeners named tcp-<port>", { skip: rendered ? false : NO_KUBECTL }, () => {
  const o = render("overlays/xds-name-scheme-v2");
  const names = one("EnvoyPatchPolicy", "wasm-epp-filter", o).spec.jsonPatches.map((p: any) => p.name);
  assert.deepEqual([...new Set(names)].sort(), ["tcp-19100", "tcp-8081"]);
  const model = generate(o, { nameSchemeV2: true });
  assert.deepEqual(patchModel(model, all("EnvoyPatchPolicy", o)), []);
  assert.ok(isLoopback(model.listeners.get(`tcp-${PUSH_PORT}`).address.socket_address.address));
  for (const l of [model.listeners.get("tcp-8081"), model.listeners.get(`tcp-${PUSH_PORT}`)]) {
    for (const f of wasmEppFilters(l)) assert.equal(f.typed_config.config.vm_config.vm_id, "wasm-epp");
  }
  // And the base's names do not exist under that scheme: the overlay is needed.
  assert.ok(patchModel(generate(docs, { nameSchemeV2: true }), all("EnvoyPatchPolicy")).some((e) => /no type\.googleapis\.com\/envoy\.config\.listener/.test(e)));
});

test("the components combine: fail-open, cluster-wide and xds-name-scheme-v2 in one kustomization", { skip: rendered ? false : NO_KUBECTL }, () => {
  const copy = scratchCopy();
  try {
    mkdirSync(join(copy.dir, "mine"));
    writeFileSync(join(copy.dir, "mine", "kustomization.yaml"), [
      "apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization", "resources:", "- ../base", "components:",
      "- ../components/fail-open", "- ../components/cluster-wide", "- ../components/xds-name-scheme-v2", "",
    ].join("\n"));
    const r = kustomize(join(copy.dir, "mine"));
    assert.ok(r.ok, r.stderr);
    assert.equal(all("ClusterRole", r.docs).length, 1);
    assert.deepEqual(all("Role", r.docs).map((x) => x.metadata.name), [PEERS_ROLE]);
    assert.equal(all("EnvoyPatchPolicy", r.docs).length, 1);
    assert.ok(one("EnvoyPatchPolicy", "wasm-epp-filter", r.docs).spec.jsonPatches.every((p: any) => p.name.startsWith("tcp-")));
    assert.ok(all("EnvoyExtensionPolicy", r.docs).some((e) => e.spec.wasm[0].failOpen === true));
  } finally {
    copy.cleanup();
  }
});

// --- images --------------------------------------------------------------------------------------

test("deploy/sidecar.Containerfile: Node 20, the bundle only, non-root, flags as container args", () => {
  const text = readText(repoPath("deploy/sidecar.Containerfile"));
  const lines = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
  const from = lines.filter((l) => l.startsWith("FROM "));
  assert.equal(from.length, 1);
  assert.match(from[0], /node(js)?-?20|node:20/);
  const copy = lines.filter((l) => l.startsWith("COPY "));
  assert.deepEqual(copy, ["COPY sidecar.js sidecar.js.map ./"], "the context is build/: the bundle and its source map");
  assert.match(lines.find((l) => l.startsWith("USER "))!, /USER 65532/);
  assert.equal(sidecar.securityContext.runAsUser, 65532);
  const entry = JSON.parse(lines.find((l) => l.startsWith("ENTRYPOINT "))!.slice("ENTRYPOINT ".length));
  assert.equal(entry.at(-1), "/opt/wasm-epp/sidecar.js", "the program is in the entrypoint, so Kubernetes args are its flags");
  assert.ok(existsSync(repoPath("build/sidecar.js")), "npm run build makes build/sidecar.js");
});
