// The GA API's objects on the state document: v1 pools (ports, selector), InferenceObjective
// priorities as bands, InferenceModelRewrite rules as models and default targets, and the rules
// for objects that claim the same thing.

import { test } from "node:test";
import assert from "node:assert/strict";
import { buildDocument, type BuildInput, type EndpointInput } from "../../sidecar/state/document.ts";
import { parsePool, parsePoolV1, type PoolSpec } from "../../sidecar/k8s/pool-spec.ts";
import { criticalityOf } from "../../sidecar/state/objectives.ts";
import type { InferenceModel, InferenceModelRewrite, InferenceObjective, InferencePoolV1 } from "../../sidecar/k8s/types.ts";
import { modelObj, objectiveObj, poolObj, poolV1Obj, rewriteObj, type RewriteRule } from "./helpers.ts";

const NOW = 1_763_600_000_000;
const POOL = "default/qwen";

function spec(): PoolSpec {
  return parsePoolV1(poolV1Obj("qwen", { app: "qwen" }) as InferencePoolV1, "default").spec;
}

function ep(pod: string, ip: string): EndpointInput {
  return { pod, ip, k8sReady: true, firstSeenMs: NOW - 10_000 };
}

function build(over: Partial<BuildInput>) {
  return buildDocument({ pools: [{ spec: spec(), endpoints: [ep("qwen-0", "10.0.0.1")] }], models: [], defaultNamespace: "default", metricsStaleMs: 1000, nowMs: NOW, ...over });
}

const objective = (name: string, priority?: number, pool = "qwen") => objectiveObj(name, pool, priority) as InferenceObjective;
const rewrite = (name: string, rules: RewriteRule[], created: string, pool = "qwen") => rewriteObj(name, pool, rules, { created }) as InferenceModelRewrite;
const exact = (model: string, ...targets: Array<[string, number?]>): RewriteRule => ({ matches: [{ model: { value: model } }], targets: targets.map(([m, w]) => (w === undefined ? { modelRewrite: m } : { modelRewrite: m, weight: w })) });
const generic = (...targets: Array<[string, number?]>): RewriteRule => ({ targets: targets.map(([m, w]) => (w === undefined ? { modelRewrite: m } : { modelRewrite: m, weight: w })) });

test("v1 pool: matchLabels select, the first target port serves; a v1alpha2 pool reads as before", () => {
  const s = spec();
  assert.deepEqual([s.key, s.port, s.ports, s.api, s.selector], [POOL, 8000, [8000], "v1", { app: "qwen" }]);
  const old = parsePool(poolObj("qwen", { app: "qwen" }, { port: 8001 }) as never, "default").spec;
  assert.deepEqual([old.port, old.ports, old.api], [8001, [8001], "v1alpha2"]);
});

test("v1 pool: several target ports are all kept; bad ports leave the pool without endpoints and say why", () => {
  assert.deepEqual(parsePoolV1(poolV1Obj("p", { a: "b" }, { ports: [8000, 8001, 8002] }) as InferencePoolV1, "default").spec.ports, [8000, 8001, 8002]);
  const cases: Array<[unknown, RegExp]> = [
    [[], /targetPorts is missing or empty/],
    [[{ number: 0 }], /targetPorts\[0\]\.number must be a port number/],
    [[{ number: 8000 }, { number: 8000 }], /port 8000 appears twice/],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => ({ number: 8000 + n })), /more than 8 entries/],
    [[{}], /got undefined/],
  ];
  for (const [ports, msg] of cases) {
    const obj = poolV1Obj("p", { a: "b" }) as InferencePoolV1;
    obj.spec!.targetPorts = ports as never;
    const parsed = parsePoolV1(obj, "default");
    assert.deepEqual(parsed.spec.ports, [], JSON.stringify(ports));
    assert.equal(parsed.spec.port, 0);
    assert.match(parsed.issues.map((i) => i.message).join("\n"), msg);
  }
  const noLabels = poolV1Obj("p", {}) as InferencePoolV1;
  assert.match(parsePoolV1(noLabels, "default").issues[0].message, /selector\.matchLabels is empty/);
  const plainMap = poolV1Obj("p", {}) as InferencePoolV1;
  (plainMap.spec as Record<string, unknown>).selector = { app: "qwen" }; // the v1alpha2 shape is not v1's
  assert.deepEqual(parsePoolV1(plainMap, "default").spec.selector, {});
});

