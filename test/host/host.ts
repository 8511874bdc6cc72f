// ProxyWasmHost: one "Envoy" process. Owns the clock, the dispatcher queue
// (work Envoy would post to a worker's event loop), process-wide shared data
// and queues, the stats store, captured logs and traps, and the VMs.
//
// Loading a plugin follows cpp-host/Envoy: a base VM is created and
// initialized once per vm_key; a canary VM is started and configured to
// validate the plugin (a false on_vm_start/on_configure rejects the config),
// then discarded; then each worker VM (created on first use of the vm_key)
// gets a root context for the plugin: on_context_create, on_vm_start,
// on_configure.

import { CUSTOM_STAT_NAMESPACE, FailState, LogLevel, WasmResult, type LogLevelName } from './abi.ts';
import { ManualClock, RealClock, type Clock } from './clock.ts';
import type { Context } from './context.ts';
import { HttpCalls, type ClusterDecl, type HttpCallHandler } from './http-call.ts';
import { formatLogLine, levelName, type LogEntry, type LogSink } from './logs.ts';
import { StatsStore, type MetricSnapshot, type Stat } from './metrics.ts';
import { Plugin, Worker, type PluginOptions } from './plugin.ts';
import { SharedData, SharedQueues, type QueueOwner } from './shared-data.ts';
import { VmGroup, vmKey } from './vm-group.ts';
import { WasmLoadError, type TrapRecord, type WasmVm } from './vm.ts';
import type { WorkerLabel } from './logs.ts';
import { bytesToString } from './memory.ts';

export interface HostOptions {
  /** 'manual' (default): time moves only with advance(). 'real': wall clock and real timers. */
  clock?: 'manual' | 'real' | Clock;
  /** Manual clock start, ms since the epoch. */
  startTimeMs?: number;
  /** Receives every captured log entry. */
  logSink?: LogSink;
  /** Print log entries to stderr in Envoy's format. */
  echoLogs?: boolean;
  /** Level of Envoy's `wasm` logger (default 'info', Envoy's default). */
  logLevel?: LogLevelName;
  /** Default worker count for plugins (Envoy --concurrency). Default 1. */
  workers?: number;
  /** Emulate Envoy's base VM and per-plugin canary VM (default true). */
  canary?: boolean;
  /**
   * Clusters proxy_http_call may target: names (static clusters: the handler answers) or
   * `{ name, type: 'original_dst', httpHeaderName }` (Envoy's ORIGINAL_DST with use_http_header:
   * the call's own header picks the upstream). Default: any name, when a handler exists.
   */
  clusters?: ClusterDecl[];
  /** Default upstream for proxy_http_call. */
  httpCallHandler?: HttpCallHandler;
  /** Cap on host.logs / plugin.logs entries kept (oldest dropped). Default 100000. */
  maxLogEntries?: number;
  /** Account time spent in module callbacks and in host calls (benchmarks; adds a little overhead). */
  profile?: boolean;
  /** Seed for WASI random_get, for reproducible runs (default: the OS's random source). */
  randomSeed?: number;
}

/** Where the time went, when HostOptions.profile is set. */
export class HostProfile {
  /** Wall time inside outermost module callbacks, host calls included. */
  moduleNs = 0n;
  /** Wall time inside host calls made by modules. */
  hostNs = 0n;
  hostCalls = 0;

  reset(): void {
    this.moduleNs = 0n;
    this.hostNs = 0n;
    this.hostCalls = 0;
  }
}

/**
 * Something a module did that Envoy leaves undefined (a debug build asserts, or a release build
 * acts on a stream that is already destroyed) or that has an effect no module wants (a request
 * sent upstream only to be reset). The host records it and logs it at error level; the call
 * returns what Envoy returns and the host does what Envoy does where that is defined.
 */
export interface ViolationRecord {
  kind:
    | 'continue-after-continue' // continue_stream on a direction already continued (Envoy: ASSERT in commonContinue)
    | 'continue-in-own-callback' // continue_stream for the direction whose callback is running (Envoy: ASSERT)
    | 'action-on-destroyed-stream' // continue / local reply / close on a stream whose on_delete ran
    | 'continue-during-local-reply' // the request resumed while the stream's local reply was being sent
    | 'stale-body'; // a body read or written after Envoy stopped holding it for the filter
  message: string;
  worker: WorkerLabel;
  contextId: number;
}

