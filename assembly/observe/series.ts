// The metric ids of one model's and one pod's series, defined on first use and kept: a request
// then records its metrics by id, with no name built or looked up (docs/metrics.md has the
// families). Each cache holds at most maxSeries label sets; past that, further ones share the
// "other" series.

import { defineMetric, METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } from "../host";
import { label, OTHER } from "./metrics";

export class ModelSeries {
  requestTotal: u32;
  running: u32;
  duration: u32;
  ttft: u32;
  ntpot: u32;
  inputTokens: u32;
  outputTokens: u32;
  cachedTokens: u32;
  requestSizes: u32;
  responseSizes: u32;
  promptTotal: u32;
  completionTotal: u32;
  cachedTotal: u32;
  predictedTotal: u32;
  // The labels, for the families that add one (errors by code).
  labels: string;

  constructor(model: string, target: string) {
    const l = label("model_name", model) + label("target_model_name", target);
    this.labels = l;
    this.requestTotal = defineMetric(METRIC_COUNTER, "inference_objective_request_total" + l);
    this.running = defineMetric(METRIC_GAUGE, "inference_objective_running_requests" + label("model_name", model));
    this.duration = defineMetric(METRIC_HISTOGRAM, "inference_objective_request_duration_ms" + l);
    this.ttft = defineMetric(METRIC_HISTOGRAM, "inference_objective_request_ttft_ms" + l);
    this.ntpot = defineMetric(METRIC_HISTOGRAM, "inference_objective_normalized_time_per_output_token_ms" + l);
    this.inputTokens = defineMetric(METRIC_HISTOGRAM, "inference_objective_input_tokens" + l);
    this.outputTokens = defineMetric(METRIC_HISTOGRAM, "inference_objective_output_tokens" + l);
    this.cachedTokens = defineMetric(METRIC_HISTOGRAM, "inference_objective_prompt_cached_tokens" + l);
    this.requestSizes = defineMetric(METRIC_HISTOGRAM, "inference_objective_request_sizes" + l);
    this.responseSizes = defineMetric(METRIC_HISTOGRAM, "inference_objective_response_sizes" + l);
    this.promptTotal = defineMetric(METRIC_COUNTER, "wasm_epp.prompt_tokens_total" + l);
    this.completionTotal = defineMetric(METRIC_COUNTER, "wasm_epp.completion_tokens_total" + l);
    this.cachedTotal = defineMetric(METRIC_COUNTER, "wasm_epp.cached_tokens_total" + l);
    this.predictedTotal = defineMetric(METRIC_COUNTER, "wasm_epp.predicted_cached_tokens_total" + l);
  }
}

export class PodSeries {
  picks: u32;
  ttft: u32;
  promptTotal: u32;
  cachedTotal: u32;
  predictedTotal: u32;
  confirmed: u32;
  missed: u32;
  observedTtft: u32;
  prefillTokensPerSec: u32;
  retention: u32;
  // When this worker last set the learned gauges (they are set at most once a second).
  gaugesSetMs: f64 = -Infinity;

  constructor(pod: string) {
    const l = label("model_server_pod", pod);
    this.picks = defineMetric(METRIC_COUNTER, "wasm_epp.endpoint_picks_total" + l);
    this.ttft = defineMetric(METRIC_HISTOGRAM, "wasm_epp.endpoint_ttft_ms" + l);
    this.promptTotal = defineMetric(METRIC_COUNTER, "wasm_epp.endpoint_prompt_tokens_total" + l);
    this.cachedTotal = defineMetric(METRIC_COUNTER, "wasm_epp.endpoint_cached_tokens_total" + l);
    this.predictedTotal = defineMetric(METRIC_COUNTER, "wasm_epp.endpoint_predicted_cached_tokens_total" + l);
    this.confirmed = defineMetric(METRIC_COUNTER, "wasm_epp.endpoint_prefix_confirmed_total" + l);
    this.missed = defineMetric(METRIC_COUNTER, "wasm_epp.endpoint_prefix_missed_total" + l);
    this.observedTtft = defineMetric(METRIC_GAUGE, "wasm_epp.endpoint_observed_ttft_ms" + l);
    this.prefillTokensPerSec = defineMetric(METRIC_GAUGE, "wasm_epp.endpoint_prefill_tokens_per_second" + l);
    this.retention = defineMetric(METRIC_GAUGE, "wasm_epp.endpoint_prefix_retention_seconds" + l);
  }
}

export class SeriesCache {
  private models: Map<string, ModelSeries> = new Map<string, ModelSeries>();
  private pods: Map<string, PodSeries> = new Map<string, PodSeries>();
  private maxSeries: i32;
  private otherModel: ModelSeries | null = null;
  private otherPod: PodSeries | null = null;

  constructor(maxSeries: i32) {
    this.maxSeries = maxSeries;
  }

  model(model: string, target: string): ModelSeries {
    const key = model + "\n" + target;
    if (this.models.has(key)) return this.models.get(key);
    if (this.models.size >= this.maxSeries) {
      if (this.otherModel === null) this.otherModel = new ModelSeries(OTHER, OTHER);
      return this.otherModel as ModelSeries;
    }
    const s = new ModelSeries(model, target);
    this.models.set(key, s);
    return s;
  }

  pod(pod: string): PodSeries {
    if (this.pods.has(pod)) return this.pods.get(pod);
    if (this.pods.size >= this.maxSeries) {
      if (this.otherPod === null) this.otherPod = new PodSeries(OTHER);
      return this.otherPod as PodSeries;
    }
    const s = new PodSeries(pod);
    this.pods.set(pod, s);
    return s;
  }
}
