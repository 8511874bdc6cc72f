// One HTTP stream through a filter chain made of the Wasm filter and the
// router. Two layers are emulated:
//
// StreamContext = Envoy's Wasm Context for a stream (context.cc): which header
// maps and body buffers the module can see in each callback, the conversion of
// callback return codes (cpp-host then Envoy), CHECK_FAIL fail-open/closed,
// deferred local replies / continue / close.
//
// HttpStream = Envoy's FilterManager around that one filter (filter_manager.cc):
// iteration state per direction (Continue / StopSingleIteration / StopAll*),
// buffering of body data, the buffer limit (413 on requests, 500 on responses
// when buffering; backpressure only when watermarking), resuming with
// continueDecoding/continueEncoding, local replies through the encoder chain,
// and stream completion (access log -> on_log, then onDestroy -> on_done,
// on_delete, the order doDeferredStreamDestroy uses).

import {
  BufferType, FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus, HeaderMapType, StreamType, WasmResult,
} from './abi.ts';
import { BodyBuffer } from './buffer.ts';
import { Context, EMPTY, type RootContext } from './context.ts';
import { HeaderMap, type HeaderInput } from './header-map.ts';
import { bytesToString, toBytes } from './memory.ts';
import type { Pairs } from './pairs.ts';
import type { ViolationRecord } from './host.ts';
import type { PluginInfo } from './plugin.ts';
import type { WasmVm } from './vm.ts';

/** Envoy's view of a filter's return value (Http::Filter*Status). */
const enum H { Continue, StopIteration, StopAllBuffer, StopAllWatermark }
const enum D { Continue, StopBuffer, StopWatermark, StopNoBuffer }
const enum T { Continue, StopIteration }

type Iteration = 'continue' | 'stopSingle' | 'stopAllBuffer' | 'stopAllWatermark';

/** What one side (upstream or downstream) has received so far. */
export class Received {
  headers: Pairs | null = null;
  readonly bodyBuffer = new BodyBuffer();
  trailers: Pairs | null = null;
  endStream = false;
  reset = false;
  get body(): Uint8Array {
    return this.bodyBuffer.bytes();
  }
  get bodyText(): string {
    return bytesToString(this.bodyBuffer.bytes());
  }
  header(name: string): string | undefined {
    const k = name.toLowerCase();
    return this.headers?.find(([n]) => n === k)?.[1];
  }
}

export interface LocalReply {
  status: number;
  headers: Pairs;
  body: Uint8Array;
  bodyText: string;
  details: string;
  grpcStatus: number | null;
}

/** FilterManager state for one direction (decoder = request, encoder = response). */
class Direction {
  headers: HeaderMap | null = null;
  headersReceived = false;
  headersContinued = false;
  iter: Iteration = 'continue';
  buffered: BodyBuffer | null = null;
  iterateFromCurrent = false;
  complete = false;
  /** Trailers received from the source that have not gone past the filter yet. */
  pendingTrailers: HeaderMap | null = null;
  /** Trailers the filter created while handling the last body chunk. */
  addedTrailers: HeaderMap | null = null;
  streaming = false;
  aboveLimit = false;
  /** True while the filter's callback for this direction runs. */
  inCallback = false;
  pendingContinue = false;
  /** Set once no more input is processed in this direction (local reply, reset). */
  closed = false;
  constructor(readonly name: 'request' | 'response') {}
  get stoppedAll(): boolean {
    return this.iter === 'stopAllBuffer' || this.iter === 'stopAllWatermark';
  }
}

export interface StreamEnvironment {
  bufferLimitBytes: number;
  connectionId: number;
  sourceAddress: string;
  destinationAddress: string;
  protocol: string;
  startTimeMs: number;
}

/** The Wasm filter's per-stream Context (Envoy Context with HTTP callbacks). */
export class StreamContext extends Context {
  requestHeaders: HeaderMap | null = null;
  requestTrailers: HeaderMap | null = null;
  responseHeaders: HeaderMap | null = null;
  responseTrailers: HeaderMap | null = null;
  requestBodyRef: BodyBuffer | null = null;
  responseBodyRef: BodyBuffer | null = null;
  bufferingRequestBody = false;
  bufferingResponseBody = false;
  endOfStream = false;
  destroyed = false;
  streamFailed = false;
  failureLocalReplySent = false;
  private logPhase = false;
  accessLogRequestHeaders: HeaderMap | null = null;
  accessLogResponseHeaders: HeaderMap | null = null;
  accessLogResponseTrailers: HeaderMap | null = null;
  private readonly state = new Map<string, Uint8Array>();

  constructor(vm: WasmVm, readonly rootCtx: RootContext, readonly stream: HttpStream) {
    super(vm, vm.allocContextId());
    vm.contexts.set(this.id, this);
  }

  get isRoot(): boolean {
    return false;
  }
  get plugin(): PluginInfo {
    return this.rootCtx.plugin;
  }
  root(): Context {
    return this.rootCtx;
  }
  asStream(): StreamContext {
    return this;
  }
  get logPrefix(): string {
    return this.rootCtx.plugin.logPrefix;
  }
  get accessLogPhase(): boolean {
    return this.logPhase;
  }
  get filterState(): Map<string, Uint8Array> {
    return this.state;
  }

