// The push listener's sharing endpoint (docs/replicas.md), for the sidecar only (the listener is
// on loopback and token-checked by PushHandler before anything here runs):
//   GET  /wasm-epp/v1/share?since=N&pool=NS/NAME…   the journal from N on and this replica's load
//        of each pool: 200, sections (below), x-wasm-epp-prefix-next, -lost and -records
//   POST /wasm-epp/v1/share   other replicas' records and loads: 204 with x-wasm-epp-prefix-merged,
//        x-wasm-epp-prefix-skipped and x-wasm-epp-load-records; all or nothing
// Both answer 404 prefix_sharing_off until a routing filter of this VM runs with peers.enabled.

import * as host from "../host";
import { ErrorReply } from "../errors";
import { PrefixIndex } from "../prefix/index";
import { SharedStore } from "../util/store";
import { JournalRead, PrefixJournal, SharingParams } from "./journal";
import { mergeBatch, checkBatch } from "./merge";
import * as stats from "../stats";
import { Stats } from "../stats";
import { Config, isPoolName } from "../config";
import { loadKey } from "../schedule/load";
import { fnv1a32 } from "../util/hash";
import { isLoadRecord, updatePeerLoad } from "./load";

// Largest body one GET returns; the sidecar asks again from x-wasm-epp-prefix-next.
const MAX_READ_BYTES: i32 = 1 << 20;

export function sharingOff(): ErrorReply {
  return new ErrorReply(404, "invalid_request_error", "prefix_sharing_off", "prefix sharing is off: set peers.enabled in the routing filter's configuration");
}

export function importTooLarge(limit: u32): ErrorReply {
  return new ErrorReply(413, "invalid_request_error", "share_too_large", "the body is larger than peers.max_import_bytes (" + limit.toString() + " bytes)");
}

// The value of `name` in a query string ("a=1&name=v"), %XX-decoded; null when absent or not
// decodable.
export function queryParam(query: string, name: string): string | null {
  let start = 0;
  const prefix = name + "=";
  while (start <= query.length) {
    let end = query.indexOf("&", start);
    if (end < 0) end = query.length;
    if (query.substring(start, start + prefix.length) == prefix) return percentDecoded(query.substring(start + prefix.length, end));
    start = end + 1;
  }
  return null;
}

function percentDecoded(v: string): string | null {
  if (v.indexOf("%") < 0) return v;
  let out = "";
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c != 0x25) {
      out += String.fromCharCode(c);
      continue;
    }
    if (i + 2 >= v.length) return null;
    const hi = hexValue(v.charCodeAt(i + 1));
    const lo = hexValue(v.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return null;
    out += String.fromCharCode(hi * 16 + lo);
    i += 2;
  }
  return out;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

// `since` from a query string: -1 when absent; -2 when not a non-negative integer.
export function sinceOf(query: string): i64 {
  const v = queryParam(query, "since");
  if (v === null) return query.indexOf("since=") >= 0 ? -2 : -1;
  if (v.length == 0 || v.length > 18) return -2;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -2;
  }
  return I64.parseInt(v);
}

// Counts what became of the last record()'s journal entry.
export function countJournal(s: Stats, index: PrefixIndex): void {
  if (index.lastJournal > 0) s.inc(stats.PEER_RECORDS_JOURNALED);
  else if (index.lastJournal < 0) s.inc(stats.PEER_RECORDS_DROPPED);
}

// The routing filter's part at configuration: publish its sharing settings for the push
// listener, and journal what its index records when sharing is on.
export function configureSharing(store: SharedStore, index: PrefixIndex, cfg: Config): void {
  const enabled = cfg.peersEnabled;
  const journal = cfg.peersJournal;
  const params = new SharingParams();
  params.slots = enabled ? <u32>journal : 0;
  params.sets = index.sets;
  params.ttlMs = index.ttl;
  params.maxImportBytes = <u32>cfg.peersMaxImportBytes;
  params.loadTtlMs = <u32>cfg.peersLoadTtlMs;
  params.maxEndpoints = <u32>cfg.maxEndpoints;
  params.save(store);
  index.journal = enabled ? new PrefixJournal(store, <u32>journal) : null;
}

export function sendError(e: ErrorReply): void {
  host.sendResponse(e.status, e.details(), e.body(), ["content-type"], ["application/json"]);
}

// The journal read a GET asks for (`since` in its query), or null when it was answered with an
// error (sharing off, a bad cursor).
function readJournal(store: SharedStore, query: string): JournalRead | null {
  const params = SharingParams.load(store);
  if (params === null) {
    sendError(sharingOff());
    return null;
  }
  const since = sinceOf(query);
  if (since == -2) {
    sendError(new ErrorReply(400, "invalid_request_error", "invalid_cursor", "since must be a non-negative integer"));
    return null;
  }
  return new PrefixJournal(store, params.slots).read(since, MAX_READ_BYTES);
}

