// A discrete-event simulation of a pool of model servers behind a router, in virtual time.
//
// Each pod is an Engine. A pod with work runs step after step; a step that starts at t ends at
// t + durationMs, when its tokens are delivered. Requests come from a RequestSource through an
// arrival process:
//   closed  : `concurrency` requests in flight at all times, a new one sent as soon as one
//             finishes (benchmark_serving --max-concurrency with request rate inf);
//   poisson : requests sent at exponentially distributed gaps (--request-rate), optionally capped
//             at maxConcurrency in flight;
//   open    : every request sent as soon as the source has it ready (a source with its own
//             timestamps, such as a replayed trace), however many are in flight.
// Each request is routed when it is sent: the router sees what a real router can see, namely
// every pod's metrics as of its last scrape (each pod scraped every scrapeIntervalMs plus a
// uniform jitter, so every strategy sees the same staleness) and its own count of requests it
// sent to each pod that have not finished. A router flagged `oracle` also gets the engines.
// Routers receive the virtual time, so a router driven by a clock (the compiled filter under the
// proxy-wasm test host with a manual clock) can be advanced to it. route() may return a promise.
//
// The driver records each request's TTFT, TPOT, end-to-end latency, output tokens and prefix
// cache hit, and samples every pod's KV usage, running and waiting counts at a fixed interval.
//
// Prefill/decode disaggregation (`cluster.pd`), as SGLang serves it:
//   - the first `pd.prefill` pods are prefill servers, the others decode servers (PodView.role);
//   - route() returns `{ decode, prefill }` for every request (a plain pod number is an error);
//   - the request reaches both at once, as SGLang's router sends it: the decode pod preallocates
//     the prompt's KV as soon as its memory allows and then the prefill pod may schedule it; the
//     prefill computes the prompt and its first token, its KV goes over the link
//     (`pd.link`, chunk by chunk as computed: cost-model.ts kvTransferDoneMs) while the prefill pod
//     keeps it, and when the transfer completes the prefill pod frees it (its prefix cache keeps
//     it) and the decode pod admits the request at its next step without recomputing the prompt;
//   - the client's TTFT is when the decode pod emits the first token: at the start of the first
//     decode step after the KV landed (SGLang streams the prefill's token while building that
//     step's batch), so it includes the prefill's queue and compute, the transfer and the wait for
//     the decode pod's step boundary;
//   - a decode request whose KV has not arrived `pd.waitingTimeoutMs` (300 s, as
//     SGLANG_DISAGGREGATION_WAITING_TIMEOUT) after it reached the decode pod fails on both pods
//     (ClusterResult.failed).
// Router hooks in P/D mode:
//   - onPrefillDone(req, prefillPod, ok, now) is called (and awaited) when the prefill pod's part
//     ends: ok = true when the transfer completed (the moment SGLang's prefill server answers its
//     copy of the request), false when the request failed first. A router that counts load on the
//     prefill pod until its call answers releases it here; PodView.outstanding does the same;
//   - onFinished(req, decodePod, now) is called when the decode pod finishes the request, or when
//     the request failed (it is over on the decode pod either way).
// Metrics seen by routers: PodMetrics.pd has the role's queue lengths, and page() renders SGLang's
// /metrics (role-specific disaggregation gauges) for P/D clusters.
//
// Holding and rejecting (a router with its own queue, or one that sheds load):
//   - route() may return `{ reject: status }`: the request is answered at once with that HTTP
//     status (a 429, say) and never runs;
//   - route() may return `{ hold: true }`: the router keeps the request and decides later, in
//     virtual time. It decides by calling the HoldControl it got in attach() (from any hook:
//     route, onScrape, onFinished, onPrefillDone, onTick) or by returning decisions from onTick:
//     `{ id, pod }` sends a held request to a pod (`{ decode, prefill }` in P/D), `{ id, reject }`
//     answers it. Decisions take effect when the hook returns, at the hook's virtual time;
//   - while the router holds any request the driver calls onTick(now, view) every `tickMs` of
//     virtual time (default 10 ms, at multiples of tickMs), also after the source is exhausted,
//     until nothing is held; a router that holds needs onTick or attach();
//   - a held request is in flight for the client (closed-loop concurrency counts it), and its TTFT
//     and end-to-end latency count from when the client sent it, so the time held is included
//     (RequestRecord.queuedMs says how long it was held);
//   - a rejected request ends there: it is in ClusterResult.rejected (status, time held), the
//     router hears nothing more of it, and the source hears of it through onRejected (or, lacking
//     that, onFinished with no output tokens, so that a conversation goes on);
//   - every request the client sent ends completed (requests), rejected, failed (P/D) or, when
//     maxVirtualMs stops the run, unfinished (held requests included);
//   - requests may carry a criticality (SimRequest.criticality); records keep it, and
//     ClusterResult.sentByCriticality counts the requests sent per criticality.
//
// Removing pods (`cluster.removals`, not with P/D), as Kubernetes scales a Deployment down: at
// atMs the pod is deleted — PodView.removed turns true (a router's watch sees it at once) and it
// is no longer scraped — and it keeps serving for graceMs (a preStop hook's delay: endpoints
// take a moment to leave every proxy), finishing what it has. A request sent to it after that
// fails ("connection refused": ClusterResult.failed), and its client goes on.