  getMap(type: number): HeaderMap | null {
    const s = this.stream;
    switch (type) {
      case HeaderMapType.RequestHeaders:
        return this.requestHeaders;
      case HeaderMapType.RequestTrailers:
        // Envoy lets the last body callback add trailers (addDecodedTrailers).
        if (!this.requestTrailers && this.requestBodyRef && this.endOfStream && s.dec.inCallback) {
          this.requestTrailers = s.dec.addedTrailers = new HeaderMap();
        }
        return this.requestTrailers;
      case HeaderMapType.ResponseHeaders:
        return this.responseHeaders;
      case HeaderMapType.ResponseTrailers:
        if (!this.responseTrailers && this.responseBodyRef && this.endOfStream && s.enc.inCallback) {
          this.responseTrailers = s.enc.addedTrailers = new HeaderMap();
        }
        return this.responseTrailers;
      default:
        return null;
    }
  }

  getConstMap(type: number): HeaderMap | null {
    switch (type) {
      case HeaderMapType.RequestHeaders:
        return this.logPhase ? this.accessLogRequestHeaders : this.requestHeaders;
      case HeaderMapType.RequestTrailers:
        return this.logPhase ? null : this.requestTrailers;
      case HeaderMapType.ResponseHeaders:
        return this.logPhase ? this.accessLogResponseHeaders : this.responseHeaders;
      case HeaderMapType.ResponseTrailers:
        return this.logPhase ? this.accessLogResponseTrailers : this.responseTrailers;
      default:
        return super.getConstMap(type);
    }
  }

  getBuffer(type: number): BodyBuffer | Uint8Array | null {
    if (type === BufferType.HttpRequestBody) {
      if (this.bufferingRequestBody) return (this.stream.dec.buffered ??= new BodyBuffer());
      return this.requestBodyRef ?? EMPTY;
    }
    if (type === BufferType.HttpResponseBody) {
      if (this.bufferingResponseBody) return (this.stream.enc.buffered ??= new BodyBuffer());
      return this.responseBodyRef ?? EMPTY;
    }
    return super.getBuffer(type);
  }

  /** Envoy still queues the action for a stream whose on_delete ran (its Context lives until the deferred delete). */
  private destroyedAction(what: string): boolean {
    if (!this.destroyed) return false;
    this.vm.host.recordViolation(
      this.vm,
      'action-on-destroyed-stream',
      this.id,
      `${what} on stream ${this.id} after its on_delete: Envoy would run it on a destroyed filter chain`,
    );
    return true;
  }

  private staleReported = false;

  /**
   * Outside the body callback, when the last body callback did not return StopIterationAndBuffer
   * (the chunk was consumed, or moved into the filter manager's buffer by
   * StopIterationAndWatermark), Envoy's getBuffer still hands out the pointer it kept to the
   * codec's chunk (request_body_buffer_): with HTTP/1 the final chunk is a buffer local to the
   * codec's message-complete callback, gone by now; with HTTP/2 the stream's receive buffer,
   * drained. Either way not the body Envoy forwards. The host reads it as empty and lets writes
   * go nowhere, and records one violation per stream.
   */
  checkStaleBody(type: number, op: 'read' | 'write'): void {
    let stale = false;
    if (type === BufferType.HttpRequestBody) stale = !this.bufferingRequestBody && this.requestBodyRef !== null && !this.stream.dec.inCallback;
    else if (type === BufferType.HttpResponseBody) stale = !this.bufferingResponseBody && this.responseBodyRef !== null && !this.stream.enc.inCallback;
    if (!stale || this.staleReported) return;
    this.staleReported = true;
    const which = type === BufferType.HttpRequestBody ? 'request' : 'response';
    this.vm.host.recordViolation(
      this.vm,
      'stale-body',
      this.id,
      `${op} of the ${which} body of stream ${this.id} outside its body callback after the last one did not return StopIterationAndBuffer: Envoy's pointer is to the codec's chunk, not the body it forwards`,
    );
  }

  continueStream(type: number): number {
    const s = this.stream;
    // Envoy queues the action whatever state the stream is in (and drops the maps below at once).
    const queue = (fn: () => void) => {
      if (!this.destroyedAction(`continue_stream(${type})`)) this.vm.addAfterCallAction(fn);
    };
    switch (type) {
      case StreamType.Request:
        queue(() => s.continueDirection(s.dec));
        break;
      case StreamType.Response:
        queue(() => s.continueDirection(s.enc));
        break;
      case StreamType.Downstream:
        return WasmResult.Ok;
      case StreamType.Upstream:
        return WasmResult.Unimplemented;
      default:
        return WasmResult.BadArgument;
    }
    // Envoy drops the request-side maps for either stream type.
    this.requestHeaders = null;
    this.requestBodyRef = null;
    this.requestTrailers = null;
    return WasmResult.Ok;
  }

  closeStream(type: number): number {
    if (type === StreamType.Request || type === StreamType.Response) {
      if (this.destroyedAction(`close_stream(${type})`)) return WasmResult.Ok;
      this.stream.details ??= 'wasm_close_stream';
      this.vm.addAfterCallAction(() => this.stream.resetStream());
    }
    return WasmResult.Ok;
  }

