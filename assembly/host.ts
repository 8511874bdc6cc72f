// The only module that talks to the proxy. Every call here is non-throwing: a host error becomes
// a null, a false or a result code, never an abort, so no host answer can trap the VM. The rest
// of assembly/ is plain logic that unit tests reach without a host.

import { ResponseTail } from "./observe/usage";
import * as abi from "@solo-io/proxy-runtime/assembly/imports";
import { free, lendScratch, unlendScratch } from "@solo-io/proxy-runtime/assembly/malloc";

export const OK: u32 = 0;
export const NOT_FOUND: u32 = 1;
export const CAS_MISMATCH: u32 = 8;

export const REQUEST_HEADERS: i32 = 0;
export const RESPONSE_HEADERS: i32 = 2;
export const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
export const REQUEST_BODY: i32 = 0;
const RESPONSE_BODY: i32 = 1;
const HTTP_CALL_RESPONSE_BODY: i32 = 4;

export const LOG_TRACE: i32 = 0;
export const LOG_DEBUG: i32 = 1;
export const LOG_INFO: i32 = 2;
export const LOG_WARN: i32 = 3;
export const LOG_ERROR: i32 = 4;
export const LOG_CRITICAL: i32 = 5;

export const METRIC_COUNTER: i32 = 0;
export const METRIC_GAUGE: i32 = 1;
export const METRIC_HISTOGRAM: i32 = 2;

// WASI calls that proxy-wasm hosts provide; the SDK declares none of them.
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "environ_sizes_get")
declare function wasi_environ_sizes_get(count_ptr: usize, size_ptr: usize): u16;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "environ_get")
declare function wasi_environ_get(environ_ptr: usize, buf_ptr: usize): u16;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "random_get")
declare function wasi_random_get(buf_ptr: usize, len: usize): u16;

// Out-parameters of host calls.
const OUT_PTR: usize = memory.data(8);
const OUT_SIZE: usize = memory.data(8);
const OUT_U32: usize = memory.data(8);
const OUT_U64: usize = memory.data(8);

// Takes ownership of a buffer the host allocated through malloc and wrote to OUT_PTR/OUT_SIZE.
function takeBuffer(): ArrayBuffer {
  const ptr = load<usize>(OUT_PTR);
  if (ptr == 0) return new ArrayBuffer(0);
  const buf = changetype<ArrayBuffer>(ptr);
  free(ptr); // unpin: the GC owns it from here
  return buf;
}

