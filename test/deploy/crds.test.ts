// deploy/crds: the CRDs are valid structural schemas that keep the upstream v1alpha2 API's facts,
// every example manifest under deploy/examples validates against them, and invalid objects are
// rejected the way the API server would reject them. The GIE v1 CRDs (InferencePool v1,
// InferenceObjective, InferenceModelRewrite) have their own facts and cases in crds-v1.test.ts.

import { test } from "node:test";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { crdIn, crdKey, loadCrds, schemaAt, rel, repoPath, yamlFile, yamlFilesUnder, type CrdVersion } from "./files.ts";
import { CEL_RULES, formatsUsed, structuralProblems, validatorFor } from "./k8s-schema.ts";
import { parseManifests } from "../../sidecar/k8s/manifests.ts";
import { parsePool } from "../../sidecar/k8s/pool-spec.ts";

const crds = loadCrds();
const POOL = "inference.networking.x-k8s.io/v1alpha2/InferencePool";
const MODEL = "inference.networking.x-k8s.io/v1alpha2/InferenceModel";
const POLICY = "inferenceextension.alibabacloud.com/v1alpha1/InferenceTrafficPolicy";
const POOL_V1 = "inference.networking.k8s.io/v1/InferencePool";
const OBJECTIVE = "inference.networking.x-k8s.io/v1alpha2/InferenceObjective";
const REWRITE = "inference.networking.x-k8s.io/v1alpha2/InferenceModelRewrite";

const crd = (key: string): CrdVersion => crdIn(crds, key);
const at = schemaAt;

function errors(key: string, obj: any, old?: any): string[] {
  return crd(key).validator.validate(structuredClone(obj), old === undefined ? undefined : structuredClone(old));
}

test("the six CRDs are there, one served and stored version each, named plural.group", () => {
  assert.deepEqual([...crds.keys()].sort(), [POLICY, MODEL, POOL, POOL_V1, OBJECTIVE, REWRITE].sort());
  assert.equal(new Set([...crds.values()].map((c) => c.crd.metadata.name)).size, 6, "one CRD per file, no name twice");
  for (const c of crds.values()) {
    assert.equal(c.crd.apiVersion, "apiextensions.k8s.io/v1");
    assert.equal(c.crd.kind, "CustomResourceDefinition");
    assert.equal(c.crd.metadata.name, `${c.crd.spec.names.plural}.${c.group}`);
    assert.equal(c.crd.spec.scope, "Namespaced");
    assert.equal(c.crd.spec.versions.length, 1);
    assert.equal(c.crd.spec.versions[0].served, true);
    assert.equal(c.crd.spec.versions[0].storage, true);
    assert.deepEqual(c.crd.spec.versions[0].subresources, { status: {} });
  }
});

test("schemas are structural, described, with valid defaults and known formats", () => {
  for (const [key, c] of crds) {
    assert.deepEqual(structuralProblems(c.schema), [], key);
    for (const f of formatsUsed(c.schema)) assert.ok(["int32", "int64", "date-time"].includes(f), `${key}: format ${f} is not checked by the test validator`);
  }
});

test("every CEL rule in the CRDs has an evaluator in the test validator", () => {
  const rules: string[] = [];
  const walk = (s: any) => {
    if (s === null || typeof s !== "object") return;
    for (const v of s["x-kubernetes-validations"] ?? []) rules.push(v.rule);
    for (const x of Object.values(s)) walk(x);
  };
  for (const c of crds.values()) walk(c.schema);
  assert.ok(rules.length >= 4);
  for (const r of rules) assert.ok(CEL_RULES[r], `no evaluator for ${r}`);
});

test("InferencePool keeps the upstream v1alpha2 facts", () => {
  const s = crd(POOL).schema;
  assert.deepEqual(at(s, "spec").required.sort(), ["selector", "targetPortNumber"]);
  const port = at(s, "spec.targetPortNumber");
  assert.deepEqual([port.type, port.format, port.minimum, port.maximum], ["integer", "int32", 1, 65535]);
  const sel = at(s, "spec.selector");
  assert.equal(sel.type, "object");
  assert.equal(sel.additionalProperties.maxLength, 63);
  const ext = at(s, "spec.extensionRef");
  assert.deepEqual(ext.required, ["name"]);
  assert.deepEqual(at(s, "spec.extensionRef.failureMode").enum, ["FailOpen", "FailClose"]);
  assert.equal(at(s, "spec.extensionRef.failureMode").default, "FailClose");
  assert.equal(at(s, "spec.extensionRef.kind").default, "Service");
  assert.equal(at(s, "spec.extensionRef.group").default, "");
  assert.equal(at(s, "spec.extensionRef.portNumber").maximum, 65535);
  assert.equal(at(s, "status.parent").maxItems, 32);
  assert.deepEqual(at(s, "status.parent.[]").required, ["parentRef"]);
  assert.equal(at(s, "status.parent.[].parentRef.group").default, "gateway.networking.k8s.io");
  assert.equal(at(s, "status.parent.[].parentRef.kind").default, "Gateway");
  const conds = at(s, "status.parent.[].conditions");
  assert.equal(conds.maxItems, 8);
  assert.equal(conds["x-kubernetes-list-type"], "map");
  assert.deepEqual(conds["x-kubernetes-list-map-keys"], ["type"]);
  assert.equal(conds.default[0].type, "Accepted");
  assert.deepEqual(at(s, "status.parent.[].conditions.[].status").enum, ["True", "False", "Unknown"]);
});

