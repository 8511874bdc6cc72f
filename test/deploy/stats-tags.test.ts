// The filter's labelled metrics: the stats_tags that turn the `.<tag>=<value>;` parts of its stat
// names into labels, in both deployments — deploy/envoy/envoy.yaml (standalone Envoy) and the
// EnvoyProxy's bootstrap patch (Envoy Gateway) — and what they make of every family the filter
// defines (assembly/observe/), with Envoy's extraction semantics (test/host/tags.ts).
//
// Envoy Gateway's bootstrap patch (EnvoyProxy spec.bootstrap, internal/xds/bootstrap/util.go):
//  - type Replace (the default when type is unset) uses `value` as the whole bootstrap;
//  - type Merge parses the default bootstrap and `value` as Bootstrap messages and merges them
//    the protobuf way (internal/utils/proto/google_proto.go): repeated fields are appended,
//    messages merged field by field, scalars set — mergeLikeEnvoyGateway below models that on
//    the YAML objects;
//  - type JSONPatch applies RFC 6902 operations.
// What the default bootstrap (internal/xds/bootstrap/bootstrap.yaml.tpl) has under stats_config:
//  - up to v1.6: nothing, unless the EnvoyProxy sets telemetry.metrics.matches, which renders a
//    stats_matcher inclusion list;
//  - from v1.7 (release-notes/v1.7.0.yaml, "the default value stats_tags has been changed"):
//    use_all_default_tags: true and four specifiers of its own (from_zone, to_zone,
//    socket_match_name, priority: zone, socket-match and circuit-breaker names of Envoy's
//    cluster stats), plus the stats_matcher as before.
// Merge keeps all of that and appends the filter's four specifiers after Envoy Gateway's.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { repoPath, yamlFile } from "./files.ts";
import { baseSources, KUBECTL, render } from "./kustomize.ts";
import { TagProducer, tagConfigFromBootstrap, type Tag, type TagSpecifier } from "../host/tags.ts";
import { prometheusMetricName } from "../host/prometheus.ts";
import { FAMILIES, definedFamilies } from "./families.ts";

const rendered = KUBECTL !== null;
const NO_KUBECTL = "kubectl not installed: kubectl kustomize not run (the base's files were checked as written)";

/** The four specifiers the filter's names are written for (assembly/observe/metrics.ts), in this order. */
const CONTRACT: TagSpecifier[] = [
  { tag_name: "model_name", regex: "(\\.model_name=(.*?);)" },
  { tag_name: "target_model_name", regex: "(\\.target_model_name=(.*?);)" },
  { tag_name: "error_code", regex: "(\\.error_code=(.*?);)" },
  { tag_name: "model_server_pod", regex: "(\\.model_server_pod=(.*?);)" },
];



// Label values the filter can write (no ';'): model names with '/', '.', ':', pod addresses, the
// overflow series' "other".
const VALUES: Record<string, string[]> = {
  model_name: ["qwen", "meta-llama/Llama-3.1-8B", "Qwen2.5.1:7b-instruct", "other"],
  target_model_name: ["qwen-lora", "meta-llama/Llama-3.1-8B", "org/model.v2:q4", "other"],
  error_code: ["429", "503", "no_ready_endpoint", "incomplete", "other"],
  model_server_pod: ["vllm-qwen-0", "10.0.0.7:8000", "[fd00::7]:8000", "sglang-decode-1.pd", "other"],
};

const envoyYaml = yamlFile(repoPath("deploy/envoy/envoy.yaml"))[0];
const standalone = tagConfigFromBootstrap(envoyYaml);

const docs: any[] = rendered ? render("base") : baseSources();
const envoyProxies = docs.filter((d) => d.kind === "EnvoyProxy");
const bootstrapPatch = envoyProxies[0]?.spec?.bootstrap;
const patchValue: any = typeof bootstrapPatch?.value === "string" ? parse(bootstrapPatch.value) : undefined;

/** The stat name the filter defines: family, then `.<tag>=<value>;` per label, in label order. */
function statName(family: string, labels: Array<[string, string]>): string {
  return `wasmcustom.${family}${labels.map(([k, v]) => `.${k}=${v};`).join("")}`;
}

/** Envoy Gateway's Merge on parsed YAML: lists appended, objects merged key by key, the rest set. */
function mergeLikeEnvoyGateway(dst: any, src: any): any {
  if (Array.isArray(dst) && Array.isArray(src)) return [...dst, ...structuredClone(src)];
  if (isObject(dst) && isObject(src)) {
    const out: Record<string, unknown> = structuredClone(dst);
    for (const [k, v] of Object.entries(src)) out[k] = k in out ? mergeLikeEnvoyGateway(out[k], v) : structuredClone(v);
    return out;
  }
  return structuredClone(src);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === "object" && !Array.isArray(x);
}

