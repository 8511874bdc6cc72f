// Prefill/decode disaggregation: reading an InferenceTrafficPolicy's profile.pd for the pool it
// names (the seeds' two P/D manifests, references, defaults, bad input), and Pod roles.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseManifests } from "../../sidecar/k8s/manifests.ts";
import { isLabelKey, podRole } from "../../sidecar/k8s/pd.ts";
import { parsePool } from "../../sidecar/k8s/pool-spec.ts";
import type { InferencePool, InferenceTrafficPolicy } from "../../sidecar/k8s/types.ts";
import { ROOT } from "./process.ts";

const RBG = "rolebasedgroup.workloads.x-k8s.io/role";

function seed(name: string): { pool: InferencePool; policy: InferenceTrafficPolicy } {
  const text = readFileSync(join(ROOT, "deploy/examples/seeds", name), "utf8");
  const parsed = parseManifests(text, "default", name);
  assert.deepEqual(parsed.errors, []);
  const pool = parsed.objects.find((o) => o.resource.kind === "InferencePool")!.object as InferencePool;
  const policy = parsed.objects.find((o) => o.resource.kind === "InferenceTrafficPolicy")!.object as InferenceTrafficPolicy;
  return { pool, policy };
}

const POOL: InferencePool = {
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferencePool",
  metadata: { name: "qwen-inference-pool", namespace: "default" },
  spec: { targetPortNumber: 8000, selector: { "alibabacloud.com/inference_backend": "sglang" } },
};

function policy(pd: unknown, over: { name?: string; namespace?: string; pool?: string; runtime?: string | null; created?: string } = {}): InferenceTrafficPolicy {
  return {
    apiVersion: "inferenceextension.alibabacloud.com/v1alpha1",
    kind: "InferenceTrafficPolicy",
    metadata: { name: over.name ?? "inference-policy", namespace: over.namespace ?? "default", ...(over.created ? { creationTimestamp: over.created } : {}) },
    spec: { poolRef: { name: over.pool ?? "qwen-inference-pool" }, ...(over.runtime === null ? {} : { modelServerRuntime: over.runtime ?? "sglang" }), profile: { pd } },
  };
}

function parse(...policies: InferenceTrafficPolicy[]) {
  return parsePool(POOL, "default", policies);
}

const codes = (issues: Array<{ code: string }>) => issues.map((i) => i.code);

test("seed default-sglang-prefill-decode: roles by the RBG label, bootstrap port 34000, least load on both sides", () => {
  const { pool, policy } = seed("default-sglang-prefill-decode.yaml");
  const { spec, issues } = parsePool(pool, "default", [policy]);
  assert.deepEqual(issues, []);
  assert.equal(spec.runtime, "sglang");
  assert.equal(spec.pdBlocked, undefined);
  assert.deepEqual(spec.pd, { policy: "default/inference-policy", roleLabel: RBG, bootstrapPort: 34000, prefill: { strategy: "DEFAULT" }, decode: { strategy: "DEFAULT" } });
});

test("seed prefix-cache-sglang-prefill-decode: prefixCache (estimate) on both sides", () => {
  const { pool, policy } = seed("prefix-cache-sglang-prefill-decode.yaml");
  const { spec, issues } = parsePool(pool, "default", [policy]);
  assert.deepEqual(issues, []);
  assert.deepEqual(spec.pd, { policy: "default/inference-policy", roleLabel: RBG, bootstrapPort: 34000, prefill: { strategy: "PREFIX_CACHE" }, decode: { strategy: "PREFIX_CACHE" } });
  // The pool-level strategy is the annotation's (none here), independent of the roles'.
  assert.equal(spec.strategy, "DEFAULT");
});

test("defaults: bootstrap port 8998 without kvTransfer; a role without a reference is least load", () => {
  const { spec, issues } = parse(policy({ pdRoleLabelName: RBG, trafficPolicy: { prefixCache: { mode: "estimate" } }, prefillPolicyRef: "prefixCache" }));
  assert.deepEqual(issues, []);
  assert.equal(spec.pd!.bootstrapPort, 8998);
  assert.equal(spec.pd!.prefill.strategy, "PREFIX_CACHE");
  assert.equal(spec.pd!.decode.strategy, "DEFAULT");
  // kvTransfer without bootstrapPort, null members, an empty reference.
  const b = parse(policy({ pdRoleLabelName: ` ${RBG} `, kvTransfer: {}, trafficPolicy: null, prefillPolicyRef: "", decodePolicyRef: null }));
  assert.deepEqual(b.issues, []);
  assert.deepEqual(b.spec.pd, { policy: "default/inference-policy", roleLabel: RBG, bootstrapPort: 8998, prefill: { strategy: "DEFAULT" }, decode: { strategy: "DEFAULT" } });
});

