// What the sidecar needs from an InferencePool, validated.

import { parsePd, pdPoliciesFor, type PdSpec } from "./pd.ts";
import type { InferencePool, InferencePoolV1, InferenceTrafficPolicy } from "./types.ts";
import { nameOf, namespaceOf } from "./types.ts";

export const ROUTING_STRATEGY_ANNOTATION = "inference.networking.x-k8s.io/routing-strategy";
export const RUNTIME_ANNOTATION = "inference.networking.x-k8s.io/model-server-runtime";
// wasm-epp's own: "off" scrapes the pool's Pods without name[] (a proxy in front of /metrics that
// rejects query strings), "on" with it; absent: --scrape-name-filter.
export const SCRAPE_FILTER_ANNOTATION = "wasm-epp.io/scrape-name-filter";

export type Strategy = "DEFAULT" | "PREFIX_CACHE";
export type Runtime = "vllm" | "sglang";
export const STRATEGIES: readonly Strategy[] = ["DEFAULT", "PREFIX_CACHE"];
export const RUNTIMES: readonly Runtime[] = ["vllm", "sglang"];

export interface PoolSpec {
  key: string; // "namespace/name", the pool's name in the state document
  namespace: string;
  name: string;
  port: number; // the serving and metrics port (v1: the first of targetPorts); 0 when invalid
  // Every target port (v1 pools may have up to 8, each its own endpoint on every Pod); [port]
  // for v1alpha2, [] when invalid.
  ports: number[];
  // Which API the pool comes from: "v1alpha2" (inference.networking.x-k8s.io) or "v1"
  // (inference.networking.k8s.io).
  api: "v1alpha2" | "v1";
  selector: Record<string, string>;
  strategy: Strategy;
  runtime: Runtime;
  // Routed in prefill/decode mode (an InferenceTrafficPolicy with profile.pd names the pool).
  pd?: PdSpec;
  // profile.pd asks for P/D but cannot be used: the pool is published with no endpoints.
  pdBlocked?: boolean;
  // The pool's wasm-epp.io/scrape-name-filter; undefined: the sidecar's --scrape-name-filter.
  nameFilter?: boolean;
}

export interface PoolIssue {
  code: "pool_invalid" | "annotation_invalid" | "pd_invalid" | "pool_conflict";
  message: string;
}

export interface PoolParse {
  spec: PoolSpec;
  issues: PoolIssue[];
}

// Reads a pool. Problems never drop the pool (it is published, with no endpoints when it cannot
// select any), so that the filter answers "no ready endpoint" rather than "unknown pool".
// Runtime: the pool's annotation, else the modelServerRuntime of an InferenceTrafficPolicy whose
// poolRef names the pool, else sglang when a policy asks for prefill/decode disaggregation (which
// is SGLang's), else vllm. P/D: see pd.ts.
export function parsePool(pool: InferencePool, defaultNamespace: string, policies: InferenceTrafficPolicy[] = []): PoolParse {
  const namespace = namespaceOf(pool, defaultNamespace);
  const name = nameOf(pool);
  const issues: PoolIssue[] = [];
  const key = `${namespace}/${name}`;

  const rawPort = pool.spec?.targetPortNumber;
  let port = 0;
  if (typeof rawPort === "number" && Number.isInteger(rawPort) && rawPort >= 1 && rawPort <= 65535) {
    port = rawPort;
  } else {
    issues.push({ code: "pool_invalid", message: `InferencePool ${key}: spec.targetPortNumber must be a port number (1-65535), got ${JSON.stringify(rawPort)}; no endpoints are published` });
  }

  const selector = labelMap(pool.spec?.selector);
  if (Object.keys(selector).length === 0) {
    issues.push({ code: "pool_invalid", message: `InferencePool ${key}: spec.selector is empty; no endpoints are published` });
  }
  return finishPool(pool, key, namespace, name, "v1alpha2", port > 0 ? [port] : [], selector, issues, defaultNamespace, policies);
}