test("v1 pool with several ports: one endpoint per port, named <pod>-rank-<i>", () => {
  const s = parsePoolV1(poolV1Obj("qwen", { app: "qwen" }, { ports: [8000, 8001] }) as InferencePoolV1, "default").spec;
  const b = buildDocument({
    pools: [{ spec: s, endpoints: [{ ...ep("qwen-0-rank-0", "10.0.0.1"), port: 8000 }, { ...ep("qwen-0-rank-1", "10.0.0.1"), port: 8001 }] }],
    models: [], defaultNamespace: "default", metricsStaleMs: 1000, nowMs: NOW,
  });
  assert.deepEqual(b.pools[0].endpoints.map((e) => [e.pod, e.address]), [["qwen-0-rank-0", "10.0.0.1:8000"], ["qwen-0-rank-1", "10.0.0.1:8001"]]);
  assert.deepEqual(b.issues, []);
});

test("objectives: priority > 0 Critical, 0 or unset Standard, < 0 Sheddable; sorted; other pools' left out", () => {
  assert.deepEqual([criticalityOf(1000), criticalityOf(1), criticalityOf(0), criticalityOf(-1)], ["Critical", "Critical", "Standard", "Sheddable"]);
  const b = build({ objectives: [objective("interactive", 100), objective("batch", -10), objective("default"), objective("zero", 0), objective("elsewhere", 5, "other-pool")] });
  assert.deepEqual(b.objectives, [
    { name: "batch", pool: POOL, priority: -10, criticality: "Sheddable" },
    { name: "default", pool: POOL, priority: 0, criticality: "Standard" },
    { name: "interactive", pool: POOL, priority: 100, criticality: "Critical" },
    { name: "zero", pool: POOL, priority: 0, criticality: "Standard" },
  ]);
  assert.deepEqual(b.issues, []);
});

test("objectives that cannot be used are skipped with a warning naming them", () => {
  const noRef = objective("no-ref");
  noRef.spec!.poolRef = null;
  const service = objective("svc");
  service.spec!.poolRef = { kind: "Service", name: "qwen" };
  const fraction = objective("fraction", 1.5);
  const huge = objective("huge", 2 ** 31);
  const b = build({ objectives: [noRef, service, fraction, huge, objective("ok", 1)] });
  assert.deepEqual(b.objectives.map((o) => o.name), ["ok"]);
  const messages = b.issues.map((i) => `${i.code}: ${i.message}`);
  assert.deepEqual(messages, [
    "objective_invalid: InferenceObjective default/no-ref: spec.poolRef.name is missing; objective skipped",
    'objective_invalid: InferenceObjective default/svc: spec.poolRef.kind "Service" is not InferencePool; objective skipped',
    "objective_invalid: InferenceObjective default/fraction: spec.priority 1.5 is not a 32-bit integer; objective skipped",
    "objective_invalid: InferenceObjective default/huge: spec.priority 2147483648 is not a 32-bit integer; objective skipped",
  ]);
});

test("rewrites: a rule with matches becomes a model with targets; a rule without matches the pool's default targets", () => {
  const b = build({ rewrites: [rewrite("canary", [exact("qwen", ["qwen-v1", 90], ["qwen-v2", 10]), generic(["qwen-v1"])], "2025-11-20T10:00:00Z")] });
  assert.deepEqual(b.models, [{ name: "qwen", pool: POOL, targets: [{ name: "qwen-v1", weight: 90 }, { name: "qwen-v2", weight: 10 }] }]);
  assert.deepEqual(b.pools[0].default_targets, [{ name: "qwen-v1" }]);
  assert.deepEqual(b.issues, []);
});

