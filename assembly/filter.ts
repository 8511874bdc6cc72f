// The proxy-wasm contexts: a root context per worker VM that owns the configuration and the
// worker's copy of the state, and an HTTP context per request. Callbacks stay thin: they read
// from the host, call the logic in route.ts / schedule/ / prefix/ / push.ts, and write back.

import { Context, RootContext, FilterHeadersStatusValues, FilterDataStatusValues, FilterTrailersStatusValues } from "@solo-io/proxy-runtime/assembly";
import * as host from "./host";
import { Config, parseConfig, UNKNOWN_MODEL_REJECT, FAIRNESS_ROUND_ROBIN } from "./config";
import { HostStore } from "./shared";
import { StateCache } from "./state/store";
import { Pool, State, criticalityName } from "./state/document";
import { parseOpenAIBody, ParsedRequest } from "./request/openai";
import { PrefixIndex } from "./prefix/index";
import { loadKey, recordLoad } from "./schedule/load";
import { resolveModel, looksLikeJson, Resolution } from "./route";
import { Rng, mixSeed } from "./util/rng";
import { parseDecimal } from "./util/format";
import * as errors from "./errors";
import { ErrorReply } from "./errors";
import * as stats from "./stats";
import { Stats } from "./stats";
import { PushHandler } from "./push";
import { configureSharing } from "./peers/handler";
import { PdCalls } from "./pd/calls";
import { prefillAnswered } from "./pd/answer";
import { routePd } from "./pd/route";
import { routeToOne, routeWithoutBody } from "./dispatch/one";
import { drainHeld, publishHeld, wakeHolders, wakeQueueName, leaveQueue } from "./queue/release";
import { poolOrAnswer } from "./pool";
import { holdOrAnswer } from "./queue/hold";
import { WorkerQueue, BANDS } from "./queue/band";
import { ResponseWatch } from "./observe/watch";
import { TaggedMetrics } from "./observe/metrics";
import { SeriesCache } from "./observe/series";
import { Learner } from "./observe/learn";
import * as observe from "./observe/report";
import { takeClientHeaders, noteObjective } from "./objective/client";

const WARN_EVERY_MS: f64 = 10000;

export class EppRoot extends RootContext {
  config: Config = new Config();
  pushToken: string = "";
  stats: Stats | null = null;
  store: HostStore = new HostStore();
  cache: StateCache = new StateCache(this.store, 1024);
  prefix: PrefixIndex = new PrefixIndex(this.store, 8192, 600000);
  rng: Rng = new Rng(1);
  pd: PdCalls = new PdCalls();
  // Labelled metrics of answers, and what answers taught routing (observe/).
  tagged: TaggedMetrics = new TaggedMetrics(512);
  series: SeriesCache = new SeriesCache(512);
  learner: Learner = new Learner(0.2, 600000, 100, 1024);
  // Requests held while the pool is saturated (priority queuing), this worker's share of the
  // shared per-band counts, and the shared queue that wakes this worker up.
  queue: WorkerQueue<EppHttp> = new WorkerQueue<EppHttp>();
  workerId: u32 = 0;
  heldPool: u32 = 0;
  published: StaticArray<i32> = new StaticArray<i32>(BANDS);
  publishedMs: f64 = 0;
  wakeTokens: Map<u32, u32> = new Map<u32, u32>();
  // When this worker last saw a request of each band (priority queuing).
  lastSeenMs: StaticArray<f64> = [-Infinity, -Infinity, -Infinity];
  private wakeToken: u32 = 0;
  vmId: string = "";
  private lastWarnMs: Map<string, f64> = new Map<string, f64>();

