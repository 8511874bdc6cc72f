// A simulated model-server pod: an Engine behind an HTTP server that speaks vLLM's
// OpenAI-compatible API, in real time scaled by `timeScale`.
//
//   const pod = await startPod({ port: 0, model: "/model/qwen", loraModules: ["travel-helper-v1=/models/a"],
//                                timeScale: 20, engine: { maxLoras: 2 } });
//   ... fetch(`${pod.url}/v1/chat/completions`, ...) ...
//   pod.kill();            // stop answering at once, as a crashed pod
//   await pod.close();     // or shut down
//
// Endpoints: POST /v1/completions and /v1/chat/completions (streaming as server-sent events,
// `data: {...}` per token, `data: [DONE]`; stream_options.include_usage adds a usage chunk;
// non-streaming bodies with choices and usage; finish_reason "length": generation always runs to
// max_tokens), GET /v1/models (the served model and the LoRA modules with their parent),
// GET /health, GET /metrics (vLLM's or SGLang's metric names, per `runtime`).
//
// Prompt cache hits: with `enablePromptTokensDetails` (vLLM's --enable-prompt-tokens-details) or,
// on SGLang pods, `enableCacheReport` (--enable-cache-report), both off by default as in the real
// servers, `usage.prompt_tokens_details` is `{"cached_tokens": N}` when the request's prompt hit N > 0
// tokens of the prefix cache when it was first admitted (a P/D decode pod reports its prefill
// side's hit, carried with the KV). Otherwise it is null in non-streaming bodies and, in the usage
// chunk of a stream, absent (vLLM; SGLang's /v1/completions) or null (SGLang's chat).
//
// Time: the pod's clock is simulated milliseconds, Unix time at start and then running
// `timeScale` times faster than the wall clock. A loop runs engine.step(now) and delivers the
// step's tokens durationMs / timeScale real milliseconds later; it sleeps while the engine is idle.
//
// SGLang prefill/decode disaggregation: startPod({ runtime: "sglang", pd: { role, bootstrapPort } }).
// Generation requests must carry bootstrap_host / bootstrap_port / bootstrap_room (and may carry
// `rid`, which becomes the request id); without a room a P/D pod refuses them as SGLang's
// scheduler does. Both roles accept POST /abort_request {"rid"} and serve role-specific /metrics.
//   prefill  also listens on `bootstrapPort` (same host) for the KV rendezvous. The request waits
//            until its decode side registered the room, is prefilled, and its KV is "sent" (the
//            link's transfer time, cost-model.ts, elapses in simulated time) to the decode side's
//            waiting registration; then the prefill frees it and answers its own client with the
//            one token it generated (SGLang's prefill server response).
//   decode   preallocates the request's KV, registers the room with the prefill's bootstrap
//            endpoint and waits there for the KV (up to waitingTimeoutMs, 300 simulated s as
//            SGLANG_DISAGGREGATION_WAITING_TIMEOUT); heartbeats to that endpoint fail the wait
//            when the prefill pod is gone; then it decodes without recomputing the prompt. The
//            response (and, when streaming, its headers) starts with the first token.
// Bootstrap protocol (this simulator's own, over HTTP on the prefill's bootstrap port):
//   GET  /health           200 "OK" (the decode side's heartbeat)
//   POST /rooms/<room>     {"rid", "decode": "host:port"} registers the decode side's
//                          preallocation (the prefill may now schedule the request) and is
//                          answered when the KV has arrived: 200 {"room", "rid", "first_token",
//                          "cached_tokens", "prompt_tokens", "kv_tokens", "kv_bytes", "transfer_ms"}.
//                          A prefill-side abort or failure is not reported (SGLang's prefill does
//                          not tell the decode side): the decode request waits until its timeout,
//                          an /abort_request, or failed heartbeats. A decode side that goes away
//                          (its registration closes) makes the prefill's transfer fail.

import { answerFor, type NameFilterMode } from "../fakes/prom-filter.ts";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { randomUUID } from "node:crypto";
import { Engine, EngineError, type EngineEvent, type EngineOptions, type PdRole } from "./engine.ts";
import { kvBytesPerToken, kvTransferDoneMs, RDMA_200G, type KvLink } from "./cost-model.ts";
import { PROMETHEUS_CONTENT_TYPE, SGLANG_KV_TRANSFER_LATENCY_MS_BUCKETS, sglangMetricsPage, vllmMetricsPage } from "./exposition.ts";
import { Histogram } from "./histogram.ts";
import {
  ApiError,
  chatChunk,
  chatResponse,
  completionChunk,
  completionResponse,
  errorBody,
  parseRequest,
  promptTokensDetails,
  streamingErrorEvent,
  topLevelRaw,
  usage,
  usageChunk,
  type Endpoint,
  type ParsedRequest,
} from "./openai.ts";
import { render } from "./tokens.ts";

export interface PodOptions {
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  runtime?: "vllm" | "sglang";
  /** Served model name (vllm serve --served-model-name). */
  model?: string;
  /** Where the base model was loaded from (the `root` of /v1/models). */
  modelPath?: string;
  /** LoRA modules as vllm serve --lora-modules takes them: "name=path" (or just "name"). */
  loraModules?: string[];
  /** Simulated time runs this many times faster than real time (default 1). */
  timeScale?: number;
  /** Engine options; maxLoras defaults to 1 (vLLM's default) when LoRA modules are given. */
  engine?: EngineOptions;
  /** SGLang prefill/decode disaggregation (runtime "sglang" only). */
  pd?: PdPodOptions;
  /**
   * vLLM's --enable-prompt-tokens-details (runtime "vllm" only; default off): usage reports
   * `prompt_tokens_details: {"cached_tokens": N}` for a prefix-cache hit of N > 0 tokens.
   */
  enablePromptTokensDetails?: boolean;
  /** SGLang's --enable-cache-report (runtime "sglang" only; default off): the same report. */
  enableCacheReport?: boolean;
  /**
   * How /metrics answers a `name[]` query (test/fakes/prom-filter.ts): "honour" (default), as
   * prometheus_client's exposition app does; "ignore", as vLLM's GET /metrics does today (served by
   * prometheus-fastapi-instrumentator); "multiprocess", an empty page, as SGLang's multiprocess
   * registry does with recent clients.
   */
  metricsNameFilter?: NameFilterMode;
}

