// The local stack's gateway when no Envoy is installed: the same build/wasm-epp.wasm, run by the
// project's proxy-wasm host (test/host) behind a small HTTP front that plays Envoy's part:
//
//   :8080  plain listener, round-robin over the pods (what the seeds' HTTPRoute to the Service does)
//   :8081  inference listener: the wasm-epp filter picks the pod; the request then goes to the
//          address in x-gateway-destination-endpoint, like Envoy's ORIGINAL_DST cluster
//   127.0.0.1:19100  ext-config listener: the same filter with accept_push, for the sidecar
//   127.0.0.1:19000  Envoy's admin stats, GET /stats/prometheus and /stats (admin.ts)
//
// Request and response bodies stream through the filter's callbacks exactly as Envoy's filter
// manager would feed them; the upstream request starts once the filter lets the whole request go
// (also when a root context resumes it later: a request held by priority queuing starts its
// upstream request only when it is released). A local reply from a root context (e.g. a held
// request whose time in the queue is up) is written to the client like any other. A client that
// goes away (its connection closes before the response ended) resets the stream, as Envoy's
// codec does, so the filter's on_log / on_done / on_delete run at once, held or not. If the
// filter answers a stream itself after its request went upstream (e.g. from an http call's
// answer), the upstream request is aborted and the client gets the local reply, as Envoy's router
// is torn down by sendLocalReply.
//
// The module's proxy_http_call runs for real on the cluster wasm_epp_original_dst (Envoy's
// ORIGINAL_DST with use_http_header, deploy/envoy/envoy.yaml): the call goes over HTTP to the
// ip:port in its own x-gateway-destination-endpoint header. As Envoy's async client reports it: a
// connection that fails before response headers is the router's 503, a connection lost after them
// is a reset (0 headers), and the call's timeout is the route timeout (504 before response
// headers, a reset after them).

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ProxyWasmHost, upstreamResetBeforeHeaders, type HttpCallReply, type HttpCallRequest, type HttpStream, type LogEntry, type Plugin,
} from '../../test/host/index.ts';
import { startAdmin } from './admin.ts';

/** The ORIGINAL_DST cluster the filter's calls name (pd.cluster), as in deploy/envoy/envoy.yaml. */
export const ORIGINAL_DST_CLUSTER = 'wasm_epp_original_dst';

export interface GatewayOptions {
  wasm: Uint8Array;
  /** Pods behind the plain listener, "ip:port". */
  backends: string[];
  token: string;
  pool: string;
  plainPort?: number;
  inferencePort?: number;
  pushPort?: number;
  /**
   * Envoy's admin stats port, always on 127.0.0.1. Default 19000, or an ephemeral port when the
   * inference listener is on one (inferencePort 0, as in tests, so that gateways can run side by side).
   */
  adminPort?: number;
  bindHost?: string;
  workers?: number;
  /** Extra plugin configuration for the routing filter (`pd` is merged over the default one). */
  config?: Record<string, unknown>;
  onLog?: (entry: LogEntry) => void;
}

export interface Gateway {
  plainUrl: string;
  inferenceUrl: string;
  pushUrl: string;
  /** Envoy's admin (GET /stats/prometheus, /stats). */
  adminUrl: string;
  host: ProxyWasmHost;
  close(): Promise<void>;
}

// Hop-by-hop headers a proxy does not forward (RFC 9110 §7.6.1).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);
const DEST = 'x-gateway-destination-endpoint';

const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

function requestPairs(req: IncomingMessage): Array<[string, string]> {
  const pairs: Array<[string, string]> = [
    [':method', req.method ?? 'GET'],
    [':path', req.url ?? '/'],
    [':authority', req.headers.host ?? 'localhost'],
    [':scheme', 'http'],
  ];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (k === 'host' || HOP_BY_HOP.has(k)) continue;
    pairs.push([k, raw[i + 1]]);
  }
  if (!req.headers['x-forwarded-proto']) pairs.push(['x-forwarded-proto', 'http']);
  return pairs;
}

function plainHeaders(pairs: ReadonlyArray<readonly [string, string]>): http.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of pairs) {
    if (k.startsWith(':') || HOP_BY_HOP.has(k)) continue;
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/** Upstream headers as Envoy's router sends them: the authority becomes Host. */
function upstreamHeaders(pairs: ReadonlyArray<readonly [string, string]>): http.OutgoingHttpHeaders {
  const out = plainHeaders(pairs);
  const authority = pairs.find(([k]) => k === ':authority')?.[1];
  if (authority) out.host = authority;
  return out;
}

function responsePairs(res: IncomingMessage): Array<[string, string]> {
  const pairs: Array<[string, string]> = [[':status', String(res.statusCode ?? 502)]];
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const k = res.rawHeaders[i].toLowerCase();
    if (!HOP_BY_HOP.has(k)) pairs.push([k, res.rawHeaders[i + 1]]);
  }
  return pairs;
}

