// The filter's counters, declared once. Envoy exposes them as wasmcustom.wasm_epp.<name>
// (Prometheus, /stats/prometheus: wasm_epp_<name>: Envoy prints its wasmcustom namespace without
// the envoy_ prefix). Every degraded path increments one and logs
// a warning.

import { defineMetric, incrementMetric, recordMetric, METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } from "./host";

export const ROUTED: i32 = 0; // requests sent to an endpoint the filter picked
export const ROUTED_UNPARSED: i32 = 1; // ... without a JSON body to read (GET /v1/models, ...)
export const ROUTED_DEGRADED: i32 = 2; // ... while the state was stale
export const PREFIX_HIT: i32 = 3; // ... to an endpoint holding part of the prompt's prefix
export const MODEL_REWRITTEN: i32 = 4; // ... with "model" rewritten to a target model
export const UNKNOWN_MODEL_PASSTHROUGH: i32 = 5; // ... for a model no InferenceModel names
export const CLIENT_HEADER_REPLACED: i32 = 6; // ... where the client had set the endpoint header
export const INVALID_BODY: i32 = 7; // 400
export const BODY_TOO_LARGE: i32 = 8; // 413
export const MODEL_NOT_FOUND: i32 = 9; // 404 (unknown_model: reject)
export const SHED: i32 = 10; // 429
export const NO_ENDPOINT: i32 = 11; // 503: no ready endpoint
export const NO_STATE: i32 = 12; // 503: nothing pushed yet, or the pool is missing
export const PUSH_ACCEPTED: i32 = 13;
export const PUSH_UNAUTHORIZED: i32 = 14;
export const PUSH_INVALID: i32 = 15;
export const PUSH_CONFLICT: i32 = 16;
export const PUSH_TOO_LARGE: i32 = 17;
export const STATE_RELOADED: i32 = 18; // a worker decoded a newer state
export const STATE_UNREADABLE: i32 = 19; // a stored state failed to decode (kept the old one)
export const LOAD_UPDATE_LOST: i32 = 20; // in-flight update lost to CAS contention
export const PREFIX_INDEX_WRITES: i32 = 21;
// Prefill/decode pools.
export const PD_ROUTED: i32 = 22; // requests split into a prefill call and a decode request
export const PD_PREFILL_OK: i32 = 23; // prefill answered 2xx
export const PD_PREFILL_FAILED: i32 = 24; // prefill reset or answered 5xx
export const PD_PREFILL_TIMEOUT: i32 = 25; // prefill not answered within pd.timeout_ms
export const PD_PREFILL_REJECTED: i32 = 26; // prefill answered 4xx (the request's fault)
export const PD_DISPATCH_FAILED: i32 = 27; // the proxy refused the prefill call (503)
export const PD_ABORT_SENT: i32 = 28; // decode side aborted after a failed prefill
export const PD_ABORT_FAILED: i32 = 29; // ... and the abort itself failed
export const PD_CLIENT_ANSWERED: i32 = 30; // the client got the prefill's failure as the answer
export const PD_BOOTSTRAP_REMOVED: i32 = 31; // client-sent bootstrap fields removed
export const PD_NO_PREFILL: i32 = 32; // 503: no ready prefill endpoint
// Priority queuing, per band (add the band: 0 Critical, 1 Standard, 2 Sheddable).
export const QUEUE_HELD: i32 = 33; // requests held while the pool was saturated
export const QUEUE_ADMITTED: i32 = 36; // ... released to an endpoint
export const QUEUE_EXPIRED: i32 = 39; // 429 queue_timeout
export const QUEUE_REJECTED: i32 = 42; // 429 queue_full at arrival
export const QUEUE_CANCELLED: i32 = 45; // the client went away while held
// Prefix sharing with the gateway's other replicas (peers/).
export const PEER_RECORDS_JOURNALED: i32 = 48; // records journaled for the sidecar to pass on
export const PEER_RECORDS_DROPPED: i32 = 49; // ... dropped under contention for the journal head
export const PEER_HASHES_MERGED: i32 = 50; // other replicas' entries merged into the index
export const PEER_HASHES_SKIPPED: i32 = 51; // ... skipped: expired, or not newer than the index's
export const PEER_BATCHES_INVALID: i32 = 52; // batches and load records refused as malformed
export const PEER_LOADS_MERGED: i32 = 53; // other replicas' load records taken
// InferenceObjectives named by requests (objective/).
export const OBJECTIVE_APPLIED: i32 = 54; // an objective of the pool set the request's criticality
export const OBJECTIVE_UNKNOWN: i32 = 55; // ... named one the pool does not have (criticality unchanged)
const COUNT: i32 = 56;

