// Routing a request of a prefill/decode pool (docs/pd.md): a decode pod and a prefill pod, each
// picked by its role's strategy; the body with the bootstrap fields that pair them (body.ts); the
// prefill copy sent from the root context (calls.ts tracks it, answer.ts handles its answer); the
// request itself on to the decode pod.

import { countJournal } from "../peers/handler";
import * as host from "../host";
import * as errors from "../errors";
import * as stats from "../stats";
import { Stats } from "../stats";
import { Pool, PdSpec, State, STRATEGY_PREFIX_CACHE, ROLE_DECODE, ROLE_PREFILL } from "../state/document";
import { ParsedRequest } from "../request/openai";
import { Resolution, handledLine, objectiveSuffix } from "../route";
import { pickInputFor } from "../pool";
import * as observe from "../observe/report";
import { chainSeed } from "../prefix/prompt";
import { PrefixMatch } from "../prefix/index";
import { loadKey, recordLoad } from "../schedule/load";
import { pdBody, PdFields, roomOf, ridOf } from "./body";
import { PendingPrefill } from "./calls";
import { downSet } from "./down";
import { Pick, PickInput, pickEndpoint, SHED, NO_ENDPOINT } from "../schedule/pick";
import { EppHttp } from "../filter";

// Headers with which a client could ask Envoy's router for retries.
const RETRY_HEADERS: StaticArray<string> = ["x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries"];