@inline function bytesOf(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

export function log(level: i32, message: string): void {
  const b = bytesOf(message);
  abi.proxy_log(<usize>level, changetype<usize>(b), <usize>b.byteLength);
}

export function nowMs(): f64 {
  if (abi.proxy_get_current_time_nanoseconds(OUT_U64) != OK) return 0;
  return <f64>(load<u64>(OUT_U64) / 1000000);
}

export function setTickPeriod(ms: u32): bool {
  return abi.proxy_set_tick_period_milliseconds(ms) == OK;
}

// ---- properties -----------------------------------------------------------------------------

export function getProperty(path: string): ArrayBuffer | null {
  const p = bytesOf(path);
  if (abi.proxy_get_property(changetype<usize>(p), <usize>p.byteLength, OUT_PTR, OUT_SIZE) != OK) return null;
  return takeBuffer();
}

export function getStringProperty(path: string): string {
  const v = getProperty(path);
  return v === null ? "" : String.UTF8.decode(v);
}

// ---- headers --------------------------------------------------------------------------------

export function getHeader(map: i32, name: string): string | null {
  const k = bytesOf(name);
  if (abi.proxy_get_header_map_value(map, changetype<usize>(k), <usize>k.byteLength, OUT_PTR, OUT_SIZE) != OK) return null;
  return String.UTF8.decode(takeBuffer());
}

export function setHeader(map: i32, name: string, value: string): bool {
  const k = bytesOf(name);
  const v = bytesOf(value);
  return abi.proxy_replace_header_map_value(map, changetype<usize>(k), <usize>k.byteLength, changetype<usize>(v), <usize>v.byteLength) == OK;
}

export function removeHeader(map: i32, name: string): bool {
  const k = bytesOf(name);
  return abi.proxy_remove_header_map_value(map, changetype<usize>(k), <usize>k.byteLength) == OK;
}

// ---- bodies ---------------------------------------------------------------------------------

export function getBody(size: i32): ArrayBuffer | null {
  if (abi.proxy_get_buffer_bytes(REQUEST_BODY, 0, <u32>size, OUT_PTR, OUT_SIZE) != OK) return null;
  return takeBuffer();
}

// Reads `length` bytes of the current response body chunk from `start` (the chunk so far: the
// filter lets response data pass as it comes) straight into `tail`, for a chunk of
// `start + length` bytes. The host writes them into a scratch area the module lends it (no
// buffer is allocated per chunk). False when the host refused.
let scratch: ArrayBuffer = new ArrayBuffer(0);

export function readResponseBody(start: i32, length: i32, tail: ResponseTail): bool {
  if (scratch.byteLength < length) scratch = new ArrayBuffer(length); // a module global: never collected
  const area = changetype<usize>(scratch);
  lendScratch(area, scratch.byteLength);
  const r = abi.proxy_get_buffer_bytes(RESPONSE_BODY, <u32>start, <u32>length, OUT_PTR, OUT_SIZE);
  unlendScratch();
  if (r != OK) return false;
  const ptr = load<usize>(OUT_PTR);
  tail.push(start + length, ptr, ptr != 0 ? <i32>load<usize>(OUT_SIZE) : 0);
  if (ptr != 0 && ptr != area) free(ptr); // a buffer the host allocated itself: unpin it
  return true;
}

export function getPluginConfiguration(size: i32): ArrayBuffer | null {
  if (size <= 0) return new ArrayBuffer(0);
  if (abi.proxy_get_buffer_bytes(7, 0, <u32>size, OUT_PTR, OUT_SIZE) != OK) return null;
  return takeBuffer();
}

export function replaceBody(oldSize: i32, body: ArrayBuffer): bool {
  return abi.proxy_set_buffer_bytes(REQUEST_BODY, 0, <u32>oldSize, changetype<usize>(body), <usize>body.byteLength) == OK;
}

// Replaces the request body and, when the request declares one, its content-length.
export function replaceRequestBody(oldSize: i32, body: ArrayBuffer): bool {
  if (!replaceBody(oldSize, body)) return false;
  if (getHeader(REQUEST_HEADERS, "content-length") !== null) setHeader(REQUEST_HEADERS, "content-length", body.byteLength.toString());
  return true;
}

// ---- responses ------------------------------------------------------------------------------

// Serializes header pairs the way proxy-wasm expects: count, sizes, then NUL-terminated bytes.
function serializePairs(names: Array<string>, values: Array<string>): ArrayBuffer {
  const n = names.length;
  const keys = new Array<ArrayBuffer>(n);
  const vals = new Array<ArrayBuffer>(n);
  let size = 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    keys[i] = bytesOf(names[i]);
    vals[i] = bytesOf(values[i]);
    size += keys[i].byteLength + vals[i].byteLength + 2;
  }
  const out = new ArrayBuffer(size);
  const o = changetype<usize>(out);
  store<u32>(o, <u32>n);
  let p: usize = o + 4 + 8 * <usize>n;
  for (let i = 0; i < n; i++) {
    store<u32>(o + 4 + 8 * <usize>i, <u32>keys[i].byteLength);
    store<u32>(o + 8 + 8 * <usize>i, <u32>vals[i].byteLength);
    memory.copy(p, changetype<usize>(keys[i]), <usize>keys[i].byteLength);
    p += <usize>keys[i].byteLength + 1;
    memory.copy(p, changetype<usize>(vals[i]), <usize>vals[i].byteLength);
    p += <usize>vals[i].byteLength + 1;
  }
  return out;
}

export function sendResponse(status: u32, details: string, body: string, names: Array<string>, values: Array<string>): bool {
  const d = bytesOf(details);
  const b = bytesOf(body);
  const h = serializePairs(names, values);
  return abi.proxy_send_local_response(status, changetype<usize>(d), <usize>d.byteLength, changetype<usize>(b), <usize>b.byteLength,
    changetype<usize>(h), <usize>h.byteLength, <u32>-1) == OK;
}

// A local response with a binary body.
export function sendResponseBytes(status: u32, details: string, body: ArrayBuffer, names: Array<string>, values: Array<string>): bool {
  const d = bytesOf(details);
  const h = serializePairs(names, values);
  return abi.proxy_send_local_response(status, changetype<usize>(d), <usize>d.byteLength, changetype<usize>(body), <usize>body.byteLength,
    changetype<usize>(h), <usize>h.byteLength, <u32>-1) == OK;
}

// ---- shared data ----------------------------------------------------------------------------

export class Shared {
  value: ArrayBuffer | null = null;
  cas: u32 = 0;
  result: u32 = NOT_FOUND;
}

export function getShared(key: string, out: Shared): Shared {
  const k = bytesOf(key);
  out.result = abi.proxy_get_shared_data(changetype<usize>(k), <usize>k.byteLength, OUT_PTR, OUT_SIZE, OUT_U32);
  if (out.result == OK) {
    out.value = takeBuffer();
    out.cas = load<u32>(OUT_U32);
  } else {
    out.value = null;
    out.cas = 0;
  }
  return out;
}

export function setShared(key: string, value: ArrayBuffer, cas: u32): u32 {
  const k = bytesOf(key);
  return abi.proxy_set_shared_data(changetype<usize>(k), <usize>k.byteLength, changetype<usize>(value), <usize>value.byteLength, cas);
}

// ---- metrics --------------------------------------------------------------------------------