const NAMES: StaticArray<string> = [
  "requests_routed",
  "requests_routed_unparsed",
  "requests_routed_degraded",
  "prefix_hits",
  "model_rewritten",
  "unknown_model_passthrough",
  "client_endpoint_header_replaced",
  "invalid_body",
  "body_too_large",
  "model_not_found",
  "requests_shed",
  "no_ready_endpoint",
  "no_routing_state",
  "push_accepted",
  "push_unauthorized",
  "push_invalid",
  "push_conflict",
  "push_too_large",
  "state_reloaded",
  "state_unreadable",
  "load_update_lost",
  "prefix_index_writes",
  "pd_requests_routed",
  "pd_prefill_ok",
  "pd_prefill_failed",
  "pd_prefill_timeout",
  "pd_prefill_rejected",
  "pd_prefill_dispatch_failed",
  "pd_decode_abort_sent",
  "pd_decode_abort_failed",
  "pd_client_answered",
  "pd_client_bootstrap_removed",
  "pd_no_prefill_endpoint",
  "queue_held_critical", "queue_held_standard", "queue_held_sheddable",
  "queue_admitted_critical", "queue_admitted_standard", "queue_admitted_sheddable",
  "queue_expired_critical", "queue_expired_standard", "queue_expired_sheddable",
  "queue_rejected_critical", "queue_rejected_standard", "queue_rejected_sheddable",
  "queue_cancelled_critical", "queue_cancelled_standard", "queue_cancelled_sheddable",
  "peer_records_journaled",
  "peer_records_dropped",
  "peer_hashes_merged",
  "peer_hashes_skipped",
  "peer_batches_invalid",
  "peer_loads_merged",
  "objective_applied",
  "objective_unknown",
];

export const GAUGE_STATE_VERSION: i32 = 0;
export const GAUGE_STATE_GENERATED_AT_S: i32 = 1;
// Requests held per band on every worker (add the band).
export const GAUGE_QUEUE_SIZE: i32 = 2;
const GAUGES: i32 = 5;

export class Stats {
  private ids: StaticArray<u32> = new StaticArray<u32>(COUNT);
  private gauges: StaticArray<u32> = new StaticArray<u32>(GAUGES);
  private queueTime: u32;

  constructor() {
    for (let i = 0; i < COUNT; i++) this.ids[i] = defineMetric(METRIC_COUNTER, "wasm_epp." + NAMES[i]);
    this.gauges[0] = defineMetric(METRIC_GAUGE, "wasm_epp.state_version");
    this.gauges[1] = defineMetric(METRIC_GAUGE, "wasm_epp.state_generated_at_seconds");
    this.gauges[2] = defineMetric(METRIC_GAUGE, "wasm_epp.queue_size_critical");
    this.gauges[3] = defineMetric(METRIC_GAUGE, "wasm_epp.queue_size_standard");
    this.gauges[4] = defineMetric(METRIC_GAUGE, "wasm_epp.queue_size_sheddable");
    this.queueTime = defineMetric(METRIC_HISTOGRAM, "wasm_epp.queue_time_ms");
  }

  // Milliseconds a released or expired request spent held.
  queued(ms: f64): void {
    recordMetric(this.queueTime, ms > 0 ? <u64>ms : 0);
  }

  inc(counter: i32, by: i64 = 1): void {
    incrementMetric(unchecked(this.ids[counter]), by);
  }

  set(gauge: i32, value: u64): void {
    recordMetric(unchecked(this.gauges[gauge]), value);
  }
}

export function counterName(counter: i32): string {
  return NAMES[counter];
}