  onConfigure(size: u32): bool {
    const raw = host.getPluginConfiguration(<i32>size);
    if (raw === null) {
      host.log(host.LOG_CRITICAL, "wasm-epp: cannot read the plugin configuration");
      return false;
    }
    const parsed = parseConfig(String.UTF8.decode(raw));
    if (parsed.config === null) {
      host.log(host.LOG_CRITICAL, "wasm-epp: invalid plugin configuration: " + parsed.error);
      return false;
    }
    const c = parsed.config as Config;
    let token = c.pushToken;
    if (token.length == 0) {
      const env = host.envVar("WASM_EPP_PUSH_TOKEN");
      if (env !== null) token = (env as string).trim();
    }
    if (c.acceptPush && token.length < 16) {
      host.log(host.LOG_CRITICAL, "wasm-epp: invalid plugin configuration: accept_push needs a push token of at least 16 characters, from push_token or the VM environment variable WASM_EPP_PUSH_TOKEN");
      return false;
    }
    this.config = c;
    this.pushToken = token;
    if (this.stats === null) this.stats = new Stats();
    this.cache = new StateCache(this.store, c.maxEndpoints);
    this.prefix = new PrefixIndex(this.store, c.prefixIndexSets, c.prefixTtlMs);
    if (!c.acceptPush) configureSharing(this.store, this.prefix, c);
    this.tagged = new TaggedMetrics(c.observeMaxSeries);
    this.series = new SeriesCache(c.observeMaxSeries);
    this.learner = new Learner(c.observeAlpha, c.prefixTtlMs, c.ttftFloorMs, c.maxEndpoints, c.observeTtftDeadband);
    this.queue.roundRobin = c.queueFairness == FAIRNESS_ROUND_ROBIN;
    const seed = host.randomU64() ^ (<u64>host.nowMs() * 0x9e3779b97f4a7c15);
    this.rng = new Rng(seed);
    this.vmId = host.getStringProperty("plugin_vm_id");
    if (!c.acceptPush && c.queueEnabled) {
      // Mixed from the worker's seed: unique per worker, and no draw from the generator or the
      // host's random source, whose sequences routing uses.
      if (this.workerId == 0) this.workerId = <u32>(mixSeed(seed) >> 32) | 1;
      this.wakeToken = host.registerQueue(wakeQueueName(this.workerId));
      host.setTickPeriod(<u32>c.queueTickMs);
    }
    host.log(host.LOG_INFO, "wasm-epp: configured" + (c.acceptPush ? " push endpoint" : " routing for pool " + (c.pool.length > 0 ? c.pool : "(the only pool in the state)")));
    return true;
  }

  createContext(context_id: u32): Context {
    return new EppHttp(context_id, this);
  }

  count(counter: i32): void {
    (this.stats as Stats).inc(counter);
  }

  // Warns at most once per WARN_EVERY_MS for each kind of warning: degraded paths must be
  // visible, but not one line per request.
  warn(kind: string, message: string): void {
    const now = host.nowMs();
    if (this.lastWarnMs.has(kind) && now - this.lastWarnMs.get(kind) < WARN_EVERY_MS) return;
    this.lastWarnMs.set(kind, now);
    host.log(host.LOG_WARN, "wasm-epp: " + message);
  }

  // The worker's state, refreshed if a newer one was stored.
  currentState(): State | null {
    const r = this.cache.refresh();
    if (r > 0) {
      const st = this.cache.state as State;
      const s = this.stats as Stats;
      s.inc(stats.STATE_RELOADED);
      s.set(stats.GAUGE_STATE_VERSION, <u64>st.version);
      s.set(stats.GAUGE_STATE_GENERATED_AT_S, <u64>(st.generatedAtMs / 1000));
    } else if (r < 0) {
      this.count(stats.STATE_UNREADABLE);
      this.warn("state_unreadable", "stored state could not be decoded, keeping the previous one: " + this.cache.lastError);
    }
    return this.cache.state;
  }

  onTick(): void {
    this.drain();
  }

  onQueueReady(token: u32): void {
    // Wake-ups carry no data: drain the messages, then the held requests.
    for (let i = 0; i < 1024 && host.dequeue(token); i++) {}
    this.drain();
  }

