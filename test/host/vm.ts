// One instance of the module: what cpp-host calls a WasmBase + WasmVm pair.
// Envoy runs one per worker thread (plus a "base" VM that is only initialized
// and a short-lived "canary" used to validate each plugin configuration).
//
// Responsibilities:
//  - link like src/v8/v8.cc: every function import must be one the host
//    registers for the module's ABI version, with the identical signature;
//    global imports are refused; memory/table imports are created;
//  - getFunctions like src/wasm.cc: exported proxy_on_* with a wrong signature
//    and a missing malloc/proxy_on_memory_allocate fail the VM;
//  - startVm: _initialize (+ main / __main_void) or _start, with host calls
//    restricted to the set cpp-host allows during initialization;
//  - calls into the module save/restore the current context and reset the
//    effective context (SaveRestoreContext), and turn traps into a failed VM
//    (FailState::RuntimeError) instead of exceptions;
//  - allocMemory: the module's allocator runs with host calls restricted and
//    the VM context current.

import {
  ALLOWED_DURING_INIT, ALLOWED_DURING_MALLOC, FAIL_STATE_NAMES, FailState, HEADERS_CALLBACK_SIG,
  MODULE_FUNCTIONS, type AbiVersion, type FailStateCode, type Sig, providedImports,
} from './abi.ts';
import type { Context, RootContext } from './context.ts';
import { VmContext } from './context.ts';
import { buildImports } from './imports.ts';
import type { WorkerLabel } from './logs.ts';
import { VmMemory } from './memory.ts';
import type { Stat } from './metrics.ts';
import type { Timer } from './clock.ts';
import type { VmGroup } from './vm-group.ts';
import { describeSig } from './wasm-binary.ts';

/** Thrown by host functions to trap the calling module (e.g. "restricted_callback"). */
export class HostTrap extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostTrap';
  }
}

/** Raised when a module cannot be loaded or started, with cpp-host's wording. */
export class WasmLoadError extends Error {
  constructor(message: string, readonly failState: FailStateCode, readonly logs: string[] = []) {
    super(message);
    this.name = 'WasmLoadError';
  }
}

type WasmFn = (...args: number[]) => number | undefined;

export interface ModuleFunctions {
  malloc: WasmFn;
  validate_configuration?: WasmFn;
  on_vm_start?: WasmFn;
  on_configure?: WasmFn;
  on_tick?: WasmFn;
  on_context_create?: WasmFn;
  on_request_headers?: WasmFn;
  on_request_body?: WasmFn;
  on_request_trailers?: WasmFn;
  on_request_metadata?: WasmFn;
  on_response_headers?: WasmFn;
  on_response_body?: WasmFn;
  on_response_trailers?: WasmFn;
  on_response_metadata?: WasmFn;
  on_http_call_response?: WasmFn;
  on_grpc_receive?: WasmFn;
  on_grpc_close?: WasmFn;
  on_grpc_receive_initial_metadata?: WasmFn;
  on_grpc_receive_trailing_metadata?: WasmFn;
  on_queue_ready?: WasmFn;
  on_foreign_function?: WasmFn;
  on_done?: WasmFn;
  on_log?: WasmFn;
  on_delete?: WasmFn;
  envoy_on_resolve_dns?: WasmFn;
}

export interface TrapRecord {
  vmId: string;
  worker: WorkerLabel;
  plugins: string[];
  function: string;
  message: string;
  stack?: string;
}

function isTrap(err: unknown): boolean {
  return err instanceof WebAssembly.RuntimeError || err instanceof HostTrap || err instanceof RangeError;
}

function errorText(err: unknown): string {
  if (err instanceof HostTrap) return err.message;
  if (err instanceof Error) return `Uncaught ${err.name}: ${err.message}`;
  return String(err);
}

