// Contexts as cpp-host models them (ContextBase) with Envoy's overrides
// (Envoy's Wasm Context) for everything that is not HTTP-stream specific.
//
//  - VmContext (id 0): current while _initialize and malloc run.
//  - RootContext: one per plugin per VM; receives on_vm_start, on_configure,
//    on_tick, on_queue_ready, on_http_call_response; owns outbound calls and
//    the tick timer of its plugin.
//  - StreamContext (http-stream.ts): one per HTTP stream.
//
// Every call into the module that cpp-host wraps in DeferAfterCallActions
// runs the VM's deferred actions (local replies, continue/close) right after
// the module returns.

import { BufferType, HeaderMapType, StreamType, WasmResult } from './abi.ts';
import type { BodyBuffer } from './buffer.ts';
import type { HeaderMap } from './header-map.ts';
import type { PluginInfo } from './plugin.ts';
import type { StreamContext } from './http-stream.ts';
import type { WasmVm } from './vm.ts';

export const EMPTY = new Uint8Array(0);

/** A completed outbound call as the root context sees it during on_http_call_response. */
export interface HttpCallResponseView {
  headers: HeaderMap;
  body: Uint8Array;
  trailers: HeaderMap | null;
}

export abstract class Context {
  /** in_vm_context_created_: proxy_on_context_create has run (or was skipped on a failed VM). */
  inVmContextCreated = false;

  constructor(readonly vm: WasmVm, readonly id: number) {}

  abstract get isRoot(): boolean;
  abstract get plugin(): PluginInfo | null;
  /** The root context this context belongs to (the VM context is its own root). */
  abstract root(): Context;

  /** Envoy's log prefix: " root_id vm_id" for roots, " name root_id vm_id" for streams. */
  abstract get logPrefix(): string;

  asStream(): StreamContext | null {
    return null;
  }

  asRoot(): RootContext | null {
    return null;
  }

  get rootId(): string {
    return this.plugin?.rootId ?? '';
  }

  /** Mutable header map (Envoy Context::getMap). */
  getMap(_type: number): HeaderMap | null {
    return null;
  }

  /** Readable header map (Envoy Context::getConstMap). */
  getConstMap(type: number): HeaderMap | null {
    const root = this.root().asRoot();
    if (type === HeaderMapType.HttpCallResponseHeaders) return root?.httpCallResponse?.headers ?? null;
    if (type === HeaderMapType.HttpCallResponseTrailers) return root?.httpCallResponse?.trailers ?? null;
    return null;
  }

  get accessLogPhase(): boolean {
    return false;
  }

  /** Configuration visible to proxy_get_buffer_bytes(PluginConfiguration): only while configuring. */
  tempPluginConfig: Uint8Array | null = null;

  /**
   * Envoy Context::getBuffer. A BodyBuffer is mutable; a Uint8Array is
   * read-only (set_buffer_bytes -> BadArgument); null means NotFound.
   * Bodies and network data that do not exist right now read as empty.
   */
  getBuffer(type: number): BodyBuffer | Uint8Array | null {
    switch (type) {
      case BufferType.VmConfiguration:
        return this.vm.group.vmConfiguration;
      case BufferType.PluginConfiguration:
        return this.tempPluginConfig;
      case BufferType.HttpCallResponseBody:
        return this.root().asRoot()?.httpCallResponse?.body ?? null;
      case BufferType.HttpRequestBody:
      case BufferType.HttpResponseBody:
      case BufferType.NetworkDownstreamData:
      case BufferType.NetworkUpstreamData:
      case BufferType.GrpcReceiveBuffer:
      case BufferType.CallData:
        return EMPTY;
      default:
        return null;
    }
  }

  /** Records a read or write of a body Envoy no longer holds for the filter (see StreamContext). */
  checkStaleBody(_type: number, _op: 'read' | 'write'): void {}

  /** Envoy Context::continueStream for contexts without HTTP callbacks. */
  continueStream(type: number): number {
    if (type === StreamType.Upstream) return WasmResult.Unimplemented;
    return WasmResult.Ok;
  }

  closeStream(_type: number): number {
    return WasmResult.Ok;
  }

  /** Without decoder callbacks Envoy's sendLocalResponse does nothing (but returns Ok). */
  sendLocalResponse(_code: number, _body: Uint8Array, _headers: Array<[string, string]>, _grpc: number, _details: string): void {}

  /** Stream-level filter state for set_property; only streams have one. */
  get filterState(): Map<string, Uint8Array> | null {
    return null;
  }
}

export class VmContext extends Context {
  constructor(vm: WasmVm) {
    super(vm, 0);
  }
  get isRoot(): boolean {
    return true;
  }
  get plugin(): PluginInfo | null {
    return null;
  }
  root(): Context {
    return this;
  }
  get logPrefix(): string {
    return '';
  }
}

