// Runs the wasm filter configurations of a deployment file (standalone Envoy, Envoy Gateway) with
// the real build/wasm-epp.wasm under the project's proxy-wasm host: both filters must load with
// their plugin configuration and VM environment, the push filter must take a state document with
// the token the deployment gives it, and the routing filter must then pick an endpoint.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ProxyWasmHost, type Plugin } from "../host/index.ts";
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