export class WasmVm {
  readonly abi: AbiVersion;
  memory!: VmMemory;
  fns!: ModuleFunctions;
  failState: FailStateCode = FailState.Ok;
  failMessage = '';
  /** Every live context by id; id 0 is the VM context. */
  readonly contexts = new Map<number, Context>();
  readonly vmContext: VmContext;
  private nextContextId = 1;
  current: Context;
  effectiveId = 0;
  /** Host calls allowed right now; null = unrestricted. */
  restricted: ReadonlySet<string> | null = null;
  private afterActions: Array<() => void> = [];
  /** Set by send_local_response: forces the callback's status to a stop (stopNextIteration). */
  stopIteration = false;
  /** True once the VM has been discarded (the canary after validation). */
  dead = false;
  // Stats handles defined by this VM (ids are per VM).
  readonly counters = new Map<number, Stat>();
  readonly gauges = new Map<number, Stat>();
  readonly histograms = new Map<number, Stat>();
  nextCounterId = 0;
  nextGaugeId = 1;
  nextHistogramId = 2;
  nextHttpCallId = 0;
  nextDnsToken = 0;
  /** Tick timers per root context id. */
  readonly tickTimers = new Map<number, { period: number; timer: Timer | null }>();
  /** Root contexts by plugin key. */
  readonly roots = new Map<string, RootContext>();
  private instance!: WebAssembly.Instance;

  constructor(readonly group: VmGroup, readonly label: WorkerLabel) {
    this.abi = group.abi;
    this.vmContext = new VmContext(this);
    this.contexts.set(0, this.vmContext);
    this.current = this.vmContext;
  }

  get host() {
    return this.group.host;
  }

  get failed(): boolean {
    return this.failState !== FailState.Ok;
  }

