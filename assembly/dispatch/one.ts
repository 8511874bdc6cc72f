// Routing a request to one endpoint (a pool without prefill/decode disaggregation; pd/route.ts is
// the other case): the pick, the model rewrite in the body, the prefix index's record of where the
// prompt went, and the `Request Handled` line. filter.ts calls these once a request's model is
// resolved (at arrival or on release from the queue), or for a request without a body.

import * as host from "../host";
import * as errors from "../errors";
import * as stats from "../stats";
import { Stats } from "../stats";
import { Pool, State, STANDARD, STRATEGY_PREFIX_CACHE, ROLE_DECODE } from "../state/document";
import { ParsedRequest } from "../request/openai";
import { chainSeed } from "../prefix/prompt";
import { PrefixMatch } from "../prefix/index";
import { pickEndpoint, SHED, NO_ENDPOINT } from "../schedule/pick";
import { rewriteModel, handledLine, objectiveSuffix, Resolution } from "../route";
import { countJournal } from "../peers/handler";
import { poolOrAnswer, pickInputFor } from "../pool";
import * as observe from "../observe/report";
import { EppHttp } from "../filter";

// A request without a body (GET /v1/models, ...): the least loaded endpoint, no model, no prefix.
// A prefill/decode pool's decode pods answer: there is nothing to prefill.
export function routeWithoutBody(h: EppHttp): bool {
  const root = h.root;
  const st = root.currentState();
  const pool = poolOrAnswer(h, st);
  if (pool === null) return false;
  const state = st as State;
  const now = host.nowMs();
  const input = pickInputFor(root, pool, state, now);
  if (pool.pd !== null) input.role = ROLE_DECODE;
  const picked = pickEndpoint(input, root.rng);
  if (picked.status == NO_ENDPOINT) {
    root.count(stats.NO_ENDPOINT);
    h.reply(errors.noEndpoint(pool.name));
    return false;
  }
  const e = pool.endpoints[picked.index];
  h.dispatch(pool, picked.index, now, 0);
  root.count(stats.ROUTED_UNPARSED);
  if (input.degraded) root.count(stats.ROUTED_DEGRADED);
  if (root.config.logRequests) {
    host.log(host.LOG_INFO, handledLine("", "", e, pool, picked, 0, STANDARD, state.version, input.degraded, true) + " queued_ms=0");
  }
  return true;
}

// An inference request whose model is resolved. False when it was answered instead (shed, no
// endpoint).
export function routeToOne(h: EppHttp, body: ArrayBuffer, req: ParsedRequest, res: Resolution, pool: Pool, state: State): bool {
  const root = h.root;
  const cfg = root.config;
  const now = host.nowMs();
  const input = pickInputFor(root, pool, state, now);
  input.criticality = res.criticality;
  input.target = res.target;
  input.promptTokens = <f64>req.prompt.seen / cfg.bytesPerToken;
  let hashes: StaticArray<u64> | null = null;
  if (pool.strategy == STRATEGY_PREFIX_CACHE) {
    const hb = req.prompt.hashBlocks(changetype<usize>(body), cfg.prefixBlockSize, chainSeed(res.target, req.cacheSalt));
    if (hb.length > 0) {
      hashes = hb;
      input.prefix = root.prefix.lookup(hb, pool.indexById, pool.endpoints.length, now);
      const kb = req.prompt.affinityBlock(cfg.prefixBlockSize, cfg.affinityBlocks, (input.prefix as PrefixMatch).common);
      if (kb >= 0) input.affinityKey = unchecked(hb[kb]) | 1;
    }
  }
  const recorded = observe.learnedInput(root, input, pool, now);
  const picked = pickEndpoint(input, root.rng);
  if (picked.status == SHED) {
    root.count(stats.SHED);
    h.reply(errors.shed(pool.name));
    return false;
  }
  if (picked.status == NO_ENDPOINT) {
    root.count(stats.NO_ENDPOINT);
    h.reply(errors.noEndpoint(pool.name));
    return false;
  }
  const e = pool.endpoints[picked.index];
  if (res.target != req.model && host.replaceRequestBody(body.byteLength, rewriteModel(body, req.modelStart, req.modelEnd, res.target))) {
    root.count(stats.MODEL_REWRITTEN);
  }
  h.dispatch(pool, picked.index, now, picked.workMs);
  observe.notePrediction(h.watch, pool, picked.index, input.prefix, recorded !== null ? recorded[picked.index] : picked.prefixBlocks, now, picked.ttftRawMs);
  const match = input.prefix;
  let totalBlocks = 0;
  if (hashes !== null && match !== null) {
    const m = match as PrefixMatch;
    totalBlocks = m.total;
    const writes = root.prefix.record(hashes as StaticArray<u64>, m.grid, e.id, picked.prefixBlocks, now);
    (root.stats as Stats).inc(stats.PREFIX_INDEX_WRITES, writes);
    countJournal(root.stats as Stats, root.prefix);
    if (picked.prefixBlocks > 0) root.count(stats.PREFIX_HIT);
  }
  root.count(stats.ROUTED);
  if (input.degraded) root.count(stats.ROUTED_DEGRADED);
  if (cfg.logRequests) {
    host.log(host.LOG_INFO, handledLine(req.model, res.target, e, pool, picked, totalBlocks, res.criticality, state.version, input.degraded, res.known) +
      " queued_ms=" + (<i64>h.queuedMs).toString() + objectiveSuffix(res));
  }
  return true;
}
