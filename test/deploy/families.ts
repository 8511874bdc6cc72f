// The filter's labelled metric families (assembly/observe/report.ts), as the module names them:
// the tags are spelled into the stat names, and Envoy's stats_tags (deploy/envoy/envoy.yaml, the
// EnvoyProxy's bootstrap) turn them into these labels. Shared by the deploy tests.

export type Kind = "counter" | "gauge" | "histogram";
export const MODEL = ["model_name", "target_model_name"];
export const POD = ["model_server_pod"];

export const FAMILIES: Array<{ family: string; kind: Kind; labels: string[] }> = [
  { family: "inference_objective_request_total", kind: "counter", labels: MODEL },
  { family: "inference_objective_request_error_total", kind: "counter", labels: [...MODEL, "error_code"] },
  { family: "inference_objective_running_requests", kind: "gauge", labels: ["model_name"] },
  { family: "inference_objective_request_duration_ms", kind: "histogram", labels: MODEL },
  { family: "inference_objective_request_ttft_ms", kind: "histogram", labels: MODEL },
  { family: "inference_objective_normalized_time_per_output_token_ms", kind: "histogram", labels: MODEL },
  { family: "inference_objective_input_tokens", kind: "histogram", labels: MODEL },
  { family: "inference_objective_output_tokens", kind: "histogram", labels: MODEL },
  { family: "inference_objective_prompt_cached_tokens", kind: "histogram", labels: MODEL },
  { family: "inference_objective_request_sizes", kind: "histogram", labels: MODEL },
  { family: "inference_objective_response_sizes", kind: "histogram", labels: MODEL },
  { family: "wasm_epp.prompt_tokens_total", kind: "counter", labels: MODEL },
  { family: "wasm_epp.completion_tokens_total", kind: "counter", labels: MODEL },
  { family: "wasm_epp.cached_tokens_total", kind: "counter", labels: MODEL },
  { family: "wasm_epp.predicted_cached_tokens_total", kind: "counter", labels: MODEL },
  { family: "wasm_epp.endpoint_picks_total", kind: "counter", labels: POD },
  { family: "wasm_epp.endpoint_ttft_ms", kind: "histogram", labels: POD },
  { family: "wasm_epp.endpoint_prompt_tokens_total", kind: "counter", labels: POD },
  { family: "wasm_epp.endpoint_cached_tokens_total", kind: "counter", labels: POD },
  { family: "wasm_epp.endpoint_predicted_cached_tokens_total", kind: "counter", labels: POD },
  { family: "wasm_epp.endpoint_prefix_confirmed_total", kind: "counter", labels: POD },
  { family: "wasm_epp.endpoint_prefix_missed_total", kind: "counter", labels: POD },
  { family: "wasm_epp.endpoint_observed_ttft_ms", kind: "gauge", labels: POD },
  { family: "wasm_epp.endpoint_prefill_tokens_per_second", kind: "gauge", labels: POD },
  { family: "wasm_epp.endpoint_prefix_retention_seconds", kind: "gauge", labels: POD },
  { family: "wasm_epp.responses_without_usage", kind: "counter", labels: [] },
  { family: "wasm_epp.responses_incomplete", kind: "counter", labels: [] },
];

// The labelled families the filter's source defines, with their kinds: the ids of each model's and
// pod's series (assembly/observe/series.ts, `defineMetric(METRIC_<KIND>, "<family>" + labels)`)
// and the few families report.ts counts by name (`const X = "<family>"`, added as counters).
export function definedFamilies(read: (path: string) => string): Map<string, Kind> {
  const out = new Map<string, Kind>();
  const KINDS: Record<string, Kind> = { METRIC_COUNTER: "counter", METRIC_GAUGE: "gauge", METRIC_HISTOGRAM: "histogram" };
  for (const m of read("assembly/observe/series.ts").matchAll(/defineMetric\((METRIC_[A-Z]+), "((?:inference_objective_|wasm_epp\.)[a-z_.]+)" \+/g)) out.set(m[2], KINDS[m[1]]);
  const report = read("assembly/observe/report.ts");
  for (const m of report.matchAll(/^const ([A-Z_0-9]+) = "((?:inference_objective_|wasm_epp\.)[a-z_.]+)";$/gm)) {
    const used = [...report.matchAll(new RegExp(`\\.(add|gaugeAdd|gaugeSet|record)\\(${m[1]}\\b`, "g"))].map((u) => u[1]);
    if (used.length > 0 && used.every((u) => u === "add")) out.set(m[2], "counter");
  }
  return out;
}
