// Prefill/decode disaggregation (SGLang): what an InferenceTrafficPolicy's `spec.profile.pd` asks
// for the pool its poolRef names, validated.
//
//   spec:
//     poolRef: {name: qwen-inference-pool}
//     modelServerRuntime: sglang
//     profile:
//       pd:
//         pdRoleLabelName: rolebasedgroup.workloads.x-k8s.io/role   # required
//         kvTransfer: {bootstrapPort: 34000}                         # default 8998
//         trafficPolicy: {prefixCache: {mode: estimate}}             # named policies
//         prefillPolicyRef: prefixCache                              # none: least load
//         decodePolicyRef: prefixCache
//
// Two kinds of problems, both reported as `pd_invalid`:
//   - the roles or the rendezvous cannot be known (no usable role label name, a bootstrap port
//     that is not a port, a `pd` that is not an object): the pool is published with no endpoints,
//     so requests fail at once with "no endpoint" instead of reaching disaggregated servers
//     without the fields they need (a decode server answers 400, a prefill server waits for a
//     decode side that never comes);
//   - a role's policy cannot be used (a reference to no entry, an entry of another kind or mode):
//     that role falls back to least load, which still serves every request.

import type { PoolIssue, Strategy } from "./pool-spec.ts";
import type { InferenceTrafficPolicy } from "./types.ts";
import { nameOf, namespaceOf } from "./types.ts";

export type PdRole = "prefill" | "decode";
export const PD_ROLES: readonly PdRole[] = ["prefill", "decode"];

// SGLang's default --disaggregation-bootstrap-port.
export const DEFAULT_BOOTSTRAP_PORT = 8998;

export interface PdSpec {
  policy: string; // "namespace/name" of the InferenceTrafficPolicy
  roleLabel: string;
  bootstrapPort: number;
  prefill: { strategy: Strategy };
  decode: { strategy: Strategy };
}

export interface PdParse {
  pd?: PdSpec; // the pool is routed in P/D mode
  blocked: boolean; // P/D was asked for but cannot be set up: the pool gets no endpoints
  issues: PoolIssue[];
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// The policy's profile.pd, or undefined when it has none (null counts as none).
function pdOf(policy: InferenceTrafficPolicy): unknown {
  const profile = policy.spec?.profile;
  if (!isObject(profile)) return undefined;
  const pd = profile.pd;
  return pd === null ? undefined : pd;
}

// The InferenceTrafficPolicies with a profile.pd whose poolRef names the pool, oldest first
// (creationTimestamp, then name): the first one is used.
export function pdPoliciesFor(namespace: string, name: string, policies: InferenceTrafficPolicy[], defaultNamespace: string): InferenceTrafficPolicy[] {
  return policies
    .filter((p) => namespaceOf(p, defaultNamespace) === namespace && p.spec?.poolRef?.name === name && pdOf(p) !== undefined)
    .sort((a, b) => timeOf(a.metadata?.creationTimestamp) - timeOf(b.metadata?.creationTimestamp) || cmp(nameOf(a), nameOf(b)));
}

// P/D for the pool `poolKey` ("namespace/name") from the policies naming it (see pdPoliciesFor).
export function parsePd(poolKey: string, namespace: string, candidates: InferenceTrafficPolicy[]): PdParse {
  const issues: PoolIssue[] = [];
  if (candidates.length === 0) return { blocked: false, issues };
  const policy = candidates[0];
  const id = `InferenceTrafficPolicy ${namespace}/${nameOf(policy)}`;
  for (const other of candidates.slice(1)) {
    issues.push({ code: "pd_invalid", message: `InferenceTrafficPolicy ${namespace}/${nameOf(other)}: profile.pd for pool ${poolKey} is ignored; the older ${id} is used` });
  }
  const blocked = (why: string): PdParse => {
    issues.push({ code: "pd_invalid", message: `${id}: ${why}; pool ${poolKey} is published with no endpoints` });
    return { blocked: true, issues };
  };

  const pd = pdOf(policy);
  if (!isObject(pd)) return blocked(`spec.profile.pd must be an object, got ${describe(pd)}`);

  const rawLabel = pd.pdRoleLabelName;
  if (rawLabel === undefined || rawLabel === null) return blocked("spec.profile.pd.pdRoleLabelName is missing, so prefill and decode Pods cannot be told apart");
  if (typeof rawLabel !== "string" || !isLabelKey(rawLabel.trim())) return blocked(`spec.profile.pd.pdRoleLabelName ${describe(rawLabel)} is not a label name`);
  const roleLabel = rawLabel.trim();

  let bootstrapPort = DEFAULT_BOOTSTRAP_PORT;
  const kv = pd.kvTransfer;
  if (kv !== undefined && kv !== null) {
    if (!isObject(kv)) return blocked(`spec.profile.pd.kvTransfer must be an object, got ${describe(kv)}`);
    const port = kv.bootstrapPort;
    if (port !== undefined && port !== null) {
      if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
        return blocked(`spec.profile.pd.kvTransfer.bootstrapPort must be a port number (1-65535), got ${describe(port)}`);
      }
      bootstrapPort = port;
    }
  }

