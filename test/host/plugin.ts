// A plugin = one Envoy Wasm filter config (name, root_id, configuration,
// fail_open, allow_on_headers_stop_iteration) bound to a VM group, with one
// root context in each worker VM. A Worker is that plugin on one worker thread:
// the place where HTTP streams are created.

import { LogLevel, type LogLevelName } from './abi.ts';
import { RootContext } from './context.ts';
import type { ClusterDecl, HttpCallHandler } from './http-call.ts';
import { HttpStream, type StreamEnvironment, type StreamMode, type StreamOwner } from './http-stream.ts';
import type { ProxyWasmHost, ViolationRecord } from './host.ts';
import type { LogEntry } from './logs.ts';
import type { PropertyValue } from './properties.ts';
import { runRequest, runRequestSync, type RequestOptions, type RequestResult } from './request.ts';
import type { VmGroup } from './vm-group.ts';
import type { WasmVm } from './vm.ts';

export interface PluginOptions {
  /** The compiled module. */
  wasm: Uint8Array;
  /** Filter config `name` (reported as plugin_name). */
  name?: string;
  /** `root_id` (plugin_root_id). Default "". */
  rootId?: string;
  /** `vm_config.vm_id` (plugin_vm_id; scopes shared data and queues). Default "". */
  vmId?: string;
  /** Plugin `configuration` (read in proxy_on_configure). */
  configuration?: string | Uint8Array;
  /** `vm_config.configuration` (read in proxy_on_vm_start). */
  vmConfiguration?: string | Uint8Array;
  /** `vm_config.environment_variables.key_values`, visible through WASI environ. */
  env?: Record<string, string>;
  /** Worker threads (Envoy --concurrency). Default: the host's `workers`. */
  workers?: number;
  /** `allow_on_headers_stop_iteration` (default false, as in Envoy). */
  allowOnHeadersStopIteration?: boolean;
  /** `fail_open` (default false: a failed VM answers 503). */
  failOpen?: boolean;
  /** Per-connection buffer limit; buffering beyond it answers 413 (default 1 MiB). */
  bufferLimitBytes?: number;
  /** Upstream for this plugin's proxy_http_call (default: the host's). */
  httpCallHandler?: HttpCallHandler;
  /**
   * Clusters this plugin's calls may name, looked up before the host's: names (static clusters)
   * or `{ name, type: 'original_dst', httpHeaderName }` (see http-call.ts).
   */
  clusters?: ClusterDecl[];
  /** Level of the `wasm` logger for this plugin's contexts (default: the host's). */
  logLevel?: LogLevelName;
  /** Extra values for proxy_get_property, keyed by dotted path ("xds.cluster_name") or top-level name. */
  properties?: Record<string, PropertyValue>;
  /** Downstream connection details for streams. */
  connection?: { sourceAddress?: string; destinationAddress?: string; protocol?: string };
}

/** What contexts need to know about their plugin. */
export interface PluginInfo {
  readonly name: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly key: string;
  readonly configuration: Uint8Array;
  readonly failOpen: boolean;
  readonly allowOnHeadersStopIteration: boolean;
  readonly logPrefix: string;
  readonly logLevel: number;
  readonly properties?: Record<string, PropertyValue>;
  readonly httpCallHandler?: HttpCallHandler;
  readonly clusters?: ClusterDecl[];
  readonly logs: LogEntry[];
}

const enc = new TextEncoder();

export class Plugin implements PluginInfo {
  readonly name: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly key: string;
  readonly configuration: Uint8Array;
  readonly failOpen: boolean;
  readonly allowOnHeadersStopIteration: boolean;
  readonly logPrefix: string;
  readonly logLevel: number;
  readonly properties?: Record<string, PropertyValue>;
  readonly httpCallHandler?: HttpCallHandler;
  readonly clusters?: ClusterDecl[];
  readonly bufferLimitBytes: number;
  /** Everything this plugin's contexts logged (subject to the log level). */
  readonly logs: LogEntry[] = [];
  readonly workers: Worker[] = [];
  private static seq = 0;