export class RootContext extends Context {
  /** Set while on_http_call_response runs (Envoy's http_call_response_). */
  httpCallResponse: HttpCallResponseView | null = null;
  /** Envoy's status_code_/status_message_ for proxy_get_status. */
  statusCode = 0;
  statusMessage = '';
  /** Outbound HTTP calls in flight, by token. */
  readonly httpCalls = new Map<number, { cancel(): void }>();
  /** True after on_done returned false during shutdown, until proxy_done. */
  pendingDone = false;
  readonly prefix: string;

  constructor(vm: WasmVm, readonly pluginInfo: PluginInfo) {
    super(vm, vm.allocContextId());
    vm.contexts.set(this.id, this);
    this.prefix = `${pluginInfo.rootId ? ` ${pluginInfo.rootId}` : ''}${pluginInfo.vmId ? ` ${pluginInfo.vmId}` : ''}`;
  }

  get isRoot(): boolean {
    return true;
  }
  get plugin(): PluginInfo {
    return this.pluginInfo;
  }
  root(): Context {
    return this;
  }
  asRoot(): RootContext {
    return this;
  }
  get logPrefix(): string {
    return this.prefix;
  }

  private deferred<T>(f: () => T): T {
    try {
      return f();
    } finally {
      this.vm.runAfterCallActions();
    }
  }

  /** ContextBase::onStart: on_context_create(root, 0) then on_vm_start(root, vm_config_size). */
  onStart(): boolean {
    const vm = this.vm;
    return this.deferred(() => {
      if (vm.fns.on_context_create) {
        this.tempPluginConfig = this.pluginInfo.configuration;
        vm.call(this, 'proxy_on_context_create', vm.fns.on_context_create, this.id, 0);
        this.inVmContextCreated = true;
        this.tempPluginConfig = null;
      }
      if (vm.fns.on_vm_start) {
        return vm.call(this, 'proxy_on_vm_start', vm.fns.on_vm_start, this.id, vm.group.vmConfiguration.length) !== 0;
      }
      return true;
    });
  }

  /** ContextBase::onConfigure: on_configure(root, plugin_config_size); a failed VM "succeeds". */
  onConfigure(): boolean {
    const vm = this.vm;
    if (vm.failed) return true;
    if (!this.inVmContextCreated && vm.fns.on_context_create) {
      this.deferred(() => vm.call(this, 'proxy_on_context_create', vm.fns.on_context_create!, this.id, 0));
    }
    this.inVmContextCreated = true;
    if (!vm.fns.on_configure) return true;
    return this.deferred(() => {
      this.tempPluginConfig = this.pluginInfo.configuration;
      try {
        return vm.call(this, 'proxy_on_configure', vm.fns.on_configure!, this.id, this.pluginInfo.configuration.length) !== 0;
      } finally {
        this.tempPluginConfig = null;
      }
    });
  }

  onTick(): void {
    const vm = this.vm;
    if (vm.failed || !vm.fns.on_tick) return;
    this.deferred(() => vm.call(this, 'proxy_on_tick', vm.fns.on_tick!, this.id));
  }

  onQueueReady(token: number): void {
    const vm = this.vm;
    if (vm.failed || !vm.fns.on_queue_ready) return;
    this.deferred(() => vm.call(this, 'proxy_on_queue_ready', vm.fns.on_queue_ready!, this.id, token));
  }

  onHttpCallResponse(token: number, headers: number, bodySize: number, trailers: number): void {
    const vm = this.vm;
    if (vm.failed || !vm.fns.on_http_call_response) return;
    this.deferred(() =>
      vm.call(this, 'proxy_on_http_call_response', vm.fns.on_http_call_response!, this.id, token, headers, bodySize, trailers),
    );
  }

  onResolveDns(token: number, size: number): void {
    const vm = this.vm;
    if (vm.failed || !vm.fns.envoy_on_resolve_dns) return;
    this.deferred(() => vm.call(this, 'envoy_on_resolve_dns', vm.fns.envoy_on_resolve_dns!, this.id, token, size));
  }

  onDone(): boolean {
    const vm = this.vm;
    if (vm.failed || !vm.fns.on_done) return true;
    return this.deferred(() => vm.call(this, 'proxy_on_done', vm.fns.on_done!, this.id) !== 0);
  }

  onDelete(): void {
    const vm = this.vm;
    if (this.inVmContextCreated && !vm.failed && vm.fns.on_delete) {
      this.deferred(() => vm.call(this, 'proxy_on_delete', vm.fns.on_delete!, this.id));
    }
    vm.contexts.delete(this.id);
    // Envoy's ~Context cancels outstanding requests: their callbacks never come.
    for (const call of this.httpCalls.values()) call.cancel();
    this.httpCalls.clear();
  }
}
