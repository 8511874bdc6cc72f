// The checks the wasm-epp filter applies to a pushed state document (assembly/state/document.ts),
// restated in TypeScript so tests can hold the sidecar's documents to them without Envoy.
// Returns the first problem as "path: message", or undefined when the filter would accept it.

const MAX_POOLS = 256;
const MAX_MODELS = 8192;
const MAX_TARGETS = 256;
const MAX_ADAPTERS = 256;
const MAX_NAME = 1024;

type J = Record<string, unknown>;

export function validateState(doc: unknown, maxEndpoints = 1024): string | undefined {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return "the state document must be a JSON object";
  const root = doc as J;
  if (!nonNegative(root.version)) return "version: must be a non-negative number";
  if (!nonNegative(root.generated_at_ms)) return "generated_at_ms: must be a non-negative number";
  if (!Array.isArray(root.pools)) return ".pools: is required";
  if (root.pools.length > MAX_POOLS) return ".pools: too many";
  const poolNames = new Set<string>();
  for (let i = 0; i < root.pools.length; i++) {
    const p = root.pools[i] as J;
    const path = `pools[${i}]`;
    if (typeof p !== "object" || p === null) return `${path}: must be an object`;
    const e = requiredString(p, "name", path);
    if (e) return e;
    if (!isPoolName(p.name as string)) return `${path}.name: must be "namespace/name"`;
    if (poolNames.has(p.name as string)) return `${path}.name: duplicate pool`;
    poolNames.add(p.name as string);
    for (const k of ["strategy", "runtime"]) if (p[k] !== undefined && p[k] !== null && typeof p[k] !== "string") return `${path}.${k}: must be a string`;
    if (p.pd !== undefined && p.pd !== null) {
      const pd = p.pd as J;
      if (typeof pd !== "object" || Array.isArray(pd)) return `${path}.pd: must be an object`;
      if (pd.role_label !== undefined && pd.role_label !== null && (typeof pd.role_label !== "string" || pd.role_label.length > MAX_NAME)) return `${path}.pd.role_label: must be a string`;
      const port = pd.bootstrap_port;
      if (port !== undefined && port !== null && (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)) return `${path}.pd.bootstrap_port: must be an integer between 1 and 65535`;
      for (const role of ["prefill", "decode"]) {
        const r = pd[role] as J | undefined | null;
        if (r === undefined || r === null || typeof r !== "object") continue;
        if (r.strategy !== undefined && r.strategy !== null && (typeof r.strategy !== "string" || r.strategy.length > MAX_NAME)) return `${path}.pd.${role}.strategy: must be a string`;
      }
    }
    if (p.default_targets !== undefined && p.default_targets !== null) {
      const e2 = targetsProblem(p.default_targets, `${path}.default_targets`);
      if (e2) return e2;
    }
    if (!Array.isArray(p.endpoints)) return `${path}.endpoints: is required`;
    if (p.endpoints.length > maxEndpoints) return `${path}.endpoints: too many`;
    const addresses = new Set<string>();
    for (let j = 0; j < p.endpoints.length; j++) {
      const ep = p.endpoints[j] as J;
      const ep_ = `${path}.endpoints[${j}]`;
      if (typeof ep !== "object" || ep === null) return `${ep_}: must be an object`;
      const e1 = requiredString(ep, "pod", ep_) ?? requiredString(ep, "address", ep_);
      if (e1) return e1;
      if (!isHostPort(ep.address as string)) return `${ep_}.address: must be ip:port`;
      if (addresses.has(ep.address as string)) return `${ep_}.address: duplicate address`;
      addresses.add(ep.address as string);
      if (ep.ready !== undefined && ep.ready !== null && typeof ep.ready !== "boolean") return `${ep_}.ready: must be true or false`;
      if (ep.role !== undefined && ep.role !== null && (typeof ep.role !== "string" || ep.role.length > MAX_NAME)) return `${ep_}.role: must be a string`;
      const ranges: Array<[string, number]> = [["metrics_age_ms", 1e12], ["waiting", 1e9], ["running", 1e9], ["max_lora", 65536]];
      for (const [k, max] of ranges) {
        const v = ep[k];
        if (v === undefined || v === null) continue;
        if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > max) return `${ep_}.${k}: must be between 0 and ${max}`;
      }
      for (const k of ["kv_usage", "score"]) {
        const v = ep[k];
        if (v === undefined || v === null) continue;
        if (typeof v !== "number" || !Number.isFinite(v)) return `${ep_}.${k}: must be a number`;
      }
      for (const k of ["lora_running", "lora_waiting"]) {
        const v = ep[k];
        if (v === undefined || v === null) continue;
        if (!Array.isArray(v) || v.length > MAX_ADAPTERS || v.some((s) => typeof s !== "string" || s.length > MAX_NAME)) return `${ep_}.${k}: must be an array of strings`;
      }
    }
  }
  if (!Array.isArray(root.models)) return ".models: is required";
  if (root.models.length > MAX_MODELS) return ".models: too many";
  for (let i = 0; i < root.models.length; i++) {
    const m = root.models[i] as J;
    const path = `models[${i}]`;
    if (typeof m !== "object" || m === null) return `${path}: must be an object`;
    const e = requiredString(m, "name", path) ?? requiredString(m, "pool", path);
    if (e) return e;
    if (m.criticality !== undefined && m.criticality !== null && typeof m.criticality !== "string") return `${path}.criticality: must be a string`;
    if (m.targets !== undefined && m.targets !== null) {
      const e2 = targetsProblem(m.targets, `${path}.targets`);
      if (e2) return e2;
    }
  }
  if (root.objectives !== undefined && root.objectives !== null) {
    if (!Array.isArray(root.objectives) || root.objectives.length > MAX_MODELS) return ".objectives: must be an array of at most 8192";
    for (let i = 0; i < root.objectives.length; i++) {
      const o = root.objectives[i] as J;
      const path = `objectives[${i}]`;
      if (typeof o !== "object" || o === null) return `${path}: must be an object`;
      const e = requiredString(o, "name", path) ?? requiredString(o, "pool", path);
      if (e) return e;
      if (typeof o.priority !== "number" || !Number.isInteger(o.priority) || o.priority < -2147483648 || o.priority > 2147483647) return `${path}.priority: must be a 32-bit integer`;
      if (!["Critical", "Standard", "Sheddable"].includes(o.criticality as string)) return `${path}.criticality: must be Critical, Standard or Sheddable`;
    }
  }
  return undefined;
}

