// The push endpoint of the ext-config listener (plugin configuration `accept_push: true`):
//   POST /wasm-epp/v1/state   store a state document (204; 400 invalid, 401, 409 older, 413)
//   GET  /wasm-epp/v1/state   read back the stored document (200; 404 when none)
//   GET|POST /wasm-epp/v1/share   the prefix journal and this replica's loads; other replicas'
//                                 records and loads (peers/handler.ts)
// Both need `authorization: Bearer <token>`. The listener is bound to 127.0.0.1 in the shipped
// Envoy configurations; the token keeps other processes in the pod out as well.

import * as host from "./host";
import { Config } from "./config";
import { SharedStore } from "./util/store";
import { decodeState, State } from "./state/document";
import { storeState, storedDocument, CONFLICT, STORED } from "./state/store";
import * as errors from "./errors";
import { ErrorReply } from "./errors";
import * as stats from "./stats";
import { bearerMatches } from "./util/auth";
import { Stats } from "./stats";
import { SHARE_PATH, sendError, sharingOff, importTooLarge, serveShare, importShare, shareLimit } from "./peers/handler";

export const STATE_PATH = "/wasm-epp/v1/state";

export class PushHandler {
  cfg: Config;
  token: string;
  store: SharedStore;
  stats: Stats;
  // POST /wasm-epp/v1/share: the body's size limit (0 for a state document).
  shareLimit: u32 = 0;

  constructor(cfg: Config, token: string, store: SharedStore, s: Stats) {
    this.cfg = cfg;
    this.token = token;
    this.store = store;
    this.stats = s;
  }

  // Returns false when the request was answered already.
  onHeaders(endOfStream: bool): bool {
    const pathHeader = host.getHeader(host.REQUEST_HEADERS, ":path");
    let path = pathHeader !== null ? pathHeader : "";
    const q = path.indexOf("?");
    const query = q >= 0 ? path.substring(q + 1) : "";
    if (q >= 0) path = path.substring(0, q);
    if (path != STATE_PATH && path != SHARE_PATH) {
      this.reply(errors.notFound(path), [], []);
      return false;
    }
    const m = host.getHeader(host.REQUEST_HEADERS, ":method");
    const method = m !== null ? m : "";
    if (method != "POST" && method != "PUT" && method != "GET") {
      this.reply(errors.methodNotAllowed("GET or POST"), ["allow"], ["GET, POST, PUT"]);
      return false;
    }
    const auth = host.getHeader(host.REQUEST_HEADERS, "authorization");
    if (!bearerMatches(auth !== null ? auth : "", this.token)) {
      this.stats.inc(stats.PUSH_UNAUTHORIZED);
      this.reply(errors.unauthorized(), ["www-authenticate"], ["Bearer realm=\"wasm-epp\""]);
      return false;
    }
    if (path == SHARE_PATH) return this.onShareHeaders(method, query, endOfStream);
    if (method == "GET") {
      const doc = storedDocument(this.store);
      if (doc === null) {
        this.reply(errors.notFound("no state has been pushed yet"), [], []);
      } else {
        host.sendResponse(200, "wasm_epp_state", String.UTF8.decode(doc), ["content-type"], ["application/json"]);
      }
      return false;
    }
    const cl = host.getHeader(host.REQUEST_HEADERS, "content-length");
    if (cl !== null && cl.length > 0 && (cl.length > 12 || I64.parseInt(cl) > <i64>this.cfg.maxStateBytes)) {
      this.stats.inc(stats.PUSH_TOO_LARGE);
      this.reply(errors.stateTooLarge(this.cfg.maxStateBytes), [], []);
      return false;
    }
    if (endOfStream) {
      this.stats.inc(stats.PUSH_INVALID);
      this.reply(errors.invalidState("the request has no body; send the state document as JSON"), [], []);
      return false;
    }
    return true;
  }

  private onShareHeaders(method: string, query: string, endOfStream: bool): bool {
    if (method == "GET") {
      serveShare(this.store, query);
      return false;
    }
    const limit = shareLimit(this.store);
    if (limit == 0) {
      sendError(sharingOff());
      return false;
    }
    const cl = host.getHeader(host.REQUEST_HEADERS, "content-length");
    if (cl !== null && cl.length > 0 && (cl.length > 12 || I64.parseInt(cl) > <i64>limit)) {
      sendError(importTooLarge(limit));
      return false;
    }
    if (endOfStream) {
      importShare(this.store, new ArrayBuffer(0), this.stats);
      return false;
    }
    this.shareLimit = limit;
    return true;
  }

  // Returns false when the request was answered.
  onBody(size: i32, endOfStream: bool): bool {
    if (this.shareLimit > 0) {
      if (<u32>size > this.shareLimit) {
        sendError(importTooLarge(this.shareLimit));
        return false;
      }
      if (!endOfStream) return true;
      const got = size > 0 ? host.getBody(size) : new ArrayBuffer(0);
      importShare(this.store, got !== null ? got as ArrayBuffer : new ArrayBuffer(0), this.stats);
      return false;
    }
    if (size > this.cfg.maxStateBytes) {
      this.stats.inc(stats.PUSH_TOO_LARGE);
      this.reply(errors.stateTooLarge(this.cfg.maxStateBytes), [], []);
      return false;
    }
    if (!endOfStream) return true;
    const body = host.getBody(size);
    if (body === null || body.byteLength == 0) {
      this.stats.inc(stats.PUSH_INVALID);
      this.reply(errors.invalidState("the request has no body; send the state document as JSON"), [], []);
      return false;
    }
    const decoded = decodeState(body as ArrayBuffer, this.cfg.maxEndpoints);
    if (decoded.state === null) {
      this.stats.inc(stats.PUSH_INVALID);
      host.log(host.LOG_WARN, "wasm-epp: rejected state push: " + decoded.error);
      this.reply(errors.invalidState("invalid state document: " + decoded.error), [], []);
      return false;
    }
    const st = decoded.state as State;
    for (let i = 0; i < st.warnings.length && i < 4; i++) host.log(host.LOG_WARN, "wasm-epp: state push: " + st.warnings[i]);
    const r = storeState(this.store, body as ArrayBuffer, st.generatedAtMs, st.version);
    if (r.status == CONFLICT) {
      this.stats.inc(stats.PUSH_CONFLICT);
      this.reply(errors.staleState(r.storedGeneratedAt), [], []);
      return false;
    }
    if (r.status != STORED) {
      this.reply(new ErrorReply(503, "server_error", "state_store_busy", "the state could not be stored, retry"), [], []);
      return false;
    }
    this.stats.inc(stats.PUSH_ACCEPTED);
    host.log(host.LOG_DEBUG, "wasm-epp: stored state version " + (<i64>st.version).toString() + " generated_at_ms " + (<i64>st.generatedAtMs).toString());
    host.sendResponse(204, "wasm_epp_state_stored", "", ["x-wasm-epp-state-version"], [(<i64>st.version).toString()]);
    return false;
  }

  private reply(e: ErrorReply, names: Array<string>, values: Array<string>): void {
    names.push("content-type");
    values.push("application/json");
    host.sendResponse(e.status, e.details(), e.body(), names, values);
  }
}
