// deploy/examples/<NAME>/: the clusters `npm start -- --example NAME` runs. Each is one
// InferencePool with the objects that serve it, valid against deploy/crds, meaning to the sidecar
// what its name says, with Pods the stack can start (selected by the pool, loopback podIPs, the
// pool's port) and, for prefill/decode examples, the seeds' policy and a role on every Pod.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { crdKey, loadCrds, repoPath, yamlFile } from "./files.ts";
import { parseManifests } from "../../sidecar/k8s/manifests.ts";
import { parsePool, parsePoolV1 } from "../../sidecar/k8s/pool-spec.ts";
import { buildDocument } from "../../sidecar/state/document.ts";
import { podRole } from "../../sidecar/k8s/pd.ts";
import { readExample } from "../../scripts/local-stack/stack.ts";

const crds = loadCrds();
const BASE = repoPath("deploy/examples");
const EXAMPLES = readdirSync(BASE).filter((n) => n !== "seeds" && statSync(join(BASE, n)).isDirectory()).sort();

function objects(name: string): any[] {
  // Only the files directly in the directory: what the sidecar's file mode reads.
  return readdirSync(join(BASE, name)).filter((f) => /\.ya?ml$/.test(f)).sort().flatMap((f) => yamlFile(join(BASE, name, f)));
}

test("the runnable examples are there", () => {
  assert.deepEqual(EXAMPLES, ["gie-v1", "sglang-pd", "sglang-pd-prefix-cache"]);
  // The sidecar reads only the files directly in the directory.
  for (const name of EXAMPLES) assert.deepEqual(readdirSync(join(BASE, name)).filter((f) => statSync(join(BASE, name, f)).isDirectory()), [], `${name} has subdirectories`);
});

for (const name of EXAMPLES) {
  test(`${name}: every custom resource validates against deploy/crds; one pool; its model and policy refer to it`, () => {
    const objs = objects(name);
    for (const o of objs) {
      if (!crds.has(crdKey(o))) continue;
      assert.deepEqual(crds.get(crdKey(o))!.validator.validate(structuredClone(o)), [], `${o.kind}/${o.metadata?.name}`);
    }
    const pools = objs.filter((o) => o.kind === "InferencePool");
    assert.equal(pools.length, 1);
    const pool = pools[0];
    // A v1alpha2 pool comes with its InferenceModel; a v1 pool with objectives and rewrites.
    const v1 = pool.apiVersion === "inference.networking.k8s.io/v1";
    const companions = objs.filter((o) => (v1 ? ["InferenceObjective", "InferenceModelRewrite"] : ["InferenceModel"]).includes(o.kind));
    assert.ok(companions.length >= 1);
    for (const m of companions) assert.equal(m.spec.poolRef.name, pool.metadata.name);
    for (const p of objs.filter((o) => o.kind === "InferenceTrafficPolicy")) assert.equal(p.spec.poolRef.name, pool.metadata.name);
    const read = v1 ? ["InferencePool", "InferenceObjective", "InferenceModelRewrite", "InferenceTrafficPolicy", "Pod"] : ["InferencePool", "InferenceModel", "InferenceTrafficPolicy", "Pod"];
    assert.deepEqual(objs.filter((o) => !read.includes(o.kind)), [], "nothing the file mode does not read");
  });

  test(`${name}: Pods the local stack can start: selected by the pool, Running and Ready, unique loopback podIPs, the pool's port`, () => {
    const objs = objects(name);
    const pool = objs.find((o) => o.kind === "InferencePool");
    const v1 = pool.apiVersion === "inference.networking.k8s.io/v1";
    const selector = v1 ? pool.spec.selector.matchLabels : pool.spec.selector;
    const port = v1 ? pool.spec.targetPorts[0].number : pool.spec.targetPortNumber;
    const pods = objs.filter((o) => o.kind === "Pod");
    assert.ok(pods.length >= 2);
    const ips = new Set<string>();
    for (const p of pods) {
      for (const [k, v] of Object.entries(selector)) assert.equal(p.metadata.labels[k], v, `${p.metadata.name}: selected by the pool`);
      assert.equal(p.status.phase, "Running");
      assert.ok(p.status.conditions.some((c: any) => c.type === "Ready" && c.status === "True"));
      assert.match(p.status.podIP, /^127\.\d+\.\d+\.\d+$/);
      assert.ok(!ips.has(p.status.podIP), `${p.status.podIP} twice`);
      ips.add(p.status.podIP);
      assert.ok(p.spec.containers.some((c: any) => c.ports?.some((p: any) => p.containerPort === port)));
    }
    const ex = readExample(name);
    assert.equal(ex.pods.length, pods.length, "the stack starts every Pod");
    assert.deepEqual(ex.skipped, []);
  });
}

// The seed each P/D example is built on: its pool and policy, as the seeds write them.
const PD_SEEDS: Record<string, string> = {
  "sglang-pd": "default-sglang-prefill-decode.yaml",
  "sglang-pd-prefix-cache": "prefix-cache-sglang-prefill-decode.yaml",
};