  /** Link, instantiate, resolve functions and run the module's initializer. */
  initialize(): void {
    const { shape, module } = this.group;
    const provided = providedImports(this.abi);
    const hostFns = buildImports(this);
    const importObject: Record<string, Record<string, WebAssembly.ImportValue>> = {};
    let importedMemory: WebAssembly.Memory | undefined;
    for (const imp of shape.imports) {
      const key = `${imp.module}.${imp.name}`;
      const slot = (importObject[imp.module] ??= {});
      if (imp.kind === 'function') {
        const want = provided.get(key);
        if (want === undefined) {
          throw this.loadFail(FailState.UnableToInitializeCode, `Failed to load Wasm module due to a missing import: ${key}`);
        }
        if (want !== imp.sig) {
          throw this.loadFail(
            FailState.UnableToInitializeCode,
            `Failed to load Wasm module due to an import type mismatch: ${key}, want: ${describeSig(imp.sig)}, but host exports: ${describeSig(want)}`,
          );
        }
        slot[imp.name] = hostFns[key] as WebAssembly.ImportValue;
      } else if (imp.kind === 'memory') {
        const l = imp.limits ?? { min: 0 };
        importedMemory = new WebAssembly.Memory({ initial: l.min, maximum: l.max, shared: l.shared } as WebAssembly.MemoryDescriptor);
        slot[imp.name] = importedMemory;
      } else if (imp.kind === 'table') {
        const l = imp.limits ?? { min: 0 };
        slot[imp.name] = new WebAssembly.Table({ element: 'anyfunc', initial: l.min, maximum: l.max });
      } else {
        throw this.loadFail(FailState.UnableToInitializeCode, `Failed to load Wasm module due to a missing import: ${key}`);
      }
    }
    try {
      this.instance = new WebAssembly.Instance(module, importObject);
    } catch (err) {
      throw this.loadFail(FailState.UnableToInitializeCode, `Failed to create new Wasm instance: ${errorText(err)}`);
    }
    const exp = this.instance.exports;
    const mem = importedMemory ?? (Object.values(exp).find((v) => v instanceof WebAssembly.Memory) as WebAssembly.Memory | undefined);
    if (!mem) throw this.loadFail(FailState.UnableToInitializeCode, 'Wasm module has no memory');
    this.memory = new VmMemory(mem);

    // getFunctions(): every check runs; the first failure is reported.
    const problems: string[] = [];
    const sigs = new Map(shape.exports.filter((e) => e.kind === 'function').map((e) => [e.name, e.sig]));
    const get = (name: string, want: Sig = MODULE_FUNCTIONS[name]): WasmFn | undefined => {
      if (!sigs.has(name)) return undefined;
      const have = sigs.get(name);
      if (have !== want) {
        problems.push(`Bad function signature for: ${name}, want: ${describeSig(want)}, but the module exports: ${describeSig(have)}`);
        return undefined;
      }
      return exp[name] as unknown as WasmFn;
    };
    const initialize = get('_initialize');
    const main = initialize ? get('main') : undefined;
    const mainVoid = initialize ? get('__main_void') : undefined;
    const start = initialize ? undefined : get('_start');
    const malloc = get('malloc') ?? get('proxy_on_memory_allocate');
    if (!malloc) problems.push('Wasm module is missing malloc function.');
    const fns: Partial<ModuleFunctions> = { malloc };
    const names = [
      'validate_configuration', 'on_vm_start', 'on_configure', 'on_tick', 'on_context_create', 'on_request_body',
      'on_request_trailers', 'on_request_metadata', 'on_response_body', 'on_response_trailers', 'on_response_metadata',
      'on_http_call_response', 'on_grpc_receive', 'on_grpc_close', 'on_grpc_receive_initial_metadata',
      'on_grpc_receive_trailing_metadata', 'on_queue_ready', 'on_done', 'on_log', 'on_delete',
    ] as const;
    for (const n of names) fns[n] = get(`proxy_${n}`);
    fns.on_request_headers = get('proxy_on_request_headers', HEADERS_CALLBACK_SIG[this.abi]);
    fns.on_response_headers = get('proxy_on_response_headers', HEADERS_CALLBACK_SIG[this.abi]);
    if (this.abi !== '0.1.0') fns.on_foreign_function = get('proxy_on_foreign_function', 'iii>');
    fns.envoy_on_resolve_dns = get('envoy_on_resolve_dns');
    if (problems.length) {
      for (const p of problems) this.hostLog(4, p);
      throw this.loadFail(problems[0].startsWith('Wasm module is missing') ? FailState.MissingFunction : FailState.UnableToInitializeCode, problems[0]);
    }
    this.fns = fns as ModuleFunctions;

    // startVm(): WASI reactor or command entry point, restricted host calls.
    this.restricted = ALLOWED_DURING_INIT;
    try {
      if (initialize) {
        // cpp-host calls main/__main_void even when _initialize trapped.
        this.call(this.vmContext, '_initialize', initialize);
        if (main) this.call(this.vmContext, 'main', main, 0, 0);
        else if (mainVoid) this.call(this.vmContext, '__main_void', mainVoid);
      } else if (start) {
        this.call(this.vmContext, '_start', start);
      }
    } finally {
      this.restricted = null;
    }
    if (this.failed) throw new WasmLoadError(`Failed to initialize Wasm code: ${this.failMessage}`, this.failState);
  }

  private loadFail(state: FailStateCode, message: string): WasmLoadError {
    this.failState = state;
    this.failMessage = message;
    this.hostLog(4, `Wasm VM failed ${message}`);
    return new WasmLoadError(message, state);
  }

  /** contextOrEffectiveContext(): the effective context if set and alive, else the current one. */
  ctx(): Context {
    if (this.effectiveId !== 0) {
      const c = this.contexts.get(this.effectiveId);
      if (c) return c;
    }
    return this.current;
  }

  allocContextId(): number {
    for (;;) {
      const id = this.nextContextId;
      this.nextContextId = (this.nextContextId + 1) >>> 0;
      if (!this.contexts.has(id)) return id;
    }
  }

