// Convenience: one whole HTTP exchange through a worker's filter.
//
// Builds the request the way Envoy's HTTP/1 codec and connection manager hand
// it to filters (pseudo-headers :method :path :authority :scheme, the given
// headers lower-cased, content-length for a body, and x-forwarded-proto /
// x-request-id added when missing), feeds it in chunks, lets the filter pause
// and resume (draining posted work, awaiting outbound calls), answers from the
// "upstream" once the full request has been forwarded, and reports either what
// the upstream received or the local reply the client got.

import { toBytes } from './memory.ts';
import { HeaderMap, type HeaderInput } from './header-map.ts';
import type { HttpStream, LocalReply, Received } from './http-stream.ts';
import type { Pairs } from './pairs.ts';
import type { Worker } from './plugin.ts';
import { randomUUID } from 'node:crypto';

export interface UpstreamResponse {
  status?: number;
  headers?: HeaderInput;
  body?: string | Uint8Array;
  trailers?: HeaderInput;
  /** Split the response body into chunks of this size (default: one chunk). */
  chunkSize?: number;
}

export interface RequestOptions {
  method?: string;
  path?: string;
  authority?: string;
  scheme?: string;
  headers?: HeaderInput;
  body?: string | Uint8Array;
  /** Split the request body into chunks of this size (default: one chunk). */
  chunkSize?: number;
  trailers?: HeaderInput;
  /** How the upstream answers (default 200 with an empty body). */
  response?: UpstreamResponse | ((upstream: Received) => UpstreamResponse | Promise<UpstreamResponse>);
  /** Add x-forwarded-proto / x-request-id like the connection manager (default true). */
  connectionManagerHeaders?: boolean;
  /** Real-clock mode: give up waiting for a paused stream after this long (default 30 s). */
  timeoutMs?: number;
}

export interface UpstreamResult {
  kind: 'upstream';
  /** Request headers as the upstream received them. */
  headers: Pairs;
  body: Uint8Array;
  bodyText: string;
  trailers: Pairs | null;
  /** First value of a request header as forwarded upstream. */
  header(name: string): string | undefined;
  /** What the client finally received. */
  response: Received;
  status: number;
  stream: HttpStream;
}

export interface LocalResult extends LocalReply {
  kind: 'local';
  header(name: string): string | undefined;
  stream: HttpStream;
}

export type RequestResult = UpstreamResult | LocalResult;

function requestHeaders(opts: RequestOptions, body: Uint8Array | null): HeaderMap {
  const m = new HeaderMap();
  m.add(':method', opts.method ?? (body ? 'POST' : 'GET'));
  m.add(':path', opts.path ?? '/');
  m.add(':authority', opts.authority ?? 'localhost');
  m.add(':scheme', opts.scheme ?? 'http');
  const user = HeaderMap.from(opts.headers);
  for (const [k, v] of user.entries) {
    if (k === 'host') {
      m.set(':authority', v);
      continue;
    }
    if (k.startsWith(':')) m.set(k, v);
    else m.add(k, v);
  }
  if (body && !m.has('content-length') && !m.has('transfer-encoding')) m.add('content-length', String(body.length));
  if (opts.connectionManagerHeaders ?? true) {
    if (!m.has('x-forwarded-proto')) m.add('x-forwarded-proto', opts.scheme ?? 'http');
    if (!m.has('x-request-id')) m.add('x-request-id', randomUUID());
  }
  return m;
}

function chunks(data: Uint8Array, size: number | undefined): Uint8Array[] {
  if (!size || size <= 0 || data.length <= size) return [data];
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

function sendRequest(s: HttpStream, opts: RequestOptions): void {
  const body = opts.body === undefined ? null : toBytes(opts.body);
  const hasBody = body !== null && body.length > 0;
  s.requestHeaders(requestHeaders(opts, body), !hasBody && !opts.trailers);
  if (hasBody) {
    const parts = chunks(body!, opts.chunkSize);
    for (let i = 0; i < parts.length; i++) s.requestBody(parts[i], i === parts.length - 1 && !opts.trailers);
  }
  if (opts.trailers) s.requestTrailers(opts.trailers);
}

function sendResponse(s: HttpStream, r: UpstreamResponse): void {
  const body = r.body === undefined ? null : toBytes(r.body);
  const hasBody = body !== null && body.length > 0;
  const h = HeaderMap.from(r.headers);
  h.set(':status', String(r.status ?? 200));
  if (hasBody && !h.has('content-length') && !h.has('transfer-encoding')) h.add('content-length', String(body!.length));
  s.responseHeaders(h, !hasBody && !r.trailers);
  if (hasBody) {
    const parts = chunks(body!, r.chunkSize);
    for (let i = 0; i < parts.length; i++) s.responseBody(parts[i], i === parts.length - 1 && !r.trailers);
  }
  if (r.trailers) s.responseTrailers(r.trailers);
}

function result(s: HttpStream): RequestResult {
  if (s.localReply) {
    const lr = s.localReply;
    return { kind: 'local', ...lr, header: (n) => lr.headers.find(([k]) => k === n.toLowerCase())?.[1], stream: s };
  }
  const up = s.upstream;
  return {
    kind: 'upstream',
    headers: up.headers ?? [],
    body: up.body,
    bodyText: up.bodyText,
    trailers: up.trailers,
    header: (n) => up.header(n),
    response: s.downstream,
    status: s.responseCode ?? 0,
    stream: s,
  };
}

function describeStall(s: HttpStream): string {
  const where = !s.upstream.endStream ? `request ${s.requestPaused ? 'paused by the filter' : 'not complete upstream'}` : `response ${s.responsePaused ? 'paused by the filter' : 'incomplete'}`;
  return `stream ${s.contextId} stalled: ${where} (callbacks: ${s.callbacks.join(', ')})`;
}

export function runRequestSync(w: Worker, opts: RequestOptions): RequestResult {
  const host = w.host;
  const s = w.newHttpStream();
  sendRequest(s, opts);
  host.drain();
  if (!s.done && s.upstream.endStream) {
    const r = typeof opts.response === 'function' ? opts.response(s.upstream) : opts.response ?? {};
    if (r && typeof (r as Promise<UpstreamResponse>).then === 'function') {
      throw new Error('requestSync: the response callback returned a promise; use request()');
    }
    sendResponse(s, r as UpstreamResponse);
    host.drain();
  }
  if (!s.done) throw new Error(`requestSync: ${describeStall(s)}`);
  return result(s);
}

export async function runRequest(w: Worker, opts: RequestOptions): Promise<RequestResult> {
  const host = w.host;
  const s = w.newHttpStream();
  sendRequest(s, opts);
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const waitFor = async (cond: () => boolean): Promise<void> => {
    for (;;) {
      host.drain();
      if (cond()) return;
      const pending = host.httpCalls.pendingPromises();
      if (pending.length) {
        await Promise.race(pending);
        await new Promise((r) => setImmediate(r));
        continue;
      }
      if (host.hasPostedWork()) {
        await new Promise((r) => setImmediate(r));
        continue;
      }
      if (host.clock.mode === 'manual') throw new Error(`request: ${describeStall(s)}; nothing pending (advance the manual clock?)`);
      if (Date.now() > deadline) throw new Error(`request: ${describeStall(s)}; timed out`);
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  await waitFor(() => s.done || s.upstream.endStream);
  if (!s.done) {
    const r = typeof opts.response === 'function' ? await opts.response(s.upstream) : opts.response ?? {};
    sendResponse(s, r);
    await waitFor(() => s.done);
  }
  return result(s);
}