test("rewrite precedence: the oldest object wins an exact match, then the first rule; the oldest rule without matches sets the default", () => {
  const older = rewrite("older", [exact("m", ["from-older-rule-0"]), exact("m", ["from-older-rule-1"]), generic(["default-older"])], "2025-11-20T10:00:00Z");
  const newer = rewrite("newer", [exact("m", ["from-newer"]), generic(["default-newer"])], "2025-11-21T10:00:00Z");
  const b = build({ rewrites: [newer, older] });
  // The filter keeps the first entry of a name: the older object's first rule.
  assert.equal(b.models.find((m) => m.name === "m")!.targets![0].name, "from-older-rule-0");
  assert.deepEqual(b.pools[0].default_targets, [{ name: "default-older" }]);
  const conflicts = b.issues.filter((i) => i.code === "model_conflict").map((i) => i.message);
  assert.deepEqual(conflicts, [
    'InferenceModelRewrite default/newer rules[1]: pool default/qwen already has a rule without matches in the older InferenceModelRewrite default/older rules[2], which wins',
    'InferenceModelRewrite default/older rules[1]: model "m" in pool default/qwen is already claimed by the older InferenceModelRewrite default/older rules[0], which wins',
    'InferenceModelRewrite default/newer rules[0]: model "m" in pool default/qwen is already claimed by the older InferenceModelRewrite default/older rules[0], which wins',
  ]);
});

test("an InferenceModel and a rewrite claiming one model: the older object wins, with a warning naming both", () => {
  const model = modelObj("im", "m", "qwen", { criticality: "Critical", created: "2025-11-21T10:00:00Z" }) as InferenceModel;
  const b = build({ models: [model], rewrites: [rewrite("rw", [exact("m", ["m-v2"])], "2025-11-20T10:00:00Z")] });
  assert.deepEqual(b.models[0], { name: "m", pool: POOL, targets: [{ name: "m-v2" }] });
  assert.deepEqual(b.issues.map((i) => [i.code, i.message]), [["model_conflict", 'InferenceModel default/im: model "m" in pool default/qwen is already claimed by the older InferenceModelRewrite default/rw rules[0], which wins']]);
  const b2 = build({ models: [model], rewrites: [rewrite("rw", [exact("m", ["m-v2"])], "2025-11-22T10:00:00Z")] });
  assert.deepEqual(b2.models[0], { name: "m", pool: POOL, criticality: "Critical" });
});

test("rewrite rules, matches and targets that cannot be used are skipped with warnings; mixed weights count unset as 0", () => {
  const b = build({
    rewrites: [rewrite("bad", [
      { matches: [{ model: { type: "RegularExpression", value: "q.*" } }, { model: { value: "kept" } }], targets: [{ modelRewrite: "t" }] },
      { matches: [{ model: { value: "x" } }], targets: [] },
      { matches: [{ model: { value: "y" } }], targets: [{ modelRewrite: "y1", weight: 0 }, { modelRewrite: "" }] },
      exact("z", ["z1", 3], ["z2"]),
    ], "2025-11-20T10:00:00Z")],
  });
  assert.deepEqual(b.models, [{ name: "kept", pool: POOL, targets: [{ name: "t" }] }, { name: "z", pool: POOL, targets: [{ name: "z1", weight: 3 }, { name: "z2", weight: 0 }] }]);
  assert.deepEqual(b.issues.map((i) => `${i.code}: ${i.message}`), [
    'rewrite_invalid: InferenceModelRewrite default/bad rules[0].matches[0]: match type "RegularExpression" is not Exact; match skipped',
    "rewrite_invalid: InferenceModelRewrite default/bad rules[1]: targets is missing or empty; rule skipped",
    "rewrite_invalid: InferenceModelRewrite default/bad rules[2].targets[0]: weight 0 is not an integer from 1 to 1000000; target skipped",
    "rewrite_invalid: InferenceModelRewrite default/bad rules[2].targets[1]: modelRewrite must be a non-empty string; target skipped",
    "rewrite_invalid: InferenceModelRewrite default/bad rules[2]: no usable target; rule skipped",
    "rewrite_invalid: InferenceModelRewrite default/bad rules[3]: some targets have a weight and some do not; those without one get weight 0",
  ]);
});

test("without objectives or rewrites the document has neither field (the v1alpha2 document is unchanged)", () => {
  const b = build({});
  assert.deepEqual(b.objectives, []);
  assert.equal("default_targets" in b.pools[0], false);
});