import { Engine, type EngineEvent, type EngineOptions, type PdRole, type PdSnapshot } from "./engine.ts";
import { kvBytesPerToken, kvTransferDoneMs, RDMA_200G, type KvLink } from "./cost-model.ts";
import { SGLANG_KV_TRANSFER_LATENCY_MS_BUCKETS, sglangMetricsPage, vllmMetricsPage } from "./exposition.ts";
import { Histogram } from "./histogram.ts";
import { Rng } from "./rng.ts";
import { summarize, type Summary } from "./stats.ts";
import type { RequestSource, SimRequest } from "./workload.ts";

export type { SimRequest } from "./workload.ts";

/** A pod's metrics as a scrape of its /metrics would give them. */
export interface PodMetrics {
  scrapedAtMs: number;
  waiting: number;
  running: number;
  kvUsage: number;
  kvBlocksTotal: number;
  blockSize: number;
  prefixCacheQueries: number;
  prefixCacheHits: number;
  lora: { maxLoras: number; running: string[]; waiting: string[] } | null;
  /** P/D clusters: the pod's disaggregation queues (SGLang's gauges). */
  pd?: PdSnapshot;
}

export type { PdRole } from "./engine.ts";

/** Where a P/D request goes: the decode pod answers the client, the prefill pod computes the prompt. */
export interface PdRoute {
  decode: number;
  prefill: number;
}

export interface PodView {
  readonly index: number;
  readonly name: string;
  readonly address: string;
  /** As of the last scrape; null before the first. */
  readonly metrics: PodMetrics | null;
  /** Requests this router sent to the pod that have not finished (on a prefill pod: whose prefill has not ended). */
  readonly outstanding: number;
  /** P/D clusters only: the pod's role. */
  readonly role?: PdRole;
  /** The pod was deleted (cluster.removals): route nothing more to it. */
  readonly removed?: boolean;
}

/** An answer's usage as the server reports it (cachedTokens: the prefix-cache hit at admission; the prefill pod's in P/D). */
export interface SimUsage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

export interface RouterView {
  readonly now: number;
  readonly pods: readonly PodView[];
  /** Direct engine access, for oracle routers only (undefined otherwise). */
  readonly engines?: readonly Engine[];
}

/** route() keeps the request and decides later (see the top of this file). */
export interface RouteHold {
  hold: true;
}

/** route() answers the request at once with this HTTP status; it never runs. */
export interface RouteReject {
  reject: number;
}

export type RouteDecision = number | PdRoute | RouteHold | RouteReject;

/** What becomes of a held request: sent to a pod, or answered with a status. */
export type HeldDecision = { id: string; pod: number | PdRoute } | { id: string; reject: number };

/** Given to a router in attach(): how it decides on the requests it holds. */
export interface HoldControl {
  dispatch(id: string, pod: number | PdRoute): void;
  reject(id: string, status: number): void;
}

export interface Router {
  name: string;
  /** Wants direct engine access in its view (a precise oracle, not a realistic router). */
  oracle?: boolean;
  /** A pod index; in a P/D cluster `{ decode, prefill }`; or hold or reject it (see the top of this file). */
  route(req: SimRequest, now: number, view: RouterView): RouteDecision | Promise<RouteDecision>;
  /** Called once before anything else: the router's way to decide on the requests it holds. */
  attach?(control: HoldControl): void;
  /** Period of onTick while the router holds requests (default 10 ms). */
  tickMs?: number;
  /** Called every tickMs of virtual time while the router holds requests; may return decisions. */
  onTick?(now: number, view: RouterView): void | HeldDecision[] | Promise<void | HeldDecision[]>;
  /** The request finished on `pod` (its decode pod in P/D); `usage` is what the server's answer reports (absent for a failed request). */
  onFinished?(req: SimRequest, pod: number, now: number, usage?: SimUsage): void;
  /** The request's first output token left `pod` (the start of its streamed answer). */
  onFirstToken?(req: SimRequest, pod: number, now: number): void;
  /** Figures the router keeps about itself (e.g. its own predicted cache hits), copied into the result at the end. */
  stats?(): Record<string, number>;
  /** P/D clusters: the prefill pod's part of the request ended (see the top of this file). */
  onPrefillDone?(req: SimRequest, prefillPod: number, ok: boolean, now: number): void | Promise<void>;
  /**
   * A pod was just scraped (every scrape, before any later routing). `page()` renders the pod's
   * /metrics text as of this scrape (vLLM's names); call it during the hook. For routers that
   * keep their own state the way a sidecar does.
   */
  onScrape?(pod: number, metrics: PodMetrics, now: number, page: () => string): void | Promise<void>;
}

export type Arrival = { kind: "closed"; concurrency: number } | { kind: "poisson"; ratePerSec: number; maxConcurrency?: number } | { kind: "open" };

