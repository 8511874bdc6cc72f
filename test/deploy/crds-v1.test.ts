// deploy/crds, the Gateway API Inference Extension's GA-era resources: InferencePool
// inference.networking.k8s.io/v1, InferenceObjective and InferenceModelRewrite
// inference.networking.x-k8s.io/v1alpha2. The schemas keep the upstream facts, valid objects
// validate (with the server's defaults), and malformed ones are rejected with the field errors the
// API server gives (k8s-schema.ts apiErrors: the apiextensions-apiserver's wording, not checked
// against a running server here).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { crdIn, crdKey, loadCrds, schemaAt, rel, repoPath, yamlDocs, yamlFile, yamlFilesUnder, type CrdVersion } from "./files.ts";
import { invalidMessage } from "./k8s-schema.ts";
import { CUSTOM_RESOURCES, apiVersionOf } from "../../sidecar/k8s/resources.ts";

const crds = loadCrds();
const POOL_V1 = "inference.networking.k8s.io/v1/InferencePool";
const POOL_V1ALPHA2 = "inference.networking.x-k8s.io/v1alpha2/InferencePool";
const OBJECTIVE = "inference.networking.x-k8s.io/v1alpha2/InferenceObjective";
const REWRITE = "inference.networking.x-k8s.io/v1alpha2/InferenceModelRewrite";

const crd = (key: string): CrdVersion => crdIn(crds, key);
const at = schemaAt;

/** The API server's field errors for obj, as a create (or, with old, an update). */
function apiErrors(key: string, obj: any, old?: any): string[] {
  return crd(key).validator.apiErrors(structuredClone(obj), old === undefined ? undefined : structuredClone(old));
}

function tweak<T>(obj: T, f: (o: any) => void): T {
  const c = structuredClone(obj);
  f(c);
  return c;
}

const pool = {
  apiVersion: "inference.networking.k8s.io/v1",
  kind: "InferencePool",
  metadata: { name: "qwen-pool", namespace: "default" },
  spec: {
    selector: { matchLabels: { app: "qwen" } },
    targetPorts: [{ number: 8000 }],
    endpointPickerRef: { name: "qwen-epp", port: { number: 9002 } },
  },
};
const objective = {
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferenceObjective",
  metadata: { name: "interactive", namespace: "default" },
  spec: { poolRef: { name: "qwen-pool" }, priority: 10 },
};
const rewrite = {
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferenceModelRewrite",
  metadata: { name: "qwen-canary", namespace: "default" },
  spec: {
    poolRef: { name: "qwen-pool" },
    rules: [
      { matches: [{ model: { value: "qwen" } }], targets: [{ modelRewrite: "qwen-v1", weight: 90 }, { modelRewrite: "qwen-v2", weight: 10 }] },
      { targets: [{ modelRewrite: "qwen-v1" }] },
    ],
  },
};

// --- the CRDs ------------------------------------------------------------------------------------

test("both InferencePool APIs are loaded side by side, keyed by group/version/kind", () => {
  const v1 = crd(POOL_V1);
  const alpha = crd(POOL_V1ALPHA2);
  assert.notEqual(v1.file, alpha.file);
  assert.equal(v1.crd.metadata.name, "inferencepools.inference.networking.k8s.io");
  assert.equal(alpha.crd.metadata.name, "inferencepools.inference.networking.x-k8s.io");
  assert.equal(crds.get(crdKey(pool)), v1, "a v1 object finds the v1 CRD");
  assert.equal(crds.get(crdKey({ apiVersion: "inference.networking.x-k8s.io/v1alpha2", kind: "InferencePool" })), alpha);
  // The v1alpha2 schema rejects a v1 spec and the other way round: the key matters.
  assert.ok(alpha.validator.apiErrors(structuredClone(pool)).length > 0);
  assert.deepEqual(apiErrors(POOL_V1, tweak(pool, (o) => (o.spec.targetPortNumber = 8000))), ['strict decoding error: unknown field "spec.targetPortNumber"']);
});

test("every custom resource the sidecar reads has its CRD in deploy/crds, under the same plural", () => {
  for (const r of CUSTOM_RESOURCES) {
    const c = crd(`${apiVersionOf(r)}/${r.kind}`);
    assert.equal(c.crd.spec.names.plural, r.plural, r.kind);
  }
});

