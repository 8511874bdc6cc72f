// Reading Envoy configuration (as YAML/JSON objects in proto field names) for the deploy tests.

import { isIP } from "node:net";

export const WASM_FILTER = "envoy.filters.http.wasm";
export const WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
export const HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
export const ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/** Seconds of a protobuf Duration in JSON form ("3600s", "1.5s"). */
export function seconds(d: unknown): number {
  if (typeof d !== "string" || !/^\d+(\.\d+)?s$/.test(d)) throw new Error(`not a Duration: ${JSON.stringify(d)}`);
  return Number(d.slice(0, -1));
}

export function isLoopback(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith("127.");
  return address === "::1";
}

/** The HTTP connection managers of a listener, in filter-chain order. */
export function hcms(listener: any): any[] {
  const chains = [...(listener.filter_chains ?? []), ...(listener.default_filter_chain ? [listener.default_filter_chain] : [])];
  return chains.flatMap((c: any) => (c.filters ?? []).filter((f: any) => f.typed_config?.["@type"] === HCM_TYPE).map((f: any) => f.typed_config));
}

/** The wasm HTTP filters of a connection manager. */
export function wasmFilters(hcm: any): any[] {
  return (hcm.http_filters ?? []).filter((f: any) => f.typed_config?.["@type"] === WASM_TYPE);
}

/** A wasm filter's plugin configuration (the JSON in its StringValue). */
export function pluginConfig(filter: any): Record<string, unknown> {
  const c = filter.typed_config.config.configuration;
  if (c?.["@type"] !== "type.googleapis.com/google.protobuf.StringValue") throw new Error(`plugin configuration is not a StringValue: ${JSON.stringify(c)}`);
  return JSON.parse(c.value);
}

/** Clusters a connection manager's inline routes send to. */
export function routeClusters(hcm: any): string[] {
  const out: string[] = [];
  for (const vh of hcm.route_config?.virtual_hosts ?? []) for (const r of vh.routes ?? []) if (r.route?.cluster) out.push(r.route.cluster);
  return out;
}

/**
 * Clusters as the test host declares them: ORIGINAL_DST with use_http_header as 'original_dst'
 * (with its header, Envoy's default when unnamed), anything else as a static cluster.
 */
export function hostClusters(clusters: Iterable<any>): Array<string | { name: string; type: "original_dst"; httpHeaderName: string }> {
  const out: Array<string | { name: string; type: "original_dst"; httpHeaderName: string }> = [];
  for (const c of clusters) {
    if (c.type === "ORIGINAL_DST" && c.original_dst_lb_config?.use_http_header === true) {
      out.push({ name: c.name, type: "original_dst", httpHeaderName: c.original_dst_lb_config.http_header_name || "x-envoy-original-dst-host" });
    } else {
      out.push(c.name);
    }
  }
  return out;
}

/** Retry policies of a connection manager's inline routes and virtual hosts. */
export function retryPolicies(hcm: any): unknown[] {
  const out: unknown[] = [];
  for (const vh of hcm.route_config?.virtual_hosts ?? []) {
    if (vh.retry_policy) out.push(vh.retry_policy);
    for (const r of vh.routes ?? []) if (r.route?.retry_policy) out.push(r.route.retry_policy);
  }
  return out;
}
