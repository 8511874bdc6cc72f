// A model of the xDS Envoy Gateway (v1.5 and later, default xDS names) generates for a Gateway,
// its HTTPRoutes, EnvoyExtensionPolicies and ClientTrafficPolicy — only the parts the wasm-epp
// EnvoyPatchPolicies touch or depend on, in proto field names (Envoy Gateway marshals resources
// with proto names before patching):
//
// - one listener per Gateway listener, named "<ns>/<gateway>/<listener>" ("tcp-<port>" with the
//   XDSNameSchemeV2 runtime flag), on 0.0.0.0 and the listener's port, with an HTTP connection manager in its default filter chain;
// - per wasm entry of an EnvoyExtensionPolicy attached to a route of that listener, an HTTP filter
//   "envoy.filters.http.wasm/envoyextensionpolicy/<ns>/<policy>/wasm/<i>", disabled at the
//   connection manager (enabled per route), whose VM id is "envoyextensionpolicy/<ns>/<policy>/
//   wasm/<i>", code fetched from Envoy Gateway's module server, host_env_keys from env.hostKeys,
//   the config as a StringValue, fail_open when failOpen;
// - per HTTPRoute rule with a Service backend, an EDS cluster "httproute/<ns>/<route>/rule/<i>"
//   with a typed load-balancing policy (v1.5 also sets lb_policy; later versions do not).

import { createHash } from "node:crypto";
import { HCM_TYPE, ROUTER_TYPE, WASM_TYPE } from "./envoy-config.ts";

export interface EgModel {
  listeners: Map<string, any>;
  clusters: Map<string, any>;
}

function parentListeners(route: any, gateway: any): string[] {
  const out: string[] = [];
  for (const ref of route.spec.parentRefs ?? []) {
    if ((ref.kind ?? "Gateway") !== "Gateway" || ref.name !== gateway.metadata.name) continue;
    if ((ref.namespace ?? route.metadata.namespace) !== gateway.metadata.namespace) continue;
    for (const l of gateway.spec.listeners) if (ref.sectionName === undefined || ref.sectionName === l.name) out.push(l.name);
  }
  return out;
}

function quantityBytes(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(String(q));
  if (!m) throw new Error(`unsupported quantity ${q}`);
  return Number(m[1]) * { "": 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2] ?? ""]!;
}

export function generate(docs: any[], opts: { egVersion?: "v1.5" | "v1.9"; nameSchemeV2?: boolean } = {}): EgModel {
  const gateway = docs.find((d) => d.kind === "Gateway");
  const routes = docs.filter((d) => d.kind === "HTTPRoute");
  const eeps = docs.filter((d) => d.kind === "EnvoyExtensionPolicy");
  const ctp = docs.find((d) => d.kind === "ClientTrafficPolicy" && d.spec.targetRefs?.some((r: any) => r.kind === "Gateway" && r.name === gateway.metadata.name));
  const gwNs = gateway.metadata.namespace;
  const listeners = new Map<string, any>();
  for (const l of gateway.spec.listeners) {
    const name = opts.nameSchemeV2 ? `tcp-${l.port}` : `${gwNs}/${gateway.metadata.name}/${l.name}`;
    const wasmFilters: any[] = [];
    for (const route of routes.filter((r) => parentListeners(r, gateway).includes(l.name))) {
      for (const eep of eeps.filter((e) => e.spec.targetRefs?.some((t: any) => t.kind === "HTTPRoute" && t.name === route.metadata.name))) {
        eep.spec.wasm.forEach((w: any, i: number) => {
          const irName = `envoyextensionpolicy/${eep.metadata.namespace}/${eep.metadata.name}/wasm/${i}`;
          const servingPath = createHash("sha256").update(w.code.image.url).digest("base64url");
          const config: any = {
            name: w.name ?? irName,
            vm_config: {
              vm_id: irName,
              runtime: "envoy.wasm.runtime.v8",
              code: {
                remote: {
                  http_uri: { uri: `https://envoy-gateway.envoy-gateway-system.svc.cluster.local:18002/${servingPath}.wasm`, cluster: "wasm_cluster", timeout: "10s" },
                  sha256: "0".repeat(64),
                  retry_policy: { num_retries: 10, retry_back_off: { base_interval: "1s", max_interval: "30s" } },
                },
              },
              ...(w.env?.hostKeys ? { environment_variables: { host_env_keys: w.env.hostKeys } } : {}),
            },
            configuration: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: JSON.stringify(w.config ?? "") },
          };
          if (w.rootID) config.root_id = w.rootID;
          if (w.failOpen === true) config.fail_open = true;
          wasmFilters.push({ name: `envoy.filters.http.wasm/${irName}`, disabled: true, typed_config: { "@type": WASM_TYPE, config } });
        });
      }
    }
    listeners.set(name, {
      name,
      address: { socket_address: { address: "0.0.0.0", port_value: l.port } },
      default_filter_chain: {
        name,
        filters: [{
          name: "envoy.filters.network.http_connection_manager",
          typed_config: {
            "@type": HCM_TYPE,
            stat_prefix: `http-${l.port}`,
            rds: { route_config_name: name, config_source: { ads: {}, resource_api_version: "V3" } },
            http_filters: [...wasmFilters, { name: "envoy.filters.http.router", typed_config: { "@type": ROUTER_TYPE, suppress_envoy_headers: true } }],
          },
        }],
      },
      per_connection_buffer_limit_bytes: ctp?.spec.connection?.bufferLimit ? quantityBytes(ctp.spec.connection.bufferLimit) : 32768,
    });
  }
  const clusters = new Map<string, any>();
  for (const route of routes) {
    (route.spec.rules ?? []).forEach((rule: any, i: number) => {
      if (!rule.backendRefs?.some((b: any) => (b.kind ?? "Service") === "Service")) return;
      const name = `httproute/${route.metadata.namespace}/${route.metadata.name}/rule/${i}`;
      clusters.set(name, {
        name,
        type: "EDS",
        eds_cluster_config: { eds_config: { ads: {}, resource_api_version: "V3" }, service_name: name },
        connect_timeout: "10s",
        ...((opts.egVersion ?? "v1.5") === "v1.5" ? { lb_policy: "LEAST_REQUEST" } : {}),
        load_balancing_policy: {
          policies: [{ typed_extension_config: { name: "envoy.load_balancing_policies.least_request", typed_config: { "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest", locality_lb_config: { locality_weighted_lb_config: {} } } } }],
        },
        common_lb_config: {},
        per_connection_buffer_limit_bytes: 32768,
        dns_lookup_family: "V4_PREFERRED",
        ignore_health_on_host_removal: true,
        circuit_breakers: { thresholds: [{ max_retries: 1024 }] },
      });
    });
  }
  return { listeners, clusters };
}

const TYPES: Record<string, "listeners" | "clusters"> = {
  "type.googleapis.com/envoy.config.listener.v3.Listener": "listeners",
  "type.googleapis.com/envoy.config.cluster.v3.Cluster": "clusters",
};

export { TYPES as PATCHABLE_TYPES };
