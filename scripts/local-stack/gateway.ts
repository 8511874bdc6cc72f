// The local stack's gateway when no Envoy is installed: the same build/wasm-epp.wasm, run by the
// project's proxy-wasm host (test/host) behind a small HTTP front that plays Envoy's part:
//
//   :8080  plain listener, round-robin over the pods (what the seeds' HTTPRoute to the Service does)
//   :8081  inference listener: the wasm-epp filter picks the pod; the request then goes to the
//          address in x-gateway-destination-endpoint, like Envoy's ORIGINAL_DST cluster
//   127.0.0.1:19100  ext-config listener: the same filter with accept_push, for the sidecar
//
// Request and response bodies stream through the filter's callbacks exactly as Envoy's filter
// manager would feed them; the upstream request starts once the filter lets the request go.

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ProxyWasmHost, type HttpStream, type LogEntry, type Plugin } from '../../test/host/index.ts';

export interface GatewayOptions {
  wasm: Uint8Array;
  /** Pods behind the plain listener, "ip:port". */
  backends: string[];
  token: string;
  pool: string;
  plainPort?: number;
  inferencePort?: number;
  pushPort?: number;
  bindHost?: string;
  workers?: number;
  /** Extra plugin configuration for the routing filter. */
  config?: Record<string, unknown>;
  onLog?: (entry: LogEntry) => void;
}

export interface Gateway {
  plainUrl: string;
  inferenceUrl: string;
  pushUrl: string;
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

function plainHeaders(pairs: ReadonlyArray<[string, string]>): http.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of pairs) {
    if (k.startsWith(':') || HOP_BY_HOP.has(k)) continue;
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

function splitHostPort(address: string): { host: string; port: number } | null {
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(address);
  return m ? { host: m[1], port: Number(m[2]) } : null;
}

// Writes what the filter has let through to the client since the last call.
class DownstreamWriter {
  private sent = 0;
  private headersSent = false;

  constructor(private readonly s: HttpStream, private readonly res: ServerResponse) {}

  flush(): void {
    const d = this.s.downstream;
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
    if (d.endStream && !this.res.writableEnded) this.res.end();
  }
}

// Answers a request the filter ended itself (local reply), or the router's own errors.
function writeLocal(s: HttpStream, res: ServerResponse): void {
  const r = s.localReply!;
  res.writeHead(r.status, plainHeaders(r.headers));
  res.end(Buffer.from(r.body));
}

// Envoy's router answer when the upstream cannot be reached, passed through the filter's
// response callbacks like any response.
function upstreamFailure(s: HttpStream, writer: DownstreamWriter, status: number, text: string): void {
  s.responseHeaders({ ':status': String(status), 'content-type': 'text/plain', 'content-length': String(text.length) }, false);
  s.responseBody(text, true);
  writer.flush();
}

function proxyThroughFilter(plugin: Plugin, workers: number, counter: { next: number }, req: IncomingMessage, res: ServerResponse): void {
  const worker = plugin.worker(counter.next++ % workers);
  const s = worker.newHttpStream({ sourceAddress: `${req.socket.remoteAddress ?? '127.0.0.1'}:${req.socket.remotePort ?? 0}` });
  const writer = new DownstreamWriter(s, res);
  const length = Number(req.headers['content-length'] ?? 0);
  const hasBody = length > 0 || req.headers['transfer-encoding'] !== undefined;
  let upstreamReq: http.ClientRequest | null = null;
  let finished = false;

  const afterRequest = (): void => {
    if (s.localReply) return writeLocal(s, res);
    if (!s.upstream.endStream) return; // still held by the filter
    startUpstream();
  };

  const startUpstream = (): void => {
    const up = s.upstream;
    const target = splitHostPort(up.header(DEST) ?? '');
    if (!target) {
      // ORIGINAL_DST with use_http_header and no header: no host to route to.
      upstreamFailure(s, writer, 503, 'no healthy upstream');
      return;
    }
    const headers = plainHeaders(up.headers ?? []);
    upstreamReq = http.request({
      host: target.host, port: target.port, method: up.header(':method'), path: up.header(':path'), headers, agent,
    }, (upRes) => {
      const pairs: Array<[string, string]> = [[':status', String(upRes.statusCode ?? 502)]];
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) {
        const k = upRes.rawHeaders[i].toLowerCase();
        if (!HOP_BY_HOP.has(k)) pairs.push([k, upRes.rawHeaders[i + 1]]);
      }
      s.responseHeaders(pairs, false);
      writer.flush();
      upRes.on('data', (chunk: Buffer) => {
        s.responseBody(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length), false);
        writer.flush();
      });
      upRes.on('end', () => {
        finished = true;
        s.responseBody(new Uint8Array(0), true);
        writer.flush();
      });
      upRes.on('error', () => {
        finished = true;
        s.reset();
        res.destroy();
      });
    });
    upstreamReq.on('error', (err: NodeJS.ErrnoException) => {
      if (finished || res.headersSent) {
        s.reset();
        res.destroy();
        return;
      }
      finished = true;
      const reason = err.code === 'ECONNREFUSED' ? 'connection failure' : (err.code ?? 'reset');
      upstreamFailure(s, writer, 503, `upstream connect error or disconnect/reset before headers. reset reason: ${reason}`);
    });
    upstreamReq.end(Buffer.from(up.body));
  };

  res.on('close', () => {
    if (!res.writableFinished) {
      upstreamReq?.destroy();
      s.reset();
    }
  });

  s.requestHeaders(requestPairs(req), !hasBody);
  if (!hasBody) {
    req.resume();
    afterRequest();
    return;
  }
  req.on('data', (chunk: Buffer) => {
    s.requestBody(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length), false);
    if (s.localReply && !res.headersSent) {
      writeLocal(s, res);
      req.resume();
    }
  });
  req.on('end', () => {
    if (res.headersSent) return;
    s.requestBody(new Uint8Array(0), true);
    afterRequest();
  });
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
  const host = new ProxyWasmHost({ clock: 'real', logLevel: 'info', logSink: opts.onLog, maxLogEntries: 10_000 });
  const env = { WASM_EPP_PUSH_TOKEN: opts.token };
  const common = { wasm: opts.wasm, rootId: 'wasm-epp', vmId: 'wasm-epp', env, workers, allowOnHeadersStopIteration: true, bufferLimitBytes: 16 * 1024 * 1024 };
  const routing = host.loadPlugin({ ...common, name: 'wasm-epp', configuration: JSON.stringify({ pool: opts.pool, ...opts.config }) });
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
  const close = (s: http.Server) => new Promise<void>((r) => {
    s.close(() => r());
    s.closeAllConnections();
  });
  return {
    plainUrl: `http://${bind}:${plainPort}`,
    inferenceUrl: `http://${bind}:${inferencePort}`,
    pushUrl: `http://127.0.0.1:${pushPort}/wasm-epp/v1/state`,
    host,
    async close() {
      await Promise.all([close(plain), close(inference), close(ext)]);
      host.close();
    },
  };
}
