// The state document (version 1) and the pure function that builds it from the caches.
//
//   {"version": 42, "generated_at_ms": 1763600000000,
//    "pools": [{"name": "default/vllm-qwen-pool", "strategy": "DEFAULT", "runtime": "vllm",
//      "endpoints": [{"pod": "qwen-0", "address": "10.0.0.1:8000", "ready": true, "metrics_age_ms": 35,
//        "waiting": 2, "running": 14, "kv_usage": 0.41, "lora_running": ["travel-helper-v1"],
//        "lora_waiting": [], "max_lora": 2, "score": 0.73, "kv_block_size": 16, "kv_blocks": 8192}]}],
//    "models": [{"name": "/model/qwen", "pool": "default/vllm-qwen-pool", "criticality": "Critical",
//      "targets": [{"name": "/model/qwen", "weight": 100}]}]}
//
// A pool routed in prefill/decode mode also carries
//   "pd": {"role_label": "rolebasedgroup.workloads.x-k8s.io/role", "bootstrap_port": 34000,
//          "prefill": {"strategy": "PREFIX_CACHE"}, "decode": {"strategy": "DEFAULT"}}
// and each of its endpoints a "role" ("prefill" or "decode"); Pods without one are left out.
//
// The builder keeps every value inside the ranges the filter accepts (it rejects a whole
// document for one bad value): addresses are ip:port and unique per pool, counts are finite and
// within 1e9, ratios within [0, 1], lists within 256 entries, names within 1024 characters.
// Endpoints are sorted by pod name and models oldest first (the filter lets the first of two
// models with one name win), so equal inputs give byte-identical documents.

import type { ServerMetrics } from "../metrics/runtime.ts";
import type { TargetRecord } from "../metrics/scraper.ts";
import { podRole, type PdRole } from "../k8s/pd.ts";
import type { PoolSpec, Runtime, Strategy } from "../k8s/pool-spec.ts";
import { formatAddress } from "../k8s/pods.ts";
import type { InferenceModel, InferenceModelRewrite, InferenceObjective } from "../k8s/types.ts";
import { nameOf, namespaceOf } from "../k8s/types.ts";
import { loadScore } from "./score.ts";
import { buildObjectives, byAge, defaultTargets, rewriteClaims, sortClaims, timeOf, type ObjectiveDoc, type ObjectiveIssue } from "./objectives.ts";

export const DOCUMENT_VERSION_FIELDS = ["version", "generated_at_ms", "pools", "models"] as const;
export const CRITICALITIES = ["Critical", "Standard", "Sheddable"] as const;
export type Criticality = (typeof CRITICALITIES)[number];

const MAX_LIST = 256;
const MAX_NAME = 1024;
const MAX_AGE_MS = 1e12;
const POOL_GROUP = "inference.networking.x-k8s.io";

export interface EndpointDoc {
  pod: string;
  address: string;
  role?: PdRole; // only in pools with `pd`
  ready: boolean;
  metrics_age_ms: number;
  waiting: number;
  running: number;
  kv_usage: number;
  lora_running: string[];
  lora_waiting: string[];
  max_lora?: number;
  score: number;
  kv_block_size?: number;
  kv_blocks?: number;
}

export interface PdRoleDoc {
  strategy: Strategy;
}

export interface PdDoc {
  role_label: string;
  bootstrap_port: number;
  prefill: PdRoleDoc;
  decode: PdRoleDoc;
}

export interface PoolDoc {
  name: string;
  strategy: Strategy;
  runtime: Runtime;
  pd?: PdDoc; // routed in prefill/decode mode
  // An InferenceModelRewrite rule without matches: where a model without an entry goes.
  default_targets?: TargetDoc[];
  endpoints: EndpointDoc[];
}

export interface TargetDoc {
  name: string;
  weight?: number;
}

export interface ModelDoc {
  name: string;
  pool: string;
  criticality?: Criticality;
  targets?: TargetDoc[];
}

export interface StateDocument {
  version: number;
  generated_at_ms: number;
  pools: PoolDoc[];
  models: ModelDoc[];
  objectives?: ObjectiveDoc[];
}

