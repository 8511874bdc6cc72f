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
// Time: the pod's clock is simulated milliseconds, Unix time at start and then running
// `timeScale` times faster than the wall clock. A loop runs engine.step(now) and delivers the
// step's tokens durationMs / timeScale real milliseconds later; it sleeps while the engine is idle.

import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { randomUUID } from "node:crypto";
import { Engine, EngineError, type EngineEvent, type EngineOptions } from "./engine.ts";
import { PROMETHEUS_CONTENT_TYPE, sglangMetricsPage, vllmMetricsPage } from "./exposition.ts";
import {
  ApiError,
  chatChunk,
  chatResponse,
  completionChunk,
  completionResponse,
  errorBody,
  parseRequest,
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
}

export interface Pod {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly engine: Engine;
  readonly runtime: "vllm" | "sglang";
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
  const engineOpts: EngineOptions = {
    ...opts.engine,
    maxLoras: opts.engine?.maxLoras ?? (loras.size > 0 ? 1 : 0),
    histogramBuckets: runtime === "sglang" ? "sglang" : "vllm",
    tokenEvents: true,
  };
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
  let genAt = now();
  let genTokens = 0;
  let genRate = 0;

  // ---- the step loop ----
  const loop = () => {
    kick = undefined;
    if (stepping || dead) return;
    const start = now();
    const r = engine.step(start);
    if (!r) return;
    stepping = true;
    const delay = Math.max(0, (r.startMs + r.durationMs - now()) / timeScale);
    timer = setTimeout(() => {
      timer = undefined;
      stepping = false;
      if (dead) return;
      deliver(r.events);
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
      if (e.type === "first_token") l.onToken(e.token, 0, l.maxTokens === 1);
      else if (e.type === "token") l.onToken(e.token, e.index, e.index + 1 === l.maxTokens);
      else if (e.type === "finished") {
        listeners.delete(e.id);
        l.onFinished(e);
      }
    }
  };

  // ---- HTTP ----
  const send = (res: http.ServerResponse, status: number, body: string, type = "application/json") => {
    if (res.destroyed) return;
    res.writeHead(status, { date: new Date().toUTCString(), server: "uvicorn", "content-length": Buffer.byteLength(body), "content-type": type });
    res.end(body);
  };
  const sendError = (res: http.ServerResponse, e: ApiError) => send(res, e.status, errorBody(e.status, e.type, e.message));

  const metricsText = () => {
    const s = engine.snapshot();
    if (runtime === "sglang") {
      const t = now();
      if (t - genAt >= 1000) {
        genRate = ((s.generationTokens - genTokens) * 1000) / (t - genAt);
        genAt = t;
        genTokens = s.generationTokens;
      }
      return sglangMetricsPage(s, { modelName, genThroughput: genRate });
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
          const u = usage(prompt, e.outputTokens.length);
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
          if (index === 0) write(chatChunk(id, created, requested, { role: "assistant", content: "" }, null, p.continuousUsage ? usage(prompt, 0) : null));
          write(chatChunk(id, created, requested, { content: render(t) }, finish, u));
        } else {
          write(completionChunk(id, created, requested, render(t), finish, u));
        }
      },
      onFinished: (e) => {
        if (p.includeUsage) write(usageChunk(endpoint, id, created, requested, usage(prompt, e.outputTokens.length)));
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
    const allowed = routes[path];
    if (!allowed) return send(res, 404, JSON.stringify({ detail: "Not Found" }));
    if (method !== allowed) return send(res, 405, JSON.stringify({ detail: "Method Not Allowed" }));
    if (method === "GET") {
      if (path === "/health") return send(res, 200, "", "application/json");
      if (path === "/metrics") return send(res, 200, metricsText(), PROMETHEUS_CONTENT_TYPE);
      return send(res, 200, modelsBody());
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (dead) return;
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

  const stop = () => {
    dead = true;
    if (timer) clearTimeout(timer);
    if (kick) clearImmediate(kick);
    timer = undefined;
    kick = undefined;
    for (const id of listeners.keys()) engine.abort(id);
    listeners.clear();
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    host,
    port,
    engine,
    runtime,
    now,
    kill() {
      if (dead) return;
      stop();
      server.close();
    },
    close() {
      const wasDead = dead;
      stop();
      return new Promise<void>((resolve) => (wasDead && !server.listening ? resolve() : server.close(() => resolve())));
    },
  };
}