  let policies: Obj = {};
  const rawPolicies = pd.trafficPolicy;
  if (rawPolicies !== undefined && rawPolicies !== null) {
    if (isObject(rawPolicies)) policies = rawPolicies;
    else issues.push({ code: "pd_invalid", message: `${id}: spec.profile.pd.trafficPolicy must be an object, got ${describe(rawPolicies)}; ignored` });
  }
  const strategyFor = (role: PdRole): Strategy => {
    const field = `${role}PolicyRef`;
    const ref = pd[field];
    if (ref === undefined || ref === null || ref === "") return "DEFAULT";
    const fallback = (why: string): Strategy => {
      issues.push({ code: "pd_invalid", message: `${id}: spec.profile.pd.${field} ${why}; ${role} uses least load (DEFAULT)` });
      return "DEFAULT";
    };
    if (typeof ref !== "string") return fallback(`must be the name of a trafficPolicy entry, got ${describe(ref)}`);
    const key = ref.trim();
    if (!Object.prototype.hasOwnProperty.call(policies, key)) {
      const known = Object.keys(policies);
      return fallback(`"${key}" names no entry of trafficPolicy (${known.length > 0 ? `it has ${known.map((k) => `"${k}"`).join(", ")}` : "it has none"})`);
    }
    const entry = policies[key];
    // The entry is either the prefixCache settings themselves (trafficPolicy: {prefixCache: {mode:
    // estimate}}) or an object holding them (trafficPolicy: {cache: {prefixCache: {...}}}).
    let settings: unknown;
    if (isObject(entry) && entry.prefixCache !== undefined) settings = entry.prefixCache;
    else if (key === "prefixCache") settings = entry;
    else return fallback(`"${key}" is not a prefixCache policy, the only kind supported`);
    if (settings === null || settings === undefined) settings = {};
    if (!isObject(settings)) return fallback(`"${key}": prefixCache must be an object, got ${describe(settings)}`);
    const mode = settings.mode;
    if (mode === undefined || mode === null) return "PREFIX_CACHE";
    if (typeof mode === "string" && mode.trim().toLowerCase() === "estimate") return "PREFIX_CACHE";
    return fallback(`"${key}": prefixCache mode ${describe(mode)} is not supported (only estimate)`);
  };

  return {
    pd: { policy: `${namespace}/${nameOf(policy)}`, roleLabel, bootstrapPort, prefill: { strategy: strategyFor("prefill") }, decode: { strategy: strategyFor("decode") } },
    blocked: false,
    issues,
  };
}

// The Pod's role from its labels: the value of `roleLabel`, trimmed, any case; undefined when it
// is neither prefill nor decode.
export function podRole(labels: Record<string, string> | null | undefined, roleLabel: string): PdRole | undefined {
  const raw = labels?.[roleLabel];
  if (typeof raw !== "string") return undefined;
  const v = raw.trim().toLowerCase();
  return v === "prefill" || v === "decode" ? v : undefined;
}

// A Kubernetes label key: an optional DNS-subdomain prefix and "/", then a name of at most 63
// characters (alphanumerics, "-", "_", "." inside).
export function isLabelKey(s: string): boolean {
  const slash = s.indexOf("/");
  const name = slash < 0 ? s : s.slice(slash + 1);
  if (slash >= 0) {
    const prefix = s.slice(0, slash);
    if (prefix.length === 0 || prefix.length > 253 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(prefix)) return false;
  }
  return name.length > 0 && name.length <= 63 && /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name);
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + "..." : s;
}

function timeOf(t: unknown): number {
  if (t instanceof Date) return t.getTime();
  if (typeof t === "string") {
    const ms = Date.parse(t);
    if (Number.isFinite(ms)) return ms;
  }
  return Number.MAX_SAFE_INTEGER;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