for (const [name, seedFile] of Object.entries(PD_SEEDS)) {
  test(`${name}: the seed's P/D pool and policy, a role on every Pod, prefill servers on the policy's bootstrap port`, () => {
    const objs = objects(name);
    const seed = yamlFile(repoPath("deploy/examples/seeds", seedFile));
    const strip = (o: any) => ({ ...o, metadata: { ...o.metadata, namespace: undefined } });
    for (const kind of ["InferencePool", "InferenceTrafficPolicy"]) {
      assert.deepEqual(strip(objs.find((o) => o.kind === kind)), strip(seed.find((o) => o.kind === kind)), `${kind} as in the seed`);
    }
    const model = objs.find((o) => o.kind === "InferenceModel");
    assert.equal(model.spec.modelName, "/models/Qwen3-32B", "the seeds' model");
    const policy = objs.find((o) => o.kind === "InferenceTrafficPolicy");
    const pd = policy.spec.profile.pd;
    const roles = { prefill: 0, decode: 0 };
    for (const p of objs.filter((o) => o.kind === "Pod")) {
      const role = podRole(p.metadata.labels, pd.pdRoleLabelName);
      assert.ok(role, `${p.metadata.name}: a prefill or decode role in ${pd.pdRoleLabelName}`);
      roles[role]++;
      const args: string[] = p.spec.containers[0].args;
      assert.equal(args[args.indexOf("--disaggregation-mode") + 1], role, "the server's mode matches its label");
      assert.equal(Number(args[args.indexOf("--disaggregation-bootstrap-port") + 1]), pd.kvTransfer.bootstrapPort);
      assert.equal(args[args.indexOf("--model-path") + 1], model.spec.targetModels[0].name);
    }
    assert.deepEqual(roles, { prefill: 2, decode: 3 });

    // What the sidecar and the stack make of it.
    const parsed = parseManifests(readFileSync(join(BASE, name, "inference-pool.yaml"), "utf8"), "default", name);
    assert.deepEqual(parsed.errors, []);
    const poolObj = parsed.objects.find((o) => o.object.kind === "InferencePool")!.object;
    const policies = parsed.objects.filter((o) => o.object.kind === "InferenceTrafficPolicy").map((o) => o.object) as any[];
    const { spec, issues } = parsePool(poolObj as any, "default", policies);
    assert.deepEqual(issues, []);
    assert.equal(spec.runtime, "sglang");
    assert.equal(spec.pd?.bootstrapPort, 34000);
    const strategy = name.includes("prefix-cache") ? "PREFIX_CACHE" : "DEFAULT";
    assert.deepEqual([spec.pd?.prefill.strategy, spec.pd?.decode.strategy], [strategy, strategy]);
    const ex = readExample(name);
    assert.equal(ex.runtime, "sglang");
    assert.equal(ex.pool, "default/qwen-inference-pool");
    assert.equal(ex.model, "/models/Qwen3-32B");
    assert.deepEqual(ex.pd, { roleLabel: "rolebasedgroup.workloads.x-k8s.io/role", bootstrapPort: 34000 });
    assert.deepEqual(ex.pods.map((p) => `${p.role}:${p.bootstrapPort}`).sort(), ["decode:null", "decode:null", "decode:null", "prefill:34000", "prefill:34000"]);
  });
}

test("gie-v1: a v1 pool with objectives in all three bands and a model alias; what the sidecar and the stack make of it", () => {
  const parsed = parseManifests(readFileSync(join(BASE, "gie-v1", "inference-pool.yaml"), "utf8"), "default", "gie-v1");
  assert.deepEqual(parsed.errors, []);
  const of = (kind: string) => parsed.objects.filter((o) => o.object.kind === kind).map((o) => o.object) as any[];
  const [pool] = of("InferencePool");
  assert.equal(pool.apiVersion, "inference.networking.k8s.io/v1");
  const { spec, issues } = parsePoolV1(pool, "default");
  assert.deepEqual(issues, []);
  assert.deepEqual([spec.key, spec.ports, spec.strategy, spec.runtime], ["default/vllm-qwen-pool", [8000], "PREFIX_CACHE", "vllm"]);
  const built = buildDocument({ pools: [{ spec, endpoints: [] }], models: [], objectives: of("InferenceObjective"), rewrites: of("InferenceModelRewrite"), defaultNamespace: "default", metricsStaleMs: 1000, nowMs: 0 });
  assert.deepEqual(built.issues, []);
  assert.deepEqual(built.objectives.map((o) => `${o.name}:${o.priority}:${o.criticality}`), ["batch:-10:Sheddable", "interactive:100:Critical", "standard:0:Standard"]);
  assert.deepEqual(built.models, [{ name: "qwen", pool: "default/vllm-qwen-pool", targets: [{ name: "/model/qwen" }] }]);
  const ex = readExample("gie-v1");
  assert.deepEqual([ex.pool, ex.model, ex.runtime, ex.pd], ["default/vllm-qwen-pool", "/model/qwen", "vllm", null]);
  assert.deepEqual(ex.pods.map((p) => `${p.name}@${p.host}:${p.port}`), ["vllm-qwen-0@127.0.0.81:8000", "vllm-qwen-1@127.0.0.82:8000", "vllm-qwen-2@127.0.0.83:8000"]);
});