export function defineMetric(kind: i32, name: string): u32 {
  const n = bytesOf(name);
  if (abi.proxy_define_metric(kind, changetype<usize>(n), <usize>n.byteLength, OUT_U32) != OK) return 0xffffffff;
  return load<u32>(OUT_U32);
}

export function incrementMetric(id: u32, by: i64): void {
  if (id != 0xffffffff) abi.proxy_increment_metric(id, by);
}

export function recordMetric(id: u32, value: u64): void {
  if (id != 0xffffffff) abi.proxy_record_metric(id, value);
}

// ---- outbound calls -------------------------------------------------------------------------

// Sends an HTTP request to `cluster` (the call belongs to the root context; the answer arrives in
// proxy_on_http_call_response). Returns the call's token, or 0 when the host refused it (unknown
// cluster, missing :method/:path/:authority, ...).
export function httpCall(cluster: string, names: Array<string>, values: Array<string>, body: ArrayBuffer, timeoutMs: u32): u32 {
  const c = bytesOf(cluster);
  const h = serializePairs(names, values);
  const t = serializePairs([], []);
  if (abi.proxy_http_call(changetype<usize>(c), <usize>c.byteLength, changetype<usize>(h), <usize>h.byteLength,
    changetype<usize>(body), <usize>body.byteLength, changetype<usize>(t), <usize>t.byteLength, timeoutMs, OUT_U32) != OK) return 0;
  return load<u32>(OUT_U32);
}

// The body of the call answer being delivered (inside proxy_on_http_call_response only).
export function httpCallBody(size: i32): ArrayBuffer | null {
  if (size <= 0) return new ArrayBuffer(0);
  if (abi.proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, <u32>size, OUT_PTR, OUT_SIZE) != OK) return null;
  return takeBuffer();
}

// Makes the stream `id` the context later calls act on; false when that stream is gone.
export function setEffectiveContext(id: u32): bool {
  return abi.proxy_set_effective_context(id) == OK;
}

// ---- shared queues --------------------------------------------------------------------------

// Registers (or re-points to this root context) the queue `name` of this VM id; its token, or 0.
export function registerQueue(name: string): u32 {
  const n = bytesOf(name);
  if (abi.proxy_register_shared_queue(changetype<usize>(n), <usize>n.byteLength, OUT_U32) != OK) return 0;
  return load<u32>(OUT_U32);
}

// The token of queue `name` of VM id `vmId`, or 0 when nobody registered it.
export function resolveQueue(vmId: string, name: string): u32 {
  const v = bytesOf(vmId);
  const n = bytesOf(name);
  if (abi.proxy_resolve_shared_queue(changetype<usize>(v), <usize>v.byteLength, changetype<usize>(n), <usize>n.byteLength, OUT_U32) != OK) return 0;
  return load<u32>(OUT_U32);
}

export function enqueue(token: u32, data: ArrayBuffer): bool {
  return abi.proxy_enqueue_shared_queue(token, changetype<usize>(data), <usize>data.byteLength) == OK;
}

// Takes one message off the queue; false when it is empty (or gone).
export function dequeue(token: u32): bool {
  if (abi.proxy_dequeue_shared_queue(token, OUT_PTR, OUT_SIZE) != OK) return false;
  takeBuffer();
  return true;
}

// ---- stream control -------------------------------------------------------------------------

export function continueRequest(): bool {
  return abi.proxy_continue_stream(0) == OK;
}

// ---- WASI -----------------------------------------------------------------------------------

// The VM's environment variable `name` (Envoy: vm_config.environment_variables), or null.
export function envVar(name: string): string | null {
  if (wasi_environ_sizes_get(OUT_U32, OUT_SIZE) != 0) return null;
  const count = load<u32>(OUT_U32);
  const size = load<usize>(OUT_SIZE);
  if (count == 0 || size == 0 || count > 65536 || size > 16 * 1024 * 1024) return null;
  const ptrs = new ArrayBuffer(<i32>(count * 4));
  const buf = new ArrayBuffer(<i32>size);
  if (wasi_environ_get(changetype<usize>(ptrs), changetype<usize>(buf)) != 0) return null;
  const base = changetype<usize>(buf);
  const end = base + size;
  const want = bytesOf(name + "=");
  const wlen = <usize>want.byteLength;
  for (let i: u32 = 0; i < count; i++) {
    const p = load<usize>(changetype<usize>(ptrs) + 4 * <usize>i);
    if (p < base || p >= end) continue;
    if (p + wlen > end || memory.compare(p, changetype<usize>(want), wlen) != 0) continue;
    let q = p + wlen;
    while (q < end && load<u8>(q) != 0) q++;
    return String.UTF8.decodeUnsafe(p + wlen, q - p - wlen);
  }
  return null;
}

// 64 random bits from the host, or 0 when it has none.
export function randomU64(): u64 {
  if (wasi_random_get(OUT_U64, 8) != 0) return 0;
  return load<u64>(OUT_U64);
}
