// The host functions a module imports: env.proxy_* (src/exports.cc with
// Envoy's Context behind it), the WASI subset cpp-host implements, and the
// few extra env.* functions. Argument checks happen in cpp-host's order, so a
// module sees the same WasmResult for the same mistake (e.g. an out-of-range
// map type is BadArgument even when the key pointer is also bad).
//
// All pointers/sizes arrive as i32 and are treated as unsigned; i64 arguments
// arrive as BigInt.

import {
  BufferType, Errno, HeaderMapType, LOG_LEVEL_MAX, MetricType, RANDOM_GET_MAX_BYTES, StreamType, WasmResult,
  CUSTOM_STAT_NAMESPACE, WASI_MODULES,
} from './abi.ts';
import { randomFillSync } from 'node:crypto';
import { BodyBuffer } from './buffer.ts';
import type { Context } from './context.ts';
import { encodeUtf8Into, utf8Length } from './memory.ts';
import { decodePairs, marshalPairs, pairsSize, type Pair } from './pairs.ts';
import { getProperty, setProperty } from './properties.ts';
import { HostTrap, type WasmVm } from './vm.ts';

type HostFn = (...args: Array<number | bigint>) => number | void;

const EMPTY = new Uint8Array(0);

export function buildImports(vm: WasmVm): Record<string, HostFn> {
  const host = vm.host;
  const out: Record<string, HostFn> = {};

  const guard = (key: string): void => {
    const r = vm.restricted;
    if (r !== null && !r.has(key)) throw new HostTrap('restricted_callback');
  };
  // With HostOptions.profile, host-call time is accounted separately from module time.
  const profile = host.profile;
  const timed = <F extends (...args: never[]) => unknown>(fn: F): F => {
    if (!profile) return fn;
    return ((...args: never[]) => {
      const t0 = process.hrtime.bigint();
      try {
        return fn(...args);
      } finally {
        profile.hostNs += process.hrtime.bigint() - t0;
        profile.hostCalls++;
      }
    }) as F;
  };
  // Fixed-arity passthrough (the widest import takes 12 arguments): no rest
  // array per call; a callee ignores the extra undefined arguments.
  const def = (key: string, fn: HostFn): void => {
    out[key] = timed(((a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number, k: number, l: number) => {
      guard(key);
      return fn(a, b, c, d, e, f, g, h, i, j, k, l);
    }) as HostFn);
  };
  // Fixed-arity wrappers avoid a rest-array per call on the hot paths.
  const def3 = (key: string, fn: (a: number, b: number, c: number) => number): void => {
    out[key] = timed(((a: number, b: number, c: number) => {
      guard(key);
      return fn(a >>> 0, b >>> 0, c >>> 0);
    }) as HostFn);
  };
  const def5 = (key: string, fn: (a: number, b: number, c: number, d: number, e: number) => number): void => {
    out[key] = timed(((a: number, b: number, c: number, d: number, e: number) => {
      guard(key);
      return fn(a >>> 0, b >>> 0, c >>> 0, d >>> 0, e >>> 0);
    }) as HostFn);
  };
  const u = (x: number | bigint) => Number(x) >>> 0;

  const copyBytes = (data: Uint8Array, pp: number, sp: number): boolean => vm.copyToPointerSize(data, pp, sp);
  const copyString = (s: string, pp: number, sp: number): boolean => {
    const len = utf8Length(s);
    let p = 0;
    if (len > 0) {
      p = vm.alloc(len);
      if (p === 0) return false;
      encodeUtf8Into(s, vm.memory.u8, p);
    }
    return vm.memory.setU32(pp, p) && vm.memory.setU32(sp, len);
  };
  const readPairs = (ptr: number, size: number): Pair[] | null => {
    const m = vm.memory;
    if (!m.ok(ptr, size)) return null;
    return decodePairs(m.u8, m.dv, ptr, size);
  };

  // ---------------- logging, status, properties ----------------

  def3('env.proxy_log', (level, ptr, size) => {
    if (level > LOG_LEVEL_MAX) return WasmResult.BadArgument;
    const ctx = vm.ctx();
    const msg = vm.memory.string(ptr, size);
    if (msg === null) return WasmResult.InvalidMemoryAccess;
    host.pluginLog(vm, ctx, level, msg, 'plugin');
    return WasmResult.Ok;
  });

  def('env.proxy_get_log_level', (p) => {
    const ctx = vm.ctx();
    return vm.memory.setU32(u(p), host.logLevelFor(ctx)) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def3('env.proxy_get_status', (codePtr, pp, sp) => {
    const root = vm.ctx().root().asRoot();
    if (!vm.memory.setU32(codePtr, root?.statusCode ?? 0)) return WasmResult.InvalidMemoryAccess;
    return copyString(root?.statusMessage ?? '', pp, sp) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def('env.proxy_set_property', (kp, ks, vp, vs) => {
    const ctx = vm.ctx();
    const key = vm.memory.string(u(kp), u(ks));
    const value = vm.memory.copy(u(vp), u(vs));
    if (key === null || value === null) return WasmResult.InvalidMemoryAccess;
    return setProperty(ctx, key, value);
  });

  def('env.proxy_get_property', (pp, ps, vpp, vsp) => {
    const ctx = vm.ctx();
    const path = vm.memory.string(u(pp), u(ps));
    if (path === null) return WasmResult.InvalidMemoryAccess;
    const r = getProperty(ctx, path);
    if (r.result !== WasmResult.Ok) return r.result;
    return copyBytes(r.value!, u(vpp), u(vsp)) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  // ---------------- stream control ----------------

  def('env.proxy_send_local_response', (code, dp, ds, bp, bs, hp, hs, grpc) => {
    const ctx = vm.ctx();
    const details = vm.memory.string(u(dp), u(ds));
    const body = vm.memory.copy(u(bp), u(bs));
    const pairs = readPairs(u(hp), u(hs));
    if (details === null || body === null || pairs === null) return WasmResult.InvalidMemoryAccess;
    ctx.sendLocalResponse(u(code), body, pairs, u(grpc), details);
    vm.stopIteration = true;
    return WasmResult.Ok;
  });

  const streamOp = (op: (ctx: Context, t: number) => number) => (t: number | bigint) => {
    const type = u(t);
    if (type > StreamType.MAX) return WasmResult.BadArgument;
    return op(vm.ctx(), type);
  };
  def('env.proxy_continue_stream', streamOp((c, t) => c.continueStream(t)));
  def('env.proxy_close_stream', streamOp((c, t) => c.closeStream(t)));
  def('env.proxy_continue_request', () => vm.ctx().continueStream(StreamType.Request));
  def('env.proxy_continue_response', () => vm.ctx().continueStream(StreamType.Response));
  def('env.proxy_clear_route_cache', () => WasmResult.Ok);
  def('env.proxy_get_configuration', (pp, sp) => {
    const ctx = vm.ctx();
    const cfg = ctx.tempPluginConfig ?? vm.group.vmConfiguration;
    return copyBytes(cfg, u(pp), u(sp)) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def('env.proxy_set_effective_context', (id) => {
    const cid = u(id);
    if (!vm.contexts.has(cid)) return WasmResult.BadArgument;
    vm.effectiveId = cid;
    return WasmResult.Ok;
  });

  def('env.proxy_done', () => host.done(vm, vm.ctx()));

  def('env.proxy_call_foreign_function', (np, ns, ap, as) => {
    const name = vm.memory.string(u(np), u(ns));
    if (name === null) return WasmResult.InvalidMemoryAccess;
    if (!vm.memory.ok(u(ap), u(as))) return WasmResult.InvalidMemoryAccess;
    return WasmResult.NotFound; // no foreign functions are registered
  });

  // ---------------- shared data and queues ----------------

  def5('env.proxy_get_shared_data', (kp, ks, vpp, vsp, casPtr) => {
    const key = vm.memory.string(kp, ks);
    if (key === null) return WasmResult.InvalidMemoryAccess;
    const e = host.sharedDataStore.get(vm.group.vmId, key);
    if (!e) return WasmResult.NotFound;
    if (!copyBytes(e.value, vpp, vsp)) return WasmResult.InvalidMemoryAccess;
    return vm.memory.setU32(casPtr, e.cas) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def5('env.proxy_set_shared_data', (kp, ks, vp, vs, cas) => {
    const key = vm.memory.string(kp, ks);
    const value = vm.memory.copy(vp, vs);
    if (key === null || value === null) return WasmResult.InvalidMemoryAccess;
    return host.sharedDataStore.set(vm.group.vmId, key, value, cas);
  });

  def3('env.proxy_register_shared_queue', (np, ns, tokenPtr) => {
    const ctx = vm.ctx();
    const name = vm.memory.string(np, ns);
    if (name === null) return WasmResult.InvalidMemoryAccess;
    const ownerId = ctx.isRoot ? ctx.id : ctx.root().id;
    const token = host.sharedQueues.register(vm.group.vmId, name, host.queueOwner(vm, ownerId));
    return vm.memory.setU32(tokenPtr, token) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def5('env.proxy_resolve_shared_queue', (vp, vs, np, ns, tokenPtr) => {
    const vmId = vm.memory.string(vp, vs);
    const name = vm.memory.string(np, ns);
    if (vmId === null || name === null) return WasmResult.InvalidMemoryAccess;
    const token = host.sharedQueues.resolve(vmId === '' ? vm.group.vmId : vmId, name);
    if (vm.failed || token === 0) return WasmResult.NotFound;
    return vm.memory.setU32(tokenPtr, token) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def3('env.proxy_dequeue_shared_queue', (token, pp, sp) => {
    const r = host.sharedQueues.dequeue(token);
    if (r.result !== WasmResult.Ok) return r.result;
    return copyBytes(r.data!, pp, sp) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def3('env.proxy_enqueue_shared_queue', (token, dp, ds) => {
    const data = vm.memory.copy(dp, ds);
    if (data === null) return WasmResult.InvalidMemoryAccess;
    return host.sharedQueues.enqueue(token, data);
  });

  // ---------------- header maps ----------------

  // add and replace: the same checks, then HeaderMap.add (appends) or HeaderMap.set (replaces).
  const writeHeader = (op: 'add' | 'set') => (type: number, kp: number, ks: number, vp: number, vs: number) => {
    if (type > HeaderMapType.MAX) return WasmResult.BadArgument;
    const ctx = vm.ctx();
    const key = vm.memory.string(kp, ks);
    const value = vm.memory.string(vp, vs);
    if (key === null || value === null) return WasmResult.InvalidMemoryAccess;
    const map = ctx.getMap(type);
    if (!map) return WasmResult.BadArgument;
    map[op](key, value);
    return WasmResult.Ok;
  };

  def5('env.proxy_add_header_map_value', writeHeader('add'));

  def5('env.proxy_get_header_map_value', (type, kp, ks, vpp, vsp) => {
    if (type > HeaderMapType.MAX) return WasmResult.BadArgument;
    const ctx = vm.ctx();
    const key = vm.memory.string(kp, ks);
    if (key === null) return WasmResult.InvalidMemoryAccess;
    const map = ctx.getConstMap(type);
    let value: string | undefined;
    if (!map) {
      if (!ctx.accessLogPhase) return WasmResult.BadArgument;
      if (vm.abi !== '0.1.0') return WasmResult.NotFound;
      value = '';
    } else {
      value = map.get(key);
      if (value === undefined) {
        if (vm.abi !== '0.1.0') return WasmResult.NotFound;
        value = '';
      }
    }
    return copyString(value, vpp, vsp) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def5('env.proxy_replace_header_map_value', writeHeader('set'));

  def3('env.proxy_remove_header_map_value', (type, kp, ks) => {
    if (type > HeaderMapType.MAX) return WasmResult.BadArgument;
    const ctx = vm.ctx();
    const key = vm.memory.string(kp, ks);
    if (key === null) return WasmResult.InvalidMemoryAccess;
    const map = ctx.getMap(type);
    if (!map) return WasmResult.BadArgument;
    map.remove(key);
    return WasmResult.Ok;
  });

  const lens: number[] = [];
  def3('env.proxy_get_header_map_pairs', (type, pp, sp) => {
    if (type > HeaderMapType.MAX) return WasmResult.BadArgument;
    const ctx = vm.ctx();
    const map = ctx.getConstMap(type);
    const pairs = map ? map.entries : [];
    if (pairs.length === 0) return copyBytes(EMPTY, pp, sp) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    lens.length = 0;
    const size = pairsSize(pairs, lens);
    const p = vm.alloc(size);
    if (p === 0) return WasmResult.InvalidMemoryAccess;
    marshalPairs(pairs, lens, vm.memory.u8, vm.memory.dv, p);
    if (!vm.memory.setU32(pp, p)) return WasmResult.InvalidMemoryAccess;
    return vm.memory.setU32(sp, size) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def3('env.proxy_set_header_map_pairs', (type, ptr, size) => {
    if (type > HeaderMapType.MAX) return WasmResult.BadArgument;
    const ctx = vm.ctx();
    const pairs = readPairs(ptr, size);
    if (pairs === null) return WasmResult.InvalidMemoryAccess;
    const map = ctx.getMap(type);
    if (!map) return WasmResult.BadArgument;
    map.clear();
    for (const [k, v] of pairs) map.add(k, v);
    return WasmResult.Ok;
  });

  def('env.proxy_get_header_map_size', (t, resultPtr) => {
    const type = u(t);
    if (type > HeaderMapType.MAX) return WasmResult.BadArgument;
    const map = vm.ctx().getMap(type);
    if (!map) return WasmResult.BadArgument;
    return vm.memory.setU32(u(resultPtr), map.byteSize()) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  // ---------------- buffers ----------------

  def5('env.proxy_get_buffer_bytes', (type, start, length, pp, sp) => {
    if (type > BufferType.MAX) return WasmResult.BadArgument;
    const buf = vm.ctx().getBuffer(type);
    if (buf === null) return WasmResult.NotFound;
    vm.ctx().checkStaleBody(type, 'read');
    const size = buf.length;
    let len = length;
    if (start > size) len = 0;
    else if (start + len > size) len = size - start;
    if (len === 0) {
      if (!vm.memory.setU32(pp, 0)) return WasmResult.InvalidMemoryAccess;
      return vm.memory.setU32(sp, 0) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    }
    const p = vm.alloc(len);
    if (p === 0) return WasmResult.InvalidMemoryAccess;
    if (buf instanceof BodyBuffer) buf.copyOut(start, len, vm.memory.u8, p);
    else vm.memory.u8.set(buf.subarray(start, start + len), p);
    if (!vm.memory.setU32(pp, p)) return WasmResult.InvalidMemoryAccess;
    return vm.memory.setU32(sp, len) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def3('env.proxy_get_buffer_status', (type, lp, fp) => {
    if (type > BufferType.MAX) return WasmResult.BadArgument;
    const buf = vm.ctx().getBuffer(type);
    if (buf === null) return WasmResult.NotFound;
    vm.ctx().checkStaleBody(type, 'read');
    if (!vm.memory.setU32(lp, buf.length)) return WasmResult.InvalidMemoryAccess;
    return vm.memory.setU32(fp, 0) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def5('env.proxy_set_buffer_bytes', (type, start, length, dp, ds) => {
    if (type > BufferType.MAX) return WasmResult.BadArgument;
    const buf = vm.ctx().getBuffer(type);
    if (buf === null) return WasmResult.NotFound;
    const data = vm.memory.copy(dp, ds);
    if (data === null) return WasmResult.InvalidMemoryAccess;
    if (!(buf instanceof BodyBuffer)) return WasmResult.BadArgument;
    vm.ctx().checkStaleBody(type, 'write');
    return buf.copyFrom(start, length, data);
  });

  // ---------------- outbound calls ----------------

  def('env.proxy_http_call', (up, us, hp, hs, bp, bs, tp, ts, timeout, tokenPtr) => {
    const root = vm.ctx().root();
    const cluster = vm.memory.string(u(up), u(us));
    const body = vm.memory.copy(u(bp), u(bs));
    const headers = readPairs(u(hp), u(hs));
    const trailers = readPairs(u(tp), u(ts));
    if (cluster === null || body === null || headers === null || trailers === null) return WasmResult.InvalidMemoryAccess;
    // Verify the token pointer before starting anything asynchronous.
    if (!vm.memory.setU32(u(tokenPtr), 0)) return WasmResult.InvalidMemoryAccess;
    const r = host.httpCalls.dispatch(vm, root, cluster, headers, body, trailers, Number(timeout) | 0);
    vm.memory.setU32(u(tokenPtr), r.token);
    return r.result;
  });

  // gRPC is not emulated: an unknown cluster is ParseFailure (as in Envoy),
  // anything else Unimplemented.
  const grpcOpen = (sp: number, ss: number) => {
    const service = vm.memory.string(sp, ss);
    if (service === null) return WasmResult.InvalidMemoryAccess;
    if (!host.httpCalls.knowsCluster(service)) return WasmResult.ParseFailure;
    return WasmResult.Unimplemented;
  };
  def('env.proxy_grpc_call', (sp, ss, snp, sns, mp, ms, ip, is, rp, rs) => {
    const m = vm.memory;
    if (!m.ok(u(snp), u(sns)) || !m.ok(u(mp), u(ms)) || !m.ok(u(ip), u(is)) || !m.ok(u(rp), u(rs))) return WasmResult.InvalidMemoryAccess;
    return grpcOpen(u(sp), u(ss));
  });
  def('env.proxy_grpc_stream', (sp, ss, snp, sns, mp, ms, ip, is) => {
    const m = vm.memory;
    if (!m.ok(u(snp), u(sns)) || !m.ok(u(mp), u(ms)) || !m.ok(u(ip), u(is))) return WasmResult.InvalidMemoryAccess;
    return grpcOpen(u(sp), u(ss));
  });
  const grpcToken = (t: number | bigint) => ((u(t) & 3) === 1 || (u(t) & 3) === 2 ? WasmResult.NotFound : WasmResult.BadArgument);
  def('env.proxy_grpc_cancel', grpcToken);
  def('env.proxy_grpc_close', grpcToken);
  def('env.proxy_grpc_send', (t, mp, ms) => {
    if (!vm.memory.ok(u(mp), u(ms))) return WasmResult.InvalidMemoryAccess;
    return (u(t) & 3) === 2 ? WasmResult.NotFound : WasmResult.BadArgument;
  });

  // ---------------- metrics ----------------

  def('env.proxy_define_metric', (t, np, ns, idPtr) => {
    const name = vm.memory.string(u(np), u(ns));
    if (name === null) return WasmResult.InvalidMemoryAccess;
    const type = u(t);
    if (type > MetricType.Max) return WasmResult.BadArgument;
    const full = `${CUSTOM_STAT_NAMESPACE}.${name}`;
    let id: number;
    if (type === MetricType.Counter) {
      id = vm.nextCounterId = (vm.nextCounterId + 4) >>> 0;
      vm.counters.set(id, host.stats.getOrCreate(full, 'counter'));
    } else if (type === MetricType.Gauge) {
      id = vm.nextGaugeId = (vm.nextGaugeId + 4) >>> 0;
      vm.gauges.set(id, host.stats.getOrCreate(full, 'gauge'));
    } else {
      id = vm.nextHistogramId = (vm.nextHistogramId + 4) >>> 0;
      vm.histograms.set(id, host.stats.getOrCreate(full, 'histogram'));
    }
    return vm.memory.setU32(u(idPtr), id) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  def('env.proxy_increment_metric', (idArg, offArg) => {
    const id = u(idArg);
    const offset = BigInt.asIntN(64, BigInt(offArg));
    const kind = id & 3;
    if (kind === MetricType.Counter) {
      const s = vm.counters.get(id);
      if (!s) return WasmResult.NotFound;
      if (offset <= 0n) return WasmResult.BadArgument;
      s.value = BigInt.asUintN(64, s.value + offset);
      return WasmResult.Ok;
    }
    if (kind === MetricType.Gauge) {
      const s = vm.gauges.get(id);
      if (!s) return WasmResult.NotFound;
      s.value = BigInt.asUintN(64, s.value + offset);
      return WasmResult.Ok;
    }
    return WasmResult.BadArgument;
  });

  def('env.proxy_record_metric', (idArg, valArg) => {
    const id = u(idArg);
    const value = BigInt.asUintN(64, BigInt(valArg));
    const kind = id & 3;
    if (kind === MetricType.Counter) {
      const s = vm.counters.get(id);
      if (s) {
        s.value = BigInt.asUintN(64, s.value + value);
        return WasmResult.Ok;
      }
    } else if (kind === MetricType.Gauge) {
      const s = vm.gauges.get(id);
      if (s) {
        s.value = value;
        return WasmResult.Ok;
      }
    } else if (kind === MetricType.Histogram) {
      const s = vm.histograms.get(id);
      if (s) {
        s.samples.push(value);
        s.value += 1n;
        return WasmResult.Ok;
      }
    }
    return WasmResult.NotFound;
  });

  def('env.proxy_get_metric', (idArg, ptr) => {
    const id = u(idArg);
    const kind = id & 3;
    let s;
    if (kind === MetricType.Counter) s = vm.counters.get(id);
    else if (kind === MetricType.Gauge) s = vm.gauges.get(id);
    else return WasmResult.BadArgument;
    if (!s) return WasmResult.NotFound;
    return vm.memory.setU64(u(ptr), s.value) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
  });

  // ---------------- time ----------------

  def('env.proxy_set_tick_period_milliseconds', (ms) => {
    const root = vm.ctx().root();
    host.setTickPeriod(vm, root.id, u(ms));
    return WasmResult.Ok;
  });

  def('env.proxy_get_current_time_nanoseconds', (p) =>
    vm.memory.setU64(u(p), host.clock.realtimeNs()) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess,
  );

  // ---------------- env extras ----------------

  def('env.pthread_equal', (a, b) => (u(a) === u(b) ? 1 : 0));
  def('env.emscripten_notify_memory_growth', () => {
    vm.memory?.refresh();
  });
  def('env.envoy_resolve_dns', (ap, as, tokenPtr) => {
    const ctx = vm.ctx();
    const address = vm.memory.string(u(ap), u(as));
    if (address === null) return WasmResult.InvalidMemoryAccess;
    const token = (vm.nextDnsToken = (vm.nextDnsToken + 1) >>> 0);
    if (!vm.memory.setU32(u(tokenPtr), token)) return WasmResult.InvalidMemoryAccess;
    host.resolveDns(vm, ctx.root().id, token, address);
    return WasmResult.Ok;
  });

  // ---------------- WASI ----------------

  const writev = (fd: number, iovs: number, n: number): number | { written: number } => {
    let level: number;
    if (fd === 1) level = 2;
    else if (fd === 2) level = 4;
    else return Errno.BADF;
    const m = vm.memory;
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < n; i++) {
      const at = iovs + i * 8;
      if (!m.ok(at, 8)) return Errno.FAULT;
      const buf = m.dv.getUint32(at, true);
      const len = m.dv.getUint32(at + 4, true);
      if (len !== 0) {
        const v = m.copy(buf, len);
        if (v === null) return Errno.FAULT;
        parts.push(v);
        total += len;
      }
    }
    if (total !== 0) {
      let s = Buffer.concat(parts).toString('utf8');
      if (s.endsWith('\n')) s = s.slice(0, -1);
      host.pluginLog(vm, vm.ctx(), level, s, 'wasi');
    }
    return { written: total };
  };

  const wasi: Record<string, HostFn> = {
    fd_write: (fd, iovs, n, nw) => {
      const r = writev(u(fd), u(iovs), u(n));
      if (typeof r === 'number') return r;
      return vm.memory.setU32(u(nw), r.written) ? Errno.SUCCESS : Errno.FAULT;
    },
    fd_read: () => Errno.NOSYS,
    fd_seek: () => {
      host.contextError(vm, 'wasi_unstable fd_seek');
      return 0;
    },
    fd_close: () => {
      host.contextError(vm, 'wasi_unstable fd_close');
      return 0;
    },
    fd_fdstat_get: (fd, p) => {
      const f = u(fd);
      if (f !== 1 && f !== 2) return Errno.BADF;
      const m = vm.memory;
      if (m.ok(u(p), 24)) {
        m.dv.setBigUint64(u(p), 0n, true);
        m.dv.setBigUint64(u(p) + 8, 64n, true);
        m.dv.setBigUint64(u(p) + 16, 0n, true);
      }
      return Errno.SUCCESS;
    },
    fd_fdstat_set_flags: () => Errno.NOSYS,
    fd_fdstat_set_rights: (fd) => (isStdio(fd) ? Errno.SUCCESS : Errno.BADF),
    environ_get: (arrayPtr, bufPtr) => {
      let ap = u(arrayPtr);
      let bp = u(bufPtr);
      for (const [k, v] of vm.group.env) {
        if (!vm.memory.setU32(ap, bp)) return Errno.FAULT;
        const data = Buffer.from(`${k}=${v}\u0000`, 'utf8');
        if (!vm.memory.write(bp, data)) return Errno.FAULT;
        bp += data.length;
        ap += 4;
      }
      return Errno.SUCCESS;
    },
    environ_sizes_get: (countPtr, sizePtr) => {
      if (!vm.memory.setU32(u(countPtr), vm.group.env.length)) return Errno.FAULT;
      let size = 0;
      for (const [k, v] of vm.group.env) size += Buffer.byteLength(k) + Buffer.byteLength(v) + 2;
      return vm.memory.setU32(u(sizePtr), size) ? Errno.SUCCESS : Errno.FAULT;
    },
    args_get: () => Errno.SUCCESS,
    args_sizes_get: (a, b) => (vm.memory.setU32(u(a), 0) && vm.memory.setU32(u(b), 0) ? Errno.SUCCESS : Errno.FAULT),
    clock_time_get: (id, _precision, p) => {
      const clock = u(id);
      let t: bigint;
      if (clock === 0) t = host.clock.realtimeNs();
      else if (clock === 1) t = host.clock.monotonicNs();
      else return Errno.NOTSUP;
      return vm.memory.setU64(u(p), t) ? Errno.SUCCESS : Errno.FAULT;
    },
    clock_res_get: (id, p) => {
      const clock = u(id);
      if (clock !== 0 && clock !== 1) return Errno.NOTSUP;
      return vm.memory.setU64(u(p), 1n) ? Errno.SUCCESS : Errno.FAULT;
    },
    fd_advise: () => Errno.SUCCESS,
    fd_allocate: (fd) => (isStdio(fd) ? Errno.SUCCESS : Errno.BADF),
    fd_datasync: (fd) => (isStdio(fd) ? Errno.SUCCESS : Errno.BADF),
    fd_filestat_set_size: (fd) => (isStdio(fd) ? Errno.SUCCESS : Errno.BADF),
    fd_filestat_set_times: (fd) => (isStdio(fd) ? Errno.SUCCESS : Errno.BADF),
    fd_pread: () => Errno.NOSYS,
    fd_pwrite: (fd, iovs, n, _off, nw) => {
      if (!isStdio(fd)) return Errno.BADF;
      const r = writev(u(fd), u(iovs), u(n));
      if (typeof r === 'number') return r;
      return vm.memory.setU32(u(nw), r.written) ? Errno.SUCCESS : Errno.FAULT;
    },
    fd_readdir: (_fd, _b, _l, _c, nr) => (vm.memory.setU32(u(nr), 0) ? Errno.NOTDIR : Errno.FAULT),
    fd_renumber: (fd, to) => (isStdio(fd) && isStdio(to) ? Errno.NOTSUP : Errno.BADF),
    fd_sync: (fd) => (isStdio(fd) ? Errno.SUCCESS : Errno.BADF),
    fd_tell: (fd, p) => {
      if (!isStdio(fd)) return Errno.BADF;
      return vm.memory.setU64(u(p), 0n) ? Errno.SUCCESS : Errno.FAULT;
    },
    path_create_directory: () => Errno.NOTSUP,
    path_filestat_set_times: () => Errno.NOTSUP,
    path_link: () => Errno.NOTSUP,
    path_readlink: (_fd, _p, _pl, _b, _bl, r) => (vm.memory.setU32(u(r), 0) ? Errno.NOTSUP : Errno.FAULT),
    path_remove_directory: () => Errno.NOTSUP,
    path_rename: () => Errno.NOTSUP,
    path_symlink: () => Errno.NOTSUP,
    path_unlink_file: () => Errno.NOTSUP,
    sock_accept: (_fd, _f, r) => (vm.memory.setU64(u(r), 0n) ? Errno.NOTSUP : Errno.FAULT),
    sock_recv: (_fd, _d, _l, _f, r0, r1) =>
      vm.memory.setU32(u(r0), 0) && vm.memory.setU16(u(r1), 0) ? Errno.NOTSUP : Errno.FAULT,
    sock_send: (_fd, _d, _l, _f, r) => (vm.memory.setU32(u(r), 0) ? Errno.NOTSUP : Errno.FAULT),
    sock_shutdown: () => Errno.NOTSUP,
    random_get: (p, n) => {
      const len = u(n);
      if (len > RANDOM_GET_MAX_BYTES) return Errno.INVAL;
      if (len === 0) return Errno.SUCCESS;
      const view = vm.memory.view(u(p), len);
      if (!view) return Errno.FAULT;
      const seeded = host.random;
      if (seeded) seeded(view);
      else randomFillSync(view);
      return Errno.SUCCESS;
    },
    sched_yield: () => Errno.SUCCESS,
    poll_oneoff: (_in, _out, _n, nevents) => (vm.memory.setU32(u(nevents), 0) ? Errno.SUCCESS : Errno.FAULT),
    proc_exit: (code) => {
      // cpp-host logs and returns; every toolchain treats proc_exit as
      // noreturn (an `unreachable` follows), so the VM fails either way.
      host.contextError(vm, 'wasi_unstable proc_exit');
      throw new HostTrap(`proc_exit(${u(code)})`);
    },
    path_open: () => Errno.NOENT,
    fd_prestat_get: () => Errno.BADF,
    fd_prestat_dir_name: () => Errno.NOSYS,
    path_filestat_get: () => Errno.NOTSUP,
    fd_filestat_get: () => Errno.BADF,
  };
  for (const m of WASI_MODULES) for (const [name, fn] of Object.entries(wasi)) def(`${m}.${name}`, fn);

  return out;
}

function isStdio(fd: number | bigint): boolean {
  const f = Number(fd) >>> 0;
  return f === 1 || f === 2;
}
