// deploy/envoy/envoy.yaml: the standalone Envoy's structure. No Envoy runs on the machines this
// project is developed on, so `envoy --mode validate` runs only where an envoy binary is found;
// the structural checks always run.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { repoPath, yamlFile } from "./files.ts";
import { exercise, exercisePd, specFromEnvoyFilter } from "./filter-under-host.ts";
import { hcms, hostClusters, isLoopback, pluginConfig, retryPolicies, routeClusters, ROUTER_TYPE, seconds, WASM_FILTER, wasmFilters } from "./envoy-config.ts";

const FILE = repoPath("deploy/envoy/envoy.yaml");
const [config] = yamlFile(FILE);
const listeners = new Map<string, any>(config.static_resources.listeners.map((l: any) => [l.name, l]));
const clusters = new Map<string, any>(config.static_resources.clusters.map((c: any) => [c.name, c]));
const DEFAULT_MAX_BODY = 8 * 1024 * 1024;
const DEFAULT_MAX_STATE = 4 * 1024 * 1024;

function listenerOnPort(port: number): any {
  const l = [...listeners.values()].find((x) => x.address.socket_address.port_value === port);
  assert.ok(l, `no listener on port ${port}`);
  return l;
}

function onlyHcm(listener: any): any {
  const list = hcms(listener);
  assert.equal(list.length, 1, `${listener.name}: one HTTP connection manager`);
  return list[0];
}

const plain = listenerOnPort(8080);
const inference = listenerOnPort(8081);
const extConfig = listenerOnPort(19100);
const allWasm = [...listeners.values()].flatMap((l) => hcms(l).flatMap(wasmFilters));

test("listeners: 8080 plain and 8081 inference on all addresses, ext-config on loopback only", () => {
  assert.equal(listeners.size, 3);
  assert.equal(plain.address.socket_address.address, "0.0.0.0");
  assert.equal(inference.address.socket_address.address, "0.0.0.0");
  assert.ok(isLoopback(extConfig.address.socket_address.address), "the push listener must not be reachable from outside");
  assert.ok(isLoopback(config.admin.address.socket_address.address), "admin on loopback");
});

test("8080 has no wasm filter and round-robins over the model servers", () => {
  const hcm = onlyHcm(plain);
  assert.deepEqual(hcm.http_filters.map((f: any) => f.typed_config["@type"]), [ROUTER_TYPE]);
  const [name] = routeClusters(hcm);
  const c = clusters.get(name);
  assert.equal(c.lb_policy, "ROUND_ROBIN");
  assert.ok(c.load_assignment.endpoints[0].lb_endpoints.length >= 2);
});

test("the plain cluster's endpoints are the local stack's pods (deploy/examples/pods.yaml)", () => {
  const pods = yamlFile(repoPath("deploy/examples/pods.yaml")).filter((o) => o.kind === "Pod");
  const expected = pods.map((p) => `${p.status.podIP}:8000`).sort();
  const c = clusters.get(routeClusters(onlyHcm(plain))[0]);
  const actual = c.load_assignment.endpoints[0].lb_endpoints.map((e: any) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`).sort();
  assert.deepEqual(actual, expected);
});

test("8081: the wasm-epp filter first, the router last, routing to the ORIGINAL_DST cluster", () => {
  const hcm = onlyHcm(inference);
  const names = hcm.http_filters.map((f: any) => f.name);
  assert.equal(names[0], WASM_FILTER);
  assert.equal(hcm.http_filters.at(-1).typed_config["@type"], ROUTER_TYPE);
  assert.equal(wasmFilters(hcm).length, 1);
  const clusterNames = routeClusters(hcm);
  assert.ok(clusterNames.length >= 1);
  const cfg = pluginConfig(wasmFilters(hcm)[0]);
  const header = (cfg.endpoint_header as string | undefined) ?? "x-gateway-destination-endpoint";
  for (const name of clusterNames) {
    const c = clusters.get(name);
    assert.ok(c, `cluster ${name}`);
    assert.equal(c.type, "ORIGINAL_DST");
    assert.equal(c.lb_policy, "CLUSTER_PROVIDED");
    assert.equal(c.original_dst_lb_config.use_http_header, true);
    assert.equal(c.original_dst_lb_config.http_header_name, header);
    assert.equal(c.load_assignment, undefined, "an ORIGINAL_DST cluster has no endpoints of its own");
  }
  assert.equal(typeof cfg.pool, "string");
  assert.match(cfg.pool as string, /^[a-z0-9-]+\/[a-z0-9.-]+$/, "pool is namespace/name");
  assert.notEqual(cfg.accept_push, true);
});

test("every wasm filter: root_id wasm-epp, one vm_id, identical vm_config, V8, stop-iteration allowed, fail closed", () => {
  assert.equal(allWasm.length, 2);
  const vm0 = allWasm[0].typed_config.config.vm_config;
  assert.equal(vm0.vm_id, "wasm-epp");
  assert.equal(vm0.runtime, "envoy.wasm.runtime.v8");
  assert.ok(vm0.environment_variables.host_env_keys.includes("WASM_EPP_PUSH_TOKEN"));
  for (const f of allWasm) {
    const c = f.typed_config.config;
    assert.equal(c.root_id, "wasm-epp");
    assert.equal(c.allow_on_headers_stop_iteration, true, `${c.name}: allow_on_headers_stop_iteration`);
    assert.deepEqual(c.vm_config, vm0, `${c.name}: vm_config must equal the other filter's, or the shared VM may lack the token`);
    assert.equal(c.failure_policy, "FAIL_CLOSED", `${c.name}: fail closed (ORIGINAL_DST)`);
    assert.notEqual(c.fail_open, true);
  }
});