test("InferencePool v1 keeps the upstream facts", () => {
  const c = crd(POOL_V1);
  const s = c.schema;
  assert.deepEqual(c.crd.spec.names.shortNames, ["infpool"]);
  assert.deepEqual(c.crd.spec.versions[0].subresources, { status: {} });
  assert.equal(c.crd.spec.versions[0].additionalPrinterColumns, undefined, "upstream has no printer columns");
  assert.deepEqual(s.required, ["spec"]);
  assert.deepEqual([...at(s, "spec").required].sort(), ["selector", "targetPorts"], "endpointPickerRef optional: wasm-epp is the picker");
  assert.deepEqual(at(s, "spec.selector").required, ["matchLabels"]);
  assert.deepEqual(Object.keys(at(s, "spec.selector").properties), ["matchLabels"], "no matchExpressions");
  const labels = at(s, "spec.selector.matchLabels");
  assert.equal(labels.type, "object");
  assert.deepEqual([labels.additionalProperties.maxLength, labels.additionalProperties.pattern], [63, "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"]);
  const ports = at(s, "spec.targetPorts");
  assert.deepEqual([ports.minItems, ports.maxItems, ports["x-kubernetes-list-type"]], [1, 8, "atomic"]);
  assert.deepEqual(ports["x-kubernetes-validations"], [{ rule: "self.all(p1, self.exists_one(p2, p1.number==p2.number))", message: "port number must be unique" }]);
  assert.deepEqual(at(s, "spec.targetPorts.[]").required, ["number"]);
  const n = at(s, "spec.targetPorts.[].number");
  assert.deepEqual([n.type, n.format, n.minimum, n.maximum], ["integer", "int32", 1, 65535]);
  const ref = at(s, "spec.endpointPickerRef");
  assert.deepEqual(ref.required, ["name"]);
  assert.deepEqual(ref["x-kubernetes-validations"].map((v: any) => v.rule), ["self.kind != 'Service' || has(self.port)"]);
  assert.equal(at(s, "spec.endpointPickerRef.group").default, "");
  assert.equal(at(s, "spec.endpointPickerRef.kind").default, "Service");
  assert.deepEqual(at(s, "spec.endpointPickerRef.port").required, ["number"]);
  assert.equal(at(s, "spec.endpointPickerRef.port.number").maximum, 65535);
  assert.deepEqual(at(s, "spec.endpointPickerRef.failureMode").enum, ["FailOpen", "FailClose"]);
  assert.equal(at(s, "spec.endpointPickerRef.failureMode").default, "FailClose");
  assert.equal(at(s, "spec.endpointPickerRef").properties.portNumber, undefined, "v1 has port.number, not v1alpha2's portNumber");
  const status = at(s, "status");
  assert.equal(status.default, undefined, "GA has no status default (the pre-GA builds had status.parent)");
  assert.deepEqual(Object.keys(status.properties), ["parents"]);
  const parents = at(s, "status.parents");
  assert.deepEqual([parents.maxItems, parents["x-kubernetes-list-type"]], [32, "atomic"]);
  assert.deepEqual(at(s, "status.parents.[]").required, ["parentRef"]);
  assert.deepEqual(at(s, "status.parents.[].parentRef").required, ["name"]);
  assert.equal(at(s, "status.parents.[].parentRef.group").default, "gateway.networking.k8s.io");
  assert.equal(at(s, "status.parents.[].parentRef.kind").default, "Gateway");
  at(s, "status.parents.[].parentRef.namespace");
  at(s, "status.parents.[].controllerName");
  const conds = at(s, "status.parents.[].conditions");
  assert.deepEqual([conds.maxItems, conds["x-kubernetes-list-type"], conds["x-kubernetes-list-map-keys"], conds.default], [8, "map", ["type"], undefined]);
});

test("InferenceObjective keeps the upstream facts, with its printer columns", () => {
  const c = crd(OBJECTIVE);
  const s = c.schema;
  assert.deepEqual(at(s, "spec").required, ["poolRef"]);
  assert.deepEqual(Object.keys(at(s, "spec").properties).sort(), ["poolRef", "priority"]);
  assert.deepEqual(at(s, "spec.poolRef").required, ["name"]);
  assert.equal(at(s, "spec.poolRef.group").default, "inference.networking.k8s.io");
  assert.equal(at(s, "spec.poolRef.kind").default, "InferencePool");
  assert.deepEqual([at(s, "spec.poolRef.name").minLength, at(s, "spec.poolRef.name").maxLength], [1, 253]);
  const p = at(s, "spec.priority");
  assert.deepEqual([p.type, p.format, p.default, p.minimum, p.maximum], ["integer", "int32", undefined, undefined, undefined], "optional, no default, negative allowed");
  assert.equal(at(s, "status.conditions").maxItems, 8);
  const cols = c.crd.spec.versions[0].additionalPrinterColumns.map((x: any) => [x.name, x.jsonPath]);
  assert.deepEqual(cols, [["Inference Pool", ".spec.poolRef.name"], ["Priority", ".spec.priority"], ["Age", ".metadata.creationTimestamp"]]);
});