function splitHostPort(address: string): { host: string; port: number } | null {
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(address);
  return m ? { host: m[1], port: Number(m[2]) } : null;
}

// The reset reason Envoy's router reports for a connection that failed before response headers.
function resetReason(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'remote connection failure, transport failure reason: delayed connect error: Connection refused';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'remote connection failure, transport failure reason: delayed connect error: No route to host';
    case 'ECONNRESET':
      return 'connection termination';
    default:
      return `remote connection failure, transport failure reason: ${err.code ?? err.message}`;
  }
}

// proxy_http_call on the ORIGINAL_DST cluster, for real: Envoy's async client and router.
function performCall(req: HttpCallRequest): Promise<HttpCallReply> {
  return new Promise((resolve, reject) => {
    const target = splitHostPort(req.target ?? '');
    if (!target) {
      // The host only hands over original_dst calls with a parsed target.
      resolve({ status: 503, headers: { 'content-type': 'text/plain' }, body: 'no healthy upstream' });
      return;
    }
    const headers = upstreamHeaders(req.headers);
    headers['x-envoy-internal'] = 'true';
    if (req.timeoutMs > 0) headers['x-envoy-expected-rq-timeout-ms'] = String(req.timeoutMs);
    let started = false;
    const up = http.request({ host: target.host, port: target.port, method: req.method, path: req.path, headers, agent }, (res) => {
      started = true;
      req.responseStarted();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: responsePairs(res), body: new Uint8Array(Buffer.concat(chunks)), trailers: Object.entries(res.trailers) as Array<[string, string]> }));
      res.on('error', (err) => reject(err));
      res.on('aborted', () => reject(new Error('upstream reset after response headers')));
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (started) reject(err);
      else resolve(upstreamResetBeforeHeaders(resetReason(err)));
    });
    // Timeout or cancellation (the host stopped waiting): drop the upstream request.
    req.signal.addEventListener('abort', () => up.destroy(), { once: true });
    up.end(Buffer.from(req.body));
  });
}

// Writes what the filter has let through to the client since the last call (including local
// replies); a reset stream drops the connection.
class DownstreamWriter {
  private sent = 0;
  private headersSent = false;

  constructor(private readonly s: HttpStream, private readonly res: ServerResponse) {}

  flush(): void {
    const d = this.s.downstream;
    if (this.res.destroyed || this.res.writableEnded) return;
    if (d.reset) {
      this.res.destroy();
      return;
    }
    if (!this.headersSent && d.headers) {
      const status = Number(d.header(':status') ?? 502);
      this.res.writeHead(status, plainHeaders(d.headers));
      this.headersSent = true;
    }
    if (!this.headersSent) return;
    const len = d.bodyBuffer.length;
    if (len > this.sent) {
      const chunk = new Uint8Array(len - this.sent);
      d.bodyBuffer.copyOut(this.sent, len - this.sent, chunk, 0);
      this.sent = len;
      this.res.write(chunk);
    }
    if (d.endStream) this.res.end();
  }
}

// Envoy's router answer when the upstream cannot be reached, passed through the filter's
// response callbacks like any response.
function upstreamFailure(s: HttpStream, status: number, text: string): void {
  s.responseHeaders({ ':status': String(status), 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(text)) }, false);
  s.responseBody(text, true);
}

function proxyThroughFilter(plugin: Plugin, workers: number, counter: { next: number }, req: IncomingMessage, res: ServerResponse): void {
  const worker = plugin.worker(counter.next++ % workers);
  const s = worker.newHttpStream({ sourceAddress: `${req.socket.remoteAddress ?? '127.0.0.1'}:${req.socket.remotePort ?? 0}` });
  const writer = new DownstreamWriter(s, res);
  const length = Number(req.headers['content-length'] ?? 0);
  const hasBody = length > 0 || req.headers['transfer-encoding'] !== undefined;
  let upstreamReq: http.ClientRequest | null = null;
  let upstreamStarted = false;

  const startUpstream = (): void => {
    if (upstreamStarted || s.done) return;
    upstreamStarted = true;
    const up = s.upstream;
    const target = splitHostPort(up.header(DEST) ?? '');
    if (!target) {
      // ORIGINAL_DST with use_http_header and no header: no host to route to.
      upstreamFailure(s, 503, 'no healthy upstream');
      return;
    }
    let responded = false;
    const r = http.request({
      host: target.host, port: target.port, method: up.header(':method'), path: up.header(':path'), headers: upstreamHeaders(up.headers ?? []), agent,
    }, (upRes) => {
      responded = true;
      s.responseHeaders(responsePairs(upRes), false);
      upRes.on('data', (chunk: Buffer) => s.responseBody(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length), false));
      upRes.on('end', () => s.responseBody(new Uint8Array(0), true));
      upRes.on('error', () => s.reset());
      upRes.on('aborted', () => s.reset());
    });
    upstreamReq = r;
    r.on('error', (err: NodeJS.ErrnoException) => {
      if (upstreamReq !== r) return; // aborted by us
      upstreamReq = null;
      if (responded) s.reset();
      else upstreamFailure(s, 503, `upstream connect error or disconnect/reset before headers. reset reason: ${resetReason(err)}`);
    });
    r.end(Buffer.from(up.body));
  };

  s.observer = {
    // Deferred: the request may complete inside the filter's own processing (or a root context's
    // callback); the router runs after that.
    upstreamRequestComplete: () => queueMicrotask(startUpstream),
    upstreamReset: () => {
      const r = upstreamReq;
      upstreamReq = null;
      r?.destroy();
    },
    downstream: () => writer.flush(),
  };

  res.on('close', () => {
    if (!res.writableFinished) s.reset();
  });

  s.requestHeaders(requestPairs(req), !hasBody);
  if (!hasBody) {
    req.resume();
    return;
  }
  req.on('data', (chunk: Buffer) => {
    s.requestBody(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length), false);
    if (s.done) req.resume();
  });
  req.on('end', () => s.requestBody(new Uint8Array(0), true));
}