test("the module path is the build output", () => {
  const filename = allWasm[0].typed_config.config.vm_config.code.local.filename;
  assert.equal(filename, "build/wasm-epp.wasm");
  assert.ok(existsSync(repoPath(filename)), "build/wasm-epp.wasm (npm test builds it)");
});

test("ext-config: the push filter (accept_push) and no upstream", () => {
  const hcm = onlyHcm(extConfig);
  const [push] = wasmFilters(hcm);
  assert.equal(hcm.http_filters[0], push);
  assert.equal(pluginConfig(push).accept_push, true);
  assert.deepEqual(routeClusters(hcm), [], "the push listener routes nowhere");
});

test("buffer limits: the inference listener holds max_body_bytes, the push listener max_state_bytes", () => {
  const cfg = pluginConfig(wasmFilters(onlyHcm(inference))[0]);
  const maxBody = (cfg.max_body_bytes as number | undefined) ?? DEFAULT_MAX_BODY;
  assert.ok(inference.per_connection_buffer_limit_bytes >= maxBody, `${inference.per_connection_buffer_limit_bytes} < max_body_bytes ${maxBody}`);
  assert.ok(maxBody >= DEFAULT_MAX_BODY, "long prompts: at least 8 MiB");
  const push = pluginConfig(wasmFilters(onlyHcm(extConfig))[0]);
  const maxState = (push.max_state_bytes as number | undefined) ?? DEFAULT_MAX_STATE;
  assert.ok(extConfig.per_connection_buffer_limit_bytes >= maxState);
  assert.ok(plain.per_connection_buffer_limit_bytes >= maxBody, "the plain listener takes the same prompts");
});

test("long generations: route timeouts and stream idle timeouts of at least an hour", () => {
  for (const l of [plain, inference]) {
    const hcm = onlyHcm(l);
    assert.ok(seconds(hcm.stream_idle_timeout) >= 3600, `${l.name}: stream_idle_timeout`);
    for (const vh of hcm.route_config.virtual_hosts) {
      for (const r of vh.routes) {
        assert.ok(seconds(r.route.timeout) >= 3600, `${l.name}: route timeout`);
        assert.ok(seconds(r.route.idle_timeout) >= 3600, `${l.name}: route idle_timeout`);
      }
    }
  }
});

test("the module runs these filter configurations: the push takes the token from the environment, the pick follows", () => {
  const routing = specFromEnvoyFilter(wasmFilters(onlyHcm(inference))[0], inference.per_connection_buffer_limit_bytes);
  const push = specFromEnvoyFilter(wasmFilters(onlyHcm(extConfig))[0], extConfig.per_connection_buffer_limit_bytes);
  const token = "token-from-the-environment-0123";
  const r = exercise(routing, push, { WASM_EPP_PUSH_TOKEN: token }, token);
  assert.equal(r.pushStatus, 204);
  assert.ok(r.routedTo && r.addresses.includes(r.routedTo), `picked ${r.routedTo}; the client's header must be replaced`);
  assert.equal(r.handled.length, 1);
  const wrong = exercise(routing, push, { WASM_EPP_PUSH_TOKEN: token }, "some-other-token-0123456789");
  assert.equal(wrong.pushStatus, 401);
});