test("InferenceModelRewrite keeps the upstream facts", () => {
  const c = crd(REWRITE);
  const s = c.schema;
  assert.deepEqual([...at(s, "spec").required].sort(), ["poolRef", "rules"]);
  assert.equal(at(s, "spec.poolRef.group").default, "inference.networking.k8s.io");
  assert.equal(at(s, "spec.rules.[]").required, undefined, "matches and targets are both optional in a rule");
  assert.deepEqual(at(s, "spec.rules.[].matches.[]").required, ["model"]);
  assert.deepEqual(at(s, "spec.rules.[].matches.[].model").required, ["value"]);
  assert.deepEqual(at(s, "spec.rules.[].matches.[].model.type").enum, ["Exact"]);
  assert.equal(at(s, "spec.rules.[].matches.[].model.type").default, "Exact");
  assert.equal(at(s, "spec.rules.[].matches.[].model.value").minLength, 1);
  assert.equal(at(s, "spec.rules.[].targets").minItems, 1);
  assert.deepEqual(at(s, "spec.rules.[].targets.[]").required, ["modelRewrite"]);
  const w = at(s, "spec.rules.[].targets.[].weight");
  assert.deepEqual([w.type, w.format, w.minimum, w.maximum], ["integer", "int32", 1, 1000000]);
  assert.equal(at(s, "status.conditions").default[0].type, "Accepted");
  const cols = c.crd.spec.versions[0].additionalPrinterColumns.map((x: any) => x.name);
  assert.deepEqual(cols, ["Inference Pool", "Age"]);
});

// --- valid objects -------------------------------------------------------------------------------

const valid: Array<[string, string, any]> = [
  ["pool with one port and a picker Service", POOL_V1, pool],
  ["pool without endpointPickerRef", POOL_V1, tweak(pool, (o) => delete o.spec.endpointPickerRef)],
  ["pool with eight ports", POOL_V1, tweak(pool, (o) => (o.spec.targetPorts = [8000, 8001, 8002, 8003, 8004, 8005, 8006, 8007].map((number) => ({ number }))))],
  ["pool naming a picker of another kind without a port", POOL_V1, tweak(pool, (o) => (o.spec.endpointPickerRef = { group: "example.com", kind: "Picker", name: "p" }))],
  ["pool with FailOpen", POOL_V1, tweak(pool, (o) => (o.spec.endpointPickerRef.failureMode = "FailOpen"))],
  ["pool with an empty label value", POOL_V1, tweak(pool, (o) => (o.spec.selector.matchLabels.tier = ""))],
  ["pool with a gateway's status", POOL_V1, tweak(pool, (o) => (o.status = { parents: [{ parentRef: { name: "gw" }, controllerName: "gateway.envoyproxy.io/gatewayclass-controller", conditions: [{ type: "Accepted", status: "True", reason: "Accepted", message: "", lastTransitionTime: "2025-09-18T00:00:00Z" }] }] }))],
  ["objective", OBJECTIVE, objective],
  ["objective without priority", OBJECTIVE, tweak(objective, (o) => delete o.spec.priority)],
  ["objective with a negative priority", OBJECTIVE, tweak(objective, (o) => (o.spec.priority = -2147483648))],
  ["objective naming a v1alpha2 pool", OBJECTIVE, tweak(objective, (o) => (o.spec.poolRef.group = "inference.networking.x-k8s.io"))],
  ["rewrite with an exact and a generic rule", REWRITE, rewrite],
  ["rewrite rule with several matches and no weights", REWRITE, tweak(rewrite, (o) => (o.spec.rules = [{ matches: [{ model: { type: "Exact", value: "a" } }, { model: { value: "b" } }], targets: [{ modelRewrite: "c" }, { modelRewrite: "d" }] }]))],
];

for (const [what, key, obj] of valid) {
  test(`valid: ${what}`, () => {
    assert.deepEqual(apiErrors(key, obj), []);
    assert.deepEqual(crd(key).validator.validate(structuredClone(obj)), []);
  });
}