// Plain round-robin proxy, the seeds' port 8080 (HTTPRoute to the Service).
function proxyRoundRobin(backends: string[], counter: { next: number }, req: IncomingMessage, res: ServerResponse): void {
  const target = splitHostPort(backends[counter.next++ % backends.length])!;
  const headers = plainHeaders(requestPairs(req));
  const up = http.request({ host: target.host, port: target.port, method: req.method, path: req.url, headers, agent }, (upRes) => {
    res.writeHead(upRes.statusCode ?? 502, upRes.headers);
    upRes.pipe(res);
  });
  up.on('error', () => {
    if (!res.headersSent) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('upstream connect error or disconnect/reset before headers. reset reason: connection failure');
    } else res.destroy();
  });
  res.on('close', () => up.destroy());
  req.pipe(up);
}

function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const workers = opts.workers ?? 2;
  const host = new ProxyWasmHost({
    clock: 'real', logLevel: 'info', logSink: opts.onLog, maxLogEntries: 10_000,
    clusters: [{ name: ORIGINAL_DST_CLUSTER, type: 'original_dst', httpHeaderName: DEST }],
    httpCallHandler: performCall,
  });
  const env = { WASM_EPP_PUSH_TOKEN: opts.token };
  const common = { wasm: opts.wasm, rootId: 'wasm-epp', vmId: 'wasm-epp', env, workers, allowOnHeadersStopIteration: true, bufferLimitBytes: 16 * 1024 * 1024 };
  const pd = { cluster: ORIGINAL_DST_CLUSTER, ...(opts.config?.pd as Record<string, unknown> | undefined) };
  const routing = host.loadPlugin({ ...common, name: 'wasm-epp', configuration: JSON.stringify({ pool: opts.pool, ...opts.config, pd }) });
  const push = host.loadPlugin({ ...common, name: 'wasm-epp-ext-config', configuration: JSON.stringify({ accept_push: true }) });

  const bind = opts.bindHost ?? '127.0.0.1';
  const rr = { next: 0 };
  const routed = { next: 0 };
  const pushed = { next: 0 };
  const plain = http.createServer((req, res) => proxyRoundRobin(opts.backends, rr, req, res));
  const inference = http.createServer((req, res) => proxyThroughFilter(routing, workers, routed, req, res));
  const ext = http.createServer((req, res) => proxyThroughFilter(push, workers, pushed, req, res));
  for (const s of [plain, inference, ext]) {
    s.keepAliveTimeout = 65_000;
    s.requestTimeout = 3_600_000; // long generations (the seeds allow 1 h)
    s.headersTimeout = 60_000;
  }
  const plainPort = await listen(plain, opts.plainPort ?? 8080, bind);
  const inferencePort = await listen(inference, opts.inferencePort ?? 8081, bind);
  // The ext-config listener is loopback-only, always.
  const pushPort = await listen(ext, opts.pushPort ?? 19100, '127.0.0.1');
  const admin = await startAdmin({ host, port: opts.adminPort ?? (opts.inferencePort === 0 ? 0 : 19000) });
  const close = (s: http.Server) => new Promise<void>((r) => {
    s.close(() => r());
    s.closeAllConnections();
  });
  return {
    plainUrl: `http://${bind}:${plainPort}`,
    inferenceUrl: `http://${bind}:${inferencePort}`,
    pushUrl: `http://127.0.0.1:${pushPort}/wasm-epp/v1/state`,
    adminUrl: admin.url,
    host,
    async close() {
      await Promise.all([close(plain), close(inference), close(ext), admin.close()]);
      host.close();
    },
  };
}