// The largest body POST /wasm-epp/v1/share takes, or 0 when sharing is off.
export function shareLimit(store: SharedStore): u32 {
  const params = SharingParams.load(store);
  return params === null ? 0 : params.maxImportBytes;
}

// ---- /wasm-epp/v1/share: prefix records and loads in one request each way ----
//
// A body is sections back to back, each: u8 kind, u32 payload length, payload.
//   kind 1 (PREFIX): prefix records (journal.ts's format);
//   kind 2 (LOAD):   u8 pool length, pool ("ns/name"), u8 replica length, replica name (empty in
//                    GET answers: this replica), then the load record to the end of the payload.
// Other kinds are skipped, so that a newer sidecar may send more.

export const SHARE_PATH = "/wasm-epp/v1/share";
export const SHARE_TYPE = "application/vnd.wasm-epp.share";
export const SECTION_PREFIX: u8 = 1;
export const SECTION_LOAD: u8 = 2;
const SECTION_HEADER: i32 = 5;

// Every value of `name` in a query string, decoded; null when one is not decodable.
export function queryParams(query: string, name: string): Array<string> | null {
  const out = new Array<string>();
  let start = 0;
  const prefix = name + "=";
  while (start <= query.length) {
    let end = query.indexOf("&", start);
    if (end < 0) end = query.length;
    if (query.substring(start, start + prefix.length) == prefix) {
      const v = percentDecoded(query.substring(start + prefix.length, end));
      if (v === null) return null;
      out.push(v);
    }
    start = end + 1;
  }
  return out;
}

function section(kind: u8, payload: ArrayBuffer): ArrayBuffer {
  const out = new ArrayBuffer(SECTION_HEADER + payload.byteLength);
  const p = changetype<usize>(out);
  store<u8>(p, kind);
  store<u32>(p + 1, <u32>payload.byteLength);
  memory.copy(p + SECTION_HEADER, changetype<usize>(payload), <usize>payload.byteLength);
  return out;
}

export function loadSection(pool: string, replica: string, record: ArrayBuffer): ArrayBuffer {
  const pb = String.UTF8.encode(pool);
  const rb = String.UTF8.encode(replica);
  const payload = new ArrayBuffer(2 + pb.byteLength + rb.byteLength + record.byteLength);
  const p = changetype<usize>(payload);
  store<u8>(p, <u8>pb.byteLength);
  memory.copy(p + 1, changetype<usize>(pb), <usize>pb.byteLength);
  store<u8>(p + 1 + <usize>pb.byteLength, <u8>rb.byteLength);
  memory.copy(p + 2 + <usize>pb.byteLength, changetype<usize>(rb), <usize>rb.byteLength);
  memory.copy(p + 2 + <usize>(pb.byteLength + rb.byteLength), changetype<usize>(record), <usize>record.byteLength);
  return section(SECTION_LOAD, payload);
}

function concat(parts: Array<ArrayBuffer>): ArrayBuffer {
  let size = 0;
  for (let i = 0; i < parts.length; i++) size += unchecked(parts[i]).byteLength;
  const out = new ArrayBuffer(size);
  let off = 0;
  for (let i = 0; i < parts.length; i++) {
    const b = unchecked(parts[i]);
    memory.copy(changetype<usize>(out) + <usize>off, changetype<usize>(b), <usize>b.byteLength);
    off += b.byteLength;
  }
  return out;
}

// GET /wasm-epp/v1/share?since=N&pool=…: the journal from N and this replica's load of each pool.
export function serveShare(store: SharedStore, query: string): void {
  const pools = queryParams(query, "pool");
  if (pools === null || pools.length > 64) {
    sendError(new ErrorReply(400, "invalid_request_error", "invalid_pool", "pool must name inference pools as namespace/name, at most 64"));
    return;
  }
  for (let i = 0; i < pools.length; i++) {
    if (!isPoolName(unchecked(pools[i]))) {
      sendError(new ErrorReply(400, "invalid_request_error", "invalid_pool", "pool must name an inference pool as namespace/name"));
      return;
    }
  }
  const read = readJournal(store, query);
  if (read === null) return;
  const r = read as JournalRead;
  const parts = new Array<ArrayBuffer>();
  parts.push(section(SECTION_PREFIX, r.body));
  for (let i = 0; i < pools.length; i++) {
    const pool = unchecked(pools[i]);
    const record = store.get(loadKey(pool));
    parts.push(loadSection(pool, "", record !== null ? record : new ArrayBuffer(0)));
  }
  host.sendResponseBytes(200, "wasm_epp_share", concat(parts),
    ["content-type", "x-wasm-epp-prefix-next", "x-wasm-epp-prefix-lost", "x-wasm-epp-prefix-records"],
    [SHARE_TYPE, r.next.toString(), r.lost.toString(), r.records.toString()]);
}