export interface SharedDataView {
  value: Uint8Array;
  text: string;
  cas: number;
}

export class ProxyWasmHost {
  readonly clock: Clock;
  readonly sharedDataStore = new SharedData();
  readonly sharedQueues = new SharedQueues();
  readonly stats = new StatsStore();
  readonly httpCalls: HttpCalls;
  /** Every captured log entry (all plugins, VM contexts, host events). */
  readonly logs: LogEntry[] = [];
  /** Every VM failure caused by a trap or proc_exit. Empty = no trap happened. */
  readonly traps: TrapRecord[] = [];
  /** Module actions Envoy leaves undefined (see ViolationRecord). Empty = none happened. */
  readonly violations: ViolationRecord[] = [];
  /** Set when HostOptions.profile is true. */
  readonly profile: HostProfile | null;
  /** Fills WASI random_get from HostOptions.randomSeed; null for the OS's random source. */
  readonly random: ((out: Uint8Array) => void) | null;
  readonly plugins: Plugin[] = [];
  private readonly groups = new Map<string, VmGroup>();
  private posted: Array<() => void> = [];
  private drainScheduled = false;
  private connectionSeq = 1;
  private readonly maxLogs: number;
  private closed = false;

  constructor(readonly options: HostOptions = {}) {
    const c = options.clock ?? 'manual';
    this.clock = c === 'manual' ? new ManualClock(options.startTimeMs) : c === 'real' ? new RealClock() : c;
    this.profile = options.profile ? new HostProfile() : null;
    this.random = options.randomSeed !== undefined ? seededFill(options.randomSeed) : null;
    this.httpCalls = new HttpCalls(this);
    this.maxLogs = options.maxLogEntries ?? 100_000;
  }

  // ---------------- plugins ----------------

  loadPlugin(opts: PluginOptions): Plugin {
    const enc = new TextEncoder();
    const code = opts.wasm instanceof Uint8Array ? opts.wasm : new Uint8Array(opts.wasm);
    const vmId = opts.vmId ?? '';
    const vmConfig = typeof opts.vmConfiguration === 'string' ? enc.encode(opts.vmConfiguration) : opts.vmConfiguration ?? new Uint8Array(0);
    const key = vmKey(vmId, vmConfig, code);
    let group = this.groups.get(key);
    if (!group) {
      group = new VmGroup(this, key, vmId, vmConfig, Object.entries(opts.env ?? {}), code);
      if (this.options.canary ?? true) group.base = group.instantiate('base');
      this.groups.set(key, group);
    }
    const plugin = new Plugin(this, group, opts);
    const n = opts.workers ?? this.options.workers ?? 1;
    if (group.workers.length && group.workers.length !== n) {
      throw new Error(`vm_id "${vmId}" already runs on ${group.workers.length} worker(s); plugin asked for ${n}`);
    }
    const reject = (why: string, vm?: WasmVm): never => {
      const lines = plugin.logs.map(formatLogLine);
      const vmMsg = vm?.failed ? ` [${vm.describeFailure()}]` : '';
      throw new WasmLoadError(
        `Wasm plugin "${plugin.name}" rejected: ${why}${vmMsg}${lines.length ? `\nplugin logs:\n${lines.join('\n')}` : ''}`,
        vm?.failState || FailState.ConfigureFailed,
        lines,
      );
    };
    if (this.options.canary ?? true) {
      const canary = group.instantiate('canary');
      const { error } = plugin.startIn(canary);
      canary.kill();
      if (error) reject(error.replace('thread-local', 'base'), canary);
    }
    if (!group.workers.length) for (let i = 0; i < n; i++) group.workers.push(group.instantiate(i));
    // cpp-host drops a VM that failed at runtime from the thread-local cache, so a
    // plugin configured afterwards gets a fresh VM; plugins already using the failed
    // one keep it (and keep failing).
    for (let i = 0; i < n; i++) if (group.workers[i].failed) group.workers[i] = group.instantiate(i);
    for (let i = 0; i < n; i++) {
      const vm = group.workers[i];
      const { root, error } = plugin.startIn(vm);
      if (error) reject(error, vm);
      plugin.workers.push(new Worker(plugin, i, vm, root));
    }
    this.plugins.push(plugin);
    this.drain();
    return plugin;
  }