  sendLocalResponse(code: number, body: Uint8Array, headers: Array<[string, string]>, grpc: number, details: string): void {
    // Envoy maps only well-known gRPC codes (0..16); SDKs pass -1 for "unset".
    const grpcStatus = grpc >= 0 && grpc <= 16 ? grpc : null;
    const d = details.replace(/[\t\n\v\f\r ]/g, '_');
    if (this.destroyedAction(`send_local_response(${code})`)) return;
    this.vm.addAfterCallAction(() => this.stream.sendLocalReply(code, body, headers, grpcStatus, d));
  }

  // ---- cpp-host ContextBase stream callbacks ----

  /** CHECK_FAIL_HTTP: true when the VM has failed (the caller returns the fail status). */
  private checkFail(): boolean {
    if (!this.vm.failed) return false;
    if (this.plugin.failOpen) return true;
    if (!this.streamFailed) {
      this.stream.failStream();
      this.streamFailed = true;
    }
    return true;
  }

  onCreate(): void {
    const vm = this.vm;
    if (!vm.failed && !this.inVmContextCreated && vm.fns.on_context_create) {
      this.stream.trace('on_context_create');
      try {
        vm.call(this, 'proxy_on_context_create', vm.fns.on_context_create, this.id, this.rootCtx.id);
      } finally {
        vm.runAfterCallActions();
      }
    }
    this.inVmContextCreated = true;
  }

  private headersStatus(r: number): H {
    // cpp-host: forced stop, out-of-range, or StopIteration without the option -> StopAllIterationAndWatermark.
    if (this.vm.stopIteration || r > FilterHeadersStatus.StopAllIterationAndWatermark) return H.StopAllWatermark;
    if (r === FilterHeadersStatus.StopIteration) return this.plugin.allowOnHeadersStopIteration ? H.StopIteration : H.StopAllWatermark;
    if (r === FilterHeadersStatus.StopAllIterationAndBuffer) return H.StopAllBuffer;
    if (r === FilterHeadersStatus.StopAllIterationAndWatermark) return H.StopAllWatermark;
    return H.Continue; // Continue, and ContinueAndEndStream which Envoy maps to Continue
  }

  private dataStatus(r: number): D {
    if (this.vm.stopIteration || r > FilterDataStatus.StopIterationNoBuffer) return D.StopNoBuffer;
    return r as D;
  }

  private trailersStatus(r: number): T {
    if (this.vm.stopIteration || r > FilterTrailersStatus.StopIteration) return T.StopIteration;
    return r as T;
  }

  private callHeaders(name: string, fn: ((...a: number[]) => number | undefined) | undefined, n: number, eos: boolean): H {
    const fail = () => (this.plugin.failOpen ? H.Continue : H.StopAllWatermark);
    if (this.checkFail()) return fail();
    if (!fn) return H.Continue;
    const vm = this.vm;
    this.stream.trace(name.slice(6));
    try {
      const r = vm.abi === '0.1.0' ? vm.call(this, name, fn, this.id, n) : vm.call(this, name, fn, this.id, n, eos ? 1 : 0);
      return this.checkFail() ? fail() : this.headersStatus(r);
    } finally {
      vm.runAfterCallActions();
    }
  }

  private callData(name: string, fn: ((...a: number[]) => number | undefined) | undefined, size: number, eos: boolean): D {
    const fail = () => (this.plugin.failOpen ? D.Continue : D.StopNoBuffer);
    if (this.checkFail()) return fail();
    if (!fn) return D.Continue;
    const vm = this.vm;
    this.stream.trace(name.slice(6));
    try {
      const r = vm.call(this, name, fn, this.id, size, eos ? 1 : 0);
      return this.checkFail() ? fail() : this.dataStatus(r);
    } finally {
      vm.runAfterCallActions();
    }
  }

  private callTrailers(name: string, fn: ((...a: number[]) => number | undefined) | undefined, n: number): T {
    const fail = () => (this.plugin.failOpen ? T.Continue : T.StopIteration);
    if (this.checkFail()) return fail();
    if (!fn) return T.Continue;
    const vm = this.vm;
    this.stream.trace(name.slice(6));
    try {
      const r = vm.call(this, name, fn, this.id, n);
      return this.checkFail() ? fail() : this.trailersStatus(r);
    } finally {
      vm.runAfterCallActions();
    }
  }

  // ---- Envoy Context::decode*/encode* ----

  decodeHeaders(map: HeaderMap, eos: boolean): H {
    this.onCreate();
    this.requestHeaders = map;
    this.endOfStream = eos;
    const st = this.callHeaders('proxy_on_request_headers', this.vm.fns.on_request_headers, map.size, eos);
    if (st === H.Continue) this.requestHeaders = null;
    return st;
  }