export interface PdRequestRecord {
  rid: string;
  /** bootstrap_room as written in the body (digits), or null when absent. */
  room: string | null;
  host: string | null;
  port: number | null;
  /** The pod's simulated clock when the request arrived. */
  atMs: number;
}

export interface PdPodOptions {
  role: PdRole;
  /** Prefill: port of the bootstrap endpoint on the pod's host (--disaggregation-bootstrap-port; default 8998; 0 picks a free port). */
  bootstrapPort?: number;
  /** Prefill: the KV transfer path to decode pods (default RDMA_200G). */
  link?: KvLink;
  /** Decode: how long a request waits for its KV, simulated ms (SGLANG_DISAGGREGATION_WAITING_TIMEOUT, default 300 000). */
  waitingTimeoutMs?: number;
  /** Prefill: how long a request waits for its decode side to register, simulated ms (SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT, default 300 000). */
  bootstrapTimeoutMs?: number;
  /** Decode: heartbeat period towards each prefill it waits on, simulated ms (SGLANG_DISAGGREGATION_HEARTBEAT_INTERVAL, default 5 000, at least 2 000). */
  heartbeatIntervalMs?: number;
  /** Decode: consecutive failed heartbeats that fail the requests waiting on that prefill (SGLANG_DISAGGREGATION_HEARTBEAT_MAX_FAILURE, default 2). */
  heartbeatMaxFailures?: number;
}

export interface Pod {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly engine: Engine;
  readonly runtime: "vllm" | "sglang";
  /** P/D pods: the role. */
  readonly role?: PdRole;
  /** P/D prefill pods: the port the bootstrap endpoint listens on. */
  readonly bootstrapPort?: number;
  /** P/D pods: the generation requests received, oldest first (the last 1000), with their bootstrap fields as sent. */
  pdRequests(): PdRequestRecord[];
  /** The pod's simulated clock, Unix milliseconds. */
  now(): number;
  /** Stops the server and drops every connection; requests in flight are aborted. */
  close(): Promise<void>;
  /** Stops answering immediately, as a crashed pod: connections are reset, nothing more is sent. */
  kill(): void;
}

interface Listener {
  maxTokens: number;
  onToken(token: number, index: number, last: boolean): void;
  onFinished(e: Extract<EngineEvent, { type: "finished" }>): void;
  /** Gets every event of the request instead of onToken/onFinished (P/D prefill requests). */
  onEvent?(e: EngineEvent): void;
}