export interface ClusterOptions {
  pods: number;
  /** Engine options, the same for every pod or per pod (tokenEvents is always off here). */
  engine?: EngineOptions | ((pod: number) => EngineOptions);
  /** Scrape period: every pod is scraped every scrapeIntervalMs + U(0, scrapeJitterMs). Default 50 + U(0, 50). */
  scrapeIntervalMs?: number;
  scrapeJitterMs?: number;
  /** KV-usage sampling period for the result's time series (default 1000 ms). */
  sampleIntervalMs?: number;
  seed?: number;
  /** Stop after this much virtual time (default: run until every request finished). */
  maxVirtualMs?: number;
  /** The address ("ip:port") a router sees for each pod (default 10.0.0.<10+i>:8000). */
  address?: (pod: number) => string;
  /** Served model name on the pods' /metrics pages (default "/model/qwen"). */
  modelName?: string;
  /** Prefill/decode disaggregation (see the top of this file). */
  pd?: PdClusterOptions;
  /** Metric names of the pages routers get in onScrape (default: "vllm", or "sglang" with `pd`). */
  runtime?: "vllm" | "sglang";
  /** Pods deleted during the run (see the top of this file); graceMs defaults to 5000. */
  removals?: Array<{ pod: number; atMs: number; graceMs?: number }>;
}

export interface PdClusterOptions {
  /** Pods 0 .. prefill - 1 are prefill servers, the rest decode servers (at least one of each). */
  prefill: number;
  /** The KV transfer path (default RDMA_200G). */
  link?: KvLink;
  /** A decode request whose KV has not arrived this long after it reached the decode pod fails (default 300 000). */
  waitingTimeoutMs?: number;
}

export interface RequestRecord {
  id: string;
  pod: number;
  sessionId?: string;
  lora: string | null;
  promptTokens: number;
  outputTokens: number;
  sentMs: number;
  firstTokenMs: number;
  finishedMs: number;
  ttftMs: number;
  /** (e2e - ttft) / (output tokens - 1), as benchmark_serving computes it; NaN for 1 token. */
  tpotMs: number;
  e2eMs: number;
  cachedTokens: number;
  preemptions: number;
  /** P/D: the prefill pod (`pod` is the decode pod). */
  prefillPod?: number;
  /** P/D: the prefill pod's prefix-cache hit, in tokens (also in cachedTokens, as SGLang reports it). */
  prefillCachedTokens?: number;
  /** P/D: when the prefill pod computed the first token. */
  prefillFirstTokenMs?: number;
  /** P/D: when the KV reached the decode pod (the prefill pod's part ended). */
  kvArrivedMs?: number;
  /** P/D: from the first token on the prefill pod to the KV's arrival. */
  kvTransferMs?: number;
  /** The request's criticality, when it had one. */
  criticality?: SimRequest["criticality"];
  /** How long the router held the request before sending it to a pod (only for held requests). */
  queuedMs?: number;
}

/** A request the router answered itself (route() or a held request's decision): it never ran. */
export interface RejectedRecord {
  id: string;
  status: number;
  sentMs: number;
  rejectedMs: number;
  /** Time held before the answer (0: answered at once). */
  queuedMs: number;
  criticality?: SimRequest["criticality"];
}

/** A request that failed (P/D, or sent to a removed pod). */
export interface FailedRecord {
  id: string;
  pod: number;
  /** P/D only. */
  prefillPod?: number;
  sentMs: number;
  failedMs: number;
  error: string;
}

export interface PodSummary {
  requests: number;
  meanKvUsage: number;
  maxKvUsage: number;
  meanRunning: number;
  meanWaiting: number;
  preemptions: number;
  prefixCacheHitRate: number;
  busyFraction: number;
  /** P/D clusters only. */
  role?: PdRole;
}

export interface ClusterResult {
  router: string;
  requests: RequestRecord[];
  /** Requests still unfinished when maxVirtualMs stopped the run. */
  unfinished: number;
  makespanMs: number;
  wallMs: number;
  ttft: Summary;
  tpot: Summary;
  e2e: Summary;
  requestsPerSec: number;
  outputTokensPerSec: number;
  /** Prompt tokens served from prefix caches / prompt tokens. */
  prefixHitRate: number;
  preemptions: number;
  pods: PodSummary[];
  /** Over samples taken while requests were still being sent: mean of (max - min) KV usage across pods, and of the standard deviation. */
  kvSpread: { meanRange: number; meanStdDev: number };
  samples: { tMs: number[]; kvUsage: number[][]; running: number[][]; waiting: number[][] };
  /** P/D clusters, and clusters with removals: requests that failed. */
  failed?: FailedRecord[];
  /** Requests the router answered itself; present when the router held or rejected any request, or requests had criticalities. */
  rejected?: RejectedRecord[];
  /** Requests sent per criticality; present when requests had criticalities. */
  sentByCriticality?: Partial<Record<NonNullable<SimRequest["criticality"]>, number>>;
  /** The router's own figures (Router.stats), when it keeps any. */
  routerStats?: Record<string, number>;
}

export interface SimulateOptions {
  cluster: ClusterOptions;
  source: RequestSource;
  router: Router;
  arrival: Arrival;
}