  decodeData(data: BodyBuffer, eos: boolean): D {
    if (!this.inVmContextCreated) return D.Continue;
    const s = this.stream;
    if (this.bufferingRequestBody) {
      // addDecodedData(data, false): the new chunk joins the buffered body first.
      s.dec.streaming = false;
      s.bufferData(s.dec, data);
      s.checkLimit(s.dec);
      if (this.destroyed) return D.StopBuffer;
    }
    this.requestBodyRef = data;
    this.endOfStream = eos;
    const size = (this.getBuffer(BufferType.HttpRequestBody) as BodyBuffer | Uint8Array).length;
    const st = this.callData('proxy_on_request_body', this.vm.fns.on_request_body, size, eos);
    this.bufferingRequestBody = false;
    if (st === D.Continue) this.requestBodyRef = null;
    else if (st === D.StopBuffer) this.bufferingRequestBody = true;
    return st;
  }

  decodeTrailers(map: HeaderMap): T {
    if (!this.inVmContextCreated) return T.Continue;
    this.requestTrailers = map;
    const st = this.callTrailers('proxy_on_request_trailers', this.vm.fns.on_request_trailers, map.size);
    if (st === T.Continue) this.requestTrailers = null;
    return st;
  }

  encodeHeaders(map: HeaderMap, eos: boolean): H {
    if (!this.inVmContextCreated || this.failureLocalReplySent) return H.Continue;
    this.responseHeaders = map;
    this.endOfStream = eos;
    const st = this.callHeaders('proxy_on_response_headers', this.vm.fns.on_response_headers, map.size, eos);
    if (st === H.Continue) this.responseHeaders = null;
    return st;
  }

  encodeData(data: BodyBuffer, eos: boolean): D {
    if (!this.inVmContextCreated || this.failureLocalReplySent) return D.Continue;
    const s = this.stream;
    if (this.bufferingResponseBody) {
      s.enc.streaming = false;
      s.bufferData(s.enc, data);
      s.checkLimit(s.enc);
      if (this.destroyed) return D.StopBuffer;
    }
    this.responseBodyRef = data;
    this.endOfStream = eos;
    const size = (this.getBuffer(BufferType.HttpResponseBody) as BodyBuffer | Uint8Array).length;
    const st = this.callData('proxy_on_response_body', this.vm.fns.on_response_body, size, eos);
    this.bufferingResponseBody = false;
    if (st === D.Continue) this.responseBodyRef = null;
    else if (st === D.StopBuffer) this.bufferingResponseBody = true;
    return st;
  }

  encodeTrailers(map: HeaderMap): T {
    if (!this.inVmContextCreated || this.failureLocalReplySent) return T.Continue;
    this.responseTrailers = map;
    const st = this.callTrailers('proxy_on_response_trailers', this.vm.fns.on_response_trailers, map.size);
    if (st === T.Continue) this.responseTrailers = null;
    return st;
  }

  /** Envoy Context::log (access log phase) -> proxy_on_log. */
  accessLog(req: HeaderMap | null, resp: HeaderMap | null, respTrailers: HeaderMap | null): void {
    if (!this.inVmContextCreated) this.onCreate();
    this.logPhase = true;
    this.accessLogRequestHeaders = req;
    this.accessLogResponseHeaders = resp;
    this.accessLogResponseTrailers = respTrailers;
    const vm = this.vm;
    try {
      if (!vm.failed && vm.fns.on_log) {
        this.stream.trace('on_log');
        try {
          vm.call(this, 'proxy_on_log', vm.fns.on_log, this.id);
        } finally {
          vm.runAfterCallActions();
        }
      }
    } finally {
      this.logPhase = false;
      this.accessLogRequestHeaders = this.accessLogResponseHeaders = this.accessLogResponseTrailers = null;
    }
  }

  /** Envoy Context::onDestroy -> proxy_on_done, proxy_on_delete; then the context is gone. */
  onDestroy(): void {
    const vm = this.vm;
    if (!this.destroyed && this.inVmContextCreated) {
      this.destroyed = true;
      if (!vm.failed && vm.fns.on_done) {
        this.stream.trace('on_done');
        try {
          vm.call(this, 'proxy_on_done', vm.fns.on_done, this.id);
        } finally {
          vm.runAfterCallActions();
        }
      }
      if (this.inVmContextCreated && !vm.failed && vm.fns.on_delete) {
        this.stream.trace('on_delete');
        try {
          vm.call(this, 'proxy_on_delete', vm.fns.on_delete, this.id);
        } finally {
          vm.runAfterCallActions();
        }
      }
    }
    this.destroyed = true;
    // The Context object (and so its id in cpp-host's context map) lives on until the connection
    // manager's deferred delete of the stream runs at the end of the dispatcher pass: work posted
    // before that (e.g. a queue notification sent from this stream's own on_done) can still
    // resolve the id with proxy_set_effective_context.
    vm.host.post(() => vm.contexts.delete(this.id));
  }
}

export type StreamMode = 'filter' | 'absent' | 'fail-closed';

/**
 * What a front playing Envoy's codec and router needs to hear about, including changes that
 * happen outside its own calls into the stream (a root context resuming or answering the stream
 * from a tick or an http call answer). Called synchronously, right after the change.
 */
