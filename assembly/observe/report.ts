// A request's life as metrics (docs/metrics.md), and its answer as feedback to routing
// (learn.ts). The filter calls these from its callbacks; the names follow the Gateway API
// Inference Extension's picker where it has one (inference_objective_*), with times in ms (Envoy
// histograms take integers), and wasm_epp.* for the rest.

import * as host from "../host";
import { Endpoint, Pool } from "../state/document";
import { PrefixMatch, ms32 } from "../prefix/index";
import { PickInput } from "../schedule/pick";
import { parseDecimal } from "../util/format";
import { EppHttp, EppRoot } from "../filter";
import { ResponseWatch, OUTCOME_ERROR, OUTCOME_INCOMPLETE } from "./watch";
import { TaggedMetrics, label, OTHER } from "./metrics";
import { CONFIRMED, MISSED, NO_VERDICT } from "./learn";

const REQUEST_TOTAL = "inference_objective_request_total";
const ERROR_TOTAL = "inference_objective_request_error_total";
const RUNNING = "inference_objective_running_requests";
const DURATION = "inference_objective_request_duration_ms";
const TTFT = "inference_objective_request_ttft_ms";
const NTPOT = "inference_objective_normalized_time_per_output_token_ms";
const INPUT_TOKENS = "inference_objective_input_tokens";
const OUTPUT_TOKENS = "inference_objective_output_tokens";
const CACHED_TOKENS = "inference_objective_prompt_cached_tokens";
const REQUEST_SIZES = "inference_objective_request_sizes";
const RESPONSE_SIZES = "inference_objective_response_sizes";
const PROMPT_TOTAL = "wasm_epp.prompt_tokens_total";
const COMPLETION_TOTAL = "wasm_epp.completion_tokens_total";
const CACHED_TOTAL = "wasm_epp.cached_tokens_total";
const PREDICTED_TOTAL = "wasm_epp.predicted_cached_tokens_total";
const POD_PICKS = "wasm_epp.endpoint_picks_total";
const POD_TTFT = "wasm_epp.endpoint_ttft_ms";
const POD_PROMPT = "wasm_epp.endpoint_prompt_tokens_total";
const POD_CACHED = "wasm_epp.endpoint_cached_tokens_total";
const POD_PREDICTED = "wasm_epp.endpoint_predicted_cached_tokens_total";
const POD_CONFIRMED = "wasm_epp.endpoint_prefix_confirmed_total";
const POD_MISSED = "wasm_epp.endpoint_prefix_missed_total";
const POD_TTFT_EWMA = "wasm_epp.endpoint_observed_ttft_ms";
const POD_PREFILL_TPS = "wasm_epp.endpoint_prefill_tokens_per_second";
const POD_RETENTION = "wasm_epp.endpoint_prefix_retention_seconds";
const NO_USAGE = "wasm_epp.responses_without_usage";
const INCOMPLETE = "wasm_epp.responses_incomplete";

const UNKNOWN = "unknown";
const MODEL_OTHER = label("model_name", OTHER) + label("target_model_name", OTHER);
const POD_OTHER = label("model_server_pod", OTHER);

function modelLabels(w: ResponseWatch): string {
  return label("model_name", w.model.length > 0 ? w.model : UNKNOWN) + label("target_model_name", w.target.length > 0 ? w.target : UNKNOWN);
}

// The Inference Extension's error codes, for an answer's HTTP status.
export function errorCode(status: i32, local: bool): string {
  if (!local) return "ModelServerError";
  if (status == 429) return "InferencePoolResourceExhausted";
  if (status == 404) return "BadConfiguration";
  if (status == 400 || status == 413) return "BadRequest";
  if (status == 503) return "ServiceUnavailable";
  if (status >= 500) return "ModelServerError";
  return "Unknown";
}

// A watch for a request whose headers just arrived, or null when responses are not watched.
export function startWatch(root: EppRoot): ResponseWatch | null {
  const cfg = root.config;
  if (!cfg.observeEnabled || cfg.acceptPush) return null;
  return new ResponseWatch(host.nowMs(), cfg.observeTailBytes);
}