  constructor(readonly host: ProxyWasmHost, readonly group: VmGroup, readonly options: PluginOptions) {
    this.name = options.name ?? '';
    this.rootId = options.rootId ?? '';
    this.vmId = options.vmId ?? '';
    this.configuration = typeof options.configuration === 'string' ? enc.encode(options.configuration) : options.configuration ?? new Uint8Array(0);
    this.failOpen = options.failOpen ?? false;
    this.allowOnHeadersStopIteration = options.allowOnHeadersStopIteration ?? false;
    this.bufferLimitBytes = options.bufferLimitBytes ?? 1024 * 1024;
    this.logLevel = LogLevel[options.logLevel ?? host.options.logLevel ?? 'info'];
    this.properties = options.properties;
    this.httpCallHandler = options.httpCallHandler;
    this.clusters = options.clusters;
    this.key = `${this.name}\u0000${this.rootId}\u0000${Plugin.seq++}`;
    this.logPrefix = ['', this.name, this.rootId, this.vmId].filter((p, i) => i === 0 || p !== '').join(' ');
  }

  worker(i: number): Worker {
    const w = this.workers[i];
    if (!w) throw new RangeError(`plugin ${this.name} has ${this.workers.length} worker(s); no worker ${i}`);
    return w;
  }

  /** Start this plugin in a VM (start + configure); returns the failure reason or null. */
  startIn(vm: WasmVm): { root: RootContext; error: string | null } {
    const root = new RootContext(vm, this);
    vm.roots.set(this.key, root);
    if (!root.onStart()) return { root, error: 'Failed to start thread-local Wasm (proxy_on_vm_start returned false or trapped)' };
    if (!root.onConfigure()) return { root, error: 'Failed to configure thread-local Wasm plugin (proxy_on_configure returned false)' };
    if (vm.failed) return { root, error: `Wasm VM failed while starting: ${vm.failMessage}` };
    return { root, error: null };
  }
}

export interface StreamOptions {
  connectionId?: number;
  sourceAddress?: string;
}

export class Worker implements StreamOwner {
  /** Streams that have not finished yet. */
  readonly openStreams = new Set<HttpStream>();
  streamsCreated = 0;

  constructor(readonly plugin: Plugin, readonly index: number, readonly vm: WasmVm, readonly root: RootContext) {}

  get host(): ProxyWasmHost {
    return this.plugin.host;
  }

  /** True once this worker's VM has failed (trap, proc_exit, ...). */
  get failed(): boolean {
    return this.vm.failed;
  }

  newHttpStream(opts: StreamOptions = {}): HttpStream {
    const host = this.plugin.host;
    const conn = this.plugin.options.connection ?? {};
    const env: StreamEnvironment = {
      bufferLimitBytes: this.plugin.bufferLimitBytes,
      connectionId: opts.connectionId ?? host.nextConnectionId(),
      sourceAddress: opts.sourceAddress ?? conn.sourceAddress ?? '127.0.0.1:50000',
      destinationAddress: conn.destinationAddress ?? '127.0.0.1:10000',
      protocol: conn.protocol ?? 'HTTP/1.1',
      startTimeMs: host.clock.nowMs(),
    };
    // Envoy's FilterConfig::createFilter: a failed VM means no filter (fail
    // open) or an empty Context that fails every stream (fail closed).
    let mode: StreamMode = 'filter';
    if (this.vm.failed) mode = this.plugin.failOpen ? 'absent' : 'fail-closed';
    const s = new HttpStream(this, env, mode, mode === 'filter' ? this.vm : null, mode === 'filter' ? this.root : null);
    this.streamsCreated++;
    this.openStreams.add(s);
    return s;
  }

  onStreamDone(s: HttpStream): void {
    this.openStreams.delete(s);
  }

  warn(message: string): void {
    this.vm.hostLog(3, message);
  }

  violation(kind: ViolationRecord['kind'], contextId: number, message: string): void {
    this.plugin.host.recordViolation(this.vm, kind, contextId, message);
  }

  /** Send one request through the filter; waits for http calls / timers the filter waits on. */
  request(opts: RequestOptions = {}): Promise<RequestResult> {
    return runRequest(this, opts);
  }

  /** Same as request() but synchronous; throws if the stream stays paused once posted work is drained. */
  requestSync(opts: RequestOptions = {}): RequestResult {
    return runRequestSync(this, opts);
  }
}