export interface StreamObserver {
  /** The whole request has left the filter (upstream.endStream): the router can send it. */
  upstreamRequestComplete?(s: HttpStream): void;
  /**
   * The router abandons an upstream request it had started: a local reply (the filter's, the
   * buffer limit's or a VM failure's) or a stream reset came after the request headers had gone
   * upstream. `s.upstreamAborted` says which. The front must abort its upstream request.
   */
  upstreamReset?(s: HttpStream): void;
  /** Something new for the client in `s.downstream`: headers, body, end of stream, or a reset. */
  downstream?(s: HttpStream): void;
}

export interface StreamOwner {
  readonly plugin: PluginInfo;
  onStreamDone(s: HttpStream): void;
  warn(message: string): void;
  violation(kind: ViolationRecord['kind'], contextId: number, message: string): void;
}

export class HttpStream {
  readonly dec = new Direction('request');
  readonly enc = new Direction('response');
  /** What the upstream (router) received: headers as they left the filter, body, trailers. */
  readonly upstream = new Received();
  /** What the client received. */
  readonly downstream = new Received();
  /** Set when a local reply (from the module, the host's buffer limit, or VM failure) answered the stream. */
  localReply: LocalReply | null = null;
  /** Response code details recorded on the stream (e.g. "wasm_fail_stream"). */
  details: string | null = null;
  /** Names of the module callbacks invoked for this stream, in order. */
  readonly callbacks: string[] = [];
  /** True once the buffer limit was crossed while watermarking (Envoy would apply backpressure). */
  backpressure = false;
  done = false;
  readonly ctx: StreamContext | null;
  readonly startTimeMs: number;
  bytesReceived = 0;
  bytesSent = 0;
  /** Set by a front that wants to hear about changes (see StreamObserver). */
  observer: StreamObserver | null = null;
  /**
   * Why the router abandoned an upstream request that had started (request headers had gone
   * upstream): 'local-reply' (answered locally, e.g. from a root context after an http call) or
   * 'reset' (stream reset). null while the upstream exchange is not abandoned.
   */
  upstreamAborted: 'local-reply' | 'reset' | null = null;
  private localReplyPending: { code: number; details: string; grpcStatus: number | null } | null = null;
  private responseFromUpstream = true;

  constructor(
    readonly owner: StreamOwner,
    readonly env: StreamEnvironment,
    readonly mode: StreamMode,
    vm: WasmVm | null,
    root: RootContext | null,
  ) {
    this.ctx = mode === 'filter' && vm && root ? new StreamContext(vm, root, this) : null;
    this.startTimeMs = env.startTimeMs;
  }

  /** Context id the module sees for this stream (0 when no VM context exists). */
  get contextId(): number {
    return this.ctx?.id ?? 0;
  }

  /** Where the stream stands, for assertions. */
  get state(): 'open' | 'request-paused' | 'response-paused' | 'local-reply' | 'complete' | 'reset' {
    if (this.done) return this.localReply ? 'local-reply' : this.downstream.reset ? 'reset' : 'complete';
    if (this.requestPaused) return 'request-paused';
    if (this.responsePaused) return 'response-paused';
    return 'open';
  }

  get requestPaused(): boolean {
    return !this.done && this.dec.headersReceived && this.dec.iter !== 'continue';
  }

  get responsePaused(): boolean {
    return !this.done && this.enc.headersReceived && this.enc.iter !== 'continue';
  }

  trace(cb: string): void {
    this.callbacks.push(cb);
  }

  // ---------------- input from the test (downstream client / upstream server) ----------------

  requestHeaders(headers: HeaderInput, endStream = false): this {
    if (this.done || this.dec.closed) return this;
    if (this.dec.headersReceived) throw new Error('request headers already sent on this stream');
    const map = HeaderMap.from(headers);
    this.dec.headers = map;
    this.dec.headersReceived = true;
    this.dec.complete = endStream;
    if (this.mode === 'fail-closed') {
      // Envoy's empty Context: onRequestHeaders hits CHECK_FAIL -> failStream.
      this.failStream();
      return this;
    }
    if (!this.ctx) {
      this.dec.headersContinued = true;
      this.forwardHeaders(this.dec, map, endStream);
      return this;
    }
    this.dec.inCallback = true;
    const st = this.ctx.decodeHeaders(map, endStream);
    this.dec.inCallback = false;
    if (this.dec.closed || this.done) return this;
    this.afterHeaders(this.dec, st, map, endStream);
    return this;
  }

  requestBody(chunk: string | Uint8Array, endStream = false): this {
    if (this.done || this.dec.closed) return this;
    if (!this.dec.headersReceived) throw new Error('request body before request headers');
    const bytes = typeof chunk === 'string' ? toBytes(chunk) : chunk.slice();
    this.bytesReceived += bytes.length;
    this.onData(this.dec, new BodyBuffer(bytes), endStream);
    return this;
  }

  requestTrailers(trailers: HeaderInput): this {
    if (this.done || this.dec.closed) return this;
    this.onTrailers(this.dec, HeaderMap.from(trailers));
    return this;
  }

  responseHeaders(headers: HeaderInput, endStream = false): this {
    if (this.done || this.enc.closed || !this.responseFromUpstream) return this;
    if (this.enc.headersReceived) throw new Error('response headers already sent on this stream');
    this.details ??= 'via_upstream'; // what the router records for proxied responses
    this.encodeHeadersInto(HeaderMap.from(headers), endStream);
    return this;
  }