// The request's model as the metrics name it: a model the routing state declares, else "unknown"
// (a client's made-up names never become series of their own).
export function noteModel(w: ResponseWatch | null, model: string, target: string, known: bool, promptBytes: i64, requestBytes: i32): void {
  if (w === null) return;
  w.model = known ? model : UNKNOWN;
  w.target = known ? target : UNKNOWN;
  w.promptBytes = promptBytes;
  w.requestBytes = <i64>requestBytes;
}

// The request went upstream to `e`.
export function noteRouted(root: EppRoot, w: ResponseWatch | null, e: Endpoint, now: f64): void {
  if (w === null) return;
  w.routedMs = now;
  w.pod = e.pod;
  const m = root.tagged;
  const labels = modelLabels(w);
  m.add(REQUEST_TOTAL, labels, MODEL_OTHER, 1);
  m.gaugeAdd(RUNNING, label("model_name", w.model.length > 0 ? w.model : UNKNOWN), label("model_name", OTHER), 1);
  m.add(POD_PICKS, label("model_server_pod", e.pod), POD_OTHER, 1);
  if (w.requestBytes > 0) m.record(REQUEST_SIZES, labels, MODEL_OTHER, <f64>w.requestBytes);
}

// What answers taught, put into a pick's input: learned speeds, and records older than their
// endpoint's retention set aside. Returns the lookup's own matches before that (null when nothing
// was set aside).
export function learnedInput(root: EppRoot, input: PickInput, pool: Pool, now: f64): Int32Array | null {
  const cfg = root.config;
  if (cfg.observeTtftFeedback && root.learner.speeds.size > 0) input.speed = root.learner.speeds;
  const m = input.prefix;
  if (m === null || !cfg.observeRetentionFeedback || root.learner.pods.size == 0) return null;
  const recorded = (m as PrefixMatch).matched.slice();
  root.learner.forget(m as PrefixMatch, pool, now);
  return recorded;
}

// What the index predicted on the endpoint that computes the prompt (index `i` of the pool):
// `used`, the blocks the pick counted (after retention), and the record's own depth and age before
// it. `estimateMs`: the pick's time-to-first-token estimate there, before any learned speed.
export function notePrediction(w: ResponseWatch | null, pool: Pool, i: i32, m: PrefixMatch | null, recorded: i32, nowMs: f64, estimateMs: f64): void {
  if (w === null) return;
  const e = pool.endpoints[i];
  w.cachePod = e.pod;
  w.cachePodId = e.id;
  w.estimateMs = estimateMs;
  if (m === null) return;
  const used = m.matched[i];
  w.predictedBlocks = used > m.common ? used : m.common;
  if (recorded > m.common) {
    w.recordedBlocks = recorded;
    w.recordedAgeMs = <f64>(ms32(nowMs) - m.at[i]);
  }
}

export function onResponseHeaders(h: EppHttp, endOfStream: bool): void {
  const w = h.watch;
  if (w === null || !w.routed || h.replied) return;
  const s = host.getHeader(host.RESPONSE_HEADERS, ":status");
  const status = s !== null ? <i32>parseDecimal(s as string) : 0;
  const ct = host.getHeader(host.RESPONSE_HEADERS, "content-type");
  h.streamed = ct !== null && (ct as string).toLowerCase().startsWith("text/event-stream");
  w.onHeaders(status, endOfStream, host.nowMs());
}

export function onResponseBody(h: EppHttp, size: usize, endOfStream: bool): void {
  const w = h.watch;
  if (w === null || !w.routed || h.replied || w.ended) return;
  const now = host.nowMs();
  const n = w.onBody(<i32>size, now);
  if (n > 0) {
    const bytes = host.getResponseBody(<i32>size - n, n);
    if (bytes !== null) w.tail.push(<i32>size, changetype<usize>(bytes), bytes.byteLength);
    else w.tail.push(<i32>size, 0, 0);
  }
  if (endOfStream) w.end(now);
}

// Trailers end the answer too.
export function onResponseTrailers(h: EppHttp): void {
  const w = h.watch;
  if (w !== null && w.routed && !h.replied) w.end(host.nowMs());
}

// A local reply from this filter (a rejection): counted as the Inference Extension counts its own.
export function noteLocalReply(root: EppRoot, w: ResponseWatch | null, status: u32): void {
  if (w === null || root.config.acceptPush) return;
  root.tagged.add(ERROR_TOTAL, modelLabels(w) + label("error_code", errorCode(<i32>status, true)), MODEL_OTHER + label("error_code", OTHER), 1);
}