export async function startPod(opts: PodOptions = {}): Promise<Pod> {
  const runtime = opts.runtime ?? "vllm";
  const modelName = opts.model ?? "/model/qwen";
  const modelPath = opts.modelPath ?? modelName;
  const timeScale = opts.timeScale ?? 1;
  if (!(timeScale > 0)) throw new RangeError(`timeScale must be positive, got ${timeScale}`);
  const loras = new Map<string, string>();
  for (const m of opts.loraModules ?? []) {
    const eq = m.indexOf("=");
    loras.set(eq < 0 ? m : m.slice(0, eq), eq < 0 ? m : m.slice(eq + 1));
  }
  const pdOpts = opts.pd;
  if (pdOpts && runtime !== "sglang") throw new RangeError("P/D pods are SGLang's: pd needs runtime \"sglang\"");
  const role: PdRole | undefined = pdOpts?.role;
  if (opts.enablePromptTokensDetails && runtime !== "vllm") throw new RangeError("enablePromptTokensDetails is vLLM's flag; SGLang's is enableCacheReport");
  if (opts.enableCacheReport && runtime !== "sglang") throw new RangeError("enableCacheReport is SGLang's flag; vLLM's is enablePromptTokensDetails");
  const reportCached = (runtime === "sglang" ? opts.enableCacheReport : opts.enablePromptTokensDetails) === true;
  /** What the request's usage says of its prefix-cache hit at first admission. */
  const details = (cachedTokens: number) => promptTokensDetails(reportCached, cachedTokens);
  const engineOpts: EngineOptions = {
    ...opts.engine,
    maxLoras: opts.engine?.maxLoras ?? (loras.size > 0 ? 1 : 0),
    histogramBuckets: runtime === "sglang" ? "sglang" : "vllm",
    tokenEvents: true,
  };
  if (role) engineOpts.role = role;
  const engine = new Engine(engineOpts);
  const epochMs = Date.now();
  const real0 = performance.now();
  const now = () => epochMs + (performance.now() - real0) * timeScale;
  const createdSec = epochMs / 1000;
  const listeners = new Map<string, Listener>();
  const sockets = new Set<Socket>();
  let timer: NodeJS.Timeout | undefined;
  let kick: NodeJS.Immediate | undefined;
  let stepping = false;
  let dead = false;
  // A step starts no earlier than the last one ended: timers can fire a little early, and a
  // step dated before its predecessor's end would put the engine's records out of order.
  let lastEnd = 0;
  let genAt = now();
  let genTokens = 0;
  let genRate = 0;

  // ---- the step loop ----
  const loop = () => {
    kick = undefined;
    if (stepping || dead) return;
    const start = Math.max(now(), lastEnd);
    const r = engine.step(start);
    if (!r) return;
    lastEnd = r.startMs + r.durationMs;
    stepping = true;
    let events = r.events;
    if (role === "decode") {
      // Tokens of requests whose KV arrived are delivered when the step starts, before its forward pass.
      const early = events.filter((e) => e.atMs <= r.startMs && (e.type === "first_token" || e.type === "finished"));
      if (early.length > 0) {
        events = events.filter((e) => !early.includes(e));
        deliver(early);
      }
    }
    const delay = Math.max(0, (r.startMs + r.durationMs - now()) / timeScale);
    timer = setTimeout(() => {
      timer = undefined;
      stepping = false;
      if (dead) return;
      deliver(events);
      if (role === "decode") pd!.preallocate();
      loop();
    }, delay);
  };
  const wake = () => {
    if (!stepping && !kick && !dead) kick = setImmediate(loop);
  };
  const deliver = (events: EngineEvent[]) => {
    for (const e of events) {
      const l = listeners.get(e.id);
      if (!l) continue;
      if (l.onEvent) {
        if (e.type === "finished") listeners.delete(e.id);
        l.onEvent(e);
        continue;
      }
      if (e.type === "first_token") l.onToken(e.token, 0, l.maxTokens === 1);
      else if (e.type === "token") l.onToken(e.token, e.index, e.index + 1 === l.maxTokens);
      else if (e.type === "finished") {
        listeners.delete(e.id);
        l.onFinished(e);
      }
    }
  };

  // ---- HTTP ----
  // (the P/D part is created below, once send() exists)
  const send = (res: http.ServerResponse, status: number, body: string, type = "application/json") => {
    if (res.destroyed) return;
    res.writeHead(status, { date: new Date().toUTCString(), server: "uvicorn", "content-length": Buffer.byteLength(body), "content-type": type });
    res.end(body);
  };
  const sendError = (res: http.ServerResponse, e: ApiError) => send(res, e.status, errorBody(e.status, e.type, e.message));
  const pd: PdServer | undefined = pdOpts
    ? createPdServer({ opts: pdOpts, engine, listeners, now, timeScale, wake, send, sendError, isDead: () => dead, reportCached })
    : undefined;

  const metricsText = () => {
    const s = engine.snapshot();
    if (runtime === "sglang") {
      const t = now();
      if (t - genAt >= 1000) {
        genRate = ((s.generationTokens - genTokens) * 1000) / (t - genAt);
        genAt = t;
        genTokens = s.generationTokens;
      }
      return sglangMetricsPage(s, { modelName, genThroughput: genRate, pd: pd?.counters() });
    }
    return vllmMetricsPage(s, { modelName, createdSec, loraInfo: engine.loraInfoHistory(), gpuMemoryUtilization: engine.cost.gpuMemoryUtilization });
  };

  const modelsBody = () => {
    const created = Math.floor(now() / 1000);
    const perm = () => ({
      id: `modelperm-${randomUUID().replace(/-/g, "")}`,
      object: "model_permission",
      created,
      allow_create_engine: false,
      allow_sampling: true,
      allow_logprobs: true,
      allow_search_indices: false,
      allow_view: true,
      allow_fine_tuning: false,
      organization: "*",
      group: null,
      is_blocking: false,
    });
    const owner = runtime === "sglang" ? "sglang" : "vllm";
    const data = [
      { id: modelName, object: "model", created, owned_by: owner, root: modelPath, parent: null, max_model_len: engine.maxModelLen, permission: [perm()] },
      ...[...loras].map(([name, path]) => ({ id: name, object: "model", created, owned_by: owner, root: path, parent: modelName, max_model_len: null, permission: [perm()] })),
    ];
    return JSON.stringify({ object: "list", data });
  };

  const generate = (req: http.IncomingMessage, res: http.ServerResponse, endpoint: Endpoint, body: string) => {
    let p: ParsedRequest;
    try {
      p = parseRequest(endpoint, body);
    } catch (e) {
      if (e instanceof ApiError) return sendError(res, e);
      throw e;
    }
    const requested = p.model ?? modelName;
    let lora: string | null = null;
    if (requested !== modelName) {
      if (!loras.has(requested)) return sendError(res, new ApiError(404, "NotFoundError", `The model \`${requested}\` does not exist.`));
      lora = requested;
    }
    const maxTokens = p.maxTokens ?? engine.maxModelLen - p.tokens.length;
    if (pd) return pd.generate(req, res, endpoint, body, p, requested, lora, maxTokens);
    const header = req.headers["x-request-id"];
    const base = typeof header === "string" && header.length > 0 ? header : randomUUID().replace(/-/g, "");
    const id = `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${base}`;
    const created = Math.floor(now() / 1000);
    const prompt = p.tokens.length;
    try {
      engine.submit({ id, tokens: p.tokens, maxTokens, lora }, now());
    } catch (e) {
      if (e instanceof EngineError) return sendError(res, new ApiError(e.status, "BadRequestError", e.message));
      throw e;
    }
    wake();
    res.on("close", () => {
      if (listeners.delete(id)) engine.abort(id);
    });

    if (!p.stream) {
      const text: string[] = [];
      listeners.set(id, {
        maxTokens,
        onToken: (t) => text.push(render(t)),
        onFinished: (e) => {
          // The finished event's cachedTokens is the hit when the request was first scheduled
          // (a request preempted and resumed keeps it), what vLLM's num_cached_tokens holds.
          const u = usage(prompt, e.outputTokens.length, details(e.cachedTokens));
          send(res, 200, endpoint === "chat" ? chatResponse(id, created, requested, text.join(""), u) : completionResponse(id, created, requested, text.join(""), u));
        },
      });
      return;
    }
    res.writeHead(200, { date: new Date().toUTCString(), server: "uvicorn", "content-type": "text/event-stream; charset=utf-8" });
    const write = (json: string) => {
      if (!res.destroyed) res.write(`data: ${json}\n\n`);
    };
    let count = 0;
    listeners.set(id, {
      maxTokens,
      onToken: (t, index, last) => {
        count = index + 1;
        const u = p.continuousUsage ? usage(prompt, count) : null;
        const finish = last ? "length" : null;
        if (endpoint === "chat") {
          // vLLM's first (role) chunk carries usage too with continuous_usage_stats; SGLang's does not.
          if (index === 0) write(chatChunk(runtime, id, created, requested, { role: "assistant", content: "" }, null, p.continuousUsage && runtime === "vllm" ? usage(prompt, 0) : null));
          write(chatChunk(runtime, id, created, requested, { content: render(t) }, finish, u));
        } else {
          write(completionChunk(id, created, requested, render(t), finish, u));
        }
      },
      onFinished: (e) => {
        if (p.includeUsage) write(usageChunk(runtime, endpoint, id, created, requested, usage(prompt, e.outputTokens.length, details(e.cachedTokens))));
        if (!res.destroyed) res.end("data: [DONE]\n\n");
      },
    });
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (dead) {
      req.socket.destroy();
      return;
    }
    const path = (req.url ?? "/").split("?")[0];
    const method = req.method ?? "GET";
    const routes: Record<string, string> = {
      "/health": "GET",
      "/metrics": "GET",
      "/v1/models": "GET",
      "/v1/completions": "POST",
      "/v1/chat/completions": "POST",
    };
    if (pd) routes["/abort_request"] = "POST";
    const allowed = routes[path];
    if (!allowed) return send(res, 404, JSON.stringify({ detail: "Not Found" }));
    if (method !== allowed) return send(res, 405, JSON.stringify({ detail: "Method Not Allowed" }));
    if (method === "GET") {
      if (path === "/health") return send(res, 200, "", "application/json");
      if (path === "/metrics") return send(res, 200, answerFor(req.url ?? "/metrics", metricsText(), opts.metricsNameFilter), PROMETHEUS_CONTENT_TYPE);
      return send(res, 200, modelsBody());
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (dead) return;
      if (path === "/abort_request") return pd!.abortRequest(res, Buffer.concat(chunks).toString("utf8"));
      generate(req, res, path === "/v1/chat/completions" ? "chat" : "completions", Buffer.concat(chunks).toString("utf8"));
    });
  };

  const server = http.createServer(handle);
  server.keepAliveTimeout = 5000;
  server.on("connection", (s) => {
    if (dead) {
      s.destroy();
      return;
    }
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const host = opts.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let bootstrapPort: number | undefined;
  if (pd) {
    try {
      bootstrapPort = await pd.listen(host, port);
    } catch (e) {
      server.close();
      throw e;
    }
  }

  const stop = () => {
    dead = true;
    if (timer) clearTimeout(timer);
    if (kick) clearImmediate(kick);
    timer = undefined;
    kick = undefined;
    for (const id of listeners.keys()) engine.abort(id);
    listeners.clear();
    pd?.stop();
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    host,
    port,
    engine,
    runtime,
    ...(role ? { role } : {}),
    ...(bootstrapPort !== undefined ? { bootstrapPort } : {}),
    now,
    pdRequests: () => pd?.received() ?? [],
    kill() {
      if (dead) return;
      stop();
      server.close();
      pd?.close();
    },
    close() {
      const wasDead = dead;
      stop();
      const closing = [new Promise<void>((resolve) => (wasDead && !server.listening ? resolve() : server.close(() => resolve())))];
      if (pd) closing.push(pd.close());
      return Promise.all(closing).then(() => undefined);
    },
  };
}

// ---- prefill/decode disaggregation ----

interface PdContext {
  opts: PdPodOptions;
  engine: Engine;
  listeners: Map<string, Listener>;
  now(): number;
  timeScale: number;
  wake(): void;
  send(res: http.ServerResponse, status: number, body: string, type?: string): void;
  sendError(res: http.ServerResponse, e: ApiError): void;
  isDead(): boolean;
  /** --enable-cache-report */
  reportCached: boolean;
}

interface PdServer {
  generate(req: http.IncomingMessage, res: http.ServerResponse, endpoint: Endpoint, body: string, p: ParsedRequest, requested: string, lora: string | null, maxTokens: number): void;
  abortRequest(res: http.ServerResponse, body: string): void;
  preallocate(): void;
  counters(): { bootstrapFailed: number; transferFailed: number; transferLatencyMs?: Histogram };
  received(): PdRequestRecord[];
  /** Starts the bootstrap endpoint (prefill); returns its port. */
  listen(host: string, port: number): Promise<number | undefined>;
  stop(): void;
  close(): Promise<void>;
}

/** How a request's client gets its answer (one per generation request on a P/D pod). */
interface Reply {
  token(t: number, index: number, last: boolean): void;
  /** Normal end (finish_reason "length"), or a graceful abort ("abort"); `cachedTokens` is the prompt's prefix-cache hit to report. */
  end(outputTokens: number, finish: "length" | "abort", cachedTokens: number): void;
  /** An abort with an HTTP status, as SGLang's tokenizer manager reports it. */
  fail(status: number, message: string): void;
  readonly over: boolean;
}

/** A decode request waiting for its KV. */
interface DecodeRoom {
  id: string;
  room: string;
  host: string;
  port: number;
  addr: string;
  reply: Reply;
  done: boolean;
  kvArrived: boolean;
  /** The prefill side's prefix-cache hit, as it came with the KV. */
  cachedTokens?: number;
  poll?: http.ClientRequest;
  retry?: NodeJS.Timeout;
  timer?: NodeJS.Timeout;
}

/** A room on a prefill pod: its request (once it arrived) and its decode side (once registered). */
interface PrefillRoom {
  room: string;
  id?: string;
  reply?: Reply;
  decodeAddr?: string;
  poller?: http.ServerResponse;
  decodeGone: boolean;
  kv?: string;
  kvReady: boolean;
  firstToken?: number;
  prefillAtMs?: number;
  /** The prompt's prefix-cache hit on this pod (known once prefilled). */
  cachedTokens?: number;
  finished: boolean;
  timers: NodeJS.Timeout[];
}

const pyRepr = (s: string) => (s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`);

function createPdServer(c: PdContext): PdServer {
  const { engine, listeners, now, timeScale, wake } = c;
  const role = c.opts.role;
  const link = c.opts.link ?? RDMA_200G;
  const waitingMs = c.opts.waitingTimeoutMs ?? 300_000;
  const bootstrapMs = c.opts.bootstrapTimeoutMs ?? 300_000;
  const heartbeatMs = Math.max(c.opts.heartbeatIntervalMs ?? 5_000, 2_000);
  const heartbeatMax = Math.max(c.opts.heartbeatMaxFailures ?? 2, 1);
  const real = (simMs: number) => Math.max(0, simMs / timeScale);
  const bpt = kvBytesPerToken(engine.cost.model);
  let bootstrapFailed = 0;
  let transferFailed = 0;
  const transferLatency = role === "prefill" ? new Histogram(SGLANG_KV_TRANSFER_LATENCY_MS_BUCKETS) : undefined;
  const abortables = new Map<string, () => void>();
  const log: PdRequestRecord[] = [];
  let selfAddr = "";

  // ---- replies ----
  const makeReply = (res: http.ServerResponse, endpoint: Endpoint, id: string, requested: string, p: ParsedRequest): Reply => {
    const created = Math.floor(now() / 1000);
    const prompt = p.tokens.length;
    const text: string[] = [];
    let count = 0;
    let started = false;
    let over = false;
    const start = () => {
      if (started || res.destroyed) return;
      started = true;
      res.writeHead(200, { date: new Date().toUTCString(), server: "uvicorn", "content-type": "text/event-stream; charset=utf-8" });
    };
    const write = (json: string) => {
      start();
      if (!res.destroyed) res.write(`data: ${json}\n\n`);
    };
    const done = () => {
      start();
      if (!res.destroyed) res.end("data: [DONE]\n\n");
    };
    return {
      get over() {
        return over;
      },
      token(t, index, last) {
        if (over) return;
        count = index + 1;
        if (!p.stream) {
          text.push(render(t));
          return;
        }
        const u = p.continuousUsage ? usage(prompt, count) : null;
        const finish = last ? "length" : null;
        if (endpoint === "chat") {
          if (index === 0) write(chatChunk("sglang", id, created, requested, { role: "assistant", content: "" }, null, null));
          write(chatChunk("sglang", id, created, requested, { content: render(t) }, finish, u));
        } else {
          write(completionChunk(id, created, requested, render(t), finish, u));
        }
      },
      end(outputTokens, finish, cachedTokens) {
        if (over) return;
        over = true;
        const u = usage(prompt, outputTokens, promptTokensDetails(c.reportCached, cachedTokens));
        if (!p.stream) {
          c.send(res, 200, endpoint === "chat" ? chatResponse(id, created, requested, text.join(""), u, finish) : completionResponse(id, created, requested, text.join(""), u, finish));
          return;
        }
        if (finish === "abort") {
          if (endpoint === "chat") {
            if (count === 0) write(chatChunk("sglang", id, created, requested, { role: "assistant", content: "" }, null, null));
            write(chatChunk("sglang", id, created, requested, { content: "" }, "abort", null));
          } else {
            write(completionChunk(id, created, requested, "", "abort", null));
          }
        }
        if (p.includeUsage) write(usageChunk("sglang", endpoint, id, created, requested, u));
        done();
      },
      fail(status, message) {
        if (over) return;
        over = true;
        if (p.stream) {
          // SGLang starts a stream once its first chunk exists, so an error before any token
          // still comes as a 200 event stream carrying the error.
          write(streamingErrorEvent(status, message));
          done();
        } else {
          c.send(res, status, errorBody(status, status === 400 ? "BadRequestError" : String(status), message));
        }
      },
    };
  };

  const failure = (what: string, id: string, room: string, reason: string, side: "decode" | "prefill") => {
    const who = side === "decode" ? "decode_req.req" : "req";
    return `${what} for request rank=0 ${who}.rid=${pyRepr(id)} ${who}.bootstrap_room=${room} with exception KVTransferError(bootstrap_room=${room}): ${reason}`;
  };

  // ---- decode ----
  const decodeRooms = new Map<string, DecodeRoom>();
  const heartbeats = new Map<string, { timer: NodeJS.Timeout; failures: number }>();

  const endDecodeWait = (e: DecodeRoom) => {
    if (e.retry) clearTimeout(e.retry);
    if (e.timer) clearTimeout(e.timer);
    e.retry = e.timer = undefined;
    if (e.poll) {
      const poll = e.poll;
      e.poll = undefined;
      poll.destroy();
    }
  };

  const finishDecode = (e: DecodeRoom) => {
    e.done = true;
    endDecodeWait(e);
    decodeRooms.delete(e.id);
    abortables.delete(e.id);
    listeners.delete(e.id);
  };

  /** The decode request failed before its KV arrived: SGLang's handshake or transfer failure (500). */
  const failDecode = (e: DecodeRoom, reason: string) => {
    if (e.done) return;
    const st = engine.stateOf(e.id);
    const handshake = st === "prealloc";
    if (handshake) bootstrapFailed++;
    else transferFailed++;
    engine.abort(e.id);
    finishDecode(e);
    e.reply.fail(500, failure(handshake ? "Decode handshake failed" : "Decode transfer failed", e.id, e.room, reason, "decode"));
    preallocate();
  };

  const register = (e: DecodeRoom) => {
    if (e.done || c.isDead()) return;
    const payload = JSON.stringify({ rid: e.id, decode: selfAddr });
    const rq = http.request({
      host: e.host,
      port: e.port,
      method: "POST",
      path: `/rooms/${e.room}`,
      agent: false,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
    });
    e.poll = rq;
    rq.on("response", (r) => {
      const chunks: Buffer[] = [];
      r.on("data", (b: Buffer) => chunks.push(b));
      r.on("error", () => {});
      r.on("end", () => {
        if (e.done || c.isDead() || e.poll !== rq) return;
        e.poll = undefined;
        let j: Record<string, unknown> = {};
        try {
          j = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          // not JSON
        }
        if (r.statusCode === 200 && typeof j.first_token === "number") {
          const cached = typeof j.cached_tokens === "number" ? j.cached_tokens : 0;
          if (engine.kvArrived(e.id, j.first_token, now(), cached)) {
            e.kvArrived = true;
            e.cachedTokens = cached;
            if (e.timer) clearTimeout(e.timer);
            e.timer = undefined;
            wake();
          }
        } else {
          failDecode(e, typeof j.error === "string" ? j.error : `bootstrap server answered ${r.statusCode}`);
        }
      });
    });
    rq.on("error", () => {
      if (e.done || c.isDead() || e.poll !== rq) return;
      e.poll = undefined;
      // The prefill's endpoint is unreachable: try again; the heartbeat decides when to give up.
      e.retry = setTimeout(() => {
        e.retry = undefined;
        register(e);
      }, real(1_000));
    });
    rq.end(payload);
  };

  const heartbeat = (addr: string, host: string, port: number) => {
    if (heartbeats.has(addr)) return;
    const hb = {
      failures: 0,
      timer: setInterval(() => {
        const waiting = [...decodeRooms.values()].filter((e) => e.addr === addr && !e.done && !e.kvArrived);
        if (waiting.length === 0 || c.isDead()) {
          clearInterval(hb.timer);
          heartbeats.delete(addr);
          return;
        }
        let settled = false;
        const result = (ok: boolean) => {
          if (settled || c.isDead() || heartbeats.get(addr) !== hb) return;
          settled = true;
          if (ok) {
            hb.failures = 0;
            return;
          }
          if (++hb.failures < heartbeatMax) return;
          clearInterval(hb.timer);
          heartbeats.delete(addr);
          for (const e of [...decodeRooms.values()]) {
            if (e.addr === addr && !e.done && !e.kvArrived) failDecode(e, `Losing connection with prefill instance (bootstrap_addr: ${addr})`);
          }
        };
        const rq = http.get({ host, port, path: "/health", agent: false, timeout: Math.max(real(3_000), 500) }, (r) => {
          r.resume();
          result(r.statusCode === 200);
        });
        rq.on("timeout", () => rq.destroy(new Error("heartbeat timeout")));
        rq.on("error", () => result(false));
      }, real(heartbeatMs)),
    };
    heartbeats.set(addr, hb);
  };

  const preallocate = () => {
    if (role !== "decode" || c.isDead()) return;
    for (const id of engine.preallocate(now())) {
      const e = decodeRooms.get(id);
      if (e) register(e);
    }
  };

  // ---- prefill ----
  const prefillRooms = new Map<string, PrefillRoom>();
  const roomFor = (room: string): PrefillRoom => {
    let r = prefillRooms.get(room);
    if (!r) {
      r = { room, decodeGone: false, kvReady: false, finished: false, timers: [] };
      prefillRooms.set(room, r);
    }
    return r;
  };

  const dropRoom = (r: PrefillRoom) => {
    for (const t of r.timers) clearTimeout(t);
    r.timers.length = 0;
    if (prefillRooms.get(r.room) === r) prefillRooms.delete(r.room);
  };

  const answerPoller = (r: PrefillRoom, status: number, body: string) => {
    const res = r.poller!;
    r.poller = undefined;
    c.send(res, status, body);
  };

  /**
   * The prefill side's request ended without a transfer. Nothing is sent to the decode side (SGLang's
   * prefill does not tell it): a registered decode request keeps waiting until its own timeout, its
   * abort, or a heartbeat failure. The room is forgotten once no decode side waits on it.
   */
  const endPrefill = (r: PrefillRoom) => {
    r.finished = true;
    const id = r.id!;
    engine.abort(id);
    listeners.delete(id);
    abortables.delete(id);
    for (const t of r.timers) clearTimeout(t);
    r.timers.length = 0;
    if (!r.poller) dropRoom(r);
    wake();
  };

  /** The prefill side failed: its client gets SGLang's 500. */
  const failPrefill = (r: PrefillRoom, phase: "bootstrap" | "transfer", reason: string) => {
    if (r.finished) return;
    if (phase === "bootstrap") bootstrapFailed++;
    else transferFailed++;
    endPrefill(r);
    r.reply!.fail(500, failure(phase === "bootstrap" ? "Prefill bootstrap failed" : "Prefill transfer failed", r.id!, r.room, reason, "prefill"));
  };

  const tryDeliver = (r: PrefillRoom) => {
    if (!r.kvReady || r.finished) return;
    if (r.decodeGone) return failPrefill(r, "transfer", `Failed to send kv chunk of ${r.room} to ${r.decodeAddr ?? "the decode instance"}`);
    if (!r.poller) return; // the decode side will register (again)
    const id = r.id!;
    answerPoller(r, 200, r.kv!);
    r.finished = true;
    engine.transferDone(id, now());
    transferLatency!.observe(now() - r.prefillAtMs!);
    listeners.delete(id);
    abortables.delete(id);
    dropRoom(r);
    r.reply!.token(r.firstToken!, 0, true);
    r.reply!.end(1, "length", r.cachedTokens ?? 0);
    wake();
  };

  /** The bootstrap endpoint of a prefill pod. */
  const bootstrapSockets = new Set<Socket>();
  const bootstrapServer =
    role === "prefill"
      ? http.createServer((req, res) => {
          if (c.isDead()) {
            req.socket.destroy();
            return;
          }
          const path = (req.url ?? "/").split("?")[0];
          if (req.method === "GET" && path === "/health") return c.send(res, 200, "OK", "text/plain; charset=utf-8");
          const m = /^\/rooms\/(\d+)$/.exec(path);
          if (!m || req.method !== "POST") return c.send(res, 404, JSON.stringify({ error: "not found" }));
          const chunks: Buffer[] = [];
          req.on("data", (b: Buffer) => chunks.push(b));
          req.on("end", () => {
            if (c.isDead()) return;
            let j: Record<string, unknown> = {};
            try {
              j = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            } catch {
              return c.send(res, 400, JSON.stringify({ error: "body must be JSON" }));
            }
            const r = roomFor(m[1]);
            if (r.poller) answerPoller(r, 409, JSON.stringify({ error: "registered again" }));
            r.decodeAddr = typeof j.decode === "string" ? j.decode : req.socket.remoteAddress;
            r.decodeGone = false;
            r.poller = res;
            res.on("close", () => {
              if (r.poller !== res) return;
              r.poller = undefined;
              r.decodeGone = true;
              if (!r.id || r.finished) dropRoom(r); // the request never came here, or ended
              else tryDeliver(r);
            });
            if (r.id && engine.stateOf(r.id) === "bootstrap") {
              engine.bootstrapped(r.id, now());
              wake();
            }
            tryDeliver(r);
          });
        })
      : undefined;
  if (bootstrapServer) {
    bootstrapServer.keepAliveTimeout = 5000;
    bootstrapServer.requestTimeout = 0;
    bootstrapServer.on("connection", (s) => {
      if (c.isDead()) {
        s.destroy();
        return;
      }
      bootstrapSockets.add(s);
      s.on("close", () => bootstrapSockets.delete(s));
    });
  }

  // ---- requests ----
  const generate: PdServer["generate"] = (req, res, endpoint, body, p, requested, lora, maxTokens) => {
    const raw = topLevelRaw(body);
    const ridRaw = raw.get("rid");
    const header = req.headers["x-request-id"];
    const id =
      ridRaw !== undefined && ridRaw.startsWith('"')
        ? (JSON.parse(ridRaw) as string)
        : `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${typeof header === "string" && header.length > 0 ? header : randomUUID().replace(/-/g, "")}`;
    const reply = makeReply(res, endpoint, id, requested, p);
    const hostRaw = raw.get("bootstrap_host");
    const portRaw = raw.get("bootstrap_port");
    const roomField = raw.get("bootstrap_room");
    log.push({
      rid: id,
      room: roomField !== undefined && /^\d+$/.test(roomField) ? roomField : null,
      host: hostRaw?.startsWith('"') ? (JSON.parse(hostRaw) as string) : null,
      port: portRaw !== undefined && /^\d+$/.test(portRaw) ? Number(portRaw) : null,
      atMs: now(),
    });
    if (log.length > 1000) log.shift();
    try {
      engine.submit({ id, tokens: p.tokens, maxTokens, lora, awaitBootstrap: role === "prefill" }, now());
    } catch (e) {
      if (e instanceof EngineError) return c.sendError(res, new ApiError(e.status, "BadRequestError", e.message));
      throw e;
    }
    const roomRaw = raw.get("bootstrap_room");
    if (roomRaw === undefined || roomRaw === "null" || !/^\d+$/.test(roomRaw)) {
      engine.abort(id);
      if (roomRaw !== undefined && roomRaw !== "null") return c.sendError(res, new ApiError(400, "BadRequestError", "bootstrap_room must be a non-negative integer"));
      return reply.fail(400, `Invalid request: Disaggregated request received without bootstrap room id. req.rid=${pyRepr(id)}`);
    }
    const room = roomRaw;
    if (role === "decode") return startDecode(res, id, room, raw, reply, maxTokens);
    return startPrefill(res, id, room, reply);
  };

  const startDecode = (res: http.ServerResponse, id: string, room: string, raw: Map<string, string>, reply: Reply, maxTokens: number) => {
    const hostRaw = raw.get("bootstrap_host");
    const portRaw = raw.get("bootstrap_port");
    const host = hostRaw?.startsWith('"') ? (JSON.parse(hostRaw) as string) : undefined;
    const port = portRaw !== undefined && /^\d+$/.test(portRaw) ? Number(portRaw) : undefined;
    const addr = `${host ?? "None"}:${port ?? "None"}`;
    const e: DecodeRoom = { id, room, host: host ?? "", port: port ?? 0, addr: host?.includes(":") ? `[${host}]:${port}` : addr, reply, done: false, kvArrived: false };
    if (host === undefined || port === undefined || port < 1 || port > 65535) {
      bootstrapFailed++;
      engine.abort(id);
      return reply.fail(500, failure("Decode handshake failed", id, room, `Could not fetch prefill parallel info from bootstrap_addr: ${addr}`, "decode"));
    }
    decodeRooms.set(id, e);
    let count = 0; // tokens sent so far (a graceful abort's usage)
    listeners.set(id, {
      maxTokens,
      onToken: (t, index, last) => {
        count = index + 1;
        reply.token(t, index, last);
      },
      onFinished: (ev) => {
        finishDecode(e);
        // SGLang's decode server reports the prefix-cache hit its prefill side had (kvArrived's).
        reply.end(ev.outputTokens.length, "length", ev.cachedTokens);
      },
    });
    e.timer = setTimeout(() => {
      e.timer = undefined;
      const st = engine.stateOf(id);
      if (!e.done && (st === "prealloc" || st === "awaiting_kv")) failDecode(e, `Request ${room} timed out after ${(waitingMs / 1000).toFixed(1)}s in KVPoll.WaitingForInput`);
    }, real(waitingMs));
    const abort = (respond: boolean) => {
      if (e.done) return;
      const st = engine.stateOf(id);
      if (st === "prealloc" || st === "awaiting_kv") {
        if (respond) return failDecode(e, "Aborted by AbortReq.");
        engine.abort(id);
        finishDecode(e);
      } else {
        // Decoding already: a graceful abort (finish_reason "abort").
        engine.abort(id);
        finishDecode(e);
        if (respond) reply.end(count, "abort", e.cachedTokens ?? 0);
      }
      preallocate();
    };
    abortables.set(id, () => abort(true));
    res.on("close", () => abort(false));
    heartbeat(e.addr, e.host, e.port);
    preallocate();
  };

  const startPrefill = (res: http.ServerResponse, id: string, room: string, reply: Reply) => {
    const r = roomFor(room);
    if (r.id !== undefined) {
      engine.abort(id);
      return c.sendError(res, new ApiError(400, "BadRequestError", `bootstrap_room ${room} is already in use`));
    }
    r.id = id;
    r.reply = reply;
    listeners.set(id, {
      maxTokens: 1,
      onToken: () => {},
      onFinished: () => {},
      onEvent: (ev) => {
        if (ev.type !== "prefilled" || r.finished) return;
        const doneAt = kvTransferDoneMs(ev.chunks, bpt, link);
        r.firstToken = ev.token;
        r.prefillAtMs = ev.atMs;
        r.cachedTokens = ev.cachedTokens;
        r.kv = JSON.stringify({
          room,
          rid: id,
          first_token: ev.token,
          cached_tokens: ev.cachedTokens,
          prompt_tokens: ev.promptTokens,
          kv_tokens: ev.promptTokens,
          kv_bytes: ev.promptTokens * bpt,
          transfer_ms: doneAt - ev.atMs,
        });
        r.timers.push(
          setTimeout(() => {
            r.kvReady = true;
            tryDeliver(r);
          }, real(doneAt - now())),
        );
      },
    });
    if (r.poller && engine.stateOf(id) === "bootstrap") engine.bootstrapped(id, now());
    r.timers.push(
      setTimeout(() => {
        if (!r.finished && engine.stateOf(id) === "bootstrap") failPrefill(r, "bootstrap", `Request ${room} timed out after ${(bootstrapMs / 1000).toFixed(1)}s in KVPoll.Bootstrapping`);
      }, real(bootstrapMs)),
    );
    const abort = (respond: boolean) => {
      if (r.finished) return;
      const st = engine.stateOf(id);
      if (respond && (st === "bootstrap" || st === "transferring")) return failPrefill(r, st === "bootstrap" ? "bootstrap" : "transfer", "Aborted by AbortReq.");
      endPrefill(r);
      if (respond) reply.end(0, "abort", r.cachedTokens ?? 0);
    };
    abortables.set(id, () => abort(true));
    res.on("close", () => abort(false));
    wake();
  };

  const abortRequest: PdServer["abortRequest"] = (res, body) => {
    let j: unknown;
    try {
      j = JSON.parse(body);
    } catch {
      return c.send(res, 422, JSON.stringify({ detail: [{ type: "json_invalid", loc: ["body", 0], msg: "JSON decode error" }] }));
    }
    const o = (typeof j === "object" && j !== null ? j : {}) as Record<string, unknown>;
    const rid = typeof o.rid === "string" ? o.rid : "";
    const ids = o.abort_all === true ? [...abortables.keys()] : abortables.has(rid) ? [rid] : [];
    for (const id of ids) abortables.get(id)?.();
    if (!res.destroyed) {
      res.writeHead(200, { date: new Date().toUTCString(), server: "uvicorn", "content-length": 0 });
      res.end();
    }
  };

  return {
    generate,
    abortRequest,
    preallocate,
    counters: () => ({ bootstrapFailed, transferFailed, transferLatencyMs: transferLatency }),
    received: () => log.slice(),
    async listen(host, port) {
      selfAddr = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
      if (!bootstrapServer) return undefined;
      await new Promise<void>((resolve, reject) => {
        bootstrapServer.once("error", reject);
        bootstrapServer.listen(c.opts.bootstrapPort ?? 8998, host, () => resolve());
      });
      return (bootstrapServer.address() as AddressInfo).port;
    },
    stop() {
      for (const e of decodeRooms.values()) {
        e.done = true;
        endDecodeWait(e);
      }
      decodeRooms.clear();
      for (const hb of heartbeats.values()) clearInterval(hb.timer);
      heartbeats.clear();
      for (const r of prefillRooms.values()) for (const t of r.timers) clearTimeout(t);
      prefillRooms.clear();
      abortables.clear();
      for (const s of bootstrapSockets) s.destroy();
      bootstrapSockets.clear();
    },
    close() {
      if (!bootstrapServer || !bootstrapServer.listening) return Promise.resolve();
      return new Promise<void>((resolve) => bootstrapServer.close(() => resolve()));
    },
  };
}