  /**
   * Call an export with `ctx` current. A trap fails the VM and yields 0, like
   * cpp-host's wrappers; any other exception is a host bug and propagates.
   */
  call(ctx: Context, name: string, fn: WasmFn, a = 0, b = 0, c = 0, d = 0, e = 0): number {
    const savedCurrent = this.current;
    const savedEffective = this.effectiveId;
    this.current = ctx;
    this.effectiveId = 0;
    const profile = this.callDepth++ === 0 ? this.host.profile : null;
    const t0 = profile ? process.hrtime.bigint() : 0n;
    try {
      const r = fn(a, b, c, d, e);
      if (profile) profile.moduleNs += process.hrtime.bigint() - t0;
      return r === undefined ? 0 : r >>> 0;
    } catch (err) {
      if (!isTrap(err)) throw err;
      this.fail(FailState.RuntimeError, `Function: ${name} failed: ${errorText(err)}`, name, err);
      return 0;
    } finally {
      this.callDepth--;
      this.current = savedCurrent;
      this.effectiveId = savedEffective;
    }
  }

  /** Nesting of module calls (the host calls malloc while the module is inside a host call). */
  private callDepth = 0;

  fail(state: FailStateCode, message: string, fnName = '', err?: unknown): void {
    const first = this.failState === FailState.Ok;
    this.failState = state;
    if (first) this.failMessage = message;
    this.hostLog(4, `Wasm VM failed ${message}`);
    if (state === FailState.RuntimeError) {
      this.host.recordTrap({
        vmId: this.group.vmId,
        worker: this.label,
        plugins: [...this.roots.values()].map((r) => r.plugin.name),
        function: fnName,
        message,
        stack: err instanceof Error ? err.stack : undefined,
      });
    }
  }

  /**
   * WasmBase::allocMemory: run the module's allocator with the VM context
   * current and only logging/clock host calls allowed. Returns 0 on failure.
   */
  alloc(size: number): number {
    const saved = this.restricted;
    this.restricted = ALLOWED_DURING_MALLOC;
    let p: number;
    try {
      p = this.call(this.vmContext, 'malloc', this.fns.malloc, size);
    } finally {
      this.restricted = saved;
    }
    if (p === 0) return 0;
    if (!this.memory.ok(p, size)) return 0;
    return p;
  }

  /** WasmBase::copyToPointerSize. Empty data writes a null pointer and size 0. */
  copyToPointerSize(data: Uint8Array, ptrPtr: number, sizePtr: number): boolean {
    let p = 0;
    if (data.length > 0) {
      p = this.alloc(data.length);
      if (p === 0) return false;
      this.memory.u8.set(data, p);
    }
    return this.memory.setU32(ptrPtr, p) && this.memory.setU32(sizePtr, data.length);
  }

  addAfterCallAction(fn: () => void): void {
    this.afterActions.push(fn);
  }

  /** DeferAfterCallActions' destructor: clear stopNextIteration, then run deferred work. */
  runAfterCallActions(): void {
    this.stopIteration = false;
    while (this.afterActions.length) this.afterActions.shift()!();
  }

  hostLog(level: number, message: string): void {
    this.host.emitLog({
      level,
      message,
      source: 'host',
      vmId: this.group.vmId,
      worker: this.label,
      contextId: 0,
      prefix: '',
    });
  }

  describeFailure(): string {
    return `${FAIL_STATE_NAMES[this.failState]}: ${this.failMessage}`;
  }

  /** Tear down a VM that is no longer used (the canary): timers stop, contexts vanish. */
  kill(): void {
    this.dead = true;
    for (const t of this.tickTimers.values()) t.timer?.cancel();
    this.tickTimers.clear();
    // Envoy's ~Context cancels outstanding calls: handlers are never invoked.
    for (const root of this.roots.values()) for (const call of root.httpCalls.values()) call.cancel();
  }
}