// The stream is over (proxy_on_log): the request's metrics, and what its answer teaches.
export function finishWatch(h: EppHttp): void {
  const w = h.watch;
  if (w === null) return;
  h.watch = null;
  if (!w.routed || h.replied) return;
  const root = h.root;
  const cfg = root.config;
  const m = root.tagged;
  const labels = modelLabels(w);
  m.gaugeAdd(RUNNING, label("model_name", w.model.length > 0 ? w.model : UNKNOWN), label("model_name", OTHER), -1);
  const pod = label("model_server_pod", w.pod);
  const outcome = w.outcome;
  if (outcome == OUTCOME_INCOMPLETE) {
    m.add(INCOMPLETE, "", "", 1);
    return;
  }
  if (outcome == OUTCOME_ERROR) {
    m.add(ERROR_TOTAL, labels + label("error_code", errorCode(w.status, false)), MODEL_OTHER + label("error_code", OTHER), 1);
    return;
  }
  const duration = w.durationMs;
  m.record(DURATION, labels, MODEL_OTHER, duration);
  m.record(RESPONSE_SIZES, labels, MODEL_OTHER, <f64>w.tail.total);
  const ttft = w.ttftMs;
  if (ttft >= 0) {
    m.record(TTFT, labels, MODEL_OTHER, ttft);
    m.record(POD_TTFT, pod, POD_OTHER, ttft);
  }
  const u = w.usage;
  if (!u.found) {
    m.add(NO_USAGE, "", "", 1);
  } else {
    if (u.promptTokens >= 0) {
      m.record(INPUT_TOKENS, labels, MODEL_OTHER, <f64>u.promptTokens);
      m.add(PROMPT_TOTAL, labels, MODEL_OTHER, u.promptTokens);
      m.add(POD_PROMPT, pod, POD_OTHER, u.promptTokens);
    }
    if (u.completionTokens >= 0) {
      m.record(OUTPUT_TOKENS, labels, MODEL_OTHER, <f64>u.completionTokens);
      m.add(COMPLETION_TOTAL, labels, MODEL_OTHER, u.completionTokens);
      if (u.completionTokens > 0) m.record(NTPOT, labels, MODEL_OTHER, duration / <f64>u.completionTokens);
    }
    const cached = u.cachedTokens > 0 ? u.cachedTokens : 0;
    m.record(CACHED_TOKENS, labels, MODEL_OTHER, <f64>cached);
    m.add(CACHED_TOTAL, labels, MODEL_OTHER, cached);
    m.add(POD_CACHED, pod, POD_OTHER, cached);
    const predicted = w.predictedCachedTokens(cfg.prefixBlockSize);
    if (predicted > 0) {
      m.add(PREDICTED_TOTAL, labels, MODEL_OTHER, <i64>predicted);
      m.add(POD_PREDICTED, pod, POD_OTHER, <i64>predicted);
    }
  }
  // What the answer teaches: learned always (the gauges show it), used by picks only where
  // observe.ttft_feedback / retention_feedback say so.
  const id = w.cachePodId;
  if (id == 0) return;
  const learner = root.learner;
  const verdict = learner.observe(w, id, h.streamed, cfg.prefixBlockSize);
  const cachePod = label("model_server_pod", w.cachePod);
  if (verdict == CONFIRMED) m.add(POD_CONFIRMED, cachePod, POD_OTHER, 1);
  else if (verdict == MISSED) m.add(POD_MISSED, cachePod, POD_OTHER, 1);
  const p = learner.pods.has(id) ? learner.pods.get(id) : null;
  if (p === null) return;
  if (p.ttftMs >= 0) m.gaugeSet(POD_TTFT_EWMA, cachePod, POD_OTHER, p.ttftMs);
  if (p.prefillTokensPerSec >= 0) m.gaugeSet(POD_PREFILL_TPS, cachePod, POD_OTHER, p.prefillTokensPerSec);
  if (verdict != NO_VERDICT) m.gaugeSet(POD_RETENTION, cachePod, POD_OTHER, p.retentionMs / 1000);
}
