// proxy_get_property / proxy_set_property as Envoy answers them
// (Context::getProperty / findValue and the CEL attribute wrappers).
//
// A path is a list of segments joined with '\0' ("request\0path"). The first
// segment selects a top-level value; later segments index maps (by key) and
// lists (by decimal index). Values are serialized Envoy's way: strings and
// bytes raw, int/uint/timestamp/duration as 8 little-endian bytes, doubles as
// 8-byte IEEE, bools as 1 byte, maps and lists in the header-pairs format.
//
// Attributes that read request headers (request.path, .method, .host, ...)
// only resolve while Envoy still holds the headers for the filter: during
// on_request_headers, while they are paused, and during on_log. Once the
// request headers went upstream they are NotFound. Root contexts have no
// stream: request/response/connection attributes are NotFound there.

import { WasmResult } from './abi.ts';
import type { Context } from './context.ts';
import type { HeaderMap } from './header-map.ts';

/** Values the test can inject through the plugin's `properties` option. */
export type PropertyValue =
  | string
  | Uint8Array
  | number
  | bigint
  | boolean
  | { double: number }
  | { timestampNs: bigint }
  | PropertyValue[]
  | { [key: string]: PropertyValue };

type V =
  | { t: 'str'; v: string }
  | { t: 'bytes'; v: Uint8Array }
  | { t: 'int'; v: bigint }
  | { t: 'uint'; v: bigint }
  | { t: 'double'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'map'; get(key: string): V | undefined; entries(): Array<[V, V]> }
  | { t: 'list'; items: V[] };

const str = (v: string): V => ({ t: 'str', v });
const int = (v: number | bigint): V => ({ t: 'int', v: BigInt(v) });

function fromUser(p: PropertyValue): V {
  if (typeof p === 'string') return str(p);
  if (p instanceof Uint8Array) return { t: 'bytes', v: p };
  if (typeof p === 'number') return Number.isInteger(p) ? int(p) : { t: 'double', v: p };
  if (typeof p === 'bigint') return int(p);
  if (typeof p === 'boolean') return { t: 'bool', v: p };
  if (Array.isArray(p)) return { t: 'list', items: p.map(fromUser) };
  if ('double' in p && typeof p.double === 'number') return { t: 'double', v: p.double };
  if ('timestampNs' in p && typeof p.timestampNs === 'bigint') return { t: 'int', v: p.timestampNs };
  const obj = p as { [key: string]: PropertyValue };
  return {
    t: 'map',
    get: (k) => (Object.prototype.hasOwnProperty.call(obj, k) ? fromUser(obj[k]) : undefined),
    entries: () => Object.entries(obj).map(([k, v]) => [str(k), fromUser(v)] as [V, V]),
  };
}

function headersMap(h: HeaderMap | null): V {
  return {
    t: 'map',
    get: (k) => {
      if (!h) return undefined;
      const all = h.getAll(k);
      return all.length ? str(all.join(',')) : undefined;
    },
    entries: () => {
      if (!h) return [];
      const seen = new Set<string>();
      const out: Array<[V, V]> = [];
      for (const [k] of h.entries) {
        if (seen.has(k)) continue;
        seen.add(k);
        out.push([str(k), str(h.getAll(k).join(','))]);
      }
      return out;
    },
  };
}

function lazyMap(fields: Record<string, () => V | undefined>): V {
  return {
    t: 'map',
    get: (k) => (Object.prototype.hasOwnProperty.call(fields, k) ? fields[k]() : undefined),
    entries: () => {
      const out: Array<[V, V]> = [];
      for (const [k, f] of Object.entries(fields)) {
        const v = f();
        if (v !== undefined) out.push([str(k), v]);
      }
      return out;
    },
  };
}

function splitAddress(a: string): { address: string; port: number | undefined } {
  const i = a.lastIndexOf(':');
  const port = i >= 0 ? Number(a.slice(i + 1)) : NaN;
  return { address: a, port: Number.isInteger(port) ? port : undefined };
}

function streamValue(ctx: Context, name: string): V | undefined {
  const s = ctx.asStream();
  if (!s) return undefined;
  const st = s.stream;
  const env = st.env;
  const reqHeaders = s.requestHeaders ?? s.accessLogRequestHeaders;
  const respHeaders = s.responseHeaders ?? s.accessLogResponseHeaders;
  const respTrailers = s.responseTrailers ?? s.accessLogResponseTrailers;
  const hdr = (k: string) => () => {
    const v = reqHeaders?.get(k);
    return v === undefined ? undefined : str(v);
  };
  const ifHeaders = (f: () => V | undefined) => () => (reqHeaders ? f() : undefined);
  switch (name) {
    case 'request':
      return lazyMap({
        path: hdr(':path'),
        url_path: ifHeaders(() => {
          const p = reqHeaders!.get(':path') ?? '';
          const q = p.indexOf('?');
          return str(q < 0 ? p : p.slice(0, q));
        }),
        query: ifHeaders(() => {
          const p = reqHeaders!.get(':path') ?? '';
          const q = p.indexOf('?');
          return str(q < 0 ? '' : p.slice(q + 1));
        }),
        host: hdr(':authority'),
        scheme: hdr(':scheme'),
        method: hdr(':method'),
        referer: hdr('referer'),
        useragent: hdr('user-agent'),
        id: hdr('x-request-id'),
        headers: () => headersMap(reqHeaders),
        time: () => int(BigInt(Math.round(st.startTimeMs * 1e6))),
        protocol: () => str(env.protocol),
        size: () => {
          const cl = reqHeaders?.get('content-length');
          if (reqHeaders && cl !== undefined) return /^\d+$/.test(cl) ? int(BigInt(cl)) : undefined;
          return int(st.bytesReceived);
        },
        total_size: ifHeaders(() => int(st.bytesReceived + reqHeaders!.byteSize())),
        duration: () => (st.done || s.accessLogPhase ? int(BigInt(Math.round((s.vm.host.clock.nowMs() - st.startTimeMs) * 1e6))) : undefined),
      });
    case 'response':
      return lazyMap({
        code: () => (st.responseCode !== null ? int(st.responseCode) : undefined),
        code_details: () => (st.details !== null ? str(st.details) : undefined),
        flags: () => ({ t: 'uint', v: 0n }),
        headers: () => headersMap(respHeaders),
        trailers: () => headersMap(respTrailers),
        size: () => int(st.bytesSent),
        total_size: () => int(st.bytesSent + (respHeaders?.byteSize() ?? 0) + (respTrailers?.byteSize() ?? 0)),
      });
    case 'connection':
      return lazyMap({
        id: () => ({ t: 'uint', v: BigInt(env.connectionId) }),
        mtls: () => ({ t: 'bool', v: false }),
        requested_server_name: () => str(''),
      });
    case 'source':
    case 'destination': {
      const a = splitAddress(name === 'source' ? env.sourceAddress : env.destinationAddress);
      return lazyMap({
        address: () => str(a.address),
        port: () => (a.port === undefined ? undefined : int(a.port)),
      });
    }
    case 'connection_id':
      return { t: 'uint', v: BigInt(env.connectionId) };
    default:
      return undefined;
  }
}