const enum Kind {
  StepStart,
  StepEnd,
  Scrape,
  Sample,
  Arrival,
  Wake,
  Transfer, // P/D: a request's KV reached its decode pod
  Timeout, // P/D: a decode request's waiting timeout
  Tick, // the router holds requests: onTick
  Remove, // a pod is deleted (cluster.removals)
}

interface Ev {
  t: number;
  seq: number;
  kind: Kind;
  pod: number;
  events?: EngineEvent[];
  id?: string;
}

class Heap {
  private a: Ev[] = [];
  get size(): number {
    return this.a.length;
  }
  push(e: Ev): void {
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): Ev | undefined {
    const a = this.a;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && less(a[l], a[m])) m = l;
        if (r < a.length && less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

function less(x: Ev, y: Ev): boolean {
  return x.t < y.t || (x.t === y.t && x.seq < y.seq);
}

interface Flight {
  req: SimRequest;
  pod: number;
  sentMs: number;
  firstTokenMs: number;
  cachedTokens: number;
  // P/D
  prefill?: number;
  prefillDone?: boolean;
  prefillToken?: number;
  prefillCached?: number;
  prefillFirstTokenMs?: number;
  kvArrivedMs?: number;
  /** Held requests: when the router sent it to its pod. */
  dispatchedMs?: number;
}

/** Runs a workload through a router over a simulated pool until every request finished. */
export async function simulate(o: SimulateOptions): Promise<ClusterResult> {
  const wall0 = performance.now();
  const c = o.cluster;
  const n = c.pods;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`pods must be a positive integer, got ${n}`);
  const rng = new Rng(c.seed ?? 7);
  const scrapeRng = rng.fork();
  const arrivalRng = rng.fork();
  const scrapeBase = c.scrapeIntervalMs ?? 50;
  const scrapeJitter = c.scrapeJitterMs ?? 50;
  const sampleEvery = c.sampleIntervalMs ?? 1000;
  const maxT = c.maxVirtualMs ?? Infinity;
  const pd = c.pd;
  const roles: PdRole[] = [];
  if (pd) {
    if (!Number.isInteger(pd.prefill) || pd.prefill < 1 || pd.prefill >= n) throw new RangeError(`pd.prefill must leave at least one prefill and one decode pod, got ${pd.prefill} of ${n}`);
    for (let i = 0; i < n; i++) roles.push(i < pd.prefill ? "prefill" : "decode");
  }
  const link = pd?.link ?? RDMA_200G;
  const waitingTimeoutMs = pd?.waitingTimeoutMs ?? 300_000;
  const runtime = c.runtime ?? (pd ? "sglang" : "vllm");
  const engines: Engine[] = [];
  for (let i = 0; i < n; i++) {
    const eo = typeof c.engine === "function" ? c.engine(i) : c.engine;
    engines.push(pd ? new Engine({ histogramBuckets: "sglang", ...eo, role: roles[i], tokenEvents: false }) : new Engine({ ...eo, tokenEvents: false }));
  }
  const bootstrapFailed = new Array<number>(n).fill(0);
  const transferFailed = new Array<number>(n).fill(0);
  const busy = new Array<boolean>(n).fill(false);
  const startQueued = new Array<boolean>(n).fill(false);
  const outstanding = new Array<number>(n).fill(0);
  const metrics: (PodMetrics | null)[] = new Array(n).fill(null);
  const removedAt = new Array<number>(n).fill(Infinity);
  const refusingAt = new Array<number>(n).fill(Infinity);
  const removals = c.removals ?? [];
  if (removals.length > 0 && pd) throw new Error("cluster.removals: not with P/D");
  for (const r of removals) {
    if (!Number.isInteger(r.pod) || r.pod < 0 || r.pod >= n) throw new RangeError(`cluster.removals: pod ${r.pod} of ${n}`);
    if (!(r.atMs >= 0) || !((r.graceMs ?? 0) >= 0)) throw new RangeError("cluster.removals: atMs and graceMs must be >= 0");
  }
  const pods: PodView[] = [];
  for (let i = 0; i < n; i++) {
    const pv: PodView = {
      index: i,
      name: `pod-${i}`,
      address: c.address ? c.address(i) : `10.0.0.${10 + i}:8000`,
      get metrics() {
        return metrics[i];
      },
      get outstanding() {
        return outstanding[i];
      },
    };
    if (pd) Object.defineProperty(pv, "role", { value: roles[i], enumerable: true });
    if (removals.length > 0) Object.defineProperty(pv, "removed", { get: () => now >= removedAt[i], enumerable: true });
    pods.push(pv);
  }
  let now = 0;
  const view: RouterView = {
    get now() {
      return now;
    },
    pods,
    engines: o.router.oracle ? engines : undefined,
  };

  const heap = new Heap();
  let seq = 0;
  const schedule = (t: number, kind: Kind, pod = -1, events?: EngineEvent[], id?: string) => heap.push(id === undefined ? { t, seq: seq++, kind, pod, events } : { t, seq: seq++, kind, pod, events, id });

  const flights = new Map<string, Flight>();
  const records: RequestRecord[] = [];
  const perPodRequests = new Array<number>(n).fill(0);
  let inFlight = 0;
  let arrivalsDue = 0;
  let wakeAt = Infinity;
  let lastSendMs = 0;
  let sourceDoneAt = Infinity;
  const sampleT: number[] = [];
  const sampleKv: number[][] = engines.map(() => []);
  const sampleRun: number[][] = engines.map(() => []);
  const sampleWait: number[][] = engines.map(() => []);

  const modelName = c.modelName ?? "/model/qwen";
  const scrape = async (i: number) => {
    const s = engines[i].snapshot();
    const m: PodMetrics = (metrics[i] = {
      scrapedAtMs: now,
      waiting: s.waiting,
      running: s.running,
      kvUsage: s.kvUsage,
      kvBlocksTotal: s.kvBlocksTotal,
      blockSize: s.blockSize,
      prefixCacheQueries: s.prefixCacheQueries,
      prefixCacheHits: s.prefixCacheHits,
      lora: s.lora,
    });
    if (s.pd) m.pd = s.pd;
    if (o.router.onScrape) {
      const e = engines[i];
      const page =
        runtime === "sglang"
          ? () => sglangMetricsPage(s, { modelName, pd: s.pd ? { bootstrapFailed: bootstrapFailed[i], transferFailed: transferFailed[i], transferLatencyMs: transferLatency[i] } : undefined })
          : () => vllmMetricsPage(s, { modelName, createdSec: 0, loraInfo: e.loraInfoHistory(), gpuMemoryUtilization: e.cost.gpuMemoryUtilization });
      await o.router.onScrape(i, m, now, page);
    }
  };

  const kick = (i: number) => {
    if (!busy[i] && !startQueued[i] && engines[i].hasWork()) {
      startQueued[i] = true;
      schedule(now, Kind.StepStart, i);
    }
  };

  // ---- P/D ----
  const transferLatency = roles.map((r) => (r === "prefill" ? new Histogram(SGLANG_KV_TRANSFER_LATENCY_MS_BUCKETS) : undefined));
  const failed: FailedRecord[] = [];

  /** Preallocates on a decode pod; the prefill pods of the preallocated requests may now schedule them. */
  const preallocOn = (d: number) => {
    for (const id of engines[d].preallocate(now)) {
      const f = flights.get(id)!;
      if (engines[f.prefill!].bootstrapped(id, now)) kick(f.prefill!);
    }
  };

  const prefillEnded = async (f: Flight, ok: boolean) => {
    f.prefillDone = true;
    outstanding[f.prefill!]--;
    await o.router.onPrefillDone?.(f.req, f.prefill!, ok, now);
  };

  const fail = async (f: Flight, error: string) => {
    const id = f.req.id;
    flights.delete(id);
    engines[f.pod].abort(id);
    transferFailed[f.pod]++;
    if (!f.prefillDone) {
      engines[f.prefill!].abort(id);
      transferFailed[f.prefill!]++;
      await prefillEnded(f, false);
      kick(f.prefill!);
    }
    outstanding[f.pod]--;
    inFlight--;
    failed.push({ id, pod: f.pod, prefillPod: f.prefill!, sentMs: f.sentMs, failedMs: now, error });
    o.router.onFinished?.(f.req, f.pod, now);
    o.source.onFinished?.(f.req, [], now);
    preallocOn(f.pod);
    kick(f.pod);
    await issue();
  };

  const sendPd = (req: SimRequest, route: RouteDecision, sentMs: number, wasHeld: boolean) => {
    const r = route as PdRoute;
    const ok = (i: unknown, role: PdRole) => Number.isInteger(i) && (i as number) >= 0 && (i as number) < n && roles[i as number] === role;
    if (typeof route !== "object" || route === null || !ok(r.decode, "decode") || !ok(r.prefill, "prefill")) {
      throw new Error(`router ${o.router.name} returned ${JSON.stringify(route)}: a P/D cluster needs { decode: <decode pod>, prefill: <prefill pod> }`);
    }
    const sub = { id: req.id, tokens: req.tokens, maxTokens: req.maxTokens, lora: req.lora ?? null };
    engines[r.decode].submit(sub, now);
    engines[r.prefill].submit({ ...sub, awaitBootstrap: true }, now);
    const f: Flight = { req, pod: r.decode, sentMs, firstTokenMs: NaN, cachedTokens: 0, prefill: r.prefill, prefillDone: false };
    if (wasHeld) f.dispatchedMs = now;
    flights.set(req.id, f);
    outstanding[r.decode]++;
    outstanding[r.prefill]++;
    perPodRequests[r.decode]++;
    perPodRequests[r.prefill]++;
    if (!wasHeld) inFlight++;
    lastSendMs = now;
    schedule(now + waitingTimeoutMs, Kind.Timeout, r.decode, undefined, req.id);
    preallocOn(r.decode);
  };

  /** A prefill pod's event for a P/D flight. */
  const deliverPrefill = (pod: number, e: EngineEvent, f: Flight) => {
    if (e.type !== "prefilled") return;
    f.prefillToken = e.token;
    f.prefillCached = e.cachedTokens;
    f.prefillFirstTokenMs = e.atMs;
    const done = kvTransferDoneMs(e.chunks, kvBytesPerToken(engines[pod].cost.model), link);
    schedule(done, Kind.Transfer, pod, undefined, e.id);
  };

  const transferred = async (id: string) => {
    const f = flights.get(id);
    if (!f || f.prefillDone) return;
    engines[f.prefill!].transferDone(id, now);
    f.kvArrivedMs = now;
    transferLatency[f.prefill!]!.observe(now - f.prefillFirstTokenMs!);
    await prefillEnded(f, true);
    engines[f.pod].kvArrived(id, f.prefillToken!, now, f.prefillCached);
    kick(f.pod);
    kick(f.prefill!);
  };

  /** Sends a request to its pod(s): at once (sentMs = now), or when the router releases it. False when it failed at once. */
  const submit = (req: SimRequest, route: RouteDecision, sentMs: number, wasHeld: boolean): boolean => {
    if (pd) {
      sendPd(req, route, sentMs, wasHeld);
      return true;
    }
    const pod = route as number;
    if (!Number.isInteger(pod) || pod < 0 || pod >= n) throw new Error(`router ${o.router.name} returned pod ${typeof pod === "object" ? JSON.stringify(pod) : pod} of ${n}`);
    if (now >= refusingAt[pod]) {
      // The pod is gone: the connection is refused, the request fails at once.
      if (wasHeld) inFlight--;
      failed.push({ id: req.id, pod, sentMs, failedMs: now, error: `pod-${pod} was removed: connection refused` });
      o.router.onFinished?.(req, pod, now);
      o.source.onFinished?.(req, [], now);
      lastSendMs = now;
      return false;
    }
    engines[pod].submit({ id: req.id, tokens: req.tokens, maxTokens: req.maxTokens, lora: req.lora ?? null }, now);
    const f: Flight = { req, pod, sentMs, firstTokenMs: NaN, cachedTokens: 0 };
    if (wasHeld) f.dispatchedMs = now;
    flights.set(req.id, f);
    outstanding[pod]++;
    perPodRequests[pod]++;
    if (!wasHeld) inFlight++;
    lastSendMs = now;
    kick(pod);
    return true;
  };

  // ---- holds and rejections ----
  const held = new Map<string, { req: SimRequest; sentMs: number }>();
  const pending: HeldDecision[] = [];
  const rejected: RejectedRecord[] = [];
  const sentBy: NonNullable<ClusterResult["sentByCriticality"]> = {};
  let tracked = false; // the result carries `rejected`
  let tickPending = false;
  const tickMs = o.router.tickMs ?? 10;
  if (!(tickMs > 0)) throw new RangeError(`router ${o.router.name}: tickMs must be > 0, got ${tickMs}`);
  o.router.attach?.({
    dispatch: (id, pod) => void pending.push({ id, pod }),
    reject: (id, status) => void pending.push({ id, reject: status }),
  });

  const armTick = () => {
    if (tickPending || held.size === 0 || !o.router.onTick) return;
    tickPending = true;
    schedule((Math.floor(now / tickMs) + 1) * tickMs, Kind.Tick);
  };

  /** The router answered the request itself. */
  const reject = (req: SimRequest, status: number, sentMs: number, wasHeld: boolean) => {
    if (!Number.isInteger(status) || status < 100 || status > 599) throw new Error(`router ${o.router.name} rejected ${req.id} with status ${status}`);
    if (wasHeld) inFlight--;
    const r: RejectedRecord = { id: req.id, status, sentMs, rejectedMs: now, queuedMs: now - sentMs };
    if (req.criticality !== undefined) r.criticality = req.criticality;
    rejected.push(r);
    if (o.source.onRejected) o.source.onRejected(req, status, now);
    else o.source.onFinished?.(req, [], now);
  };

  const isHold = (d: RouteDecision): d is RouteHold => typeof d === "object" && d !== null && (d as RouteHold).hold === true;
  const isReject = (d: RouteDecision): d is RouteReject => typeof d === "object" && d !== null && "reject" in d;

  /** Applies the decisions the router made on held requests; true when any request ended there (rejected, or failed at once). */
  const applyPending = (): boolean => {
    let any = false;
    while (pending.length > 0) {
      const d = pending.shift()!;
      const h = held.get(d.id);
      if (!h) throw new Error(`router ${o.router.name} decided on ${d.id}, a request it does not hold`);
      held.delete(d.id);
      if ("reject" in d) {
        reject(h.req, d.reject, h.sentMs, true);
        any = true;
      } else if (!submit(h.req, d.pod, h.sentMs, true)) {
        any = true;
      }
    }
    return any;
  };

  const send = async (req: SimRequest) => {
    if (flights.has(req.id) || held.has(req.id)) throw new Error(`duplicate request id ${req.id}`);
    if (req.criticality !== undefined) {
      sentBy[req.criticality] = (sentBy[req.criticality] ?? 0) + 1;
      tracked = true;
    }
    const d = await o.router.route(req, now, view);
    if (isHold(d)) {
      if (!o.router.onTick && !o.router.attach) throw new Error(`router ${o.router.name} holds ${req.id} but has neither onTick nor attach`);
      held.set(req.id, { req, sentMs: now });
      inFlight++;
      tracked = true;
    } else if (isReject(d)) {
      tracked = true;
      reject(req, d.reject, now, false);
    } else {
      submit(req, d, now, false);
    }
    if (pending.length > 0) applyPending();
    armTick();
  };

  const canSend = () => {
    const a = o.arrival;
    if (a.kind === "open") return true;
    return a.kind === "closed" ? inFlight < a.concurrency : arrivalsDue > 0 && (a.maxConcurrency === undefined || inFlight < a.maxConcurrency);
  };

  const issue = async () => {
    while (canSend()) {
      const req = o.source.next(now);
      if (!req) break;
      if (o.arrival.kind === "poisson") arrivalsDue--;
      await send(req);
    }
    if (o.source.exhausted() && sourceDoneAt === Infinity) sourceDoneAt = now;
    const readyAt = o.source.nextReadyAt(now);
    if (readyAt < wakeAt && readyAt > now && readyAt !== Infinity) {
      wakeAt = readyAt;
      schedule(readyAt, Kind.Wake);
    }
  };

  const deliver = async (pod: number, events: EngineEvent[]) => {
    let finished = false;
    for (const e of events) {
      const f = flights.get(e.id);
      if (!f) continue;
      if (f.prefill === pod) {
        deliverPrefill(pod, e, f);
        continue;
      }
      switch (e.type) {
        case "scheduled":
          if (!e.resumed) f.cachedTokens = e.cachedTokens;
          break;
        case "first_token":
          if (Number.isNaN(f.firstTokenMs)) o.router.onFirstToken?.(f.req, pod, now);
          f.firstTokenMs = e.atMs;
          break;
        case "finished": {
          flights.delete(e.id);
          outstanding[pod]--;
          inFlight--;
          const out = e.outputTokens.length;
          const ttft = f.firstTokenMs - f.sentMs;
          const e2e = e.atMs - f.sentMs;
          records.push({
            id: e.id,
            pod,
            sessionId: f.req.sessionId,
            lora: f.req.lora ?? null,
            promptTokens: e.promptTokens,
            outputTokens: out,
            sentMs: f.sentMs,
            firstTokenMs: f.firstTokenMs,
            finishedMs: e.atMs,
            ttftMs: ttft,
            tpotMs: out > 1 ? (e2e - ttft) / (out - 1) : NaN,
            e2eMs: e2e,
            cachedTokens: f.cachedTokens,
            preemptions: e.preemptions,
          });
          if (f.req.criticality !== undefined) records[records.length - 1].criticality = f.req.criticality;
          if (f.dispatchedMs !== undefined) records[records.length - 1].queuedMs = f.dispatchedMs - f.sentMs;
          if (f.prefill !== undefined) {
            Object.assign(records[records.length - 1], {
              prefillPod: f.prefill,
              prefillCachedTokens: f.prefillCached,
              prefillFirstTokenMs: f.prefillFirstTokenMs,
              kvArrivedMs: f.kvArrivedMs,
              kvTransferMs: f.kvArrivedMs! - f.prefillFirstTokenMs!,
            });
          }
          o.router.onFinished?.(f.req, pod, now, { promptTokens: e.promptTokens, completionTokens: out, cachedTokens: f.prefill !== undefined ? (f.prefillCached ?? 0) : f.cachedTokens });
          o.source.onFinished?.(f.req, e.outputTokens, now);
          finished = true;
          break;
        }
        default:
          break;
      }
    }
    if (finished) await issue();
  };

  // Start: scrapes staggered over the first period, sampling, first arrivals.
  for (let i = 0; i < n; i++) {
    await scrape(i);
    schedule(scrapeRng.next() * (scrapeBase + scrapeJitter), Kind.Scrape, i);
  }
  schedule(0, Kind.Sample);
  for (const r of removals) {
    removedAt[r.pod] = Math.min(removedAt[r.pod], r.atMs);
    refusingAt[r.pod] = Math.min(refusingAt[r.pod], r.atMs + (r.graceMs ?? 5000));
    schedule(r.atMs, Kind.Remove, r.pod);
  }
  if (o.arrival.kind === "poisson") {
    if (!(o.arrival.ratePerSec > 0)) throw new RangeError("poisson arrivals need ratePerSec > 0");
    schedule(0, Kind.Arrival);
  } else {
    if (o.arrival.kind === "closed" && !(o.arrival.concurrency >= 1)) throw new RangeError("closed arrivals need concurrency >= 1");
    await issue();
  }

  const done = () => inFlight === 0 && o.source.exhausted();
  while (heap.size > 0 && !done()) {
    const ev = heap.pop()!;
    if (ev.t > maxT) break;
    now = ev.t;
    switch (ev.kind) {
      case Kind.StepStart: {
        startQueued[ev.pod] = false;
        if (busy[ev.pod]) break;
        const r = engines[ev.pod].step(now);
        if (!r) break;
        busy[ev.pod] = true;
        schedule(now + r.durationMs, Kind.StepEnd, ev.pod, r.events);
        break;
      }
      case Kind.StepEnd:
        busy[ev.pod] = false;
        await deliver(ev.pod, ev.events!);
        if (pd && roles[ev.pod] === "decode") preallocOn(ev.pod);
        kick(ev.pod);
        break;
      case Kind.Transfer:
        await transferred(ev.id!);
        break;
      case Kind.Timeout: {
        const f = flights.get(ev.id!);
        const st = f && engines[f.pod].stateOf(ev.id!);
        if (f && (st === "prealloc" || st === "awaiting_kv")) {
          await fail(f, `Request ${ev.id} timed out after ${(waitingTimeoutMs / 1000).toFixed(1)}s in KVPoll.WaitingForInput`);
        }
        break;
      }
      case Kind.Remove:
        break;
      case Kind.Scrape:
        if (now >= removedAt[ev.pod]) break; // a deleted pod is no longer scraped
        await scrape(ev.pod);
        schedule(now + scrapeBase + scrapeRng.next() * scrapeJitter, Kind.Scrape, ev.pod);
        break;
      case Kind.Sample:
        sampleT.push(now);
        for (let i = 0; i < n; i++) {
          const s = engines[i].snapshot();
          sampleKv[i].push(s.kvUsage);
          sampleRun[i].push(s.running);
          sampleWait[i].push(s.waiting);
        }
        schedule(now + sampleEvery, Kind.Sample);
        break;
      case Kind.Arrival:
        if (o.arrival.kind === "poisson") {
          arrivalsDue++;
          await issue();
          if (!o.source.exhausted()) schedule(now + arrivalRng.exponential(1000 / o.arrival.ratePerSec), Kind.Arrival);
        }
        break;
      case Kind.Wake:
        if (wakeAt <= now) wakeAt = Infinity;
        await issue();
        break;
      case Kind.Tick: {
        tickPending = false;
        if (held.size === 0) break;
        const decided = await o.router.onTick!(now, view);
        if (decided) pending.push(...decided);
        break;
      }
    }
    // Decisions the router made on held requests during this event's hooks.
    if (pending.length > 0 && applyPending()) await issue();
    armTick();
  }

  const makespan = records.reduce((m, r) => Math.max(m, r.finishedMs), 0);
  const steadyEnd = Math.min(sourceDoneAt, lastSendMs);
  const podSummaries: PodSummary[] = engines.map((e, i) => {
    const s = e.snapshot();
    const kv = sampleKv[i];
    const summary: PodSummary = {
      requests: perPodRequests[i],
      meanKvUsage: mean(kv),
      maxKvUsage: kv.length ? Math.max(...kv) : 0,
      meanRunning: mean(sampleRun[i]),
      meanWaiting: mean(sampleWait[i]),
      preemptions: s.preemptions,
      prefixCacheHitRate: s.prefixCacheQueries > 0 ? s.prefixCacheHits / s.prefixCacheQueries : 0,
      busyFraction: makespan > 0 ? s.busyMs / makespan : 0,
    };
    if (pd) summary.role = roles[i];
    return summary;
  });
  let ranges = 0, devs = 0, counted = 0;
  for (let k = 0; k < sampleT.length; k++) {
    if (sampleT[k] > steadyEnd && counted > 0) break;
    let lo = Infinity, hi = -Infinity, sum = 0, sq = 0;
    for (let i = 0; i < n; i++) {
      const v = sampleKv[i][k];
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
      sum += v;
      sq += v * v;
    }
    const m = sum / n;
    ranges += hi - lo;
    devs += Math.sqrt(Math.max(0, sq / n - m * m));
    counted++;
  }
  const prompt = records.reduce((a, r) => a + r.promptTokens, 0);
  const cached = records.reduce((a, r) => a + r.cachedTokens, 0);
  const outTokens = records.reduce((a, r) => a + r.outputTokens, 0);
  const result: ClusterResult = {
    router: o.router.name,
    requests: records,
    unfinished: flights.size + held.size,
    makespanMs: makespan,
    wallMs: performance.now() - wall0,
    ttft: summarize(records.map((r) => r.ttftMs)),
    tpot: summarize(records.map((r) => r.tpotMs)),
    e2e: summarize(records.map((r) => r.e2eMs)),
    requestsPerSec: makespan > 0 ? (records.length * 1000) / makespan : 0,
    outputTokensPerSec: makespan > 0 ? (outTokens * 1000) / makespan : 0,
    prefixHitRate: prompt > 0 ? cached / prompt : 0,
    preemptions: engines.reduce((a, e) => a + e.snapshot().preemptions, 0),
    pods: podSummaries,
    kvSpread: { meanRange: counted ? ranges / counted : 0, meanStdDev: counted ? devs / counted : 0 },
    samples: { tMs: sampleT, kvUsage: sampleKv, running: sampleRun, waiting: sampleWait },
  };
  if (pd || removals.length > 0) result.failed = failed;
  if (tracked) result.rejected = rejected;
  if (Object.keys(sentBy).length > 0) result.sentByCriticality = sentBy;
  const own = o.router.stats?.();
  if (own) result.routerStats = own;
  return result;
}

function mean(v: readonly number[]): number {
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0;
}