// One Pod selected by a pool, with what the scraper knows of it.
export interface EndpointInput {
  pod: string;
  ip: unknown;
  port?: number; // the target port of this endpoint (a v1 pool's Pods have one per port); else the pool's
  k8sReady: boolean;
  firstSeenMs: number;
  record?: TargetRecord; // present for Pods being scraped (Kubernetes-ready ones)
  labels?: Record<string, string> | null; // the Pod's labels (the role of a P/D pool's Pods)
}

export interface PoolInput {
  spec: PoolSpec;
  endpoints: EndpointInput[];
}

export interface BuildInput {
  pools: PoolInput[];
  models: InferenceModel[];
  objectives?: InferenceObjective[];
  rewrites?: InferenceModelRewrite[];
  defaultNamespace: string;
  metricsStaleMs: number;
  nowMs: number;
}

export interface Issue {
  code: "pod_address_invalid" | "address_duplicate" | "model_invalid" | "pd_role_unknown" | "pd_role_mismatch" | ObjectiveIssue["code"];
  message: string;
}

export interface PoolStats {
  pool: PoolSpec;
  readyPods: number;
  avgKvUsage: number;
  avgWaiting: number;
  avgRunning: number;
}

export interface Built {
  // The document without version and generated_at_ms; metrics_age_ms are filled by render().
  pools: PoolDoc[];
  models: ModelDoc[];
  objectives: ObjectiveDoc[];
  // metricsAt[p][e]: wall-clock ms of pools[p].endpoints[e]'s metrics.
  metricsAt: number[][];
  // Equal keys mean equal documents (up to version and generated_at_ms).
  key: string;
  // The scrapes whose values the document carries: "pool|pod" -> their completedAt.
  scrapes: Map<string, number>;
  issues: Issue[];
  stats: PoolStats[];
}