  // ---------------- dispatcher ----------------

  /** Queue work the way Envoy posts to a dispatcher; runs on drain() or on the next macrotask. */
  post(fn: () => void): void {
    this.posted.push(fn);
    if (!this.drainScheduled && !this.closed) {
      this.drainScheduled = true;
      setImmediate(() => {
        this.drainScheduled = false;
        this.drain();
      });
    }
  }

  hasPostedWork(): boolean {
    return this.posted.length > 0;
  }

  /** Run all posted work now (including work it posts). Returns the number of items run. */
  drain(): number {
    let n = 0;
    while (this.posted.length) {
      const batch = this.posted;
      this.posted = [];
      for (const f of batch) {
        f();
        n++;
      }
    }
    return n;
  }

  /** Drain posted work and wait for outstanding http-call handlers until nothing is left. */
  async settle(): Promise<void> {
    for (;;) {
      this.drain();
      const pending = this.httpCalls.pendingPromises();
      if (pending.length) {
        await Promise.race(pending);
        await new Promise((r) => setImmediate(r));
        continue;
      }
      if (!this.posted.length) return;
    }
  }

  /** Manual clock: move time forward, firing ticks and call timeouts that fall due. */
  advance(ms: number): number {
    if (!(this.clock instanceof ManualClock)) throw new Error('advance() needs the manual clock');
    this.drain();
    const fired = this.clock.advance(ms, () => this.drain());
    this.drain();
    return fired;
  }

  nextConnectionId(): number {
    return this.connectionSeq++;
  }

  // ---------------- ticks, queues, dns, shutdown ----------------

  /** Envoy Wasm::setTimerPeriod. */
  setTickPeriod(vm: WasmVm, rootId: number, periodMs: number): void {
    let t = vm.tickTimers.get(rootId);
    if (!t) {
      t = { period: 0, timer: null };
      vm.tickTimers.set(rootId, t);
    }
    const wasRunning = t.timer !== null && t.period > 0;
    t.period = periodMs;
    if (wasRunning) t.timer!.cancel();
    if (periodMs > 0 && !vm.dead) t.timer = this.clock.setTimer(periodMs, () => this.tick(vm, rootId));
  }

  /** Envoy Wasm::tickHandler: on_tick, then re-arm with the (possibly new) period. */
  private tick(vm: WasmVm, rootId: number): void {
    const t = vm.tickTimers.get(rootId);
    if (!t || vm.dead || !vm.fns.on_tick) return;
    vm.contexts.get(rootId)?.asRoot()?.onTick();
    t.timer?.cancel();
    t.timer = t.period > 0 && !vm.dead ? this.clock.setTimer(t.period, () => this.tick(vm, rootId)) : null;
  }

  queueOwner(vm: WasmVm, contextId: number): QueueOwner {
    return {
      notify: (token) =>
        this.post(() => {
          // Delivered on the registering worker; nothing for discarded or failed VMs.
          if (vm.dead || vm.failed || typeof vm.label !== 'number') return;
          vm.contexts.get(contextId)?.asRoot()?.onQueueReady(token);
        }),
    };
  }

  /** envoy_resolve_dns: no resolver here, so every lookup fails (empty result). */
  resolveDns(vm: WasmVm, rootId: number, token: number, _address: string): void {
    this.post(() => {
      if (vm.dead) return;
      vm.contexts.get(rootId)?.asRoot()?.onResolveDns(token, 0);
    });
  }

  /** proxy_done: only meaningful for a root context whose on_done returned false. */
  done(vm: WasmVm, ctx: Context): number {
    const root = ctx.root().asRoot();
    if (!root || !root.pendingDone) return WasmResult.NotFound;
    root.pendingDone = false;
    // Deferred so on_delete does not run inside the proxy_done call.
    vm.addAfterCallAction(() => root.onDelete());
    return WasmResult.Ok;
  }

  /**
   * Shut every plugin down like Envoy on exit: cancel timers, then on_done on
   * each root context (on_delete follows unless on_done returned false, in
   * which case it waits for proxy_done).
   */
  close(): void {
    if (this.closed) return;
    for (const g of this.groups.values()) {
      for (const vm of g.workers) {
        for (const t of vm.tickTimers.values()) t.timer?.cancel();
        for (const root of vm.roots.values()) {
          // Outstanding calls are cancelled when the root context goes (onDelete), not before:
          // a root whose on_done returned false still gets their answers until proxy_done.
          if (root.onDone()) root.onDelete();
          else root.pendingDone = true;
        }
      }
    }
    this.drain();
    this.closed = true;
    this.clock.close();
  }