test("prefixCache: mode absent or in any case means estimate; an entry holding prefixCache counts too", () => {
  for (const tp of [{ prefixCache: {} }, { prefixCache: null }, { prefixCache: { mode: " Estimate " } }]) {
    const { spec, issues } = parse(policy({ pdRoleLabelName: RBG, trafficPolicy: tp, prefillPolicyRef: "prefixCache", decodePolicyRef: "prefixCache" }));
    assert.deepEqual(issues, [], JSON.stringify(tp));
    assert.equal(spec.pd!.prefill.strategy, "PREFIX_CACHE");
  }
  const { spec, issues } = parse(policy({ pdRoleLabelName: RBG, trafficPolicy: { cached: { prefixCache: { mode: "estimate" } } }, decodePolicyRef: "cached" }));
  assert.deepEqual(issues, []);
  assert.equal(spec.pd!.decode.strategy, "PREFIX_CACHE");
  assert.equal(spec.pd!.prefill.strategy, "DEFAULT");
});

test("a reference that cannot be used falls back to least load for that role, with a warning naming it", () => {
  const cases: Array<[unknown, Record<string, unknown>, RegExp]> = [
    ["missing", { prefixCache: { mode: "estimate" } }, /prefillPolicyRef "missing" names no entry of trafficPolicy \(it has "prefixCache"\)/],
    ["prefixCache", {}, /names no entry of trafficPolicy \(it has none\)/],
    ["prefixCache", { prefixCache: { mode: "tracking" } }, /prefixCache mode "tracking" is not supported \(only estimate\)/],
    ["prefixCache", { prefixCache: "on" }, /prefixCache must be an object/],
    ["lora", { lora: { affinity: true } }, /"lora" is not a prefixCache policy/],
    [42, { prefixCache: {} }, /must be the name of a trafficPolicy entry, got 42/],
  ];
  for (const [ref, tp, message] of cases) {
    const { spec, issues } = parse(policy({ pdRoleLabelName: RBG, trafficPolicy: tp, prefillPolicyRef: ref, decodePolicyRef: "prefixCache" in tp ? "prefixCache" : undefined }));
    assert.equal(spec.pdBlocked, undefined, String(ref));
    assert.equal(spec.pd!.prefill.strategy, "DEFAULT", String(ref));
    const warning = issues.find((i) => i.message.includes("prefillPolicyRef"));
    assert.ok(warning, `a warning for ${JSON.stringify(ref)} ${JSON.stringify(tp)}: ${JSON.stringify(issues)}`);
    assert.equal(warning.code, "pd_invalid");
    assert.match(warning.message, message);
    assert.match(warning.message, /^InferenceTrafficPolicy default\/inference-policy: .*; prefill uses least load \(DEFAULT\)$/);
  }
  const { spec, issues } = parse(policy({ pdRoleLabelName: RBG, trafficPolicy: ["prefixCache"], decodePolicyRef: "prefixCache" }));
  assert.deepEqual(codes(issues), ["pd_invalid", "pd_invalid"]);
  assert.match(issues[0].message, /trafficPolicy must be an object, got \["prefixCache"\]; ignored/);
  assert.equal(spec.pd!.decode.strategy, "DEFAULT");
});

test("roles or rendezvous unknown: the pool gets no endpoints (pdBlocked), with a warning saying why", () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ kvTransfer: { bootstrapPort: 34000 } }, /pdRoleLabelName is missing, so prefill and decode Pods cannot be told apart/],
    [{ pdRoleLabelName: "" }, /pdRoleLabelName "" is not a label name/],
    [{ pdRoleLabelName: "role label" }, /pdRoleLabelName "role label" is not a label name/],
    [{ pdRoleLabelName: "Example.com/role" }, /is not a label name/],
    [{ pdRoleLabelName: 7 }, /pdRoleLabelName 7 is not a label name/],
    [{ pdRoleLabelName: RBG, kvTransfer: { bootstrapPort: 0 } }, /bootstrapPort must be a port number \(1-65535\), got 0/],
    [{ pdRoleLabelName: RBG, kvTransfer: { bootstrapPort: 70000 } }, /got 70000/],
    [{ pdRoleLabelName: RBG, kvTransfer: { bootstrapPort: "34000" } }, /got "34000"/],
    [{ pdRoleLabelName: RBG, kvTransfer: { bootstrapPort: 3400.5 } }, /got 3400.5/],
    [{ pdRoleLabelName: RBG, kvTransfer: 34000 }, /kvTransfer must be an object, got 34000/],
    ["enabled", /spec.profile.pd must be an object, got "enabled"/],
    [[RBG], /spec.profile.pd must be an object/],
  ];
  for (const [pd, message] of cases) {
    const { spec, issues } = parse(policy(pd));
    assert.equal(spec.pdBlocked, true, JSON.stringify(pd));
    assert.equal(spec.pd, undefined);
    assert.deepEqual(codes(issues), ["pd_invalid"], JSON.stringify(pd));
    assert.match(issues[0].message, message);
    assert.match(issues[0].message, /; pool default\/qwen-inference-pool is published with no endpoints$/);
  }
});