export function buildDocument(input: BuildInput): Built {
  const issues: Issue[] = [];
  const pools: PoolDoc[] = [];
  const metricsAt: number[][] = [];
  const scrapes = new Map<string, number>();
  const stats: PoolStats[] = [];
  const staleMs = input.metricsStaleMs;

  for (const { spec, endpoints } of [...input.pools].sort((a, b) => cmp(a.spec.key, b.spec.key))) {
    const docs: EndpointDoc[] = [];
    const ats: number[] = [];
    const seen = new Set<string>();
    let ready = 0;
    let kvSum = 0;
    let waitSum = 0;
    let runSum = 0;
    let withMetrics = 0;
    const sorted = spec.port > 0 && !spec.pdBlocked ? [...endpoints].sort((a, b) => cmp(a.pod, b.pod)) : [];
    const pd = spec.pd;
    for (const ep of sorted) {
      if (ep.pod.length === 0 || ep.pod.length > MAX_NAME) continue;
      let role: PdRole | undefined;
      if (pd) {
        role = podRole(ep.labels, pd.roleLabel);
        if (role === undefined) {
          const raw = ep.labels?.[pd.roleLabel];
          issues.push({ code: "pd_role_unknown", message: `pool ${spec.key} pod ${ep.pod}: label ${pd.roleLabel} is ${raw === undefined ? "missing" : JSON.stringify(raw)}, not prefill or decode; pod left out` });
          continue;
        }
      }
      const address = formatAddress(ep.ip, ep.port ?? spec.port);
      if (address === undefined) {
        if (ep.ip !== undefined && ep.ip !== null && ep.ip !== "") {
          issues.push({ code: "pod_address_invalid", message: `pool ${spec.key} pod ${ep.pod}: podIP ${JSON.stringify(ep.ip)} cannot be published as ip:port; pod skipped` });
        }
        continue;
      }
      if (seen.has(address)) {
        issues.push({ code: "address_duplicate", message: `pool ${spec.key} pod ${ep.pod}: address ${address} is already used by another pod of the pool; pod skipped` });
        continue;
      }
      seen.add(address);
      const rec = ep.record;
      const m: ServerMetrics | undefined = rec?.metrics;
      const isReady = ep.k8sReady && !(rec?.unreachable ?? false);
      const at = rec?.lastSuccessMs ?? ep.firstSeenMs - staleMs;
      const age = Math.max(0, input.nowMs - at);
      const doc: EndpointDoc = {
        pod: ep.pod,
        address,
        ...(role !== undefined ? { role } : {}),
        ready: isReady,
        metrics_age_ms: 0,
        waiting: m ? m.waiting : 0,
        running: m ? m.running : 0,
        kv_usage: m ? round(m.kvUsage, 4) : 0,
        lora_running: (m?.loraRunning ?? []).filter(validName).slice(0, MAX_LIST),
        lora_waiting: (m?.loraWaiting ?? []).filter(validName).slice(0, MAX_LIST),
        score: isReady && m ? loadScore({ waiting: m.waiting, kvUsage: m.kvUsage, ageMs: age }, staleMs) : 0,
      };
      if (m?.maxLora !== undefined) doc.max_lora = Math.min(65536, m.maxLora);
      if (m?.kvBlockSize !== undefined) doc.kv_block_size = m.kvBlockSize;
      if (m?.kvBlocks !== undefined) doc.kv_blocks = m.kvBlocks;
      const engine = m?.engineType;
      if (engine !== undefined && engine !== (role ?? "unified")) {
        issues.push({
          code: "pd_role_mismatch",
          message: role !== undefined
            ? `pool ${spec.key} pod ${ep.pod}: labelled ${role} (${pd!.roleLabel}) but the server reports engine_type ${engine}; routed as ${role}`
            : `pool ${spec.key} pod ${ep.pod}: the server reports engine_type ${engine} (prefill/decode disaggregation) but no InferenceTrafficPolicy with profile.pd names the pool; requests routed to it will fail`,
        });
      }
      docs.push(doc);
      ats.push(at);
      if (m && rec?.completedAt !== undefined) scrapes.set(`${spec.key}|${ep.pod}`, rec.completedAt);
      if (isReady) {
        ready++;
        if (m) {
          withMetrics++;
          kvSum += m.kvUsage;
          waitSum += m.waiting;
          runSum += m.running;
        }
      }
    }
    pools.push({
      name: spec.key,
      strategy: spec.strategy,
      runtime: spec.runtime,
      ...(pd ? { pd: { role_label: pd.roleLabel, bootstrap_port: pd.bootstrapPort, prefill: { strategy: pd.prefill.strategy }, decode: { strategy: pd.decode.strategy } } } : {}),
      endpoints: docs,
    });
    metricsAt.push(ats);
    stats.push({
      pool: spec,
      readyPods: ready,
      avgKvUsage: withMetrics > 0 ? kvSum / withMetrics : 0,
      avgWaiting: withMetrics > 0 ? waitSum / withMetrics : 0,
      avgRunning: withMetrics > 0 ? runSum / withMetrics : 0,
    });
  }

  const published = new Set(pools.map((p) => p.name));
  const claims = rewriteClaims(input.rewrites ?? [], published, input.defaultNamespace, issues);
  const defaults = defaultTargets(claims, issues);
  for (const p of pools) {
    const d = defaults.get(p.name);
    if (d) p.default_targets = d;
  }
  const models = buildModels(input.models, sortClaims(claims.filter((c) => c.model !== undefined)), published, input.defaultNamespace, issues);
  const objectives = buildObjectives(input.objectives ?? [], published, input.defaultNamespace, issues);
  const key = JSON.stringify({ pools, models, objectives }) + "|" + metricsAt.map((a) => a.join(",")).join(";");
  return { pools, models, objectives, metricsAt, key, scrapes, issues, stats };
}

