// Plugin configuration: read once per root context, validated whole, immutable afterwards.
// Unknown keys are ignored (so a newer configuration loads on an older filter); a wrong type or
// an out-of-range value names the key and makes proxy_on_configure fail.

import { formatNumber } from "./util/format";
import { JsonValue, parseJsonString } from "./json/value";

export const UNKNOWN_MODEL_PASSTHROUGH: i32 = 0;
export const UNKNOWN_MODEL_REJECT: i32 = 1;

// How a band of the hold queue releases its requests: round-robin over fairness flows, or oldest first.
export const FAIRNESS_ROUND_ROBIN: i32 = 0;
export const FAIRNESS_FCFS: i32 = 1;

export class Weights {
  queue: f64 = 2;
  kvCache: f64 = 2;
  prefix: f64 = 3;
  lora: f64 = 1;
  ttft: f64 = 2;
  // The sidecar's score counts queue and KV again (with freshness): a tie-breaker, not a driver.
  score: f64 = 0.1;
}

export class Config {
  // "namespace/name" of the InferencePool this filter routes to; "" means the only pool in the
  // state document.
  pool: string = "";
  acceptPush: bool = false;
  pushToken: string = "";
  maxBodyBytes: i32 = 8 * 1024 * 1024;
  maxStateBytes: i32 = 4 * 1024 * 1024;
  staleAfterMs: f64 = 5000;
  unknownModel: i32 = UNKNOWN_MODEL_PASSTHROUGH;
  endpointHeader: string = "x-gateway-destination-endpoint";
  logRequests: bool = true;
  // Read the objective headers (x-llm-d-inference-objective, else x-gateway-inference-objective):
  // an InferenceObjective of the pool they name sets the request's criticality.
  objectiveHeader: bool = true;
  // Saturation (GIE defaults): an endpoint with waiting >= queueThreshold, KV usage >=
  // kvThreshold or metrics older than metricsStaleMs is saturated; Sheddable requests are
  // refused with 429 while every endpoint is.
  queueThreshold: f64 = 5;
  kvThreshold: f64 = 0.8;
  metricsStaleMs: f64 = 1000;
  // Prefix hashing: blocks of blockSize bytes of prompt text (16 tokens x ~4 bytes), at most
  // maxBlocks of them.
  prefixBlockSize: i32 = 64;
  prefixMaxBlocks: i32 = 256;
  // Prefix index ceiling: sets x 4 ways x 4 endpoints each.
  prefixIndexSets: i32 = 8192;
  prefixTtlMs: f64 = 600000;
  // Prefix affinity only counts on an endpoint whose outstanding requests stay within
  // min * prefixLoadRatio + prefixLoadSlack of the least loaded candidate.
  prefixLoadRatio: f64 = 3;
  prefixLoadSlack: f64 = 16;
  // Time to first token, estimated per endpoint: prefill still due there from what this proxy
  // sent, plus this prompt's uncached tokens, at prefillTokensPerSec; prompt tokens are prompt
  // bytes / bytesPerToken. Scores compare estimates with floorMs added to both.
  prefillTokensPerSec: f64 = 5000;
  bytesPerToken: f64 = 4;
  ttftFloorMs: f64 = 100;
  ttftQueuedRequestMs: f64 = 0;
  ttftSlackMs: f64 = 0;
  ttftTolerance: f64 = 0;
  ttftBacklogTolerance: f64 = 0;
  // Tolerance while the pool is saturated; negative: the same as ttftTolerance.
  ttftSaturatedTolerance: f64 = -1;
  // Tolerance while the pool's clients run closed loop; negative: the same as ttftTolerance.
  ttftClosedLoopTolerance: f64 = 3;
  ttftOverloadMs: f64 = Infinity;
  ttftLoraBlockedMs: f64 = 5000;
  ttftBacklogMode: i32 = 1;
  // Bounded load: an endpoint whose outstanding requests exceed max(mean x loadFactor,
  // mean + loadSlack) over the candidates does not win (0: off).
  balanceLoadFactor: f64 = 0;
  balanceLoadSlack: f64 = 4;
  // Ceiling on endpoints per pool, in the state document and in the load record.
  maxEndpoints: i32 = 1024;
  weights: Weights = new Weights();
  // Prefill/decode pools: the prefill copy goes by proxy_http_call to pdCluster (an ORIGINAL_DST
  // cluster that honours the endpoint header), with pdTimeoutMs at most; a prefill pod that
  // failed is avoided for pdFailureCooldownMs; the decode side of a failed prefill is aborted
  // with a POST to pdAbortPath. At most pdMaxPending prefill calls per worker are in flight.
  pdCluster: string = "wasm_epp_original_dst";
  pdTimeoutMs: i32 = 300000;
  pdFailureCooldownMs: f64 = 10000;
  pdAbortPath: string = "/abort_request";
  pdMaxPending: i32 = 10000;
  // Priority queuing: while the pool's saturation (GIE's detector with this proxy's in-flight
  // credits) is at or above queueSaturationLimit, requests are held after their body is read and
  // released from the worker's root context every queueTickMs (and on wake-ups), highest band
  // first. Held at most queueTtlMs (Sheddable: queueSheddableTtlMs, when queued at all); at most
  // queueMaxRequests requests and queueMaxBytes body bytes per band and worker.
  queueEnabled: bool = true;
  queueSaturationLimit: f64 = 1;
  queueTickMs: i32 = 10;
  queueTtlMs: f64 = 30000;
  queueShedSheddable: bool = true;
  queueSheddableTtlMs: f64 = 5000;
  queueMaxRequests: i32 = 1000;
  queueMaxBytes: f64 = 64 * 1024 * 1024;
  // Priority needs more than one band: the highest band that arrived within queueWindowMs is
  // never held (holding the only traffic there is would only cost throughput), and the bands
  // below it are held and released at queueSaturationLimit - queueHeadroom, so that the pool keeps
  // room for the top band's requests to start at once.
  queueHeadroom: f64 = 0.3;
  queueWindowMs: f64 = 60000;
  // Within a band: round-robin over fairness flows (each first in first out), or first come
  // first served across them.
  queueFairness: i32 = FAIRNESS_ROUND_ROBIN;
  // Watching responses: per-request timing, token counts and cache hits as metrics (the last
  // observeTailBytes of each response are kept to find its usage), and what they teach routing:
  // each endpoint's observed speed against the estimate (observeTtftFeedback) and how long its
  // prefix cache really keeps what the index says it holds (observeRetentionFeedback), learned
  // at rate observeAlpha.
  observeEnabled: bool = true;
  observeTailBytes: i32 = 4096;
  observeTtftFeedback: bool = false;
  observeRetentionFeedback: bool = false;
  observeAlpha: f64 = 0.2;
  // Relative speeds within 1 ± observeTtftDeadband count as 1 (equal pods differ by noise).
  observeTtftDeadband: f64 = 0.2;
  // Distinct label sets per family before further ones are counted as "other".
  observeMaxSeries: i32 = 512;
  // Affinity by rendezvous hashing (schedule/affinity.ts): 0 off, 1 ties only, 2 also a request
  // the prefix index knows nothing useful about goes to its key's home among the endpoints scoring
  // within affinityTolerance (a fraction) of the best. Key: through the first user turn, or
  // affinityBlocks blocks past those every endpoint holds.
  affinityMode: i32 = 0;
  affinityBlocks: i32 = 4;
  affinityTolerance: f64 = 0.05;
  // Sharing the prefix index with the gateway's other replicas (peers/, docs/replicas.md): the
  // routing filter journals what it records in a ring of peersJournal records for its sidecar
  // to pass on, and the push listener merges peers' records of at most peersMaxImportBytes.
  peersEnabled: bool = false;
  peersJournal: i32 = 4096;
  peersMaxImportBytes: i32 = 1048576;
  // The other replicas' loads (peers/load.ts) count in picks until this old.
  peersLoadTtlMs: f64 = 1000;
}

