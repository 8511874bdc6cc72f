// What the sidecar needs from an InferencePool, validated.

import { parsePd, pdPoliciesFor, type PdSpec } from "./pd.ts";
import type { InferencePool, InferenceTrafficPolicy } from "./types.ts";
import { nameOf, namespaceOf } from "./types.ts";

export const ROUTING_STRATEGY_ANNOTATION = "inference.networking.x-k8s.io/routing-strategy";
export const RUNTIME_ANNOTATION = "inference.networking.x-k8s.io/model-server-runtime";

export type Strategy = "DEFAULT" | "PREFIX_CACHE";
export type Runtime = "vllm" | "sglang";
export const STRATEGIES: readonly Strategy[] = ["DEFAULT", "PREFIX_CACHE"];
export const RUNTIMES: readonly Runtime[] = ["vllm", "sglang"];

export interface PoolSpec {
  key: string; // "namespace/name", the pool's name in the state document
  namespace: string;
  name: string;
  port: number; // spec.targetPortNumber: serving and metrics port; 0 when invalid
  selector: Record<string, string>;
  strategy: Strategy;
  runtime: Runtime;
  // Routed in prefill/decode mode (an InferenceTrafficPolicy with profile.pd names the pool).
  pd?: PdSpec;
  // profile.pd asks for P/D but cannot be used: the pool is published with no endpoints.
  pdBlocked?: boolean;
}

export interface PoolIssue {
  code: "pool_invalid" | "annotation_invalid" | "pd_invalid";
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

  const selector: Record<string, string> = {};
  const rawSelector = pool.spec?.selector;
  if (rawSelector && typeof rawSelector === "object" && !Array.isArray(rawSelector)) {
    for (const [k, v] of Object.entries(rawSelector)) {
      if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") selector[k] = String(v);
    }
  }
  if (Object.keys(selector).length === 0) {
    issues.push({ code: "pool_invalid", message: `InferencePool ${key}: spec.selector is empty; no endpoints are published` });
  }

  const annotations = pool.metadata?.annotations ?? {};
  let strategy: Strategy = "DEFAULT";
  const rawStrategy = annotations[ROUTING_STRATEGY_ANNOTATION];
  if (rawStrategy !== undefined) {
    const s = String(rawStrategy).trim();
    if ((STRATEGIES as readonly string[]).includes(s)) strategy = s as Strategy;
    else issues.push({ code: "annotation_invalid", message: `InferencePool ${key}: ${ROUTING_STRATEGY_ANNOTATION} "${s}" is not DEFAULT or PREFIX_CACHE; using DEFAULT` });
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

  const spec: PoolSpec = { key, namespace, name, port, selector, strategy, runtime };
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