test("which policy applies: same namespace, poolRef naming the pool, with a pd profile; the oldest of several", () => {
  const pd = { pdRoleLabelName: RBG };
  assert.equal(parse(policy(pd, { namespace: "other" })).spec.pd, undefined);
  assert.equal(parse(policy(pd, { pool: "another-pool" })).spec.pd, undefined);
  // A policy without profile.pd (or with pd: null) only contributes the runtime.
  const plain: InferenceTrafficPolicy = { metadata: { name: "p", namespace: "default" }, spec: { poolRef: { name: "qwen-inference-pool" }, modelServerRuntime: "sglang", profile: { pd: null } } };
  const r = parse(plain);
  assert.equal(r.spec.pd, undefined);
  assert.equal(r.spec.pdBlocked, undefined);
  assert.equal(r.spec.runtime, "sglang");

  const older = policy({ pdRoleLabelName: "role" }, { name: "b-policy", created: "2025-01-01T00:00:00Z" });
  const newer = policy({ pdRoleLabelName: RBG }, { name: "a-policy", created: "2025-06-01T00:00:00Z" });
  const { spec, issues } = parse(newer, older);
  assert.equal(spec.pd!.roleLabel, "role");
  assert.equal(spec.pd!.policy, "default/b-policy");
  assert.deepEqual(issues.map((i) => i.message), ["InferenceTrafficPolicy default/a-policy: profile.pd for pool default/qwen-inference-pool is ignored; the older InferenceTrafficPolicy default/b-policy is used"]);
  // Without timestamps: by name.
  const byName = parse(policy({ pdRoleLabelName: "z" }, { name: "z" }), policy({ pdRoleLabelName: "y" }, { name: "y" }));
  assert.equal(byName.spec.pd!.roleLabel, "y");
});

test("runtime: sglang when a P/D policy declares none; an explicit vllm is kept with a warning", () => {
  const none = parse(policy({ pdRoleLabelName: RBG }, { runtime: null }));
  assert.equal(none.spec.runtime, "sglang");
  assert.deepEqual(none.issues, []);
  const vllm = parse(policy({ pdRoleLabelName: RBG }, { runtime: "vllm" }));
  assert.equal(vllm.spec.runtime, "vllm");
  assert.ok(vllm.spec.pd);
  assert.deepEqual(codes(vllm.issues), ["pd_invalid"]);
  assert.match(vllm.issues[0].message, /follows SGLang's protocol, but the runtime is vllm/);
  const unknown = parse(policy({ pdRoleLabelName: RBG }, { runtime: "trtllm" }));
  assert.equal(unknown.spec.runtime, "sglang");
  assert.match(unknown.issues[0].message, /"trtllm" is not vllm or sglang; using sglang/);
});

test("a Pod's role: the label's value, trimmed, any case; anything else is no role", () => {
  assert.equal(podRole({ [RBG]: "prefill" }, RBG), "prefill");
  assert.equal(podRole({ [RBG]: " Decode " }, RBG), "decode");
  assert.equal(podRole({ [RBG]: "PREFILL" }, RBG), "prefill");
  const none: Array<Record<string, string> | null | undefined> = [{ [RBG]: "router" }, { [RBG]: "" }, { other: "prefill" }, {}, null, undefined];
  for (const labels of none) assert.equal(podRole(labels, RBG), undefined);
});

test("label names as Kubernetes accepts them", () => {
  for (const k of [RBG, "rbg.workloads.x-k8s.io/role-name", "role", "app.kubernetes.io/component", "a", "A_b.c-9"]) assert.ok(isLabelKey(k), k);
  for (const k of ["", "/role", "x/", "-role", "role-", "UPPER.example/role", "a b", "a/b/c", "x".repeat(64), `${"d".repeat(254)}/r`]) assert.ok(!isLabelKey(k), k);
});
