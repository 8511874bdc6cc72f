// proxy_http_call as Envoy's Context::httpCall + Http::AsyncClient implement it,
// with the "upstream" played by a handler the test supplies.
//
//  - The call always belongs to the ROOT context of the calling context
//    (cpp-host uses root_context()), so proxy_on_http_call_response arrives on
//    the root context; a stream must be resumed from there with
//    proxy_set_effective_context + proxy_continue_stream. The call outlives
//    the stream that made it.
//  - Returns BadArgument for a negative timeout, an unknown cluster, or headers
//    without :path, :method and :authority. Timeout 0 means none.
//  - Tokens are per VM: 4, 8, 12, ... (low two bits = callout type 0).
//  - A non-empty body gets a content-length header.
//  - Clusters are declared with a type (HostOptions/PluginOptions `clusters`):
//    'static' (the handler is the upstream) or 'original_dst' (Envoy's
//    ORIGINAL_DST cluster with use_http_header). The async client hands the
//    call's own headers to the load balancer (downstreamHeaders()), so an
//    original_dst call goes to the "ip:port" in the FIRST value of the
//    cluster's header on the call itself (handler gets `target`). A missing or
//    unparseable value leaves the balancer without a host (there is no
//    downstream connection to fall back to): the router answers "no healthy
//    upstream" inside AsyncClient::send(), send() returns null, and
//    proxy_http_call returns InternalFailure with no callback ever (the
//    answer was deferred and finds no pending request). The same holds for a
//    cluster with no upstream at all (no handler).
//  - Responses are delivered asynchronously (never inside a module call).
//    During the callback the HttpCallResponseHeaders/Trailers maps and the
//    HttpCallResponseBody buffer are readable; afterwards they are gone.
//  - A handler that throws/rejects is a reset (the upstream went away after
//    the response started): the callback gets (0, 0, 0) and proxy_get_status
//    reports BrokenConnection (11) with message "reset"; the code stays 11.
//    A connection that fails BEFORE response headers is not a reset in Envoy:
//    the router answers 503 itself (upstreamResetBeforeHeaders()).
//  - A call with timeout > 0 that is not answered in time gets Envoy's local
//    504 "upstream request timeout" response; if the handler already reported
//    response headers (req.responseStarted()), the router can only reset.
//  - Cancelled calls behave as in Envoy (~Context cancels outstanding
//    requests): when the root context is deleted (host.close(), proxy_done
//    after a false on_done) or its VM is discarded, pending calls end with no
//    callback at all; req.signal is aborted so a handler can drop its real
//    upstream request. A failed VM keeps its calls, but answers are dropped
//    (cpp-host does not call into a failed VM).

import { isIPv4, isIPv6 } from 'node:net';
import { WasmResult } from './abi.ts';
import type { RootContext } from './context.ts';
import type { Context } from './context.ts';
import { HeaderMap, lowerAscii, type HeaderInput } from './header-map.ts';
import { bytesToString, toBytes } from './memory.ts';
import type { Pairs } from './pairs.ts';
import type { ProxyWasmHost } from './host.ts';
import type { WasmVm } from './vm.ts';
import type { WorkerLabel } from './logs.ts';

/** Envoy's default header for ORIGINAL_DST with use_http_header and no http_header_name. */
export const ORIGINAL_DST_DEFAULT_HEADER = 'x-envoy-original-dst-host';

export type ClusterType = 'static' | 'original_dst';

export interface ClusterSpec {
  name: string;
  /** 'static' (default): the handler is the upstream; 'original_dst': ORIGINAL_DST with use_http_header. */
  type?: ClusterType;
  /** original_dst: the header that names the upstream (default x-envoy-original-dst-host). */
  httpHeaderName?: string;
  /** Upstream for calls on this cluster (default: the plugin's handler, then the host's). */
  handler?: HttpCallHandler;
}

/** A cluster name (a 'static' cluster) or a typed declaration. */
export type ClusterDecl = string | ClusterSpec;

export interface HttpCallRequest {
  cluster: string;
  clusterType: ClusterType;
  /** original_dst: the upstream the call's header picked, "ip:port" ("[v6]:port"), as Envoy prints it. */
  target?: string;
  /** Request headers as the module passed them (keys lower-cased), plus content-length. */
  headers: Pairs;
  body: Uint8Array;
  bodyText: string;
  trailers: Pairs;
  /** 0 = no timeout. */
  timeoutMs: number;
  token: number;
  plugin: string;
  vmId: string;
  worker: WorkerLabel;
  method: string;
  path: string;
  authority: string;
  /** First value of a request header. */
  header(name: string): string | undefined;
  /** Aborted once nobody waits for the answer: timeout, cancellation (root context gone), discarded VM. */
  signal: AbortSignal;
  /**
   * For handlers that talk to a real upstream: call when the response headers arrive. A timeout
   * after that is a reset (the router can no longer answer locally), not a 504.
   */
  responseStarted(): void;
}