  // ---------------- logs and traps ----------------

  emitLog(e: Omit<LogEntry, 'levelName' | 'timeMs'>, pluginLogs?: LogEntry[]): void {
    const entry: LogEntry = { ...e, levelName: levelName(e.level), timeMs: this.clock.nowMs() };
    this.logs.push(entry);
    // Trim in chunks so long runs do not pay an O(n) splice per entry.
    const slack = Math.ceil(this.maxLogs / 10);
    if (this.logs.length > this.maxLogs + slack) this.logs.splice(0, this.logs.length - this.maxLogs);
    if (pluginLogs) {
      pluginLogs.push(entry);
      if (pluginLogs.length > this.maxLogs + slack) pluginLogs.splice(0, pluginLogs.length - this.maxLogs);
    }
    this.options.logSink?.(entry);
    if (this.options.echoLogs) process.stderr.write(`${formatLogLine(entry)}\n`);
  }

  /** Log level the module sees through proxy_get_log_level for this context. */
  logLevelFor(ctx: Context): number {
    return ctx.plugin?.logLevel ?? LogLevel[this.options.logLevel ?? 'info'];
  }

  /** Context::log: emitted only when the `wasm` logger level lets it through. */
  pluginLog(vm: WasmVm, ctx: Context, level: number, message: string, source: 'plugin' | 'wasi'): void {
    if (level < this.logLevelFor(ctx)) return;
    const p = ctx.plugin;
    this.emitLog(
      {
        level,
        message,
        source,
        plugin: p?.name,
        rootId: p?.rootId,
        vmId: vm.group.vmId,
        worker: vm.label,
        contextId: ctx.id,
        prefix: ctx.logPrefix,
      },
      p?.logs,
    );
  }

  /** Envoy Context::error: a trace-level host message. */
  contextError(vm: WasmVm, message: string): void {
    if (LogLevel.trace < LogLevel[this.options.logLevel ?? 'info']) return;
    vm.hostLog(0, message);
  }

  recordTrap(t: TrapRecord): void {
    this.traps.push(t);
  }

  recordViolation(vm: WasmVm, kind: ViolationRecord['kind'], contextId: number, message: string): void {
    this.violations.push({ kind, message, worker: vm.label, contextId });
    vm.hostLog(4, `${kind}: ${message}`);
  }

  // ---------------- inspection ----------------

  /** Shared data of a vm_id: key -> value, text, cas. */
  sharedData(vmId: string): Map<string, SharedDataView> {
    const out = new Map<string, SharedDataView>();
    for (const [k, e] of this.sharedDataStore.snapshot(vmId)) out.set(k, { value: e.value, text: bytesToString(e.value), cas: e.cas });
    return out;
  }

  /** A stat by Envoy name (`wasmcustom.x`) or the module's name (`x`). */
  metric(name: string): number | undefined {
    const s = this.stats.find(name);
    return s ? Number(s.value) : undefined;
  }

  metricStat(name: string): Stat | undefined {
    return this.stats.find(name);
  }

  /** All stats with their full Envoy names (`wasmcustom.<name>`). */
  get metrics(): MetricSnapshot[] {
    return this.stats.all();
  }

  /** Counters and gauges as Envoy's /stats prints them (custom prefix stripped). */
  adminStats(): Record<string, number> {
    return this.stats.adminStats();
  }

  static readonly customStatPrefix = `${CUSTOM_STAT_NAMESPACE}.`;
}

// A deterministic byte source (splitmix64) for reproducible simulations.
function seededFill(seed: number): (out: Uint8Array) => void {
  let state = BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + 1n);
  return (out) => {
    for (let i = 0; i < out.length; i += 8) {
      state = BigInt.asUintN(64, state + 0x9e3779b97f4a7c15n);
      let z = state;
      z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
      z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
      z ^= z >> 31n;
      for (let k = 0; k < 8 && i + k < out.length; k++) out[i + k] = Number((z >> BigInt(8 * k)) & 0xffn);
    }
  };
}