function targetsProblem(v: unknown, path: string): string | undefined {
  if (!Array.isArray(v) || v.length > MAX_TARGETS) return `${path}: must be an array`;
  for (let j = 0; j < v.length; j++) {
    const t = v[j] as J;
    if (typeof t !== "object" || t === null) return `${path}[${j}]: must be an object`;
    const e2 = requiredString(t, "name", `${path}[${j}]`);
    if (e2) return e2;
    if (t.weight !== undefined && t.weight !== null && (typeof t.weight !== "number" || !Number.isFinite(t.weight) || t.weight < 0 || t.weight > 1e6)) return `${path}[${j}].weight: must be between 0 and 1000000`;
  }
  return undefined;
}

function nonNegative(v: unknown): boolean {
  return typeof v === "number" && Number.isFinite(v) && v >= 0;
}

function requiredString(o: J, key: string, path: string): string | undefined {
  const v = o[key];
  if (typeof v !== "string") return `${path}.${key}: must be a string`;
  if (v.length === 0 || v.length > MAX_NAME) return `${path}.${key}: must have 1 to ${MAX_NAME} characters`;
  return undefined;
}

export function isPoolName(s: string): boolean {
  return /^[a-z0-9.-]+\/[a-z0-9.-]+$/.test(s) && s.length <= 507;
}

export function isHostPort(s: string): boolean {
  if (s.length > 64) return false;
  const colon = s.lastIndexOf(":");
  if (colon <= 0) return false;
  const port = s.slice(colon + 1);
  if (!/^[1-9]\d{0,4}$/.test(port) || Number(port) > 65535) return false;
  const host = s.slice(0, colon);
  if (host.startsWith("[")) return host.endsWith("]") && /^[0-9a-fA-F:]{2,39}$/.test(host.slice(1, -1)) && host.includes(":");
  return /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(host) && host.split(".").every((x) => Number(x) <= 255);
}