export interface HttpCallReply {
  status?: number;
  headers?: HeaderInput;
  body?: string | Uint8Array;
  trailers?: HeaderInput;
}

export type HttpCallHandler = (req: HttpCallRequest) => HttpCallReply | Promise<HttpCallReply>;

function localReply(status: number, text: string): HttpCallReply {
  return { status, headers: { 'content-length': String(Buffer.byteLength(text)), 'content-type': 'text/plain' }, body: text };
}

/**
 * What Envoy's router answers (503, as a response, not a reset) when the upstream connection
 * fails or is reset before response headers, e.g. reason "remote connection failure, transport
 * failure reason: delayed connect error: Connection refused" or "connection termination".
 */
export function upstreamResetBeforeHeaders(reason: string): HttpCallReply {
  return localReply(503, `upstream connect error or disconnect/reset before headers. reset reason: ${reason}`);
}

/** The router's local reply when the route timeout fires before response headers. */
export const UPSTREAM_TIMEOUT_REPLY: HttpCallReply = localReply(504, 'upstream request timeout');

/**
 * Network::Utility::parseInternetAddressAndPortNoThrow: "a.b.c.d:port" or "[v6]:port" with an IP
 * literal (no names) and a decimal port <= 65535; the address as Envoy prints it, or null.
 */
export function parseIpPort(value: string): string | null {
  if (value === '') return null;
  let ip: string;
  let port: string;
  if (value[0] === '[') {
    const at = value.lastIndexOf(']:');
    if (at < 0) return null;
    ip = value.slice(1, at);
    port = value.slice(at + 2);
    if (!isIPv6(ip)) return null;
  } else {
    const at = value.lastIndexOf(':');
    if (at < 0) return null;
    ip = value.slice(0, at);
    port = value.slice(at + 1);
    if (!isIPv4(ip)) return null;
  }
  // absl::SimpleAtoi: optional surrounding whitespace and a leading '+'.
  const m = /^\s*\+?(\d+)\s*$/.exec(port);
  if (!m) return null;
  const n = Number(m[1]);
  if (!(n <= 65535)) return null;
  return ip.includes(':') ? `[${ip}]:${n}` : `${ip}:${n}`;
}

function normalize(decl: ClusterDecl): Required<Pick<ClusterSpec, 'name' | 'type'>> & ClusterSpec {
  if (typeof decl === 'string') return { name: decl, type: 'static' };
  return { ...decl, type: decl.type ?? 'static' };
}

interface PendingCall {
  cancel(): void;
}

export class HttpCalls {
  /** Every call the modules made, in order (for assertions). */
  readonly made: HttpCallRequest[] = [];
  private readonly pending = new Set<Promise<unknown>>();

  constructor(private readonly host: ProxyWasmHost) {}

  get inFlight(): number {
    return this.pending.size;
  }

  /** Promises of handler results still outstanding. */
  pendingPromises(): Promise<unknown>[] {
    return [...this.pending];
  }

  /** The cluster a call names, from the plugin's declarations, then the host's; null if unknown. */
  cluster(name: string, pluginClusters?: ClusterDecl[], handler?: HttpCallHandler): ClusterSpec & { type: ClusterType } | null {
    for (const list of [pluginClusters, this.host.options.clusters]) {
      if (!list) continue;
      for (const d of list) {
        const c = normalize(d);
        if (c.name === name) return c;
      }
    }
    if (pluginClusters || this.host.options.clusters) return null;
    // Nothing declared: any name is a static cluster, when there is an upstream.
    return handler ?? this.host.options.httpCallHandler ? { name, type: 'static' } : null;
  }

  knowsCluster(name: string, handler?: HttpCallHandler): boolean {
    return this.cluster(name, undefined, handler) !== null;
  }