  responseBody(chunk: string | Uint8Array, endStream = false): this {
    if (this.done || this.enc.closed || !this.responseFromUpstream) return this;
    if (!this.enc.headersReceived) throw new Error('response body before response headers');
    const bytes = typeof chunk === 'string' ? toBytes(chunk) : chunk.slice();
    this.onData(this.enc, new BodyBuffer(bytes), endStream);
    return this;
  }

  responseTrailers(trailers: HeaderInput): this {
    if (this.done || this.enc.closed || !this.responseFromUpstream) return this;
    this.onTrailers(this.enc, HeaderMap.from(trailers));
    return this;
  }

  /** The client goes away (downstream reset): the stream ends where it is. */
  reset(): this {
    if (!this.done) this.resetStream();
    return this;
  }

  /** Finish the stream now if it is still open (a client disconnect). */
  end(): this {
    return this.reset();
  }

  // ---------------- FilterManager ----------------

  private encodeHeadersInto(map: HeaderMap, eos: boolean): void {
    const e = this.enc;
    e.headers = map;
    e.headersReceived = true;
    e.complete = eos;
    if (!this.ctx) {
      e.headersContinued = true;
      this.forwardHeaders(e, map, eos);
      return;
    }
    e.inCallback = true;
    const st = this.ctx.encodeHeaders(map, eos);
    e.inCallback = false;
    if (e.closed || this.done) return;
    this.afterHeaders(e, st, map, eos);
  }

  private afterHeaders(dir: Direction, st: H, map: HeaderMap, eos: boolean): void {
    switch (st) {
      case H.Continue:
        if (!dir.headersContinued) {
          dir.headersContinued = true;
          this.forwardHeaders(dir, map, eos);
        }
        break;
      case H.StopIteration:
        dir.iter = 'stopSingle';
        break;
      case H.StopAllBuffer:
        dir.iter = 'stopAllBuffer';
        break;
      case H.StopAllWatermark:
        dir.iter = 'stopAllWatermark';
        break;
    }
    this.applyPendingContinue(dir);
  }

  private onData(dir: Direction, chunk: BodyBuffer, eos: boolean): void {
    if (eos) dir.complete = true;
    if (!this.ctx) {
      this.forwardData(dir, chunk, eos);
      return;
    }
    if (dir.stoppedAll) {
      // handleDataIfStopAll: buffered by the FilterManager, the filter is not called.
      dir.streaming = dir.iter === 'stopAllWatermark';
      this.bufferData(dir, chunk);
      this.checkLimit(dir);
      return;
    }
    this.runDataCallback(dir, chunk, eos);
  }

  private runDataCallback(dir: Direction, data: BodyBuffer, eos: boolean): void {
    const ctx = this.ctx!;
    dir.inCallback = true;
    const st = dir === this.dec ? ctx.decodeData(data, eos) : ctx.encodeData(data, eos);
    dir.inCallback = false;
    if (dir.closed || this.done) return;
    this.afterData(dir, st, data, eos);
    this.applyPendingContinue(dir);
  }

  /** commonHandleAfterDataCallback. */
  private afterData(dir: Direction, st: D, provided: BodyBuffer, eos: boolean): void {
    const added = dir.addedTrailers;
    dir.addedTrailers = null;
    if (st === D.Continue) {
      if (dir.iter === 'stopSingle') {
        if (added) dir.pendingTrailers = added;
        this.bufferData(dir, provided);
        this.commonContinue(dir);
        return;
      }
      if (provided === dir.buffered) dir.buffered = null;
      if (added) {
        this.forwardData(dir, provided, false);
        this.forwardTrailers(dir, added);
      } else {
        this.forwardData(dir, provided, eos);
      }
      return;
    }
    dir.iter = 'stopSingle';
    if (added) dir.pendingTrailers = added;
    if (st === D.StopBuffer || st === D.StopWatermark) {
      dir.streaming = st === D.StopWatermark;
      this.bufferData(dir, provided);
      this.checkLimit(dir);
    } else {
      // StopIterationNoBuffer: the chunk is consumed. A zero-byte end-of-stream
      // frame still has to be re-sent when iteration resumes.
      if (provided !== dir.buffered) provided.clear();
      if (dir.complete && !dir.pendingTrailers && !dir.buffered) dir.buffered = new BodyBuffer();
    }
  }

  private onTrailers(dir: Direction, map: HeaderMap): void {
    dir.complete = true;
    if (!this.ctx) {
      this.forwardTrailers(dir, map);
      return;
    }
    dir.pendingTrailers = map;
    if (dir.stoppedAll) return;
    this.runTrailersCallback(dir, map);
  }

  private runTrailersCallback(dir: Direction, map: HeaderMap): void {
    const ctx = this.ctx!;
    dir.inCallback = true;
    const st = dir === this.dec ? ctx.decodeTrailers(map) : ctx.encodeTrailers(map);
    dir.inCallback = false;
    if (dir.closed || this.done) return;
    if (st === T.Continue) {
      if (dir.iter === 'stopSingle') {
        this.commonContinue(dir);
      } else {
        dir.pendingTrailers = null;
        this.forwardTrailers(dir, map);
      }
    } else if (dir.iter === 'continue') {
      dir.iter = 'stopSingle';
    }
    this.applyPendingContinue(dir);
  }

