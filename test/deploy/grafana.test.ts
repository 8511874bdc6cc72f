// deploy/grafana/wasm-epp.json: an importable dashboard (data source chosen through the
// DS_PROMETHEUS variable, as the seeds' vLLM dashboard does) whose every query names only metrics
// that exist: the sidecar's (read from its own registry), the filter's (read from
// assembly/stats.ts, named as Envoy's /stats/prometheus prints them), the filter's labelled
// families (test/deploy/families.ts, checked against assembly/observe/ in stats-tags.test.ts) and vLLM's (read from
// the fake V0/V1 /metrics pages the sidecar tests use).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { repoPath } from "./files.ts";
import { SidecarMetrics } from "../../sidecar/observability/metrics.ts";
import { defaultState, vllmV0Exposition, vllmV1Exposition } from "../fakes/model-metrics.ts";
import { FAMILIES } from "./families.ts";

const dashboard = JSON.parse(readFileSync(repoPath("deploy/grafana/wasm-epp.json"), "utf8"));
const panels: any[] = dashboard.panels.filter((p: any) => p.type !== "row");

// PromQL functions, aggregations and keywords that can appear as bare identifiers.
const PROMQL_WORDS = new Set([
  "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
  "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "clamp_min", "clamp_max", "clamp", "abs",
  "time", "vector", "scalar", "label_replace", "label_join", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
  "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
]);

/** Metric names a PromQL expression selects. */
export function metricNames(expr: string): string[] {
  let s = expr
    .replace(/label_values\(([^,()]*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)/g, " $1 ") // Grafana's label_values(metric, label)
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // ranges
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " "); // grouping labels
  s = s.replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, " "); // Grafana variables
  s = s.replace(/(?<![A-Za-z0-9_:])\d+(\.\d+)?([eE][+-]?\d+)?/g, " "); // numbers (1e-9, 0.99)
  const out: string[] = [];
  const re = /[A-Za-z_:][A-Za-z0-9_:]*/g;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const word = m[0];
    const after = s.slice(m.index + word.length).trimStart();
    if (PROMQL_WORDS.has(word) || after.startsWith("(")) continue;
    if (/^\d/.test(word)) continue;
    out.push(word);
  }
  return out;
}

function seriesNames(exposition: string): Set<string> {
  return new Set(exposition.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(/[{ ]/)[0]));
}

async function sidecarSeries(): Promise<Set<string>> {
  const m = new SidecarMetrics(() => 0, ["http://127.0.0.1:19100/wasm-epp/v1/state"]);
  const out = new Set<string>();
  for (const metric of await m.registry.getMetricsAsJSON()) {
    const t = metric.type as unknown as string;
    if (t === "histogram") for (const sfx of ["_bucket", "_sum", "_count"]) out.add(metric.name + sfx);
    else out.add(metric.name);
  }
  return out;
}

/** The filter's metric names as the module defines them (without the wasm_epp. prefix), by kind. */
function filterMetrics(): { counters: string[]; gauges: string[]; histograms: string[] } {
  const src = readFileSync(repoPath("assembly/stats.ts"), "utf8");
  const out = { counters: [] as string[], gauges: [] as string[], histograms: [] as string[] };
  for (const m of src.matchAll(/defineMetric\(METRIC_(COUNTER|GAUGE|HISTOGRAM), "wasm_epp\.([a-z_]+)"\)/g)) {
    (m[1] === "COUNTER" ? out.counters : m[1] === "GAUGE" ? out.gauges : out.histograms).push(m[2]);
  }
  const block = /const NAMES: StaticArray<string> = \[([\s\S]*?)\];/.exec(src);
  assert.ok(block, "assembly/stats.ts: the NAMES table");
  for (const m of block[1].matchAll(/"([a-z_]+)"/g)) out.counters.push(m[1]);
  assert.ok(out.counters.length >= 20, "the filter's counter names");
  return out;
}

// Envoy keeps a module's metric as wasmcustom.<name> (here wasmcustom.wasm_epp.<x>) and registers
// "wasmcustom" as a custom stat namespace: /stats/prometheus prints such a metric with that
// namespace stripped, dots as underscores and no envoy_ prefix (wasm_epp_<x>); a histogram as
// <name>_bucket, _sum and _count.
function filterSeries(): Set<string> {
  const m = filterMetrics();
  const out = new Set<string>();
  for (const n of [...m.counters, ...m.gauges]) out.add(`wasm_epp_${n}`);
  for (const n of m.histograms) for (const sfx of ["_bucket", "_sum", "_count"]) out.add(`wasm_epp_${n}${sfx}`);
  return out;
}