// Reads a v1 pool (inference.networking.k8s.io): spec.selector.matchLabels and spec.targetPorts.
// The rest (annotations, runtime, P/D) is read as for v1alpha2. spec.endpointPickerRef names the
// picker the gateway would call; wasm-epp is that picker, so the reference is not used.
export function parsePoolV1(pool: InferencePoolV1, defaultNamespace: string, policies: InferenceTrafficPolicy[] = []): PoolParse {
  const namespace = namespaceOf(pool, defaultNamespace);
  const name = nameOf(pool);
  const issues: PoolIssue[] = [];
  const key = `${namespace}/${name}`;
  const ports: number[] = [];
  const raw = pool.spec?.targetPorts;
  if (!Array.isArray(raw) || raw.length === 0) {
    issues.push({ code: "pool_invalid", message: `InferencePool ${key} (v1): spec.targetPorts is missing or empty; no endpoints are published` });
  } else {
    for (const [i, p] of raw.entries()) {
      const n = p?.number;
      if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) {
        issues.push({ code: "pool_invalid", message: `InferencePool ${key} (v1): spec.targetPorts[${i}].number must be a port number (1-65535), got ${JSON.stringify(n)}; no endpoints are published` });
        ports.length = 0;
        break;
      }
      if (ports.includes(n)) {
        issues.push({ code: "pool_invalid", message: `InferencePool ${key} (v1): port ${n} appears twice in spec.targetPorts; no endpoints are published` });
        ports.length = 0;
        break;
      }
      if (ports.length === MAX_TARGET_PORTS) {
        issues.push({ code: "pool_invalid", message: `InferencePool ${key} (v1): spec.targetPorts has more than ${MAX_TARGET_PORTS} entries; no endpoints are published` });
        ports.length = 0;
        break;
      }
      ports.push(n);
    }
  }
  const rawSelector = pool.spec?.selector;
  const selector = labelMap(rawSelector && typeof rawSelector === "object" ? (rawSelector as { matchLabels?: unknown }).matchLabels : undefined);
  if (Object.keys(selector).length === 0) {
    issues.push({ code: "pool_invalid", message: `InferencePool ${key} (v1): spec.selector.matchLabels is empty; no endpoints are published` });
  }
  return finishPool(pool, key, namespace, name, "v1", ports, selector, issues, defaultNamespace, policies);
}

// At most 8 target ports (GIE v1.1 and later; v1.0 allows one).
export const MAX_TARGET_PORTS = 8;

function labelMap(raw: unknown): Record<string, string> {
  const selector: Record<string, string> = {};
  if (raw && typeof raw === "object" && !Array.isArray(raw)) {
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") selector[k] = String(v);
    }
  }
  return selector;
}

function finishPool(pool: InferencePool | InferencePoolV1, key: string, namespace: string, name: string, api: "v1alpha2" | "v1", ports: number[], selector: Record<string, string>,
  issues: PoolIssue[], defaultNamespace: string, policies: InferenceTrafficPolicy[]): PoolParse {
  const annotations = pool.metadata?.annotations ?? {};
  let strategy: Strategy = "DEFAULT";
  const rawStrategy = annotations[ROUTING_STRATEGY_ANNOTATION];
  if (rawStrategy !== undefined) {
    const s = String(rawStrategy).trim();
    if ((STRATEGIES as readonly string[]).includes(s)) strategy = s as Strategy;
    else issues.push({ code: "annotation_invalid", message: `InferencePool ${key}: ${ROUTING_STRATEGY_ANNOTATION} "${s}" is not DEFAULT or PREFIX_CACHE; using DEFAULT` });
  }

  let nameFilter: boolean | undefined;
  const rawFilter = annotations[SCRAPE_FILTER_ANNOTATION];
  if (rawFilter !== undefined) {
    const f = String(rawFilter).trim().toLowerCase();
    if (f === "on" || f === "true") nameFilter = true;
    else if (f === "off" || f === "false") nameFilter = false;
    else issues.push({ code: "annotation_invalid", message: `InferencePool ${key}: ${SCRAPE_FILTER_ANNOTATION} "${rawFilter}" is not on or off; using --scrape-name-filter` });
  }

  const pdCandidates = pdPoliciesFor(namespace, name, policies, defaultNamespace);
  let runtime: Runtime = pdCandidates.length > 0 ? "sglang" : "vllm";
  let rawRuntime: string | undefined = annotations[RUNTIME_ANNOTATION];
  let from = RUNTIME_ANNOTATION;
  if (rawRuntime === undefined) {
    const policy = [...pdCandidates, ...policies].find((p) => namespaceOf(p, defaultNamespace) === namespace && p.spec?.poolRef?.name === name && typeof p.spec?.modelServerRuntime === "string");
    if (policy) {
      rawRuntime = policy.spec!.modelServerRuntime!;
      from = `InferenceTrafficPolicy ${nameOf(policy)} spec.modelServerRuntime`;
    }
  }
  if (rawRuntime !== undefined) {
    const r = String(rawRuntime).trim().toLowerCase();
    if ((RUNTIMES as readonly string[]).includes(r)) runtime = r as Runtime;
    else issues.push({ code: "annotation_invalid", message: `InferencePool ${key}: ${from} "${rawRuntime}" is not vllm or sglang; using ${runtime}` });
  }

  const spec: PoolSpec = { key, namespace, name, port: ports[0] ?? 0, ports, api, selector, strategy, runtime };
  if (nameFilter !== undefined) spec.nameFilter = nameFilter;
  const pd = parsePd(key, namespace, pdCandidates);
  issues.push(...pd.issues);
  if (pd.blocked) spec.pdBlocked = true;
  if (pd.pd) {
    spec.pd = pd.pd;
    if (runtime !== "sglang") {
      issues.push({ code: "pd_invalid", message: `InferencePool ${key}: InferenceTrafficPolicy ${pd.pd.policy} asks for prefill/decode disaggregation, which follows SGLang's protocol, but the runtime is ${runtime}; the pool is routed in P/D mode with ${runtime} metrics` });
    }
  }
  return { spec, issues };
}
