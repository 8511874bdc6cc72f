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
import { label, OTHER } from "./metrics";
import { ModelSeries } from "./series";
import { incrementMetric, recordMetric } from "../host";
import { CONFIRMED, MISSED, NO_VERDICT } from "./learn";

const ERROR_TOTAL = "inference_objective_request_error_total";
const NO_USAGE = "wasm_epp.responses_without_usage";
const INCOMPLETE = "wasm_epp.responses_incomplete";
const UNKNOWN = "unknown";
const ERROR_OTHER = label("model_name", OTHER) + label("target_model_name", OTHER) + label("error_code", OTHER);
// The learned gauges are set at most this often per pod and worker.
const GAUGE_EVERY_MS: f64 = 1000;

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
  const ms = root.series.model(w.model.length > 0 ? w.model : UNKNOWN, w.target.length > 0 ? w.target : UNKNOWN);
  w.models = ms;
  incrementMetric(ms.requestTotal, 1);
  incrementMetric(ms.running, 1);
  incrementMetric(root.series.pod(e.pod).picks, 1);
  if (w.requestBytes > 0) recordMetric(ms.requestSizes, <u64>w.requestBytes);
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
  // A body of known length: only its last bytes are read.
  const cl = host.getHeader(host.RESPONSE_HEADERS, "content-length");
  if (cl !== null) {
    const v = parseDecimal(cl as string);
    if (v >= 0 && v < 1e15) w.expectedBytes = <i64>v;
  }
  w.onHeaders(status, endOfStream, host.nowMs());
}

export function onResponseBody(h: EppHttp, size: usize, endOfStream: bool): void {
  const w = h.watch;
  if (w === null || !w.routed || h.replied || w.ended) return;
  // The clock is read for the first byte and the end only.
  if (size > 0 && w.firstByteMs < 0) w.firstByteMs = host.nowMs();
  const n = w.wanted(<i32>size);
  if (n > 0) {
    const t = w.ring();
    if (!host.readResponseBody(<i32>size - n, n, t)) t.push(<i32>size, 0, 0);
  } else if (size > 0) {
    w.skipped(<i32>size);
  }
  w.seen += <i64>size;
  if (endOfStream) w.end(host.nowMs());
}

// Trailers end the answer too.
export function onResponseTrailers(h: EppHttp): void {
  const w = h.watch;
  if (w !== null && w.routed && !h.replied) w.end(host.nowMs());
}

// A local reply from this filter (a rejection): counted as the Inference Extension counts its own.
export function noteLocalReply(root: EppRoot, w: ResponseWatch | null, status: u32): void {
  if (w === null || root.config.acceptPush) return;
  countError(root, w, errorCode(<i32>status, true));
}

function countError(root: EppRoot, w: ResponseWatch, code: string): void {
  const labels = label("model_name", w.model.length > 0 ? w.model : UNKNOWN) + label("target_model_name", w.target.length > 0 ? w.target : UNKNOWN);
  root.tagged.add(ERROR_TOTAL, labels + label("error_code", code), ERROR_OTHER, 1);
}

// The stream is over (proxy_on_log): the request's metrics, and what its answer teaches.
export function finishWatch(h: EppHttp): void {
  const w = h.watch;
  if (w === null) return;
  h.watch = null;
  w.release();
  const ms = w.models;
  if (ms === null || h.replied) return;
  const root = h.root;
  const cfg = root.config;
  const m = root.tagged;
  incrementMetric(ms.running, -1);
  const outcome = w.outcome;
  if (outcome == OUTCOME_INCOMPLETE) {
    m.add(INCOMPLETE, "", "", 1);
    return;
  }
  if (outcome == OUTCOME_ERROR) {
    countError(root, w, errorCode(w.status, false));
    return;
  }
  const pod = root.series.pod(w.pod);
  const duration = w.durationMs;
  record(ms.duration, duration);
  recordMetric(ms.responseSizes, <u64>w.seen);
  const ttft = w.ttftMs;
  if (ttft >= 0) {
    record(ms.ttft, ttft);
    record(pod.ttft, ttft);
  }
  const u = w.usage;
  if (!u.found) {
    m.add(NO_USAGE, "", "", 1);
  } else {
    if (u.promptTokens >= 0) {
      recordMetric(ms.inputTokens, <u64>u.promptTokens);
      incrementMetric(ms.promptTotal, u.promptTokens);
      incrementMetric(pod.promptTotal, u.promptTokens);
    }
    if (u.completionTokens >= 0) {
      recordMetric(ms.outputTokens, <u64>u.completionTokens);
      incrementMetric(ms.completionTotal, u.completionTokens);
      if (u.completionTokens > 0) record(ms.ntpot, duration / <f64>u.completionTokens);
    }
    const cached = u.cachedTokens > 0 ? u.cachedTokens : 0;
    recordMetric(ms.cachedTokens, <u64>cached);
    if (cached > 0) {
      incrementMetric(ms.cachedTotal, cached);
      incrementMetric(pod.cachedTotal, cached);
    }
    const predicted = w.predictedCachedTokens(cfg.prefixBlockSize);
    if (predicted > 0) {
      incrementMetric(ms.predictedTotal, <i64>predicted);
      incrementMetric(pod.predictedTotal, <i64>predicted);
    }
  }
  // What the answer teaches: learned always (the gauges show it), used by picks only where
  // observe.ttft_feedback / retention_feedback say so.
  const id = w.cachePodId;
  if (id == 0) return;
  const learner = root.learner;
  const verdict = learner.observe(w, id, h.streamed, cfg.prefixBlockSize);
  const cp = w.cachePod == w.pod ? pod : root.series.pod(w.cachePod);
  if (verdict == CONFIRMED) incrementMetric(cp.confirmed, 1);
  else if (verdict == MISSED) incrementMetric(cp.missed, 1);
  const now = w.endMs;
  if (now - cp.gaugesSetMs < GAUGE_EVERY_MS || !learner.pods.has(id)) return;
  cp.gaugesSetMs = now;
  const p = learner.pods.get(id);
  if (p.ttftMs >= 0) record(cp.observedTtft, p.ttftMs);
  if (p.prefillTokensPerSec >= 0) record(cp.prefillTokensPerSec, p.prefillTokensPerSec);
  record(cp.retention, p.retentionMs / 1000);
}

// Records a histogram value or sets a gauge, rounded (Envoy takes integers).
function record(id: u32, value: f64): void {
  recordMetric(id, value > 0 ? <u64>Math.round(value) : 0);
}