const LABELLED_FAMILIES = FAMILIES;

/** The labelled families' series as /stats/prometheus prints them, with their labels. */
function labelledSeries(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of LABELLED_FAMILIES) {
    const name = f.family.replace(/\./g, "_");
    if (f.kind === "histogram") {
      out.set(`${name}_bucket`, [...f.labels, "le"]);
      for (const sfx of ["_sum", "_count"]) out.set(name + sfx, f.labels);
    } else out.set(name, f.labels);
  }
  return out;
}

/** The panels under a row (up to the next row), by the row's title. */
function rowPanels(title: string): any[] {
  const i = dashboard.panels.findIndex((p: any) => p.type === "row" && p.title === title);
  assert.ok(i >= 0, `a row "${title}"`);
  const next = dashboard.panels.findIndex((p: any, j: number) => j > i && p.type === "row");
  return dashboard.panels.slice(i + 1, next < 0 ? undefined : next);
}

const ANSWER_ROWS = ["Answers (wasm-epp filter)", "Model server pods (wasm-epp filter)"];

test("importable: datasource variable DS_PROMETHEUS, every panel and query uses it", () => {
  assert.equal(dashboard.title, "wasm-epp");
  assert.equal(dashboard.uid, "wasm-epp");
  assert.equal(typeof dashboard.schemaVersion, "number");
  const ds = dashboard.templating.list.find((v: any) => v.name === "DS_PROMETHEUS");
  assert.deepEqual([ds.type, ds.query], ["datasource", "prometheus"]);
  for (const p of panels) {
    assert.equal(p.datasource.uid, "${DS_PROMETHEUS}", p.title);
    assert.ok(p.targets.length > 0, p.title);
    for (const t of p.targets) assert.equal(t.datasource.uid, "${DS_PROMETHEUS}", p.title);
  }
  for (const v of dashboard.templating.list.filter((x: any) => x.type === "query")) assert.equal(v.datasource.uid, "${DS_PROMETHEUS}");
});

test("layout: unique ids, panels on the 24-column grid without overlap", () => {
  const ids = dashboard.panels.map((p: any) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  const cells = new Set<string>();
  for (const p of dashboard.panels) {
    const g = p.gridPos;
    assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24, `${p.title}: x ${g.x} w ${g.w}`);
    for (let y = g.y; y < g.y + g.h; y++) for (let x = g.x; x < g.x + g.w; x++) {
      const k = `${x},${y}`;
      assert.ok(!cells.has(k), `${p.title} overlaps another panel at ${k}`);
      cells.add(k);
    }
  }
});

test("every query names only metrics that wasm-epp or vLLM export", async () => {
  const known = new Set([...(await sidecarSeries()), ...filterSeries(), ...labelledSeries().keys(), ...seriesNames(vllmV1Exposition(defaultState())), ...seriesNames(vllmV0Exposition(defaultState()))]);
  const exprs = [...panels.flatMap((p) => p.targets.map((t: any) => [p.title, t.expr] as const)), ...dashboard.templating.list.filter((v: any) => v.type === "query").map((v: any) => [v.name, v.query.query] as const)];
  assert.ok(exprs.length >= 40);
  for (const [title, expr] of exprs) {
    const names = metricNames(expr);
    assert.ok(names.length > 0, `${title}: no metric in ${expr}`);
    for (const n of names) assert.ok(known.has(n), `${title}: ${n} is not exported (in ${expr})`);
  }
});

test("metricNames finds the selectors and nothing else", () => {
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{model_name="$model_name"}[$__rate_interval])))'), ["vllm:time_to_first_token_seconds_bucket"]);
  assert.deepEqual(metricNames("time() - wasm_epp_state_generated_at_seconds"), ["wasm_epp_state_generated_at_seconds"]);
  assert.deepEqual(metricNames('vllm:kv_cache_usage_perc{a="x{y}"} or vllm:gpu_cache_usage_perc'), ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]);
  assert.deepEqual(metricNames("sum by (code) (rate(nope_total[5m]))"), ["nope_total"]);
  assert.deepEqual(metricNames("label_values(inference_pool_ready_pods, name)"), ["inference_pool_ready_pods"]);
  assert.deepEqual(metricNames("a / clamp_min(vllm:e2e_request_latency_seconds_count, 1e-9)"), ["a", "vllm:e2e_request_latency_seconds_count"]);
});