export class ConfigResult {
  config: Config | null = null;
  error: string = "";
}

class Reader {
  error: string = "";

  fail(key: string, message: string): void {
    if (this.error.length == 0) this.error = key + ": " + message;
  }

  str(obj: JsonValue, key: string, dflt: string, prefix: string = ""): string {
    const v = obj.get(key);
    if (v === null || v.isNull()) return dflt;
    if (!v.isString()) {
      this.fail(prefix + key, "must be a string");
      return dflt;
    }
    return v.str;
  }

  bool(obj: JsonValue, key: string, dflt: bool, prefix: string = ""): bool {
    const v = obj.get(key);
    if (v === null || v.isNull()) return dflt;
    if (!v.isBool()) {
      this.fail(prefix + key, "must be true or false");
      return dflt;
    }
    return v.isTrue();
  }

  num(obj: JsonValue, key: string, dflt: f64, min: f64, max: f64, prefix: string = ""): f64 {
    const v = obj.get(key);
    if (v === null || v.isNull()) return dflt;
    if (!v.isNumber() || !isFinite(v.num)) {
      this.fail(prefix + key, "must be a number");
      return dflt;
    }
    if (v.num < min || v.num > max) {
      this.fail(prefix + key, "must be between " + formatNumber(min) + " and " + formatNumber(max));
      return dflt;
    }
    return v.num;
  }

