// Runs the wasm filter configurations of a deployment file (standalone Envoy, Envoy Gateway) with
// the real build/wasm-epp.wasm under the project's proxy-wasm host: both filters must load with
// their plugin configuration and VM environment, the push filter must take a state document with
// the token the deployment gives it, and the routing filter must then pick an endpoint (for a
// prefill/decode pool, also send its prefill call on a cluster of the deployment).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ProxyWasmHost, type ClusterDecl, type HttpCallRequest, type Plugin } from "../host/index.ts";
import { endpoints, stateDocument } from "../fuzz/generators.ts";
import { repoPath } from "./files.ts";

export interface WasmFilterSpec {
  name: string;
  rootId: string;
  vmId: string;
  configuration: string;
  allowOnHeadersStopIteration: boolean;
  failOpen: boolean;
  /** Names of Envoy's environment variables passed into the VM. */
  hostEnvKeys: string[];
  bufferLimitBytes: number;
}

/** Reads an envoy.filters.http.wasm filter's typed_config (proto field names). */
export function specFromEnvoyFilter(filter: any, bufferLimitBytes: number): WasmFilterSpec {
  const c = filter.typed_config.config;
  return {
    name: c.name,
    rootId: c.root_id ?? "",
    vmId: c.vm_config.vm_id ?? "",
    configuration: c.configuration?.value ?? "",
    allowOnHeadersStopIteration: c.allow_on_headers_stop_iteration === true,
    failOpen: c.failure_policy === "FAIL_OPEN" || (c.failure_policy === undefined && c.fail_open === true),
    hostEnvKeys: c.vm_config.environment_variables?.host_env_keys ?? [],
    bufferLimitBytes,
  };
}

export interface Exercise {
  pushStatus: number;
  routedTo: string | undefined;
  addresses: string[];
  handled: string[];
}

/** Loads both filters (one worker), pushes a state with `token`, routes one chat request. */
export function exercise(routing: WasmFilterSpec, push: WasmFilterSpec, processEnv: Record<string, string>, token: string): Exercise {
  const wasm = readFileSync(repoPath("build/wasm-epp.wasm"));
  const host = new ProxyWasmHost({ clock: "manual", logLevel: "info", randomSeed: 1 });
  const load = (s: WasmFilterSpec): Plugin =>
    host.loadPlugin({
      wasm,
      name: s.name,
      rootId: s.rootId,
      vmId: s.vmId,
      configuration: s.configuration,
      env: Object.fromEntries(s.hostEnvKeys.filter((k) => k in processEnv).map((k) => [k, processEnv[k]])),
      allowOnHeadersStopIteration: s.allowOnHeadersStopIteration,
      failOpen: s.failOpen,
      bufferLimitBytes: s.bufferLimitBytes,
      workers: 1,
    });
  const routingPlugin = load(routing);
  const pushPlugin = load(push);
  const pool = JSON.parse(routing.configuration).pool as string;
  const eps = endpoints(3);
  const doc = stateDocument({ generatedAtMs: host.clock.nowMs(), pool, endpoints: eps });
  const pushed = pushPlugin.worker(0).requestSync({
    method: "POST",
    path: "/wasm-epp/v1/state",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(doc),
  });
  assert.equal(pushed.kind, "local", "the push filter answers the push itself");
  const routed = routingPlugin.worker(0).requestSync({
    method: "POST",
    path: "/v1/chat/completions",
    headers: { "content-type": "application/json", "x-gateway-destination-endpoint": "203.0.113.9:22" },
    body: JSON.stringify({ model: "/model/qwen", messages: [{ role: "user", content: "Write as if you were a critic: Los Angeles" }] }),
  });
  return {
    pushStatus: pushed.kind === "local" ? pushed.status : 0,
    routedTo: routed.kind === "upstream" ? routed.header("x-gateway-destination-endpoint") : undefined,
    addresses: eps.map((e) => e.address),
    handled: host.logs.filter((l) => l.message.startsWith("Request Handled")).map((l) => l.message),
  };
}

export interface PdExercise {
  /** The prefill call, as the cluster saw it: null if none was made. */
  call: { cluster: string; clusterType: string; target: string | undefined; timeoutMs: number } | null;
  /** Where the request itself went. */
  routedTo: string | undefined;
  prefill: string[];
  decode: string[];
  handled: string[];
}

/**
 * Loads both filters with the deployment's clusters (name, type, header) as the host's, pushes a
 * prefill/decode pool and sends one request: the filter's prefill call must name a cluster the
 * deployment has, and that cluster must take the call to a prefill pod.
 */
export function exercisePd(
  routing: WasmFilterSpec, push: WasmFilterSpec, processEnv: Record<string, string>, token: string, clusters: ClusterDecl[],
): PdExercise {
  const wasm = readFileSync(repoPath("build/wasm-epp.wasm"));
  const calls: HttpCallRequest[] = [];
  const host = new ProxyWasmHost({ clock: "manual", logLevel: "info", randomSeed: 1, clusters, httpCallHandler: (req) => (calls.push(req), { status: 200, body: "{}" }) });
  const load = (s: WasmFilterSpec): Plugin =>
    host.loadPlugin({
      wasm, name: s.name, rootId: s.rootId, vmId: s.vmId, configuration: s.configuration,
      env: Object.fromEntries(s.hostEnvKeys.filter((k) => k in processEnv).map((k) => [k, processEnv[k]])),
      allowOnHeadersStopIteration: s.allowOnHeadersStopIteration, failOpen: s.failOpen, bufferLimitBytes: s.bufferLimitBytes, workers: 1,
    });
  const routingPlugin = load(routing);
  const pushPlugin = load(push);
  const pool = JSON.parse(routing.configuration).pool as string;
  const eps = endpoints(5).map((e, i) => ({ ...e, pod: i < 2 ? `prefill-${i}` : `decode-${i - 2}`, role: i < 2 ? "prefill" : "decode" }));
  const doc = stateDocument({ generatedAtMs: host.clock.nowMs(), pool, endpoints: eps, models: [{ name: "/models/Qwen3-32B", criticality: "Critical", targets: [{ name: "/models/Qwen3-32B", weight: 100 }] }] });
  const p = (doc.pools as Array<Record<string, unknown>>)[0];
  p.runtime = "sglang";
  p.pd = { role_label: "rolebasedgroup.workloads.x-k8s.io/role", bootstrap_port: 34000, prefill: { strategy: "DEFAULT" }, decode: { strategy: "DEFAULT" } };
  const pushed = pushPlugin.worker(0).requestSync({
    method: "POST", path: "/wasm-epp/v1/state",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(doc),
  });
  assert.equal(pushed.kind === "local" && pushed.status, 204, "the push filter takes the P/D state");
  const routed = routingPlugin.worker(0).requestSync({
    method: "POST", path: "/v1/chat/completions",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "/models/Qwen3-32B", messages: [{ role: "user", content: "Hello, this is a test" }], max_tokens: 50 }),
  });
  host.drain();
  const c = calls[0] ?? host.httpCalls.made[0];
  return {
    call: c ? { cluster: c.cluster, clusterType: c.clusterType, target: c.target, timeoutMs: c.timeoutMs } : null,
    routedTo: routed.kind === "upstream" ? routed.header("x-gateway-destination-endpoint") : undefined,
    prefill: eps.filter((e) => e.role === "prefill").map((e) => e.address),
    decode: eps.filter((e) => e.role === "decode").map((e) => e.address),
    handled: host.logs.filter((l) => l.message.startsWith("Request Handled")).map((l) => l.message),
  };
}