// A prefill/decode pool: a decode pod and a prefill pod, each picked by its role's strategy; the
// body gets the bootstrap fields that pair them; the prefill copy goes out as a call from the
// root context, and the request itself on to the decode pod.
export function routePd(h: EppHttp, body: ArrayBuffer, req: ParsedRequest, res: Resolution, pool: Pool, state: State): bool {
  const root = h.root;
  const cfg = root.config;
  const pd = pool.pd as PdSpec;
  const now = host.nowMs();
  let hashes: StaticArray<u64> | null = null;
  let match: PrefixMatch | null = null;
  if (pd.prefillStrategy == STRATEGY_PREFIX_CACHE || pd.decodeStrategy == STRATEGY_PREFIX_CACHE) {
    const h = req.prompt.hashBlocks(changetype<usize>(body), cfg.prefixBlockSize, chainSeed(res.target, req.cacheSalt));
    if (h.length > 0) {
      hashes = h;
      match = root.prefix.lookup(h, pool.indexById, pool.endpoints.length, now);
    }
  }
  // Decode: the KV cache arrives by transfer, so there is no prefill to estimate there.
  const din = pickInputFor(h.root, pool, state, now);
  din.role = ROLE_DECODE;
  din.criticality = res.criticality;
  din.target = res.target;
  if (pd.decodeStrategy == STRATEGY_PREFIX_CACHE) din.prefix = match;
  const decoded = pickRole(h, din, pool, "decode", stats.NO_ENDPOINT);
  if (decoded === null) return false;
  const pin = pickInputFor(h.root, pool, state, now);
  pin.role = ROLE_PREFILL;
  pin.criticality = res.criticality;
  pin.target = res.target;
  pin.promptTokens = <f64>req.prompt.seen / cfg.bytesPerToken;
  pin.avoid = downSet(root.store, pool.name, now);
  if (pd.prefillStrategy == STRATEGY_PREFIX_CACHE) pin.prefix = match;
  const prefilled = pickRole(h, pin, pool, "prefill", stats.PD_NO_PREFILL);
  if (prefilled === null) return false;
  if (root.pd.inFlight >= cfg.pdMaxPending) {
    root.count(stats.PD_DISPATCH_FAILED);
    root.warn("pd_capacity", "more than pd.max_pending (" + cfg.pdMaxPending.toString() + ") prefill calls in flight on this worker; answering 503");
    h.reply(errors.tooManyPrefills(cfg.pdMaxPending));
    return false;
  }
  const d = pool.endpoints[decoded.index];
  const p = pool.endpoints[prefilled.index];
  const f = new PdFields();
  f.host = p.ip;
  f.port = pd.bootstrapPort;
  // Rooms pair the halves of one request on the prefill pod: 63 random bits from the host
  // (unique across workers and gateway replicas) mixed with the worker's generator.
  f.room = roomOf(host.randomU64() ^ root.rng.next());
  f.rid = ridOf(root.rng.next() ^ host.randomU64(), f.room);
  const built = pdBody(body, req.modelStart, req.modelEnd, res.target != req.model ? res.target : null, f);
  if (built.body === null) {
    root.count(stats.INVALID_BODY);
    h.reply(errors.invalidBody("invalid request body: " + built.error));
    return false;
  }
  const out = built.body as ArrayBuffer;
  if (built.removed > 0) (root.stats as Stats).inc(stats.PD_BOOTSTRAP_REMOVED, built.removed);
  if (res.target != req.model) root.count(stats.MODEL_REWRITTEN);
  const names = [":method", ":path", ":authority", "content-type", cfg.endpointHeader];
  const path = host.getHeader(host.REQUEST_HEADERS, ":path");
  const authority = host.getHeader(host.REQUEST_HEADERS, ":authority");
  const values: Array<string> = ["POST", path !== null ? (path as string) : "/v1/chat/completions", authority !== null ? (authority as string) : p.address, "application/json", p.address];
  const rid = host.getHeader(host.REQUEST_HEADERS, "x-request-id");
  if (rid !== null) {
    names.push("x-request-id");
    values.push(rid as string);
  }
  const token = host.httpCall(cfg.pdCluster, names, values, out, <u32>cfg.pdTimeoutMs);
  if (token == 0) {
    root.count(stats.PD_DISPATCH_FAILED);
    root.warn("pd_dispatch", "the prefill call to cluster " + cfg.pdCluster + " was refused by the proxy; is pd.cluster the ORIGINAL_DST cluster?");
    h.reply(errors.prefillDispatchFailed(cfg.pdCluster));
    return false;
  }
  if (!host.replaceRequestBody(body.byteLength, out)) {
    // The prefill is on its way; without the fields the decode pod would answer 400 anyway.
    host.log(host.LOG_WARN, "wasm-epp: could not replace the request body for the decode pod");
  }
  // A retried decode request would carry a room whose prefill already ran: no client-asked
  // retries (the route itself must have none either).
  for (let k = 0; k < RETRY_HEADERS.length; k++) host.removeHeader(host.REQUEST_HEADERS, RETRY_HEADERS[k]);
  h.dispatch(pool, decoded.index, now, 0);
  // The prompt's cache hit is the prefill pod's (SGLang's decode server reports it).
  observe.notePrediction(h.watch, pool, prefilled.index, pd.prefillStrategy == STRATEGY_PREFIX_CACHE ? match : null, prefilled.prefixBlocks, now, prefilled.ttftMs);
  if (!recordLoad(root.store, loadKey(pool.name), p.id, 1, now, cfg.maxEndpoints * 2, prefilled.workMs)) root.count(stats.LOAD_UPDATE_LOST);
  const pending = new PendingPrefill();
  pending.pool = pool.name;
  pending.prefillId = p.id;
  pending.prefillPod = p.pod;
  pending.decodePod = d.pod;
  pending.decodeAddress = d.address;
  pending.rid = built.rid;
  pending.room = f.room;
  pending.stream = h.context_id;
  pending.sentMs = now;
  root.pd.track(token, pending);
  h.prefillSent = true;
  let totalBlocks = 0;
  if (hashes !== null && match !== null) {
    const m = match as PrefixMatch;
    totalBlocks = m.total;
    let writes = 0;
    if (pd.prefillStrategy == STRATEGY_PREFIX_CACHE) {
      writes += root.prefix.record(hashes as StaticArray<u64>, m.grid, p.id, prefilled.prefixBlocks, now);
      countJournal(root.stats as Stats, root.prefix);
    }
    if (pd.decodeStrategy == STRATEGY_PREFIX_CACHE) {
      writes += root.prefix.record(hashes as StaticArray<u64>, m.grid, d.id, decoded.prefixBlocks, now);
      countJournal(root.stats as Stats, root.prefix);
    }
    (root.stats as Stats).inc(stats.PREFIX_INDEX_WRITES, writes);
    if (prefilled.prefixBlocks > 0) root.count(stats.PREFIX_HIT);
  }
  root.count(stats.ROUTED);
  root.count(stats.PD_ROUTED);
  if (din.degraded) root.count(stats.ROUTED_DEGRADED);
  if (cfg.logRequests) {
    host.log(host.LOG_INFO, handledLine(req.model, res.target, d, pool, decoded, totalBlocks, res.criticality, state.version, din.degraded, res.known) +
      pdSuffix(p.pod, p.address, prefilled.prefixBlocks, f.room) + " queued_ms=" + (<i64>h.queuedMs).toString() + objectiveSuffix(res));
  }
  return true;
}

// One role's pick in a prefill/decode pool, or null with 429 / 503 already sent.
function pickRole(h: EppHttp, input: PickInput, pool: Pool, role: string, noneCounter: i32): Pick | null {
  const picked = pickEndpoint(input, h.root.rng);
  if (picked.status == SHED) {
    h.root.count(stats.SHED);
    h.reply(errors.shed(pool.name));
    return null;
  }
  if (picked.status == NO_ENDPOINT) {
    h.root.count(noneCounter);
    h.reply(errors.noRoleEndpoint(pool.name, role));
    return null;
  }
  return picked;
}

// The `Request Handled` line's prefill/decode part: the prefill pod and the room pairing them.
function pdSuffix(pod: string, address: string, prefixBlocks: i32, room: u64): string {
  return " prefill=" + pod + " prefill_endpoint=" + address + " prefill_prefix_blocks=" + prefixBlocks.toString() + " room=" + room.toString();
}