test("defaults are applied as the API server applies them", () => {
  const p = structuredClone(pool);
  assert.deepEqual(crd(POOL_V1).validator.apiErrors(p), []);
  assert.deepEqual(p.spec.endpointPickerRef, { group: "", kind: "Service", name: "qwen-epp", port: { number: 9002 }, failureMode: "FailClose" });
  assert.equal((p as any).status, undefined, "no status default on the v1 pool");
  const withStatus = tweak(pool, (o) => (o.status = { parents: [{ parentRef: { name: "gw" } }] }));
  assert.deepEqual(crd(POOL_V1).validator.apiErrors(withStatus), []);
  assert.deepEqual((withStatus as any).status.parents[0].parentRef, { group: "gateway.networking.k8s.io", kind: "Gateway", name: "gw" });
  assert.equal((withStatus as any).status.parents[0].conditions, undefined, "no condition default in v1");

  const o = tweak(objective, (x) => delete x.spec.priority);
  assert.deepEqual(crd(OBJECTIVE).validator.apiErrors(o), []);
  assert.deepEqual(o.spec.poolRef, { group: "inference.networking.k8s.io", kind: "InferencePool", name: "qwen-pool" });
  assert.equal((o.spec as any).priority, undefined, "an absent priority stays absent (read as 0)");
  const oStatus = tweak(objective, (x) => (x.status = {}));
  assert.deepEqual(crd(OBJECTIVE).validator.apiErrors(oStatus), []);
  assert.equal((oStatus as any).status.conditions[0].type, "Ready", "upstream's default condition");

  const r = structuredClone(rewrite);
  assert.deepEqual(crd(REWRITE).validator.apiErrors(r), []);
  assert.equal((r.spec.rules[0].matches![0].model as any).type, "Exact");
  assert.equal((r.spec.poolRef as any).kind, "InferencePool");
  assert.equal((r.spec.rules[1].targets[0] as any).weight, undefined, "an absent weight stays absent");
});

// --- rejected objects: the API server's field errors ---------------------------------------------

const PORT_RULE = "port is required when kind is 'Service' or unspecified (defaults to 'Service')";
const ports = (...numbers: number[]) => numbers.map((number) => ({ number }));