  // Releases held requests while the pool has room, highest band first: queue/release.ts.
  drain(): void {
    drainHeld(this);
  }

  publish(changed: bool): void {
    publishHeld(this, changed);
  }

  wakeHolders(): void {
    wakeHolders(this);
  }

  // The answer to a prefill call (or to an abort sent after a failed one): pd/answer.ts.
  onHttpCallResponse(token: u32, headers: u32, bodySize: u32, _trailers: u32): void {
    prefillAnswered(this, token, headers, bodySize);
  }

  poolOf(st: State): Pool | null {
    if (this.config.pool.length > 0) return st.findPool(this.config.pool);
    return st.pools.length == 1 ? st.pools[0] : null;
  }
}

const PHASE_HEADERS: i32 = 0;
const PHASE_BODY: i32 = 1;
const PHASE_DONE: i32 = 2;

export class EppHttp extends Context {
  root: EppRoot;
  phase: i32 = PHASE_HEADERS;
  bodySize: i32 = 0;
  contentType: string = "";
  push: PushHandler | null = null;
  clientHeader: bool = false;
  // Set once the request was sent to an endpoint: undone in onDone.
  routedPool: string = "";
  routedId: u32 = 0;
  // A prefill call was sent for this request (prefill/decode pools).
  prefillSent: bool = false;
  // Held in the worker's queue: what routing it needs when it is released.
  held: bool = false;
  heldBand: i32 = 0;
  heldSinceMs: f64 = 0;
  queuedMs: f64 = 0;
  heldBody: ArrayBuffer | null = null;
  heldReq: ParsedRequest | null = null;
  heldRes: Resolution | null = null;
  // From the request's headers (objective/): the objective it names, its fairness flow.
  objective: string = "";
  flow: u64 = 0;
  // The answer as it passes (observe/): null when not watched.
  watch: ResponseWatch | null = null;
  replied: bool = false;
  streamed: bool = false;

  constructor(id: u32, root: EppRoot) {
    super(id, root);
    this.root = root;
  }

  onRequestHeaders(_headers: u32, endOfStream: bool): FilterHeadersStatusValues {
    const cfg = this.root.config;
    if (cfg.acceptPush) {
      const p = new PushHandler(cfg, this.root.pushToken, this.root.store, this.root.stats as Stats);
      this.push = p;
      if (!p.onHeaders(endOfStream)) this.phase = PHASE_DONE;
      return FilterHeadersStatusValues.StopIteration;
    }
    this.watch = observe.startWatch(this.root);
    // A client must never choose its own upstream: drop whatever it sent now, set ours later.
    if (host.getHeader(host.REQUEST_HEADERS, cfg.endpointHeader) !== null) {
      host.removeHeader(host.REQUEST_HEADERS, cfg.endpointHeader);
      this.clientHeader = true;
    }
    // The objective and fairness headers are the gateway's: read, then removed.
    const ch = takeClientHeaders(cfg.objectiveHeader);
    this.objective = ch.objective;
    this.flow = ch.flow;
    if (endOfStream) {
      return this.routeUnparsed() ? FilterHeadersStatusValues.Continue : FilterHeadersStatusValues.StopIteration;
    }
    const ct = host.getHeader(host.REQUEST_HEADERS, "content-type");
    this.contentType = ct !== null ? ct : "";
    const cl = host.getHeader(host.REQUEST_HEADERS, "content-length");
    if (cl !== null && parseDecimal(cl) > <f64>cfg.maxBodyBytes) {
      this.root.count(stats.BODY_TOO_LARGE);
      this.reply(errors.bodyTooLarge(cfg.maxBodyBytes));
      return FilterHeadersStatusValues.StopIteration;
    }
    this.phase = PHASE_BODY;
    // Hold the headers until the body has been read (needs allow_on_headers_stop_iteration).
    return FilterHeadersStatusValues.StopIteration;
  }