function specifiersOf(list: unknown): TagSpecifier[] {
  return tagConfigFromBootstrap({ stats_config: { stats_tags: list } }).specifiers;
}

test("the EnvoyProxy's bootstrap patch: type Merge, a value holding stats_config.stats_tags only", (t) => {
  t.diagnostic(rendered ? `rendered with kubectl kustomize (${KUBECTL})` : NO_KUBECTL);
  assert.equal(envoyProxies.length, 1);
  assert.ok(bootstrapPatch, "spec.bootstrap");
  // The CRD's schema (gateway.envoyproxy.io_envoyproxies.yaml, ProxyBootstrap): type one of
  // Merge, Replace, JSONPatch (default Replace); value a string; jsonPatches a list; and the rule
  // that JSONPatch needs jsonPatches and the other two a value.
  assert.deepEqual(Object.keys(bootstrapPatch).sort(), ["type", "value"]);
  assert.equal(bootstrapPatch.type, "Merge", "Replace (also the default) would drop Envoy Gateway's bootstrap; Merge appends");
  assert.equal(typeof bootstrapPatch.value, "string");
  // The value is a Bootstrap: nothing but stats_config.stats_tags, so the merge changes nothing
  // else (no stats_matcher, no use_all_default_tags: Envoy's default tags stay on).
  assert.deepEqual(Object.keys(patchValue), ["stats_config"]);
  assert.deepEqual(Object.keys(patchValue.stats_config), ["stats_tags"]);
  for (const s of patchValue.stats_config.stats_tags) assert.deepEqual(Object.keys(s).sort(), ["regex", "tag_name"]);
});

test("envoy.yaml and the EnvoyProxy patch carry the contract's four specifiers, in the same order", () => {
  const fromPatch = specifiersOf(patchValue.stats_config.stats_tags);
  assert.deepEqual(standalone.specifiers, CONTRACT);
  assert.deepEqual(fromPatch, standalone.specifiers);
  assert.deepEqual(patchValue.stats_config.stats_tags, envoyYaml.stats_config.stats_tags, "the same YAML, key for key");
  assert.equal(standalone.useDefaultTags, true, "envoy.yaml leaves Envoy's default tags on, as Envoy Gateway does");
  for (const s of fromPatch) assert.ok(Buffer.byteLength(s.regex!) <= 1024, "TagSpecifier.regex max_bytes");
});

test("the overlays keep the base's bootstrap patch", { skip: rendered ? false : NO_KUBECTL }, () => {
  for (const overlay of ["overlays/fail-open", "overlays/cluster-wide", "overlays/xds-name-scheme-v2"]) {
    const eps = render(overlay).filter((d) => d.kind === "EnvoyProxy");
    assert.equal(eps.length, 1, overlay);
    assert.deepEqual(eps[0].spec.bootstrap, bootstrapPatch, overlay);
  }
});

test("merged into Envoy Gateway's default bootstraps, the four specifiers come last and the rest stays", () => {
  const ours = specifiersOf(patchValue.stats_config.stats_tags);
  const matcher = { inclusion_list: { patterns: [{ prefix: "wasmcustom." }, { prefix: "cluster." }] } };
  // Stand-ins for Envoy Gateway v1.7's own specifiers: unanchored ones that need a literal
  // `.zone.` or `circuit_breakers.` segment, one anchored on `cluster`.
  const egTags = [
    { tag_name: "from_zone", regex: "\\.zone(\\.([^.]+)\\.)" },
    { tag_name: "socket_match_name", regex: "^cluster\\.[^.]+(\\.([^.]+))\\.total_match_count$" },
    { tag_name: "priority", regex: "circuit_breakers(\\.([^.]+))\\." },
  ];
  const defaults = {
    "up to v1.6": { admin: {} },
    "up to v1.6, telemetry.metrics.matches": { admin: {}, stats_config: { stats_matcher: matcher } },
    "v1.7 and later": { admin: {}, stats_config: { use_all_default_tags: true, stats_tags: egTags, stats_matcher: matcher } },
  };
  for (const [name, base] of Object.entries(defaults)) {
    const merged = mergeLikeEnvoyGateway(base, patchValue);
    const before = (base as any).stats_config ?? {};
    assert.deepEqual(merged.admin, {}, name);
    assert.deepEqual(merged.stats_config.stats_matcher, before.stats_matcher, `${name}: stats_matcher kept`);
    assert.equal(merged.stats_config.use_all_default_tags, before.use_all_default_tags, `${name}: use_all_default_tags untouched`);
    const cfg = tagConfigFromBootstrap(merged);
    assert.deepEqual(cfg.specifiers, [...specifiersOf(before.stats_tags ?? []), ...ours], `${name}: appended`);
    assert.equal(cfg.useDefaultTags, true, name);
    // Every family comes out the same as under envoy.yaml's stats_tags alone.
    const alone = new TagProducer(standalone.specifiers, { useDefaultTags: standalone.useDefaultTags });
    const withEg = new TagProducer(cfg.specifiers, { useDefaultTags: cfg.useDefaultTags });
    for (const f of FAMILIES) {
      const full = statName(f.family, f.labels.map((l) => [l, VALUES[l][1]]));
      assert.deepEqual(withEg.produce(full), alone.produce(full), `${name}: ${full}`);
    }
    // ... while Envoy Gateway's specifiers still work on Envoy's own names.
    if (before.stats_tags) {
      assert.deepEqual(withEg.produce("cluster.c1.circuit_breakers.default.cx_open"), {
        name: "cluster.circuit_breakers.cx_open",
        tags: [{ name: "priority", value: "default" }, { name: "envoy.cluster_name", value: "c1" }],
      });
    }
  }
});