const rejected: Array<[string, string, any, string[]]> = [
  ["pool without selector.matchLabels", POOL_V1, tweak(pool, (o) => (o.spec.selector = {})), ["spec.selector.matchLabels: Required value"]],
  ["pool without selector", POOL_V1, tweak(pool, (o) => delete o.spec.selector), ["spec.selector: Required value"]],
  ["pool with a plain-map selector (the v1alpha2 shape)", POOL_V1, tweak(pool, (o) => (o.spec.selector = { app: "qwen" })), ['strict decoding error: unknown field "spec.selector.app"']],
  ["pool with empty matchLabels", POOL_V1, tweak(pool, (o) => (o.spec.selector.matchLabels = {})), ["spec.selector.matchLabels: Invalid value: 0: spec.selector.matchLabels in body should have at least 1 properties"]],
  ["pool label value with a space", POOL_V1, tweak(pool, (o) => (o.spec.selector.matchLabels.app = "q wen")), ["spec.selector.matchLabels.app: Invalid value: \"q wen\": spec.selector.matchLabels.app in body should match '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'"]],
  ["pool without targetPorts", POOL_V1, tweak(pool, (o) => delete o.spec.targetPorts), ["spec.targetPorts: Required value"]],
  ["pool with empty targetPorts", POOL_V1, tweak(pool, (o) => (o.spec.targetPorts = [])), ["spec.targetPorts: Invalid value: 0: spec.targetPorts in body should have at least 1 items"]],
  ["pool with nine ports", POOL_V1, tweak(pool, (o) => (o.spec.targetPorts = ports(8000, 8001, 8002, 8003, 8004, 8005, 8006, 8007, 8008))), ["spec.targetPorts: Too many: 9: must have at most 8 items"]],
  ["pool with a port number twice", POOL_V1, tweak(pool, (o) => (o.spec.targetPorts = ports(8000, 8001, 8000))), ['spec.targetPorts: Invalid value: "array": port number must be unique']],
  ["pool port 0", POOL_V1, tweak(pool, (o) => (o.spec.targetPorts = ports(0))), ["spec.targetPorts[0].number: Invalid value: 0: spec.targetPorts[0].number in body should be greater than or equal to 1"]],
  ["pool port 65536", POOL_V1, tweak(pool, (o) => (o.spec.targetPorts = ports(8000, 65536))), ["spec.targetPorts[1].number: Invalid value: 65536: spec.targetPorts[1].number in body should be less than or equal to 65535"]],
  ["pool port without number", POOL_V1, tweak(pool, (o) => (o.spec.targetPorts = [{}])), ["spec.targetPorts[0].number: Required value"]],
  ["pool port as a string", POOL_V1, tweak(pool, (o) => (o.spec.targetPorts = [{ number: "8000" }])), ['spec.targetPorts[0].number: Invalid value: "string": spec.targetPorts[0].number in body must be of type integer: "string"']],
  ["endpointPickerRef of kind Service without port", POOL_V1, tweak(pool, (o) => (o.spec.endpointPickerRef = { kind: "Service", name: "qwen-epp" })), [`spec.endpointPickerRef: Invalid value: "object": ${PORT_RULE}`]],
  ["endpointPickerRef without kind (defaults to Service) and without port", POOL_V1, tweak(pool, (o) => delete o.spec.endpointPickerRef.port), [`spec.endpointPickerRef: Invalid value: "object": ${PORT_RULE}`]],
  ["endpointPickerRef with v1alpha2's portNumber", POOL_V1, tweak(pool, (o) => (o.spec.endpointPickerRef = { name: "qwen-epp", portNumber: 9002 })), ['strict decoding error: unknown field "spec.endpointPickerRef.portNumber"']],
  ["endpointPickerRef without name", POOL_V1, tweak(pool, (o) => delete o.spec.endpointPickerRef.name), ["spec.endpointPickerRef.name: Required value"]],
  ["unknown failureMode", POOL_V1, tweak(pool, (o) => (o.spec.endpointPickerRef.failureMode = "FailSometimes")), ['spec.endpointPickerRef.failureMode: Unsupported value: "FailSometimes": supported values: "FailOpen", "FailClose"']],
  ["pool with v1alpha2 fields (unknown fields stop the request before validation)", POOL_V1, tweak(pool, (o) => {
    delete o.spec.targetPorts;
    o.spec.targetPortNumber = 8000;
    o.spec.extensionRef = { name: "qwen-epp" };
  }), ['strict decoding error: unknown field "spec.targetPortNumber", unknown field "spec.extensionRef"']],
  ["pool without spec", POOL_V1, tweak(pool, (o) => delete o.spec), ["spec: Required value"]],
  ["pool name with capitals", POOL_V1, tweak(pool, (o) => (o.metadata.name = "Qwen")), ["metadata.name: Invalid value: \"Qwen\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"]],
  ["status from a gateway without parentRef", POOL_V1, tweak(pool, (o) => (o.status = { parents: [{ conditions: [] }] })), ["status.parents[0].parentRef: Required value"]],
  ["status with v1alpha2's parent", POOL_V1, tweak(pool, (o) => (o.status = { parent: [] })), ['strict decoding error: unknown field "status.parent"']],
  ["objective without poolRef.name", OBJECTIVE, tweak(objective, (o) => delete o.spec.poolRef.name), ["spec.poolRef.name: Required value"]],
  ["objective without poolRef", OBJECTIVE, tweak(objective, (o) => delete o.spec.poolRef), ["spec.poolRef: Required value"]],
  ["objective with an empty pool name", OBJECTIVE, tweak(objective, (o) => (o.spec.poolRef.name = "")), ['spec.poolRef.name: Invalid value: "": spec.poolRef.name in body should be at least 1 chars long']],
  ["objective priority as a string", OBJECTIVE, tweak(objective, (o) => (o.spec.priority = "high")), ['spec.priority: Invalid value: "string": spec.priority in body must be of type integer: "string"']],
  ["objective with InferenceModel's criticality", OBJECTIVE, tweak(objective, (o) => (o.spec.criticality = "Critical")), ['strict decoding error: unknown field "spec.criticality"']],
  ["rewrite target without modelRewrite", REWRITE, tweak(rewrite, (o) => delete o.spec.rules[0].targets[0].modelRewrite), ["spec.rules[0].targets[0].modelRewrite: Required value"]],
  ["rewrite weight 0", REWRITE, tweak(rewrite, (o) => (o.spec.rules[0].targets[0].weight = 0)), ["spec.rules[0].targets[0].weight: Invalid value: 0: spec.rules[0].targets[0].weight in body should be greater than or equal to 1"]],
  ["rewrite weight over a million", REWRITE, tweak(rewrite, (o) => (o.spec.rules[0].targets[1].weight = 1000001)), ["spec.rules[0].targets[1].weight: Invalid value: 1000001: spec.rules[0].targets[1].weight in body should be less than or equal to 1000000"]],
  ["rewrite match type other than Exact", REWRITE, tweak(rewrite, (o) => (o.spec.rules[0].matches[0].model.type = "RegularExpression")), ['spec.rules[0].matches[0].model.type: Unsupported value: "RegularExpression": supported values: "Exact"']],
  ["rewrite match with an empty model name", REWRITE, tweak(rewrite, (o) => (o.spec.rules[0].matches[0].model.value = "")), ['spec.rules[0].matches[0].model.value: Invalid value: "": spec.rules[0].matches[0].model.value in body should be at least 1 chars long']],
  ["rewrite match without model", REWRITE, tweak(rewrite, (o) => (o.spec.rules[0].matches = [{}])), ["spec.rules[0].matches[0].model: Required value"]],
  ["rewrite rule with an empty targets list", REWRITE, tweak(rewrite, (o) => (o.spec.rules[1].targets = [])), ["spec.rules[1].targets: Invalid value: 0: spec.rules[1].targets in body should have at least 1 items"]],
  ["rewrite without rules", REWRITE, tweak(rewrite, (o) => delete o.spec.rules), ["spec.rules: Required value"]],
  ["rewrite with the proposal's split instead of targets", REWRITE, tweak(rewrite, (o) => (o.spec.rules = [{ split: [{ modelRewrite: "x" }] }])), ['strict decoding error: unknown field "spec.rules[0].split"']],
];