function topValue(ctx: Context, name: string): V | undefined {
  const fromStream = streamValue(ctx, name);
  if (fromStream) return fromStream;
  const plugin = ctx.plugin;
  switch (name) {
    case 'plugin_name':
      return plugin ? str(plugin.name) : undefined;
    case 'plugin_root_id':
      return str(ctx.rootId);
    case 'plugin_vm_id':
      return str(ctx.vm.group.vmId);
  }
  const fs = ctx.filterState?.get(name);
  if (fs) return { t: 'bytes', v: fs };
  return undefined;
}

const enc = new TextEncoder();

function serialize(v: V): Uint8Array | null {
  switch (v.t) {
    case 'str':
      return enc.encode(v.v);
    case 'bytes':
      return v.v;
    case 'int':
    case 'uint': {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v.v), true);
      return b;
    }
    case 'double': {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, v.v, true);
      return b;
    }
    case 'bool':
      return new Uint8Array([v.v ? 1 : 0]);
    case 'map':
    case 'list': {
      const pairs: Array<[Uint8Array, Uint8Array]> = [];
      const items: Array<[V, V | null]> = v.t === 'map' ? v.entries() : v.items.map((x) => [x, null]);
      for (const [k, val] of items) {
        const kb = serialize(k);
        const vb = val ? serialize(val) : new Uint8Array(0);
        if (!kb || !vb) return null;
        pairs.push([kb, vb]);
      }
      return encodeBytePairs(pairs);
    }
  }
}

function encodeBytePairs(pairs: Array<[Uint8Array, Uint8Array]>): Uint8Array {
  let size = 4;
  for (const [k, v] of pairs) size += 8 + k.length + 1 + v.length + 1;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, pairs.length, true);
  let pos = 4;
  for (const [k, v] of pairs) {
    dv.setUint32(pos, k.length, true);
    dv.setUint32(pos + 4, v.length, true);
    pos += 8;
  }
  for (const [k, v] of pairs) {
    out.set(k, pos);
    pos += k.length + 1;
    out.set(v, pos);
    pos += v.length + 1;
  }
  return out;
}

/** Resolve a '\0'-separated path. Returns a WasmResult and, on Ok, the serialized value. */
export function getProperty(ctx: Context, path: string): { result: number; value?: Uint8Array } {
  const parts = path.length ? path.split('\u0000') : [];
  if (parts.length && parts[parts.length - 1] === '') parts.pop();
  if (parts.length === 0) return { result: WasmResult.SerializationFailure };
  const user = ctx.plugin?.properties;
  let value: V | undefined;
  let rest = parts.slice(1);
  const full = parts.join('.');
  if (user && Object.prototype.hasOwnProperty.call(user, full)) {
    value = fromUser(user[full]);
    rest = [];
  } else if (user && Object.prototype.hasOwnProperty.call(user, parts[0])) {
    value = fromUser(user[parts[0]]);
  } else {
    value = topValue(ctx, parts[0]);
  }
  if (!value) return { result: WasmResult.NotFound };
  for (const part of rest) {
    if (value.t === 'map') {
      const next: V | undefined = value.get(part);
      if (!next) return { result: WasmResult.NotFound };
      value = next;
    } else if (value.t === 'list') {
      if (!/^-?\d+$/.test(part)) return { result: WasmResult.NotFound };
      const idx = Number(part);
      if (idx < 0 || idx >= value.items.length) return { result: WasmResult.NotFound };
      value = value.items[idx];
    } else {
      return { result: WasmResult.NotFound };
    }
  }
  const bytes = serialize(value);
  if (!bytes) return { result: WasmResult.SerializationFailure };
  return { result: WasmResult.Ok, value: bytes };
}

/** Envoy stores set_property values as stream filter state ("wasm.<path>"); no stream -> NotFound. */
export function setProperty(ctx: Context, path: string, value: Uint8Array): number {
  const fs = ctx.filterState;
  if (!fs) return WasmResult.NotFound;
  fs.set(path, value);
  return WasmResult.Ok;
}