test("every family the filter defines is listed here, with the kind it is defined as", () => {
  const defined = definedFamilies((path) => readFileSync(repoPath(path), "utf8"));
  assert.ok(defined.size >= 20, "the families in assembly/observe/");
  assert.deepEqual([...defined.keys()].sort(), FAMILIES.map((f) => f.family).sort());
  for (const [family, kind] of defined) assert.equal(kind, FAMILIES.find((f) => f.family === family)!.kind, family);
});

test("each family's names come out as the family with its labels, in stats_tags order", () => {
  const tags = new TagProducer(standalone.specifiers, { useDefaultTags: standalone.useDefaultTags });
  const order = CONTRACT.map((s) => s.tag_name);
  for (const f of FAMILIES) {
    assert.deepEqual([...f.labels].sort((a, b) => order.indexOf(a) - order.indexOf(b)), f.labels, `${f.family}: labels in stats_tags order`);
    const rounds = Math.max(1, ...f.labels.map((l) => VALUES[l].length));
    for (let i = 0; i < rounds; i++) {
      const labels = f.labels.map((l): [string, string] => [l, VALUES[l][i % VALUES[l].length]]);
      const full = statName(f.family, labels);
      const out = tags.produce(full);
      assert.equal(out.name, `wasmcustom.${f.family}`, full);
      assert.deepEqual(out.tags, labels.map(([name, value]): Tag => ({ name, value })), full);
      // What /stats/prometheus prints: the namespace stripped, '.' as '_', no envoy_ prefix.
      const printed = prometheusMetricName(out.name);
      assert.equal(printed, f.family.replace(/\./g, "_"), full);
      assert.match(printed!, /^[a-zA-Z_][a-zA-Z0-9_]*$/);
    }
  }
  // The contract's examples.
  assert.deepEqual(tags.produce("wasmcustom.inference_objective_request_total.model_name=m;.target_model_name=t;"), {
    name: "wasmcustom.inference_objective_request_total",
    tags: [{ name: "model_name", value: "m" }, { name: "target_model_name", value: "t" }],
  });
  assert.deepEqual(tags.produce("wasmcustom.wasm_epp.endpoint_ttft_ms.model_server_pod=p;"), {
    name: "wasmcustom.wasm_epp.endpoint_ttft_ms",
    tags: [{ name: "model_server_pod", value: "p" }],
  });
});

test("no family name ends the way Envoy's default extractors would cut (response code suffixes)", () => {
  // Envoy's default extractors (source/common/config/well_known_names.cc) are anchored on Envoy's
  // own first tokens (cluster, http, listener, vhost, mongo, tcp, ...), never `wasmcustom`, except
  // two unanchored suffixes: envoy.response_code (`_rq_` and three digits at the end) and
  // envoy.response_code_class (`_rq_`, a digit, `xx` at the end). A family ending that way would
  // lose the suffix and gain a label wherever it is printed without tags.
  const responseCode = /_rq_\d{3}$/;
  const responseCodeClass = /_rq_\dxx$/;
  const prefixes = ["cluster", "http", "listener", "listener_manager", "vhost", "mongo", "tcp", "udp", "auth", "ratelimit"];
  for (const f of FAMILIES) {
    const full = `wasmcustom.${f.family}`;
    assert.ok(!responseCode.test(full) && !responseCodeClass.test(full), f.family);
    assert.ok(!/_rq(_|$)/.test(f.family), `${f.family}: no _rq segment near a suffix extractor`);
    assert.ok(!prefixes.includes(full.split(".")[0]));
    for (const l of f.labels) assert.ok(!responseCode.test(statName(f.family, [[l, "200"]])), "a tagged name ends with ';'");
  }
  // The checks above do catch such a name.
  assert.ok(responseCode.test("wasmcustom.wasm_epp.upstream_rq_200"));
  assert.ok(responseCodeClass.test("wasmcustom.wasm_epp.upstream_rq_5xx"));
});
