// The GA API's companions to a pool, mapped onto the state document:
//   - InferenceObjective -> "objectives": a name a request selects with the objective header, and
//     the band its priority gives (> 0 Critical, 0 Standard, < 0 Sheddable, GIE's sheddable rule);
//   - InferenceModelRewrite -> "models" entries with targets (rules with matches) and the pool's
//     "default_targets" (a rule without matches, which applies to every other model).
// Rewrite precedence is GIE's: an exact match beats a rule without matches; then the oldest
// object; then the first rule in the object. Pure: the reconciler calls these with the caches.

import type { InferenceModelRewrite, InferenceObjective, PoolRef } from "../k8s/types.ts";
import { nameOf, namespaceOf } from "../k8s/types.ts";
import type { Criticality } from "./document.ts";

const MAX_LIST = 256;
const MAX_NAME = 1024;
const MAX_WEIGHT = 1e6;
const POOL_GROUPS = ["inference.networking.k8s.io", "inference.networking.x-k8s.io"];

export interface ObjectiveDoc {
  name: string;
  pool: string;
  priority: number;
  criticality: Criticality;
}

export interface RewriteTarget {
  name: string;
  weight?: number;
}

// One rule's claim on a model name (or, with model undefined, on every other model) in a pool.
export interface RewriteClaim {
  pool: string;
  model?: string;
  targets: RewriteTarget[];
  created: number; // the object's creationTimestamp in ms
  object: string; // "InferenceModelRewrite ns/name"
  id: string; // the object and the rule: "InferenceModelRewrite ns/name rules[i]"
  order: number; // the rule's index in the object
}

export interface ObjectiveIssue {
  code: "objective_invalid" | "rewrite_invalid" | "model_conflict";
  message: string;
}

export interface IssueSink {
  push(issue: ObjectiveIssue): unknown;
}

export function criticalityOf(priority: number): Criticality {
  return priority > 0 ? "Critical" : priority < 0 ? "Sheddable" : "Standard";
}

// The pool key ("namespace/name") a poolRef names, or an error message. The group may be either
// InferencePool API (pools are identified by namespace/name in the document); the kind must be
// InferencePool.
function poolOf(ref: PoolRef | null | undefined, ns: string): { pool?: string; error?: string } {
  if (!ref || typeof ref.name !== "string" || ref.name.length === 0) return { error: "spec.poolRef.name is missing" };
  if (ref.group !== undefined && ref.group !== "" && !POOL_GROUPS.includes(ref.group)) return { error: `spec.poolRef.group ${JSON.stringify(ref.group)} is not an InferencePool API group` };
  if (ref.kind !== undefined && ref.kind !== "" && ref.kind !== "InferencePool") return { error: `spec.poolRef.kind ${JSON.stringify(ref.kind)} is not InferencePool` };
  return { pool: `${ns}/${ref.name}` };
}

export function buildObjectives(objects: InferenceObjective[], published: Set<string>, defaultNamespace: string, issues: IssueSink): ObjectiveDoc[] {
  const out: ObjectiveDoc[] = [];
  const seen = new Set<string>();
  for (const obj of objects) {
    const ns = namespaceOf(obj, defaultNamespace);
    const name = nameOf(obj);
    const id = `InferenceObjective ${ns}/${name}`;
    const ref = poolOf(obj.spec?.poolRef, ns);
    if (ref.error !== undefined) {
      issues.push({ code: "objective_invalid", message: `${id}: ${ref.error}; objective skipped` });
      continue;
    }
    if (!published.has(ref.pool!)) continue; // a pool this sidecar does not serve
    if (name.length === 0 || name.length > MAX_NAME) continue;
    const raw = obj.spec?.priority;
    let priority = 0;
    if (raw !== undefined && raw !== null) {
      if (typeof raw !== "number" || !Number.isInteger(raw) || raw < -2147483648 || raw > 2147483647) {
        issues.push({ code: "objective_invalid", message: `${id}: spec.priority ${JSON.stringify(raw)} is not a 32-bit integer; objective skipped` });
        continue;
      }
      priority = raw;
    }
    const key = `${ref.pool}\u0000${name}`;
    if (seen.has(key)) continue; // one object per namespace/name: only a file source can repeat it
    seen.add(key);
    out.push({ name, pool: ref.pool!, priority, criticality: criticalityOf(priority) });
  }
  return out.sort((a, b) => cmp(a.pool, b.pool) || cmp(a.name, b.name));
}