for (const [what, key, obj, expected] of rejected) {
  test(`rejected: ${what}`, () => {
    // The server lists several errors in no fixed order (Go map iteration): compare as sets.
    assert.deepEqual(apiErrors(key, obj).sort(), [...expected].sort());
    assert.ok(crd(key).validator.validate(structuredClone(obj)).length >= 1, "rejected in the validator's own wording too");
  });
}

test("kubectl's message for a rejected pool (several errors: in the server's order, which may differ)", () => {
  const dup = tweak(pool, (o) => (o.spec.targetPorts = ports(8000, 8000)));
  assert.equal(invalidMessage(dup, apiErrors(POOL_V1, dup)), 'The InferencePool "qwen-pool" is invalid: spec.targetPorts: Invalid value: "array": port number must be unique');
  const two = tweak(pool, (o) => {
    o.spec.targetPorts = [];
    o.spec.endpointPickerRef.failureMode = "Open";
  });
  assert.equal(
    invalidMessage(two, apiErrors(POOL_V1, two)),
    'The InferencePool "qwen-pool" is invalid: [spec.targetPorts: Invalid value: 0: spec.targetPorts in body should have at least 1 items, spec.endpointPickerRef.failureMode: Unsupported value: "Open": supported values: "FailOpen", "FailClose"]',
  );
});

// --- example manifests ---------------------------------------------------------------------------

test("every GIE v1-era object under deploy/examples has its CRD and validates", (t) => {
  const counts: Record<string, number> = {};
  for (const file of yamlFilesUnder(repoPath("deploy/examples"))) {
    for (const obj of yamlFile(file)) {
      const v1Era = String(obj.apiVersion).startsWith("inference.networking.k8s.io/") || ["InferenceObjective", "InferenceModelRewrite"].includes(obj.kind);
      if (!v1Era) continue;
      const where = `${rel(file)} ${obj.kind}/${obj.metadata?.name}`;
      assert.ok(crds.has(crdKey(obj)), `${where}: no CRD for ${crdKey(obj)}`);
      assert.deepEqual(apiErrors(crdKey(obj), obj), [], where);
      counts[crdKey(obj)] = (counts[crdKey(obj)] ?? 0) + 1;
    }
  }
  t.diagnostic(`validated: ${JSON.stringify(counts)}`);
});

test("the custom resources in docs/kubernetes.md's YAML blocks validate against deploy/crds", () => {
  const text = readFileSync(repoPath("docs/kubernetes.md"), "utf8");
  const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
  const seen: string[] = [];
  for (const block of blocks) {
    for (const obj of yamlDocs(block, "docs/kubernetes.md")) {
      if (!crds.has(crdKey(obj))) continue;
      assert.deepEqual(apiErrors(crdKey(obj), obj), [], `docs/kubernetes.md ${obj.kind}/${obj.metadata?.name}`);
      seen.push(crdKey(obj));
    }
  }
  assert.deepEqual([...new Set(seen)].sort(), [POOL_V1, OBJECTIVE, REWRITE].sort(), "the v1 section's pool, objective and rewrite");
});
