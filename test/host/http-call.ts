// proxy_http_call as Envoy's Context::httpCall + AsyncClient implement it,
// with the "upstream" played by a handler the test supplies.
//
//  - The call always belongs to the ROOT context of the calling context
//    (cpp-host uses root_context()), so proxy_on_http_call_response arrives on
//    the root context; a stream must be resumed from there with
//    proxy_set_effective_context + proxy_continue_stream.
//  - Returns BadArgument for a negative timeout, an unknown cluster, or headers
//    without :path, :method and :authority.
//  - Tokens are per VM: 4, 8, 12, ... (low two bits = callout type 0).
//  - A non-empty body gets a content-length header.
//  - Responses are delivered asynchronously (never inside a module call).
//    During the callback the HttpCallResponseHeaders/Trailers maps and the
//    HttpCallResponseBody buffer are readable; afterwards they are gone.
//  - A handler that throws/rejects is a reset: the callback gets (0, 0, 0) and
//    proxy_get_status reports BrokenConnection (11) with message "reset".
//  - A call with timeout > 0 that is not answered in time gets Envoy's local
//    504 "upstream request timeout" response.

import { WasmResult } from './abi.ts';
import type { RootContext } from './context.ts';
import type { Context } from './context.ts';
import { HeaderMap, type HeaderInput } from './header-map.ts';
import { bytesToString, toBytes } from './memory.ts';
import type { Pairs } from './pairs.ts';
import type { ProxyWasmHost } from './host.ts';
import type { WasmVm } from './vm.ts';
import type { WorkerLabel } from './logs.ts';

export interface HttpCallRequest {
  cluster: string;
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
}

export interface HttpCallReply {
  status?: number;
  headers?: HeaderInput;
  body?: string | Uint8Array;
  trailers?: HeaderInput;
}

export type HttpCallHandler = (req: HttpCallRequest) => HttpCallReply | Promise<HttpCallReply>;

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

  knowsCluster(name: string, handler?: HttpCallHandler): boolean {
    const clusters = this.host.options.clusters;
    if (clusters) return clusters.includes(name);
    return Boolean(handler ?? this.host.options.httpCallHandler);
  }

  dispatch(vm: WasmVm, rootCtx: Context, cluster: string, headerPairs: Pairs, body: Uint8Array, trailerPairs: Pairs, timeoutMs: number): { result: number; token: number } {
    if (timeoutMs < 0) return { result: WasmResult.BadArgument, token: 0 };
    const root = rootCtx.asRoot();
    const handler = root?.plugin.httpCallHandler ?? this.host.options.httpCallHandler;
    if (!root || !this.knowsCluster(cluster, handler)) return { result: WasmResult.BadArgument, token: 0 };
    const headers = HeaderMap.from(headerPairs);
    const method = headers.get(':method');
    const path = headers.get(':path');
    const authority = headers.get(':authority');
    if (path === undefined || method === undefined || authority === undefined) return { result: WasmResult.BadArgument, token: 0 };
    if (body.length > 0) headers.set('content-length', String(body.length));
    const token = (vm.nextHttpCallId = (vm.nextHttpCallId + 4) >>> 0);
    const req: HttpCallRequest = {
      cluster,
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
    };
    this.made.push(req);

    let settled = false;
    const timer = timeoutMs > 0
      ? this.host.clock.setTimer(timeoutMs, () => {
          if (settled) return;
          settled = true;
          this.deliver(vm, root, token, {
            status: 504,
            headers: { 'content-length': '24', 'content-type': 'text/plain' },
            body: 'upstream request timeout',
          });
        })
      : null;
    root.httpCalls.set(token, {
      cancel: () => {
        settled = true;
        timer?.cancel();
      },
    });

    const finish = (reply: HttpCallReply | Error) => {
      if (settled) return;
      settled = true;
      timer?.cancel();
      this.host.post(() => (reply instanceof Error ? this.fail(vm, root, token) : this.deliver(vm, root, token, reply)));
    };
    // The handler runs on the host's dispatcher, never inside a module call.
    this.host.post(() => {
      if (settled) return;
      if (!handler) {
        finish({ status: 503, headers: { 'content-length': '19', 'content-type': 'text/plain' }, body: 'no healthy upstream' });
        return;
      }
      let r: HttpCallReply | Promise<HttpCallReply>;
      try {
        r = handler(req);
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (r && typeof (r as Promise<HttpCallReply>).then === 'function') {
        const p = (r as Promise<HttpCallReply>).then(
          (reply) => finish(reply ?? {}),
          (err) => finish(err instanceof Error ? err : new Error(String(err))),
        );
        this.pending.add(p);
        void p.finally(() => this.pending.delete(p));
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