// SGLang's SGLANG_DISAGGREGATION_WAITING_TIMEOUT / BOOTSTRAP_TIMEOUT: what a decode server waits for its prefill.
const BOOTSTRAP_WAIT_MS = 300_000;
const RETRY_HEADERS = ["x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries"];

test("prefill/decode: pd.cluster is an ORIGINAL_DST cluster on the filter's header; the call waits out the bootstrap, the route outlasts it and never retries", () => {
  const hcm = onlyHcm(inference);
  const cfg = pluginConfig(wasmFilters(hcm)[0]);
  const pd = (cfg.pd ?? {}) as { cluster?: string; timeout_ms?: number };
  const name = pd.cluster ?? "wasm_epp_original_dst";
  const c = clusters.get(name);
  assert.ok(c, `pd.cluster ${name} is a cluster of this Envoy`);
  assert.equal(c.type, "ORIGINAL_DST");
  assert.equal(c.original_dst_lb_config.use_http_header, true, "the call's own header picks the host");
  assert.equal(c.original_dst_lb_config.http_header_name, (cfg.endpoint_header as string | undefined) ?? "x-gateway-destination-endpoint");
  assert.equal(c.common_http_protocol_options?.max_stream_duration, undefined, "nothing cuts a call short on the cluster");
  const timeoutMs = pd.timeout_ms ?? BOOTSTRAP_WAIT_MS;
  assert.ok(timeoutMs >= BOOTSTRAP_WAIT_MS, `pd.timeout_ms ${timeoutMs} < the engines' ${BOOTSTRAP_WAIT_MS} ms bootstrap wait`);
  for (const vh of hcm.route_config.virtual_hosts) {
    for (const r of vh.routes) {
      assert.ok(seconds(r.route.timeout) * 1000 >= timeoutMs, "the decode request's route timeout outlasts the prefill wait");
      for (const h of RETRY_HEADERS) assert.ok((r.request_headers_to_remove ?? []).includes(h), `client-requested retries: ${h} removed`);
    }
  }
  assert.deepEqual(retryPolicies(hcm), [], "no retry policy on the inference routes: a retry would orphan a prefill");
  assert.ok(seconds(hcm.stream_idle_timeout) * 1000 >= timeoutMs);
});

test("prefill/decode: the module under this configuration sends its prefill call on this Envoy's ORIGINAL_DST cluster, to a prefill pod", () => {
  const routing = specFromEnvoyFilter(wasmFilters(onlyHcm(inference))[0], inference.per_connection_buffer_limit_bytes);
  const push = specFromEnvoyFilter(wasmFilters(onlyHcm(extConfig))[0], extConfig.per_connection_buffer_limit_bytes);
  const token = "token-from-the-environment-0123";
  const r = exercisePd(routing, push, { WASM_EPP_PUSH_TOKEN: token }, token, hostClusters(clusters.values()));
  assert.ok(r.call, "a prefill call was made");
  assert.equal(r.call.clusterType, "original_dst");
  assert.ok(r.call.target && r.prefill.includes(r.call.target), `the call went to ${r.call.target}, not a prefill pod`);
  assert.ok(r.call.timeoutMs >= BOOTSTRAP_WAIT_MS);
  assert.ok(r.routedTo && r.decode.includes(r.routedTo), `the request went to ${r.routedTo}, not a decode pod`);
  assert.equal(r.handled.length, 1);
  assert.match(r.handled[0], / prefill=prefill-\d .*room=\d+/);
});

const envoy = spawnSync("envoy", ["--version"], { encoding: "utf8" });
const haveEnvoy = envoy.status === 0;

test("envoy --mode validate", { skip: haveEnvoy ? false : "envoy not installed: envoy --mode validate not run (structural checks above ran)" }, (t) => {
  t.diagnostic(envoy.stdout.trim());
  const r = spawnSync("envoy", ["--mode", "validate", "-c", FILE, "--log-level", "warn"], {
    cwd: repoPath(),
    encoding: "utf8",
    env: { ...process.env, WASM_EPP_PUSH_TOKEN: "test-token-0123456789abcdef" },
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
});