  onRequestBody(size: usize, endOfStream: bool): FilterDataStatusValues {
    if (this.phase == PHASE_DONE) return FilterDataStatusValues.StopIterationNoBuffer;
    this.bodySize = <i32>size;
    const push = this.push;
    if (push !== null) {
      if (!push.onBody(<i32>size, endOfStream)) {
        this.phase = PHASE_DONE;
        // A new state may open the pool for requests held on any worker.
        if (endOfStream) this.root.wakeHolders();
        return FilterDataStatusValues.StopIterationNoBuffer;
      }
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    if (<i64>size > <i64>this.root.config.maxBodyBytes) {
      this.root.count(stats.BODY_TOO_LARGE);
      this.reply(errors.bodyTooLarge(this.root.config.maxBodyBytes));
      return FilterDataStatusValues.StopIterationNoBuffer;
    }
    if (!endOfStream) return FilterDataStatusValues.StopIterationAndBuffer;
    if (this.finishBody()) return FilterDataStatusValues.Continue;
    // A held request keeps its body buffered, readable and replaceable when it is released.
    return this.held ? FilterDataStatusValues.StopIterationAndBuffer : FilterDataStatusValues.StopIterationNoBuffer;
  }

  // Trailers end the request body too (gRPC-style clients).
  onRequestTrailers(_trailers: u32): FilterTrailersStatusValues {
    if (this.phase != PHASE_BODY) return FilterTrailersStatusValues.Continue;
    const push = this.push;
    if (push !== null) {
      push.onBody(this.bodySize, true);
      this.phase = PHASE_DONE;
      return FilterTrailersStatusValues.StopIteration;
    }
    return this.finishBody() ? FilterTrailersStatusValues.Continue : FilterTrailersStatusValues.StopIteration;
  }

  onResponseHeaders(_headers: u32, endOfStream: bool): FilterHeadersStatusValues {
    if (this.prefillSent) this.root.pd.responseStarted(this.context_id);
    observe.onResponseHeaders(this, endOfStream);
    return FilterHeadersStatusValues.Continue;
  }

  // The answer passes as it comes; only its timing and its last bytes are kept (observe/).
  onResponseBody(size: usize, endOfStream: bool): FilterDataStatusValues {
    observe.onResponseBody(this, size, endOfStream);
    return FilterDataStatusValues.Continue;
  }

  onResponseTrailers(_trailers: u32): FilterTrailersStatusValues {
    observe.onResponseTrailers(this);
    return FilterTrailersStatusValues.Continue;
  }

  onDone(): bool {
    observe.finishWatch(this);
    if (this.prefillSent) this.root.pd.streamDone(this.context_id);
    leaveQueue(this);
    const routed = this.routedPool.length > 0;
    this.release();
    // A slot may have freed up: held requests get a chance now rather than at the next tick.
    if (routed && this.root.config.queueEnabled) this.root.wakeHolders();
    return true;
  }

  onLog(): void {
    observe.finishWatch(this);
  }

  onDelete(): void {
    if (this.prefillSent) this.root.pd.streamDone(this.context_id);
    leaveQueue(this);
    this.release();
  }

  // The request no longer occupies its endpoint.
  private release(): void {
    if (this.routedPool.length == 0) return;
    const pool = this.routedPool;
    this.routedPool = "";
    if (!recordLoad(this.root.store, loadKey(pool), this.routedId, -1, host.nowMs(), this.root.config.maxEndpoints * 2)) {
      this.root.count(stats.LOAD_UPDATE_LOST);
    }
  }

  reply(e: ErrorReply): void {
    this.phase = PHASE_DONE;
    observe.noteLocalReply(this.root, this.watch, e.status);
    this.replied = true;
    host.sendResponse(e.status, e.details(), e.body(), ["content-type", "x-wasm-epp-error"], ["application/json", e.code]);
  }

  private finishBody(): bool {
    this.phase = PHASE_DONE;
    const body = host.getBody(this.bodySize);
    if (body === null || body.byteLength == 0 || !looksLikeJson(this.contentType, body as ArrayBuffer)) {
      return this.routeUnparsed();
    }
    return this.routeParsed(body as ArrayBuffer);
  }

  // No JSON body to read (GET /v1/models, uploads, ...): any good endpoint will do.
  private routeUnparsed(): bool {
    this.phase = PHASE_DONE;
    // Not an inference request: no inference metrics.
    this.watch = null;
    return routeWithoutBody(this);
  }

  private routeParsed(body: ArrayBuffer): bool {
    const root = this.root;
    const cfg = root.config;
    const req = parseOpenAIBody(changetype<usize>(body), body.byteLength, cfg.prefixBlockSize * cfg.prefixMaxBlocks);
    if (req.error !== null) {
      root.count(stats.INVALID_BODY);
      if (!req.hasModel && req.errorAt == 0 && (req.error as string).startsWith("the request has no")) {
        this.reply(errors.missingModel());
      } else {
        this.reply(errors.invalidBody("invalid request body: " + (req.error as string) + " (at byte " + req.errorAt.toString() + ")"));
      }
      return false;
    }
    const st = root.currentState();
    const pool = poolOrAnswer(this, st);
    if (pool === null) return false;
    const state = st as State;
    const res = resolveModel(pool, req.model, root.rng);
    observe.noteModel(this.watch, req.model, res.target, res.known, req.prompt.seen, body.byteLength);
    if (!res.known) {
      if (cfg.unknownModel == UNKNOWN_MODEL_REJECT) {
        root.count(stats.MODEL_NOT_FOUND);
        this.reply(errors.modelNotFound(req.model));
        return false;
      }
      root.count(stats.UNKNOWN_MODEL_PASSTHROUGH);
    }
    noteObjective(root, res, pool, this.objective);
    if (cfg.queueEnabled && holdOrAnswer(this, body, req, res, pool, state)) return false;
    return this.routeResolved(body, req, res, pool, state);
  }

  // Released from the root context (this stream is the effective context): routes the request
  // now, with the pool as it is now. False when it was answered instead.
  releaseHeld(now: f64): bool {
    this.held = false;
    this.queuedMs = now - this.heldSinceMs;
    const st = this.root.currentState();
    const pool = poolOrAnswer(this, st);
    if (pool === null) return false;
    return this.routeResolved(this.heldBody as ArrayBuffer, this.heldReq as ParsedRequest, this.heldRes as Resolution, pool, st as State);
  }

  // The request's time in the queue is up.
  answerExpired(now: f64): void {
    this.held = false;
    this.queuedMs = now - this.heldSinceMs;
    this.reply(errors.queueTimeout(criticalityName(this.heldBand), <i64>this.queuedMs));
  }

  // Routing once the model is resolved (at arrival, or when released from the queue).
  private routeResolved(body: ArrayBuffer, req: ParsedRequest, res: Resolution, pool: Pool, state: State): bool {
    if (pool.pd !== null) return routePd(this, body, req, res, pool, state);
    return routeToOne(this, body, req, res, pool, state);
  }

  // Sets the destination and counts the request (and its prefill work) against the endpoint
  // until it finishes.
  dispatch(pool: Pool, index: i32, now: f64, workMs: f64): void {
    const root = this.root;
    const e = pool.endpoints[index];
    host.setHeader(host.REQUEST_HEADERS, root.config.endpointHeader, e.address);
    if (this.clientHeader) root.count(stats.CLIENT_HEADER_REPLACED);
    observe.noteRouted(root, this.watch, e, now);
    if (recordLoad(root.store, loadKey(pool.name), e.id, 1, now, root.config.maxEndpoints * 2, workMs)) {
      this.routedPool = pool.name;
      this.routedId = e.id;
    } else {
      root.count(stats.LOAD_UPDATE_LOST);
    }
  }
}