test("InferenceModel keeps the upstream v1alpha2 facts", () => {
  const c = crd(MODEL);
  const s = c.schema;
  assert.deepEqual(at(s, "spec").required.sort(), ["modelName", "poolRef"]);
  assert.equal(at(s, "spec.modelName").maxLength, 256);
  assert.deepEqual(at(s, "spec.criticality").enum, ["Critical", "Standard", "Sheddable"]);
  assert.equal(at(s, "spec.criticality").default, undefined, "absent criticality must stay absent (read as Standard)");
  assert.equal(at(s, "spec.poolRef.group").default, "inference.networking.x-k8s.io");
  assert.equal(at(s, "spec.poolRef.kind").default, "InferencePool");
  assert.equal(at(s, "spec.targetModels").maxItems, 10);
  const w = at(s, "spec.targetModels.[].weight");
  assert.deepEqual([w.minimum, w.maximum, w.format], [1, 1000000, "int32"]);
  assert.equal(at(s, "status.conditions").default[0].type, "Ready");
  const cols = c.crd.spec.versions[0].additionalPrinterColumns.map((x: any) => x.jsonPath);
  assert.deepEqual(cols, [".spec.modelName", ".spec.poolRef.name", ".spec.criticality", ".metadata.creationTimestamp"]);
});

test("InferenceTrafficPolicy covers the fields of the P/D examples", () => {
  const s = crd(POLICY).schema;
  assert.deepEqual(at(s, "spec").required, ["poolRef"]);
  assert.deepEqual(at(s, "spec.modelServerRuntime").enum, ["vllm", "sglang"]);
  for (const p of ["spec.poolRef.name", "spec.profile.pd.pdRoleLabelName", "spec.profile.pd.kvTransfer.bootstrapPort", "spec.profile.pd.trafficPolicy.prefixCache.mode", "spec.profile.pd.prefillPolicyRef", "spec.profile.pd.decodePolicyRef"]) {
    at(s, p);
  }
});

const EXAMPLES = yamlFilesUnder(repoPath("deploy/examples"));

test("every InferencePool / InferenceModel / InferenceTrafficPolicy under deploy/examples validates", () => {
  const counts: Record<string, number> = {};
  for (const file of EXAMPLES) {
    for (const obj of yamlFile(file)) {
      if (!crds.has(crdKey(obj))) continue;
      counts[obj.kind] = (counts[obj.kind] ?? 0) + 1;
      assert.deepEqual(errors(crdKey(obj), obj), [], `${rel(file)} ${obj.kind}/${obj.metadata?.name}`);
    }
  }
  // deploy/examples/inference-pool.yaml plus the twelve seed examples.
  assert.ok((counts.InferencePool ?? 0) >= 13, JSON.stringify(counts));
  assert.ok((counts.InferenceModel ?? 0) >= 10, JSON.stringify(counts));
  assert.ok((counts.InferenceTrafficPolicy ?? 0) >= 2, JSON.stringify(counts));
});

test("the seed examples mean to the sidecar what their file names say", () => {
  const seeds = yamlFilesUnder(repoPath("deploy/examples/seeds"));
  assert.equal(seeds.length, 12);
  for (const file of seeds) {
    const name = rel(file).split("/").pop()!;
    const parsed = parseManifests(readFileSync(file, "utf8"), "default", name);
    assert.deepEqual(parsed.errors, [], name);
    const pools = parsed.objects.filter((o) => o.object.kind === "InferencePool").map((o) => o.object) as any[];
    const policies = parsed.objects.filter((o) => o.object.kind === "InferenceTrafficPolicy").map((o) => o.object) as any[];
    assert.equal(pools.length, 1, name);
    const { spec, issues } = parsePool(pools[0], "default", policies);
    assert.deepEqual(issues, [], name);
    assert.equal(spec.port, 8000, name);
    if (name.startsWith("prefix-cache-") && !name.includes("prefill-decode")) assert.equal(spec.strategy, "PREFIX_CACHE", name);
    if (name.startsWith("default-") || name.startsWith("quickstart-") || name.startsWith("routing-strategy-default")) assert.equal(spec.strategy, "DEFAULT", name);
    assert.equal(spec.runtime, name.includes("sglang") ? "sglang" : "vllm", name);
    if (name.includes("prefill-decode")) assert.equal(policies.length, 1, name);
  }
});