test("coverage: the sidecar's pool gauges, the filter's routing counters, the seeds' vLLM panels", () => {
  const all = panels.flatMap((p) => p.targets.map((t: any) => t.expr)).join("\n");
  for (const n of ["inference_pool_average_kv_cache_utilization", "inference_pool_average_queue_size", "inference_pool_ready_pods", "wasm_epp_sidecar_scrape_errors_total", "wasm_epp_sidecar_last_push_age_seconds"]) assert.ok(all.includes(n), n);
  for (const n of ["requests_routed", "prefix_hits", "requests_shed", "no_ready_endpoint", "no_routing_state", "push_accepted", "push_unauthorized", "state_generated_at_seconds"]) assert.ok(all.includes(`wasm_epp_${n}`), n);
  const titles = panels.map((p) => p.title.toLowerCase());
  for (const t of ["request rate", "token throughput", "time to first token", "kv-cache utilization per pod", "scheduler state", "queue time"]) {
    assert.ok(titles.some((x) => x.includes(t)), `a panel on ${t}`);
  }
});

test("filter metrics carry the names Envoy's /stats/prometheus prints (no envoy_wasmcustom_ prefix)", () => {
  const exprs = panels.flatMap((p) => p.targets.map((t: any) => t.expr as string));
  for (const e of exprs) assert.ok(!/envoy_wasmcustom|wasmcustom_/.test(e), `a name Envoy does not print: ${e}`);
  const descriptions = panels.map((p) => p.description ?? "").join("\n");
  assert.ok(!descriptions.includes("envoy_wasmcustom"));
});

test("coverage: priority queuing (size per band, time held, outcomes per band) and prefill/decode", () => {
  const byTitle = (t: string) => panels.filter((p) => p.title.toLowerCase().includes(t)).flatMap((p) => p.targets.map((x: any) => x.expr as string)).join("\n");
  const all = panels.flatMap((p) => p.targets.map((t: any) => t.expr)).join("\n");
  const bands = ["critical", "standard", "sheddable"];
  for (const b of bands) assert.ok(byTitle("held requests per band").includes(`wasm_epp_queue_size_${b}`), `queue size ${b}`);
  const held = byTitle("time held");
  for (const q of ["0.5", "0.9", "0.99"]) assert.ok(held.includes(`histogram_quantile(${q}, sum by (le) (rate(wasm_epp_queue_time_ms_bucket`), `queue time p${q}`);
  for (const b of bands) {
    const panel = byTitle(`queue outcomes: ${b}`);
    for (const o of ["held", "admitted", "expired", "rejected", "cancelled"]) assert.ok(panel.includes(`wasm_epp_queue_${o}_${b}`), `${o} ${b}`);
  }
  for (const n of ["pd_prefill_ok", "pd_prefill_failed", "pd_prefill_timeout", "pd_prefill_rejected", "pd_decode_abort_sent", "pd_decode_abort_failed"]) {
    assert.ok(all.includes(`wasm_epp_${n}`), n);
  }
  // Every queue and P/D metric the filter defines is on the dashboard.
  const m = filterMetrics();
  for (const n of [...m.counters, ...m.gauges, ...m.histograms].filter((x) => x.startsWith("queue_") || x.startsWith("pd_"))) {
    assert.ok(all.includes(`wasm_epp_${n}`), `${n} has no panel`);
  }
});

test("answer rows: every metric is a labelled family, grouped only by labels it carries", () => {
  const series = labelledSeries();
  const rows = ANSWER_ROWS.flatMap(rowPanels);
  assert.ok(rows.length >= 14);
  for (const p of rows) {
    assert.equal(p.type, "timeseries", p.title);
    for (const t of p.targets) {
      const names = metricNames(t.expr);
      for (const n of names) assert.ok(series.has(n), `${p.title}: ${n} is not one of the filter's labelled families (in ${t.expr})`);
      const carried = new Set(names.flatMap((n) => series.get(n)!));
      for (const m of (t.expr as string).matchAll(/\bby \(([^)]*)\)/g)) {
        for (const l of m[1].split(",").map((x) => x.trim())) assert.ok(carried.has(l), `${p.title}: ${l} is not a label of ${names.join(", ")}`);
      }
      for (const m of (t.legendFormat as string).matchAll(/\{\{(\w+)\}\}/g)) assert.ok(carried.has(m[1]), `${p.title}: legend label ${m[1]}`);
    }
  }
});