  /** commonHandleBufferData: move the chunk into the FilterManager's buffer. */
  bufferData(dir: Direction, data: BodyBuffer): void {
    if (data === dir.buffered) return;
    if (!dir.buffered) dir.buffered = new BodyBuffer();
    dir.buffered.moveFrom(data);
  }

  /** The buffered body crossed the connection's buffer limit? */
  checkLimit(dir: Direction): void {
    const limit = this.env.bufferLimitBytes;
    if (!dir.buffered || dir.aboveLimit || dir.buffered.length <= limit) return;
    dir.aboveLimit = true;
    if (dir.streaming) {
      this.backpressure = true;
      return;
    }
    if (dir === this.dec) {
      this.sendLocalReply(413, toBytes('Payload Too Large'), null, null, 'request_payload_too_large');
    } else {
      this.sendLocalReply(500, toBytes('Internal Server Error'), null, null, 'response_payload_too_large');
    }
  }

  /** continueDecoding()/continueEncoding() requested by the module. */
  continueDirection(dir: Direction): void {
    // After the reply completed Envoy's canContinue() is false: nothing happens.
    if (this.done) return;
    if (dir.inCallback) {
      // Resuming from inside the same direction's callback is a misuse in Envoy
      // (debug builds assert); it takes effect once the callback has returned.
      this.owner.warn(`continue_stream(${dir.name}) called from inside the ${dir.name} callback; applied after it returns`);
      this.owner.violation('continue-in-own-callback', this.contextId, `continue_stream(${dir.name}) from inside the ${dir.name} callback`);
      dir.pendingContinue = true;
      return;
    }
    if (dir.iter === 'continue') {
      // commonContinue() asserts !canIterate() (debug builds); a release build does nothing.
      this.owner.violation('continue-after-continue', this.contextId, `continue_stream(${dir.name}) on a ${dir.name} that is not stopped (already continued)`);
      return;
    }
    if (dir === this.dec && dir.closed && this.localReplyPending) {
      // A local reply is being encoded (this action runs nested in the module's own response
      // callbacks for it: after-call actions share one queue, proxy-wasm-cpp-host issue 326).
      // Envoy's decoder canContinue() is only !local_complete_, so the request goes upstream now;
      // the router is torn down, and the upstream request reset, when the reply completes.
      this.owner.violation(
        'continue-during-local-reply',
        this.contextId,
        'continue_stream(request) ran while this stream\'s local reply was being sent: the request goes upstream and is reset when the reply completes',
      );
      this.commonContinue(dir, true);
      return;
    }
    this.commonContinue(dir);
  }

  private applyPendingContinue(dir: Direction): void {
    if (dir.pendingContinue) {
      dir.pendingContinue = false;
      this.commonContinue(dir);
    }
  }

  /** ActiveStreamFilterBase::commonContinue (`duringLocalReply`: see continueDirection). */
  private commonContinue(dir: Direction, duringLocalReply = false): void {
    const stopped = () => this.done || (dir.closed && !duringLocalReply);
    if (stopped()) return;
    if (dir.iter === 'continue') return;
    // After StopAll* the buffered body (and trailers) go through this filter
    // first; after a single-iteration stop they go straight to the next hop.
    dir.iterateFromCurrent = dir.stoppedAll;
    dir.iter = 'continue';
    if (!dir.headersContinued) {
      dir.headersContinued = true;
      this.forwardHeaders(dir, dir.headers!, dir.complete && !dir.buffered && !dir.pendingTrailers);
      if (stopped()) return;
    }
    const hadTrailers = dir.pendingTrailers !== null;
    if (dir.buffered) {
      const eos = dir.complete && !hadTrailers;
      if (dir.iterateFromCurrent) {
        this.runDataCallback(dir, dir.buffered, eos);
      } else {
        const buf = dir.buffered;
        dir.buffered = null;
        this.forwardData(dir, buf, eos);
      }
      if (stopped()) return;
    }
    if (hadTrailers && dir.pendingTrailers) {
      if (dir.iterateFromCurrent) {
        this.runTrailersCallback(dir, dir.pendingTrailers);
      } else if (dir.iter === 'continue') {
        const t = dir.pendingTrailers;
        dir.pendingTrailers = null;
        this.forwardTrailers(dir, t);
      }
    }
    dir.iterateFromCurrent = false;
  }

  // ---------------- the next hop: router (upstream) or codec (downstream) ----------------

  private forwardHeaders(dir: Direction, map: HeaderMap, eos: boolean): void {
    const sink = dir === this.dec ? this.upstream : this.downstream;
    sink.headers = map.pairs();
    if (dir === this.enc) this.noteResponseHeaders(map);
    if (eos) this.endOf(dir, sink);
    else if (dir === this.enc) this.observer?.downstream?.(this);
  }