const pool = {
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferencePool",
  metadata: { name: "p", namespace: "default" },
  spec: { targetPortNumber: 8000, selector: { app: "qwen" }, extensionRef: { name: "picker" } },
};
const model = {
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferenceModel",
  metadata: { name: "m" },
  spec: { modelName: "/model/qwen", criticality: "Standard", poolRef: { name: "p" }, targetModels: [{ name: "a", weight: 90 }, { name: "b", weight: 10 }] },
};
const policy = {
  apiVersion: "inferenceextension.alibabacloud.com/v1alpha1",
  kind: "InferenceTrafficPolicy",
  metadata: { name: "t" },
  spec: { poolRef: { name: "p" }, modelServerRuntime: "sglang", profile: { pd: { pdRoleLabelName: "role", kvTransfer: { bootstrapPort: 34000 }, trafficPolicy: { prefixCache: { mode: "estimate" } }, prefillPolicyRef: "prefixCache" } } },
};

function tweak<T>(obj: T, f: (o: any) => void): T {
  const c = structuredClone(obj);
  f(c);
  return c;
}

test("the baseline objects of the negative cases are valid", () => {
  assert.deepEqual(errors(POOL, pool), []);
  assert.deepEqual(errors(MODEL, model), []);
  assert.deepEqual(errors(POLICY, policy), []);
});

test("defaults are applied as the API server applies them", () => {
  const p = structuredClone(pool);
  assert.deepEqual(crd(POOL).validator.validate(p), []);
  assert.equal((p.spec.extensionRef as any).failureMode, "FailClose");
  assert.equal((p.spec.extensionRef as any).kind, "Service");
  assert.equal((p.spec.extensionRef as any).group, "");
  assert.equal((p as any).status.parent[0].conditions[0].reason, "Pending");
  const m = tweak(model, (o) => delete o.spec.criticality);
  assert.deepEqual(crd(MODEL).validator.validate(m), []);
  assert.equal((m.spec.poolRef as any).kind, "InferencePool");
  assert.equal((m.spec.poolRef as any).group, "inference.networking.x-k8s.io");
  assert.equal((m.spec as any).criticality, undefined);
  assert.equal((m as any).status, undefined, "no status default on InferenceModel");
  const withStatus = tweak(model, (o) => (o.status = {}));
  assert.deepEqual(crd(MODEL).validator.validate(withStatus), []);
  assert.equal((withStatus as any).status.conditions[0].type, "Ready");
});

const rejected: Array<[string, string, any, RegExp]> = [
  ["pool without targetPortNumber", POOL, tweak(pool, (o) => delete o.spec.targetPortNumber), /required property 'targetPortNumber'/],
  ["pool port 0", POOL, tweak(pool, (o) => (o.spec.targetPortNumber = 0)), /targetPortNumber: must be >= 1/],
  ["pool port 70000", POOL, tweak(pool, (o) => (o.spec.targetPortNumber = 70000)), /must be <= 65535/],
  ["pool port as a string", POOL, tweak(pool, (o) => (o.spec.targetPortNumber = "8000")), /must be integer/],
  ["misspelt field", POOL, tweak(pool, (o) => (o.spec.targetPortNumbr = 8000)), /unknown field "targetPortNumbr"/],
  ["selector value with a space", POOL, tweak(pool, (o) => (o.spec.selector.app = "q wen")), /selector\/app: must match pattern/],
  ["unknown failureMode", POOL, tweak(pool, (o) => (o.spec.extensionRef.failureMode = "FailSometimes")), /allowed values/],
  ["extensionRef without name", POOL, tweak(pool, (o) => delete o.spec.extensionRef.name), /required property 'name'/],
  ["pool name with capitals", POOL, tweak(pool, (o) => (o.metadata.name = "Pool")), /not a DNS subdomain/],
  ["duplicate condition types", POOL, tweak(pool, (o) => (o.status = { parent: [{ parentRef: { name: "gw" }, conditions: [cond("Accepted"), cond("Accepted")] }] })), /duplicate entries/],
  ["condition with a bad timestamp", POOL, tweak(pool, (o) => (o.status = { parent: [{ parentRef: { name: "gw" }, conditions: [{ ...cond("Accepted"), lastTransitionTime: "yesterday" }] }] })), /must match format "date-time"/],
  ["unknown criticality", MODEL, tweak(model, (o) => (o.spec.criticality = "Important")), /allowed values/],
  ["model without poolRef", MODEL, tweak(model, (o) => delete o.spec.poolRef), /required property 'poolRef'/],
  ["weights on some targets only", MODEL, tweak(model, (o) => delete o.spec.targetModels[1].weight), /Weights should be set for all models, or none/],
  ["weight 0", MODEL, tweak(model, (o) => (o.spec.targetModels[0].weight = 0)), /must be >= 1/],
  ["eleven target models", MODEL, tweak(model, (o) => (o.spec.targetModels = Array.from({ length: 11 }, (_, i) => ({ name: `m${i}` })))), /must NOT have more than 10 items/],
  ["model name over 256 characters", MODEL, tweak(model, (o) => (o.spec.modelName = "x".repeat(257))), /must NOT have more than 256 characters/],
  ["unknown runtime", POLICY, tweak(policy, (o) => (o.spec.modelServerRuntime = "trtllm")), /allowed values/],
  ["bootstrap port 70000", POLICY, tweak(policy, (o) => (o.spec.profile.pd.kvTransfer.bootstrapPort = 70000)), /must be <= 65535/],
  ["policy ref without the policy", POLICY, tweak(policy, (o) => delete o.spec.profile.pd.trafficPolicy), /prefillPolicyRef must name a policy declared in trafficPolicy/],
  ["decode ref to an unknown policy", POLICY, tweak(policy, (o) => (o.spec.profile.pd.decodePolicyRef = "roundRobin")), /allowed values/],
  ["unknown prefix-cache mode", POLICY, tweak(policy, (o) => (o.spec.profile.pd.trafficPolicy.prefixCache.mode = "exact")), /allowed values/],
  ["pd without role label", POLICY, tweak(policy, (o) => delete o.spec.profile.pd.pdRoleLabelName), /required property 'pdRoleLabelName'/],
];