class LoadPart {
  pool: string = "";
  replica: string = "";
  record: ArrayBuffer = new ArrayBuffer(0);
}

export class ShareBody {
  error: string = "";
  prefix: Array<ArrayBuffer> = new Array<ArrayBuffer>();
  loads: Array<LoadPart> = new Array<LoadPart>();
}

// Checks and splits a POSTed body; nothing is applied when `error` is set.
export function parseShare(body: ArrayBuffer): ShareBody {
  const out = new ShareBody();
  const p = changetype<usize>(body);
  const len = body.byteLength;
  let off = 0;
  while (off < len) {
    if (off + SECTION_HEADER > len) {
      out.error = "section header cut short at byte " + off.toString();
      return out;
    }
    const kind = load<u8>(p + <usize>off);
    const size = load<u32>(p + <usize>off + 1);
    const start = off + SECTION_HEADER;
    if (<u64>start + <u64>size > <u64>len) {
      out.error = "section at byte " + off.toString() + " runs past the end";
      return out;
    }
    const end = start + <i32>size;
    if (kind == SECTION_PREFIX) {
      const bad = checkBatch(p + <usize>start, <i32>size);
      if (bad >= 0) {
        out.error = "malformed prefix record at byte " + (start + bad).toString();
        return out;
      }
      out.prefix.push(body.slice(start, end));
    } else if (kind == SECTION_LOAD) {
      const part = new LoadPart();
      let q = start;
      const poolLen = q < end ? <i32>load<u8>(p + <usize>q) : -1;
      q += 1;
      if (poolLen < 1 || q + poolLen + 1 > end) {
        out.error = "load section at byte " + off.toString() + ": bad pool";
        return out;
      }
      part.pool = String.UTF8.decodeUnsafe(p + <usize>q, <usize>poolLen);
      q += poolLen;
      const repLen = <i32>load<u8>(p + <usize>q);
      q += 1;
      if (repLen < 1 || q + repLen > end) {
        out.error = "load section at byte " + off.toString() + ": bad replica name";
        return out;
      }
      part.replica = String.UTF8.decodeUnsafe(p + <usize>q, <usize>repLen);
      q += repLen;
      part.record = body.slice(q, end);
      if (!isPoolName(part.pool) || !isLoadRecord(part.record)) {
        out.error = "load section at byte " + off.toString() + ": " + (!isPoolName(part.pool) ? "bad pool" : "not a load record");
        return out;
      }
      out.loads.push(part);
    }
    off = end;
  }
  return out;
}

// POST /wasm-epp/v1/share: merges prefix records and takes loads, all or nothing.
export function importShare(store: SharedStore, body: ArrayBuffer, s: Stats): void {
  const params = SharingParams.load(store);
  if (params === null) {
    sendError(sharingOff());
    return;
  }
  if (<u32>body.byteLength > params.maxImportBytes) {
    sendError(importTooLarge(params.maxImportBytes));
    return;
  }
  const parsed = parseShare(body);
  if (parsed.error.length > 0) {
    s.inc(stats.PEER_BATCHES_INVALID);
    host.log(host.LOG_WARN, "wasm-epp: refused a share: " + parsed.error);
    sendError(new ErrorReply(400, "invalid_request_error", "invalid_share", parsed.error));
    return;
  }
  const now = host.nowMs();
  let merged = 0;
  let skipped = 0;
  if (parsed.prefix.length > 0) {
    const index = new PrefixIndex(store, <i32>params.sets, <f64>params.ttlMs);
    for (let i = 0; i < parsed.prefix.length; i++) {
      const r = mergeBatch(index, unchecked(parsed.prefix[i]), now);
      merged += r.merged;
      skipped += r.skipped;
    }
  }
  let loads = 0;
  for (let i = 0; i < parsed.loads.length; i++) {
    const l = unchecked(parsed.loads[i]);
    if (updatePeerLoad(store, l.pool, fnv1a32(l.replica), l.record, now, <f64>params.loadTtlMs, <i32>params.maxEndpoints * 2) >= 0) loads++;
  }
  s.inc(stats.PEER_HASHES_MERGED, merged);
  s.inc(stats.PEER_HASHES_SKIPPED, skipped);
  s.inc(stats.PEER_LOADS_MERGED, loads);
  host.sendResponse(204, "wasm_epp_share_merged", "",
    ["x-wasm-epp-prefix-merged", "x-wasm-epp-prefix-skipped", "x-wasm-epp-load-records"],
    [merged.toString(), skipped.toString(), loads.toString()]);
}