  int(obj: JsonValue, key: string, dflt: i32, min: i32, max: i32, prefix: string = ""): i32 {
    const v = this.num(obj, key, <f64>dflt, <f64>min, <f64>max, prefix);
    if (v != Math.floor(v)) {
      this.fail(prefix + key, "must be an integer");
      return dflt;
    }
    return <i32>v;
  }

  section(obj: JsonValue, key: string): JsonValue | null {
    const v = obj.get(key);
    if (v === null || v.isNull()) return null;
    if (!v.isObject()) {
      this.fail(key, "must be an object");
      return null;
    }
    return v;
  }
}

export function parseConfig(text: string): ConfigResult {
  const result = new ConfigResult();
  const c = new Config();
  if (text.trim().length == 0) {
    result.config = c;
    return result;
  }
  const parsed = parseJsonString(text);
  if (!parsed.ok) {
    result.error = "configuration is not valid JSON: " + parsed.error + " at byte " + parsed.errorAt.toString();
    return result;
  }
  const root = parsed.value as JsonValue;
  if (!root.isObject()) {
    result.error = "configuration must be a JSON object";
    return result;
  }
  const r = new Reader();
  c.pool = r.str(root, "pool", c.pool);
  if (c.pool.length > 0 && !isPoolName(c.pool)) r.fail("pool", "must be \"namespace/name\"");
  c.acceptPush = r.bool(root, "accept_push", c.acceptPush);
  c.pushToken = r.str(root, "push_token", c.pushToken);
  c.maxBodyBytes = r.int(root, "max_body_bytes", c.maxBodyBytes, 1024, 256 * 1024 * 1024);
  c.maxStateBytes = r.int(root, "max_state_bytes", c.maxStateBytes, 1024, 64 * 1024 * 1024);
  c.staleAfterMs = r.num(root, "stale_after_ms", c.staleAfterMs, 100, 86400000);
  const unknown = r.str(root, "unknown_model", "passthrough");
  if (unknown == "passthrough") c.unknownModel = UNKNOWN_MODEL_PASSTHROUGH;
  else if (unknown == "reject") c.unknownModel = UNKNOWN_MODEL_REJECT;
  else r.fail("unknown_model", "must be \"passthrough\" or \"reject\"");
  c.endpointHeader = r.str(root, "endpoint_header", c.endpointHeader).toLowerCase();
  if (!isHeaderName(c.endpointHeader)) r.fail("endpoint_header", "must be a valid lowercase header name");
  c.logRequests = r.bool(root, "log_requests", c.logRequests);
  c.objectiveHeader = r.bool(root, "objective_header", c.objectiveHeader);
  c.maxEndpoints = r.int(root, "max_endpoints", c.maxEndpoints, 1, 65536);

  const sat = r.section(root, "saturation");
  if (sat !== null) {
    c.queueThreshold = r.num(sat, "queue_threshold", c.queueThreshold, 0, 1e9, "saturation.");
    c.kvThreshold = r.num(sat, "kv_threshold", c.kvThreshold, 0, 1, "saturation.");
    c.metricsStaleMs = r.num(sat, "metrics_stale_ms", c.metricsStaleMs, 1, 86400000, "saturation.");
  }
  const px = r.section(root, "prefix");
  if (px !== null) {
    c.prefixBlockSize = r.int(px, "block_size", c.prefixBlockSize, 4, 65536, "prefix.");
    c.prefixMaxBlocks = r.int(px, "max_blocks", c.prefixMaxBlocks, 1, 4096, "prefix.");
    c.prefixIndexSets = r.int(px, "index_sets", c.prefixIndexSets, 1, 1048576, "prefix.");
    c.prefixTtlMs = r.num(px, "ttl_ms", c.prefixTtlMs, 1000, 86400000, "prefix.");
    c.prefixLoadRatio = r.num(px, "load_ratio", c.prefixLoadRatio, 1, 1000, "prefix.");
    c.prefixLoadSlack = r.num(px, "load_slack", c.prefixLoadSlack, 0, 1e6, "prefix.");
  }
  const tt = r.section(root, "ttft");
  if (tt !== null) {
    c.prefillTokensPerSec = r.num(tt, "prefill_tokens_per_s", c.prefillTokensPerSec, 1, 1e9, "ttft.");
    c.bytesPerToken = r.num(tt, "bytes_per_token", c.bytesPerToken, 0.5, 64, "ttft.");
    c.ttftFloorMs = r.num(tt, "floor_ms", c.ttftFloorMs, 0.001, 1e6, "ttft.");
    c.ttftQueuedRequestMs = r.num(tt, "queued_request_ms", c.ttftQueuedRequestMs, 0, 1e6, "ttft.");
    c.ttftBacklogMode = r.int(tt, "backlog_mode", c.ttftBacklogMode, 0, 2, "ttft.");
    c.ttftSlackMs = r.num(tt, "slack_ms", c.ttftSlackMs, 0, 1e6, "ttft.");
    c.ttftTolerance = r.num(tt, "tolerance", c.ttftTolerance, 0, 100, "ttft.");
    c.ttftBacklogTolerance = r.num(tt, "backlog_tolerance", c.ttftBacklogTolerance, 0, 100, "ttft.");
    c.ttftSaturatedTolerance = r.num(tt, "saturated_tolerance", c.ttftSaturatedTolerance, -1, 100, "ttft.");
    c.ttftClosedLoopTolerance = r.num(tt, "closed_loop_tolerance", c.ttftClosedLoopTolerance, -1, 100, "ttft.");
    c.ttftOverloadMs = r.num(tt, "overload_ms", c.ttftOverloadMs, 0, Infinity, "ttft.");
    c.ttftLoraBlockedMs = r.num(tt, "lora_blocked_ms", c.ttftLoraBlockedMs, 0, 1e6, "ttft.");
  }
  const bal = r.section(root, "balance");
  if (bal !== null) {
    c.balanceLoadFactor = r.num(bal, "load_factor", c.balanceLoadFactor, 0, 1000, "balance.");
    if (c.balanceLoadFactor > 0 && c.balanceLoadFactor < 1) r.fail("balance.load_factor", "must be 0 (off) or at least 1");
    c.balanceLoadSlack = r.num(bal, "load_slack", c.balanceLoadSlack, 0, 1e6, "balance.");
  }
  const pd = r.section(root, "pd");
  if (pd !== null) {
    c.pdCluster = r.str(pd, "cluster", c.pdCluster, "pd.");
    if (c.pdCluster.length == 0 || c.pdCluster.length > 256) r.fail("pd.cluster", "must name the cluster (1 to 256 characters)");
    c.pdTimeoutMs = r.int(pd, "timeout_ms", c.pdTimeoutMs, 0, 3600000, "pd.");
    c.pdFailureCooldownMs = r.num(pd, "failure_cooldown_ms", c.pdFailureCooldownMs, 0, 3600000, "pd.");
    c.pdAbortPath = r.str(pd, "abort_path", c.pdAbortPath, "pd.");
    if (c.pdAbortPath.length > 0 && !c.pdAbortPath.startsWith("/")) r.fail("pd.abort_path", "must be a path starting with / (or \"\" to send no abort)");
    c.pdMaxPending = r.int(pd, "max_pending", c.pdMaxPending, 1, 1000000, "pd.");
  }
  const qu = r.section(root, "queue");
  if (qu !== null) {
    c.queueEnabled = r.bool(qu, "enabled", c.queueEnabled, "queue.");
    c.queueSaturationLimit = r.num(qu, "saturation_limit", c.queueSaturationLimit, 0.01, 1000, "queue.");
    c.queueTickMs = r.int(qu, "tick_ms", c.queueTickMs, 1, 1000, "queue.");
    c.queueTtlMs = r.num(qu, "ttl_ms", c.queueTtlMs, 1, 3600000, "queue.");
    const sh = r.str(qu, "sheddable", "shed", "queue.");
    if (sh == "shed") c.queueShedSheddable = true;
    else if (sh == "queue") c.queueShedSheddable = false;
    else r.fail("queue.sheddable", "must be \"shed\" or \"queue\"");
    c.queueSheddableTtlMs = r.num(qu, "sheddable_ttl_ms", c.queueSheddableTtlMs, 1, 3600000, "queue.");
    c.queueMaxRequests = r.int(qu, "max_requests", c.queueMaxRequests, 1, 1000000, "queue.");
    c.queueMaxBytes = r.num(qu, "max_bytes", c.queueMaxBytes, 1024, 16 * 1024 * 1024 * 1024, "queue.");
    c.queueHeadroom = r.num(qu, "headroom", c.queueHeadroom, 0, 100, "queue.");
    c.queueWindowMs = r.num(qu, "window_ms", c.queueWindowMs, 0, 86400000, "queue.");
    const fair = r.str(qu, "fairness", "round_robin", "queue.");
    if (fair == "round_robin") c.queueFairness = FAIRNESS_ROUND_ROBIN;
    else if (fair == "fcfs") c.queueFairness = FAIRNESS_FCFS;
    else r.fail("queue.fairness", "must be \"round_robin\" or \"fcfs\"");
  }
  const ob = r.section(root, "observe");
  if (ob !== null) {
    c.observeEnabled = r.bool(ob, "enabled", c.observeEnabled, "observe.");
    c.observeTailBytes = r.int(ob, "tail_bytes", c.observeTailBytes, 256, 1048576, "observe.");
    c.observeTtftFeedback = r.bool(ob, "ttft_feedback", c.observeTtftFeedback, "observe.");
    c.observeRetentionFeedback = r.bool(ob, "retention_feedback", c.observeRetentionFeedback, "observe.");
    c.observeAlpha = r.num(ob, "alpha", c.observeAlpha, 0.001, 1, "observe.");
    c.observeTtftDeadband = r.num(ob, "ttft_deadband", c.observeTtftDeadband, 0, 10, "observe.");
    c.observeMaxSeries = r.int(ob, "max_series", c.observeMaxSeries, 1, 65536, "observe.");
  }
  const af = r.section(root, "affinity");
  if (af !== null) {
    const mode = r.str(af, "mode", "off", "affinity.");
    if (mode == "off") c.affinityMode = 0;
    else if (mode == "tiebreak") c.affinityMode = 1;
    else if (mode == "place") c.affinityMode = 2;
    else r.fail("affinity.mode", "must be \"off\", \"tiebreak\" or \"place\"");
    c.affinityBlocks = r.int(af, "blocks", c.affinityBlocks, 1, 4096, "affinity.");
    c.affinityTolerance = r.num(af, "tolerance", c.affinityTolerance, 0, 10, "affinity.");
  }
  const pe = r.section(root, "peers");
  if (pe !== null) {
    c.peersEnabled = r.bool(pe, "enabled", c.peersEnabled, "peers.");
    c.peersJournal = r.int(pe, "journal", c.peersJournal, 16, 1048576, "peers.");
    c.peersMaxImportBytes = r.int(pe, "max_import_bytes", c.peersMaxImportBytes, 1024, 64 * 1024 * 1024, "peers.");
    c.peersLoadTtlMs = r.num(pe, "load_ttl_ms", c.peersLoadTtlMs, 10, 600000, "peers.");
  }
  const w = r.section(root, "weights");
  if (w !== null) {
    c.weights.queue = r.num(w, "queue", c.weights.queue, 0, 1000, "weights.");
    c.weights.kvCache = r.num(w, "kv_cache", c.weights.kvCache, 0, 1000, "weights.");
    c.weights.prefix = r.num(w, "prefix", c.weights.prefix, 0, 1000, "weights.");
    c.weights.lora = r.num(w, "lora", c.weights.lora, 0, 1000, "weights.");
    c.weights.score = r.num(w, "score", c.weights.score, 0, 1000, "weights.");
    c.weights.ttft = r.num(w, "ttft", c.weights.ttft, 0, 1000, "weights.");
  }
  if (r.error.length > 0) {
    result.error = r.error;
    return result;
  }
  result.config = c;
  return result;
}

// "namespace/name" with Kubernetes DNS-label characters.
export function isPoolName(s: string): bool {
  const slash = s.indexOf("/");
  if (slash <= 0 || slash == s.length - 1 || s.indexOf("/", slash + 1) >= 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x2f) continue;
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2e)) return false;
  }
  return s.length <= 253 + 1 + 253;
}

function isHeaderName(s: string): bool {
  if (s.length == 0 || s.length > 128) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f)) return false;
  }
  return true;
}