  dispatch(vm: WasmVm, rootCtx: Context, cluster: string, headerPairs: Pairs, body: Uint8Array, trailerPairs: Pairs, timeoutMs: number): { result: number; token: number } {
    if (timeoutMs < 0) return { result: WasmResult.BadArgument, token: 0 };
    const root = rootCtx.asRoot();
    if (!root) return { result: WasmResult.BadArgument, token: 0 };
    const pluginHandler = root.plugin.httpCallHandler;
    const spec = this.cluster(cluster, root.plugin.clusters, pluginHandler);
    if (!spec) return { result: WasmResult.BadArgument, token: 0 };
    const handler = spec.handler ?? pluginHandler ?? this.host.options.httpCallHandler;
    const headers = HeaderMap.from(headerPairs);
    const method = headers.get(':method');
    const path = headers.get(':path');
    const authority = headers.get(':authority');
    if (path === undefined || method === undefined || authority === undefined) return { result: WasmResult.BadArgument, token: 0 };
    if (body.length > 0) headers.set('content-length', String(body.length));
    const token = (vm.nextHttpCallId = (vm.nextHttpCallId + 4) >>> 0);

    // The load balancer: ORIGINAL_DST reads the call's own header.
    let target: string | undefined;
    let noHost = !handler;
    if (spec.type === 'original_dst') {
      const headerName = lowerAscii(spec.httpHeaderName ?? ORIGINAL_DST_DEFAULT_HEADER);
      const value = headers.get(headerName);
      const parsed = value === undefined ? null : parseIpPort(value);
      if (parsed === null) {
        if (value !== undefined) {
          this.host.stats.getOrCreate(`cluster.${cluster}.original_dst_host_invalid`, 'counter').value++;
        }
        vm.hostLog(3, 'original_dst_load_balancer: No downstream connection or no original_dst.');
        noHost = true;
      } else {
        target = parsed;
      }
    }
    const controller = new AbortController();
    let started = false;
    const req: HttpCallRequest = {
      cluster,
      clusterType: spec.type,
      ...(target !== undefined ? { target } : {}),
      headers: headers.pairs(),
      body,
      bodyText: bytesToString(body),
      trailers: trailerPairs,
      timeoutMs,
      token,
      plugin: root.plugin.name,
      vmId: vm.group.vmId,
      worker: vm.label,
      method,
      path,
      authority,
      header: (name) => headers.get(lowerAscii(name)),
      signal: controller.signal,
      responseStarted: () => {
        started = true;
      },
    };
    this.made.push(req);
    if (noHost) {
      // Router::sendNoHealthyUpstreamResponse inside AsyncClient::send(): the 503 completes the
      // request synchronously, send() returns null, and Context::httpCall gives up on the token.
      // The answer was deferred (a VM call is running) and finds no pending request: no callback.
      this.host.stats.getOrCreate(`cluster.${cluster}.upstream_cx_none_healthy`, 'counter').value++;
      controller.abort();
      return { result: WasmResult.InternalFailure, token: 0 };
    }

    let settled = false;
    let pendingAnswer: Promise<unknown> | null = null;
    const stop = (why: string) => {
      settled = true;
      timer?.cancel();
      // Nobody waits for this answer any more (settle() need not either).
      if (pendingAnswer) this.pending.delete(pendingAnswer);
      if (!controller.signal.aborted) controller.abort(new Error(why));
    };
    const timer = timeoutMs > 0
      ? this.host.clock.setTimer(timeoutMs, () => {
          if (settled) return;
          stop('timeout');
          // Router::onResponseTimeout: a local 504 before response headers, else a reset.
          if (started) this.fail(vm, root, token);
          else this.deliver(vm, root, token, UPSTREAM_TIMEOUT_REPLY);
        })
      : null;
    const call: PendingCall = { cancel: () => stop('cancelled') };
    root.httpCalls.set(token, call);

    const finish = (reply: HttpCallReply | Error) => {
      if (settled) return;
      settled = true;
      timer?.cancel();
      this.host.post(() => (reply instanceof Error ? this.fail(vm, root, token) : this.deliver(vm, root, token, reply)));
    };
    // The handler runs on the host's dispatcher, never inside a module call.
    this.host.post(() => {
      if (settled) return;
      let r: HttpCallReply | Promise<HttpCallReply>;
      try {
        r = handler!(req);
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (r && typeof (r as Promise<HttpCallReply>).then === 'function') {
        const p = (r as Promise<HttpCallReply>).then(
          (reply) => finish(reply ?? {}),
          (err) => finish(err instanceof Error ? err : new Error(String(err))),
        );
        if (!settled) {
          pendingAnswer = p;
          this.pending.add(p);
          void p.finally(() => this.pending.delete(p));
        }
      } else {
        finish((r as HttpCallReply) ?? {});
      }
    });
    return { result: WasmResult.Ok, token };
  }

  private deliver(vm: WasmVm, root: RootContext, token: number, reply: HttpCallReply): void {
    if (vm.dead || !root.httpCalls.has(token)) return;
    root.httpCalls.delete(token);
    const headers = HeaderMap.from(reply.headers);
    headers.set(':status', String(reply.status ?? (headers.get(':status') ? Number(headers.get(':status')) : 200)));
    const body = reply.body === undefined ? new Uint8Array(0) : toBytes(reply.body);
    const trailers = reply.trailers ? HeaderMap.from(reply.trailers) : null;
    root.httpCallResponse = { headers, body, trailers: trailers && trailers.size ? trailers : null };
    try {
      root.onHttpCallResponse(token, headers.size, body.length, trailers?.size ?? 0);
    } finally {
      root.httpCallResponse = null;
    }
  }

  private fail(vm: WasmVm, root: RootContext, token: number): void {
    if (vm.dead || !root.httpCalls.has(token)) return;
    root.httpCalls.delete(token);
    root.statusCode = WasmResult.BrokenConnection;
    root.statusMessage = 'reset';
    try {
      root.onHttpCallResponse(token, 0, 0, 0);
    } finally {
      root.statusMessage = '';
    }
  }
}
