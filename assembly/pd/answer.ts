// What a prefill call's answer means for its request (pd/calls.ts classifies it): the prefill
// pod's load is released; a failure aborts the decode half by rid, answers the client when its
// response has not started, and puts the pod aside for a while. Runs in the root context's
// proxy_on_http_call_response.

import * as host from "../host";
import * as errors from "../errors";
import { ErrorReply } from "../errors";
import * as stats from "../stats";
import { quote } from "../json/writer";
import { loadKey, recordLoad } from "../schedule/load";
import { PendingPrefill, classify, outcomeName, OUTCOME_OK, OUTCOME_REJECTED, OUTCOME_TIMEOUT } from "./calls";
import { markDown } from "./down";
import { EppRoot } from "../filter";

export function prefillAnswered(root: EppRoot, token: u32, headers: u32, bodySize: u32): void {
  if (root.pd.takeAbort(token)) {
    const st = headers > 0 ? parseStatus(host.getHeader(host.HTTP_CALL_RESPONSE_HEADERS, ":status")) : 0;
    if (st < 200 || st >= 300) {
      root.count(stats.PD_ABORT_FAILED);
      root.warn("pd_abort", "aborting a decode request after a failed prefill got " + (headers == 0 ? "a reset" : "status " + st.toString()));
    }
    return;
  }
  const p = root.pd.take(token);
  if (p === null) return;
  const now = host.nowMs();
  if (!recordLoad(root.store, loadKey(p.pool), p.prefillId, -1, now, root.config.maxEndpoints * 2)) root.count(stats.LOAD_UPDATE_LOST);
  const status = headers > 0 ? parseStatus(host.getHeader(host.HTTP_CALL_RESPONSE_HEADERS, ":status")) : 0;
  const outcome = classify(headers, status);
  if (outcome == OUTCOME_OK) {
    root.count(stats.PD_PREFILL_OK);
    return;
  }
  const cfg = root.config;
  const what = headers == 0 ? "connection reset" : "status " + status.toString();
  if (outcome == OUTCOME_REJECTED) {
    root.count(stats.PD_PREFILL_REJECTED);
  } else {
    root.count(outcome == OUTCOME_TIMEOUT ? stats.PD_PREFILL_TIMEOUT : stats.PD_PREFILL_FAILED);
    if (cfg.pdFailureCooldownMs > 0) markDown(root.store, p.pool, p.prefillId, now + cfg.pdFailureCooldownMs, now);
  }
  host.log(host.LOG_WARN, "wasm-epp: prefill " + outcomeName(outcome) + " on pod " + p.prefillPod + " (" + what + ") after " +
    (<i64>(now - p.sentMs)).toString() + " ms; room=" + p.room.toString() + " decode pod=" + p.decodePod +
    (p.rid.length > 0 && cfg.pdAbortPath.length > 0 ? " (aborting it)" : ""));
  if (p.rid.length > 0 && cfg.pdAbortPath.length > 0) abortDecode(root, p);
  if (!root.pd.canAnswer(p.stream) || !host.setEffectiveContext(p.stream)) return;
  let e: ErrorReply;
  if (outcome == OUTCOME_REJECTED) {
    const body = host.httpCallBody(<i32>(bodySize < 65536 ? bodySize : 0));
    if (body !== null && body.byteLength > 0) {
      root.count(stats.PD_CLIENT_ANSWERED);
      host.sendResponse(<u32>status, "wasm_epp_prefill_rejected", String.UTF8.decode(body), ["content-type", "x-wasm-epp-error"], ["application/json", "prefill_rejected"]);
      return;
    }
    e = errors.prefillFailed(p.prefillPod, what);
    e.status = <u32>status;
  } else if (outcome == OUTCOME_TIMEOUT) {
    e = errors.prefillTimeout(p.prefillPod, cfg.pdTimeoutMs);
  } else {
    e = errors.prefillFailed(p.prefillPod, what);
  }
  root.count(stats.PD_CLIENT_ANSWERED);
  host.sendResponse(e.status, e.details(), e.body(), ["content-type", "x-wasm-epp-error"], ["application/json", e.code]);
}

// Tells the decode pod to drop the request whose prefill failed, so it does not wait for a KV
// transfer until its own timeout.
function abortDecode(root: EppRoot, p: PendingPrefill): void {
  const body = String.UTF8.encode("{\"rid\":" + quote(p.rid) + "}");
  const token = host.httpCall(root.config.pdCluster,
    [":method", ":path", ":authority", "content-type", root.config.endpointHeader],
    ["POST", root.config.pdAbortPath, p.decodeAddress, "application/json", p.decodeAddress], body, 5000);
  if (token == 0) {
    root.count(stats.PD_ABORT_FAILED);
    return;
  }
  root.pd.trackAbort(token);
  root.count(stats.PD_ABORT_SENT);
}

// The :status of a call answer, or 0 when absent or not a status.
function parseStatus(s: string | null): i32 {
  if (s === null) return 0;
  const t = (s as string).trim();
  if (t.length != 3) return 0;
  let v = 0;
  for (let i = 0; i < 3; i++) {
    const c = t.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return 0;
    v = v * 10 + (c - 0x30);
  }
  return v >= 100 ? v : 0;
}