test("coverage: answers (rates, errors, TTFT, duration, NTPOT, tokens, hit rates, running) and per pod", () => {
  const exprs = (t: string) => {
    const found = panels.filter((p) => p.title.toLowerCase() === t.toLowerCase());
    assert.equal(found.length, 1, `a panel "${t}"`);
    return found[0].targets.map((x: any) => x.expr as string);
  };
  const rate = (m: string, by?: string) => (by ? `sum by (${by}) (rate(${m}[$__rate_interval]))` : `sum(rate(${m}[$__rate_interval]))`);
  const ratio = (a: string, b: string, by?: string) => `${rate(a, by)} / clamp_min(${rate(b, by)}, 1e-9)`;
  const quantiles = (m: string, by = "le") => ["0.5", "0.9", "0.99"].map((q) => `histogram_quantile(${q}, sum by (${by}) (rate(${m}_bucket[$__rate_interval])))`);
  assert.deepEqual(exprs("Requests by model"), [rate("inference_objective_request_total", "model_name, target_model_name")]);
  assert.deepEqual(exprs("Errors by model and error_code"), [rate("inference_objective_request_error_total", "model_name, error_code")]);
  assert.deepEqual(exprs("Time to first token (filter)"), quantiles("inference_objective_request_ttft_ms"));
  assert.deepEqual(exprs("Time to first token per pod"), quantiles("wasm_epp_endpoint_ttft_ms", "le, model_server_pod").slice(0, 2));
  assert.deepEqual(exprs("Request duration (filter)"), quantiles("inference_objective_request_duration_ms"));
  assert.deepEqual(exprs("Normalized time per output token"), quantiles("inference_objective_normalized_time_per_output_token_ms"));
  const tokens = exprs("Token throughput by model (filter)");
  for (const m of ["wasm_epp_prompt_tokens_total", "wasm_epp_completion_tokens_total"]) assert.ok(tokens.includes(rate(m, "model_name")), m);
  assert.deepEqual(exprs("Prefix-cache hit rate: real vs predicted"), [
    ratio("wasm_epp_cached_tokens_total", "wasm_epp_prompt_tokens_total"),
    ratio("wasm_epp_predicted_cached_tokens_total", "wasm_epp_prompt_tokens_total"),
  ]);
  assert.deepEqual(exprs("Prefix-cache hit rate per pod: real vs predicted"), [
    ratio("wasm_epp_endpoint_cached_tokens_total", "wasm_epp_endpoint_prompt_tokens_total", "model_server_pod"),
    ratio("wasm_epp_endpoint_predicted_cached_tokens_total", "wasm_epp_endpoint_prompt_tokens_total", "model_server_pod"),
  ]);
  assert.deepEqual(exprs("Picks per pod"), [rate("wasm_epp_endpoint_picks_total", "model_server_pod")]);
  assert.deepEqual(exprs("Prefix predictions per pod: confirmed vs missed"), [
    rate("wasm_epp_endpoint_prefix_confirmed_total", "model_server_pod"),
    rate("wasm_epp_endpoint_prefix_missed_total", "model_server_pod"),
  ]);
  assert.deepEqual(exprs("Running requests by model"), ["sum by (model_name) (inference_objective_running_requests)"]);
  for (const [t, g] of [["Learned time to first token per pod", "endpoint_observed_ttft_ms"], ["Learned prefill speed per pod", "endpoint_prefill_tokens_per_second"], ["Learned prefix retention per pod", "endpoint_prefix_retention_seconds"]]) {
    assert.deepEqual(exprs(t), [`avg by (model_server_pod) (wasm_epp_${g})`]);
  }
  // Every labelled counter and gauge has a panel; of the histograms, the times.
  const all = ANSWER_ROWS.flatMap(rowPanels).flatMap((p) => p.targets.map((t: any) => t.expr as string)).join("\n");
  for (const f of LABELLED_FAMILIES.filter((x) => x.kind !== "histogram")) assert.ok(new RegExp(`\\b${f.family.replace(".", "_")}\\b`).test(all), `${f.family} has no panel`);
  for (const f of LABELLED_FAMILIES.filter((x) => x.kind === "histogram" && /_ms$/.test(x.family))) assert.ok(all.includes(`${f.family.replace(".", "_")}_bucket`), `${f.family} has no panel`);
});