// InferenceModels and the rewrite rules with matches, oldest first; where two claim one model
// name in a pool, the older object wins (GIE's rule for rewrites, kept across both kinds).
function buildModels(objects: InferenceModel[], claims: ReturnType<typeof sortClaims>, published: Set<string>, defaultNamespace: string, issues: Issue[]): ModelDoc[] {
  const entries: Array<{ created: number; object: string; id: string; order: number; doc: ModelDoc }> = [];
  for (const c of claims) {
    entries.push({ created: c.created, object: c.object, id: c.id, order: c.order, doc: { name: c.model!, pool: c.pool, targets: c.targets } });
  }
  for (const obj of objects) {
    const ns = namespaceOf(obj, defaultNamespace);
    const id = `${ns}/${nameOf(obj)}`;
    const spec = obj.spec ?? {};
    const ref = spec.poolRef ?? undefined;
    if (!ref || typeof ref.name !== "string" || ref.name.length === 0) {
      issues.push({ code: "model_invalid", message: `InferenceModel ${id}: spec.poolRef.name is missing; model skipped` });
      continue;
    }
    if ((ref.group !== undefined && ref.group !== "" && ref.group !== POOL_GROUP) || (ref.kind !== undefined && ref.kind !== "" && ref.kind !== "InferencePool")) {
      issues.push({ code: "model_invalid", message: `InferenceModel ${id}: spec.poolRef names ${ref.group ?? ""}/${ref.kind ?? ""}, not an ${POOL_GROUP} InferencePool; model skipped` });
      continue;
    }
    const pool = `${ns}/${ref.name}`;
    if (!published.has(pool)) continue; // a pool this sidecar does not serve (or not yet seen)
    if (typeof spec.modelName !== "string" || spec.modelName.length === 0 || spec.modelName.length > MAX_NAME) {
      issues.push({ code: "model_invalid", message: `InferenceModel ${id}: spec.modelName must be a non-empty string; model skipped` });
      continue;
    }
    const doc: ModelDoc = { name: spec.modelName, pool };
    const crit = spec.criticality;
    if (crit !== undefined && crit !== null) {
      if ((CRITICALITIES as readonly string[]).includes(crit)) doc.criticality = crit as Criticality;
      else issues.push({ code: "model_invalid", message: `InferenceModel ${id}: criticality ${JSON.stringify(crit)} is not Critical, Standard or Sheddable; left out (Standard)` });
    }
    if (Array.isArray(spec.targetModels)) {
      const targets: TargetDoc[] = [];
      for (const t of spec.targetModels.slice(0, MAX_LIST)) {
        if (!t || typeof t.name !== "string" || !validName(t.name)) {
          issues.push({ code: "model_invalid", message: `InferenceModel ${id}: a targetModels entry has no valid name; entry skipped` });
          continue;
        }
        const target: TargetDoc = { name: t.name };
        if (typeof t.weight === "number" && Number.isFinite(t.weight)) target.weight = Math.min(1e6, Math.max(0, t.weight));
        targets.push(target);
      }
      if (targets.length > 0) doc.targets = targets;
    }
    entries.push({ created: timeOf(obj.metadata?.creationTimestamp), object: `InferenceModel ${id}`, id: `InferenceModel ${id}`, order: 0, doc });
  }
  entries.sort(byAge);
  const seen = new Map<string, string>();
  for (const e of entries) {
    const k = `${e.doc.pool}\u0000${e.doc.name}`;
    const first = seen.get(k);
    if (first !== undefined) {
      if (e.id.startsWith("InferenceModel ") && first.startsWith("InferenceModel ")) {
        issues.push({ code: "model_invalid", message: `${e.id}: modelName ${JSON.stringify(e.doc.name)} is already served in pool ${e.doc.pool} by the older ${first.slice("InferenceModel ".length)}, which wins` });
      } else {
        issues.push({ code: "model_conflict", message: `${e.id}: model ${JSON.stringify(e.doc.name)} in pool ${e.doc.pool} is already claimed by the older ${first}, which wins` });
      }
    } else {
      seen.set(k, e.id);
    }
  }
  return entries.map((e) => e.doc);
}

// Sets version, generated_at_ms and every metrics_age_ms, and serializes.
export function renderDocument(built: Built, version: number, generatedAtMs: number): string {
  built.pools.forEach((p, i) => {
    const ats = built.metricsAt[i];
    p.endpoints.forEach((e, j) => {
      e.metrics_age_ms = Math.min(MAX_AGE_MS, Math.max(0, Math.round(generatedAtMs - ats[j])));
    });
  });
  const doc: StateDocument = { version, generated_at_ms: generatedAtMs, pools: built.pools, models: built.models };
  if (built.objectives.length > 0) doc.objectives = built.objectives;
  return JSON.stringify(doc);
}

function validName(s: string): boolean {
  return s.length > 0 && s.length <= MAX_NAME;
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
