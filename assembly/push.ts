// The push endpoint of the ext-config listener (plugin configuration `accept_push: true`):
//   POST /wasm-epp/v1/state   store a state document (204; 400 invalid, 401, 409 older, 413)
//   GET  /wasm-epp/v1/state   read back the stored document (200; 404 when none)
//   GET|POST /wasm-epp/v1/prefix  the prefix journal, and peers' records (peers/handler.ts)
//   GET|POST /wasm-epp/v1/load    this replica's load record, and peers' (peers/handler.ts)
//   GET|POST /wasm-epp/v1/share   both in one request (peers/handler.ts)
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
import { PREFIX_PATH, LOAD_PATH, SHARE_PATH, serveJournal, importBatch, importLimit, sendError, sharingOff, importTooLarge, serveLoad, importLoad, loadLimit, serveShare, importShare } from "./peers/handler";

export const STATE_PATH = "/wasm-epp/v1/state";

export class PushHandler {
  cfg: Config;
  token: string;
  store: SharedStore;
  stats: Stats;
  // POST /wasm-epp/v1/prefix or /load: the body's size limit (0 for a state document).
  prefixLimit: u32 = 0;
  isLoad: bool = false;
  isShare: bool = false;
  query: string = "";

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
    if (path != STATE_PATH && path != PREFIX_PATH && path != LOAD_PATH && path != SHARE_PATH) {
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
    if (path == PREFIX_PATH) return this.onPrefixHeaders(method, query, endOfStream);
    if (path == LOAD_PATH) return this.onLoadHeaders(method, query, endOfStream);
    if (path == SHARE_PATH) {
      if (method == "GET") {
        serveShare(this.store, query);
        return false;
      }
      this.isShare = true;
      return this.onPrefixHeaders(method, query, endOfStream);
    }
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

  private onPrefixHeaders(method: string, query: string, endOfStream: bool): bool {
    if (method == "GET") {
      serveJournal(this.store, query);
      return false;
    }
    const limit = importLimit(this.store);
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
      // An empty batch: nothing to merge.
      if (this.isShare) {
        importShare(this.store, new ArrayBuffer(0), this.stats);
        return false;
      }
      host.sendResponse(204, "wasm_epp_prefix_merged", "", ["x-wasm-epp-prefix-merged", "x-wasm-epp-prefix-skipped", "x-wasm-epp-prefix-records"], ["0", "0", "0"]);
      return false;
    }
    this.prefixLimit = limit;
    return true;
  }

  private onLoadHeaders(method: string, query: string, endOfStream: bool): bool {
    if (method == "GET") {
      serveLoad(this.store, query);
      return false;
    }
    const limit = loadLimit(this.store);
    if (limit == 0) {
      sendError(sharingOff());
      return false;
    }
    if (endOfStream) {
      importLoad(this.store, query, new ArrayBuffer(0), this.stats);
      return false;
    }
    this.prefixLimit = limit;
    this.isLoad = true;
    this.query = query;
    return true;
  }

  // Returns false when the request was answered.
  onBody(size: i32, endOfStream: bool): bool {
    if (this.prefixLimit > 0) {
      if (<u32>size > this.prefixLimit) {
        sendError(this.isLoad ? new ErrorReply(413, "invalid_request_error", "load_record_too_large", "the load record is larger than " + this.prefixLimit.toString() + " bytes") : importTooLarge(this.prefixLimit));
        return false;
      }
      if (!endOfStream) return true;
      const got = size > 0 ? host.getBody(size) : new ArrayBuffer(0);
      const body = got !== null ? got as ArrayBuffer : new ArrayBuffer(0);
      if (this.isLoad) importLoad(this.store, this.query, body, this.stats);
      else if (this.isShare) importShare(this.store, body, this.stats);
      else importBatch(this.store, body, this.stats);
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