function cond(type: string) {
  return { type, status: "True", reason: "Ok", message: "", lastTransitionTime: "2025-01-01T00:00:00Z" };
}

for (const [what, key, obj, expected] of rejected) {
  test(`rejected: ${what}`, () => {
    const errs = errors(key, obj);
    assert.ok(errs.some((e) => expected.test(e)), `expected ${expected} in ${JSON.stringify(errs)}`);
  });
}

test("modelName is immutable on update; other fields may change", () => {
  const renamed = tweak(model, (o) => (o.spec.modelName = "/model/other"));
  assert.ok(errors(MODEL, renamed, model).some((e) => /modelName is immutable/.test(e)));
  assert.deepEqual(errors(MODEL, renamed), [], "on create the transition rule does not apply");
  const reweighted = tweak(model, (o) => (o.spec.targetModels[0].weight = 50));
  assert.deepEqual(errors(MODEL, reweighted, model), []);
});

test("the validator's Kubernetes extensions: int-or-string, list-type set, preserve-unknown-fields", () => {
  const v = validatorFor({
    type: "object",
    properties: {
      metadata: { type: "object" },
      port: { "x-kubernetes-int-or-string": true },
      tags: { type: "array", "x-kubernetes-list-type": "set", items: { type: "string" } },
      free: { type: "object", "x-kubernetes-preserve-unknown-fields": true, properties: { a: { type: "string" } } },
    },
  });
  const meta = { name: "x" };
  assert.deepEqual(v.validate({ metadata: meta, port: 8080 }), []);
  assert.deepEqual(v.validate({ metadata: meta, port: "http" }), []);
  assert.ok(v.validate({ metadata: meta, port: true }).some((e) => /integer or a string/.test(e)));
  assert.ok(v.validate({ metadata: meta, port: 1.5 }).some((e) => /integer or a string/.test(e)));
  assert.ok(v.validate({ metadata: meta, tags: ["a", "a"] }).some((e) => /duplicate entries in a set/.test(e)));
  assert.deepEqual(v.validate({ metadata: meta, free: { a: "x", anything: 1 } }), []);
  assert.ok(v.validate({ metadata: meta, other: 1 }).some((e) => /unknown field "other"/.test(e)));
  assert.throws(() => validatorFor({ type: "object", properties: { x: { type: "string", format: "no-such-format" } } }), /unknown format/);
  // OpenAPI v3.0 spellings: boolean exclusive bounds, nullable.
  const oas = validatorFor({ type: "object", properties: { metadata: { type: "object" }, n: { type: "integer", minimum: 0, exclusiveMinimum: true, maximum: 10 }, s: { type: "string", nullable: true } } });
  assert.deepEqual(oas.validate({ metadata: meta, n: 10, s: null }), []);
  assert.ok(oas.validate({ metadata: meta, n: 0 }).some((e) => /must be > 0/.test(e)));
  const unknownRule = validatorFor({ type: "object", properties: { metadata: { type: "object" }, a: { type: "string", "x-kubernetes-validations": [{ rule: "self.size() < 3" }] } } });
  assert.ok(unknownRule.validate({ metadata: meta, a: "abc" }).some((e) => /no evaluator/.test(e)));
});