  private forwardData(dir: Direction, data: BodyBuffer, eos: boolean): void {
    const sink = dir === this.dec ? this.upstream : this.downstream;
    if (dir === this.enc) this.bytesSent += data.length;
    sink.bodyBuffer.moveFrom(data);
    if (eos) this.endOf(dir, sink);
    else if (dir === this.enc) this.observer?.downstream?.(this);
  }

  private forwardTrailers(dir: Direction, map: HeaderMap): void {
    const sink = dir === this.dec ? this.upstream : this.downstream;
    sink.trailers = map.pairs();
    this.endOf(dir, sink);
  }

  private endOf(dir: Direction, sink: Received): void {
    sink.endStream = true;
    if (dir === this.enc) {
      this.finish();
      this.observer?.downstream?.(this);
    } else {
      this.observer?.upstreamRequestComplete?.(this);
    }
  }

  /** The router drops the upstream request it started (FilterManager destroys the router filter). */
  private abandonUpstream(why: 'local-reply' | 'reset'): void {
    if (!this.upstream.headers || this.upstream.reset) return;
    this.upstream.reset = true;
    this.upstreamAborted = why;
    this.observer?.upstreamReset?.(this);
  }

  private noteResponseHeaders(map: HeaderMap): void {
    const st = Number(map.get(':status'));
    if (Number.isFinite(st)) this.responseCode = st;
  }

  responseCode: number | null = null;

  // ---------------- local replies, failure, reset ----------------

  /** FilterManager::sendLocalReply. */
  sendLocalReply(code: number, body: Uint8Array, extra: Array<[string, string]> | null, grpcStatus: number | null, details: string): void {
    if (this.done || this.localReplyPending) return;
    this.details = details;
    this.dec.closed = true;
    this.abandonUpstream('local-reply');
    const isHead = this.dec.headers?.get(':method') === 'HEAD';
    const headers = new HeaderMap();
    headers.add(':status', String(code));
    if (extra) for (const [k, v] of extra) headers.add(k, v);
    const sendBody = body.length > 0 && !isHead;
    if (sendBody) {
      headers.set('content-length', String(body.length));
      if (!headers.has('content-type')) headers.set('content-type', 'text/plain');
    } else {
      headers.remove('content-length');
      headers.remove('content-type');
    }
    if (this.enc.headersReceived && this.enc.headersContinued) {
      // Response headers already went to the client: all Envoy can do is reset.
      this.resetStream();
      return;
    }
    this.localReplyPending = { code, details, grpcStatus };
    if (!this.enc.headersReceived) {
      // Response not started: the reply runs through the encoder filters,
      // so the module's on_response_* callbacks see (and may modify) it.
      this.responseFromUpstream = false;
      this.encodeHeadersInto(headers, !sendBody);
      if (sendBody && !this.done && !this.enc.closed) this.onData(this.enc, new BodyBuffer(body.slice()), true);
    } else {
      // Response started but not yet sent: reply directly, bypassing filters.
      this.enc.closed = true;
      this.downstream.headers = headers.pairs();
      this.noteResponseHeaders(headers);
      if (sendBody) {
        this.downstream.bodyBuffer.clear();
        this.downstream.bodyBuffer.append(body.slice());
        this.bytesSent = body.length;
      }
      this.downstream.endStream = true;
      this.finish();
      this.observer?.downstream?.(this);
    }
  }

  /** Context::failStream for both directions after a VM failure (fail closed). */
  failStream(): void {
    const ctx = this.ctx;
    if (ctx) {
      if (ctx.failureLocalReplySent) return;
      ctx.failureLocalReplySent = true;
    }
    this.sendLocalReply(503, EMPTY, null, 14, 'wasm_fail_stream');
  }

  /** Stream reset (close_stream, client reset, or a reply that can no longer be sent). */
  resetStream(): void {
    if (this.done) return;
    this.dec.closed = true;
    this.enc.closed = true;
    this.downstream.reset = true;
    // The router abandons an upstream exchange that has not completed.
    this.abandonUpstream('reset');
    this.finish();
    this.observer?.downstream?.(this);
  }

  /** doDeferredStreamDestroy: access log (on_log), then filter destroy (on_done, on_delete). */
  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.dec.closed = true;
    this.enc.closed = true;
    if (this.localReplyPending) {
      const p = this.localReplyPending;
      this.localReply = {
        status: this.responseCode ?? p.code,
        headers: this.downstream.headers ?? [],
        body: this.downstream.body,
        bodyText: this.downstream.bodyText,
        details: p.details,
        grpcStatus: p.grpcStatus,
      };
    }
    const ctx = this.ctx;
    if (ctx) {
      ctx.accessLog(this.dec.headers, this.enc.headers, this.enc.pendingTrailers ?? this.mapOrNull(this.downstream.trailers));
      ctx.onDestroy();
    }
    // destroyFilters() reaches the router after the Wasm filter: an upstream request that started
    // while a local reply was being sent is reset now.
    if (this.localReplyPending) this.abandonUpstream('local-reply');
    this.owner.onStreamDone(this);
  }

  private mapOrNull(p: Pairs | null): HeaderMap | null {
    return p ? HeaderMap.from(p) : null;
  }
}