// Every rule of every rewrite whose pool is published, as claims. Invalid rules and targets are
// skipped with a warning naming them.
export function rewriteClaims(objects: InferenceModelRewrite[], published: Set<string>, defaultNamespace: string, issues: IssueSink): RewriteClaim[] {
  const claims: RewriteClaim[] = [];
  for (const obj of objects) {
    const ns = namespaceOf(obj, defaultNamespace);
    const objId = `InferenceModelRewrite ${ns}/${nameOf(obj)}`;
    const ref = poolOf(obj.spec?.poolRef, ns);
    if (ref.error !== undefined) {
      issues.push({ code: "rewrite_invalid", message: `${objId}: ${ref.error}; rewrite skipped` });
      continue;
    }
    if (!published.has(ref.pool!)) continue;
    const rules = obj.spec?.rules;
    if (!Array.isArray(rules) || rules.length === 0) {
      issues.push({ code: "rewrite_invalid", message: `${objId}: spec.rules is missing or empty; rewrite skipped` });
      continue;
    }
    const created = timeOf(obj.metadata?.creationTimestamp);
    rules.slice(0, MAX_LIST).forEach((rule, i) => {
      const id = `${objId} rules[${i}]`;
      const targets = ruleTargets(rule?.targets, id, issues);
      if (targets === undefined) return;
      const matches = rule?.matches;
      if (!Array.isArray(matches) || matches.length === 0) {
        claims.push({ pool: ref.pool!, targets, created, object: objId, id, order: i });
        return;
      }
      matches.slice(0, MAX_LIST).forEach((m, j) => {
        const model = m?.model;
        const type = model?.type ?? "Exact";
        if (type !== "Exact") {
          issues.push({ code: "rewrite_invalid", message: `${id}.matches[${j}]: match type ${JSON.stringify(type)} is not Exact; match skipped` });
          return;
        }
        if (typeof model?.value !== "string" || model.value.length === 0 || model.value.length > MAX_NAME) {
          issues.push({ code: "rewrite_invalid", message: `${id}.matches[${j}]: model.value must be a non-empty string; match skipped` });
          return;
        }
        claims.push({ pool: ref.pool!, model: model.value, targets, created, object: objId, id, order: i });
      });
    });
  }
  return claims;
}

function ruleTargets(raw: unknown, id: string, issues: IssueSink): RewriteTarget[] | undefined {
  if (!Array.isArray(raw) || raw.length === 0) {
    issues.push({ code: "rewrite_invalid", message: `${id}: targets is missing or empty; rule skipped` });
    return undefined;
  }
  const out: RewriteTarget[] = [];
  let weighted = 0;
  for (const [k, t] of raw.slice(0, MAX_LIST).entries()) {
    const name = (t as { modelRewrite?: unknown } | null)?.modelRewrite;
    if (typeof name !== "string" || name.length === 0 || name.length > MAX_NAME) {
      issues.push({ code: "rewrite_invalid", message: `${id}.targets[${k}]: modelRewrite must be a non-empty string; target skipped` });
      continue;
    }
    const w = (t as { weight?: unknown }).weight;
    const target: RewriteTarget = { name };
    if (w !== undefined && w !== null) {
      if (typeof w !== "number" || !Number.isInteger(w) || w < 1 || w > MAX_WEIGHT) {
        issues.push({ code: "rewrite_invalid", message: `${id}.targets[${k}]: weight ${JSON.stringify(w)} is not an integer from 1 to 1000000; target skipped` });
        continue;
      }
      target.weight = w;
      weighted++;
    }
    out.push(target);
  }
  if (out.length === 0) {
    issues.push({ code: "rewrite_invalid", message: `${id}: no usable target; rule skipped` });
    return undefined;
  }
  if (weighted > 0 && weighted < out.length) {
    // GIE asks for weights on all targets or none; an unset weight draws like 0.
    issues.push({ code: "rewrite_invalid", message: `${id}: some targets have a weight and some do not; those without one get weight 0` });
    for (const t of out) t.weight ??= 0;
  }
  return out;
}

// The default targets per pool: the oldest rewrite's first rule without matches (the rest of
// those rules are reported as overridden).
export function defaultTargets(claims: RewriteClaim[], issues: IssueSink): Map<string, RewriteTarget[]> {
  const out = new Map<string, { targets: RewriteTarget[]; id: string }>();
  for (const c of sortClaims(claims.filter((c) => c.model === undefined))) {
    const first = out.get(c.pool);
    if (first) {
      issues.push({ code: "model_conflict", message: `${c.id}: pool ${c.pool} already has a rule without matches in the older ${first.id}, which wins` });
      continue;
    }
    out.set(c.pool, { targets: c.targets, id: c.id });
  }
  return new Map([...out].map(([k, v]) => [k, v.targets]));
}

// Oldest object first (then by kind and namespace/name), and within one object rule by rule.
export function byAge(a: { created: number; object: string; order: number }, b: { created: number; object: string; order: number }): number {
  return a.created - b.created || cmp(a.object, b.object) || a.order - b.order;
}

export function sortClaims(claims: RewriteClaim[]): RewriteClaim[] {
  return [...claims].sort(byAge);
}

export function timeOf(t: unknown): number {
  if (t instanceof Date) return t.getTime();
  if (typeof t === "string") {
    const ms = Date.parse(t);
    if (Number.isFinite(ms)) return ms;
  }
  return Number.MAX_SAFE_INTEGER; // unknown: after every dated object
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
