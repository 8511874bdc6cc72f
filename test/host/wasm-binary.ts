// Just enough of a WebAssembly binary reader to do what cpp-host does before
// instantiating a module: find the ABI version marker export (the first
// function export named proxy_abi_version_*, as src/bytecode_util.cc scans),
// and know the exact signature of every function import and export, because
// V8's wasm-c-api link step (src/v8/v8.cc) compares them against the host's.
// JS `WebAssembly.Module.imports()` does not expose types, hence this reader.

import { ABI_EXPORTS, type AbiVersion, type Sig } from './abi.ts';

export interface ImportEntry {
  module: string;
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
  /** Signature for function imports, e.g. "iii>i". */
  sig?: Sig;
  /** Limits for memory and table imports (pages / elements). */
  limits?: { min: number; max?: number; shared?: boolean };
}

export interface ExportEntry {
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
  sig?: Sig;
}

export interface ModuleShape {
  imports: ImportEntry[];
  exports: ExportEntry[];
  /** ABI version from the first matching marker export, or null (cpp-host: Unknown). */
  abi: AbiVersion | null;
}

const KINDS = ['function', 'table', 'memory', 'global', 'tag'] as const;
const VALTYPE: Record<number, string> = {
  0x7f: 'i', 0x7e: 'I', 0x7d: 'f', 0x7c: 'F', 0x7b: 'v', 0x70: 'r', 0x6f: 'x',
};
const utf8 = new TextDecoder('utf-8', { fatal: false });

class Reader {
  pos = 0;
  constructor(readonly b: Uint8Array, readonly end = b.length) {}
  byte(): number {
    if (this.pos >= this.end) throw new Error('malformed Wasm module: unexpected end');
    return this.b[this.pos++];
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result >>> 0;
      shift += 7;
      if (shift > 28) throw new Error('malformed Wasm module: varint too long');
    }
  }
  name(): string {
    const len = this.u32();
    if (this.pos + len > this.end) throw new Error('malformed Wasm module: name past end');
    const s = utf8.decode(this.b.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }
  limits(): { min: number; max?: number; shared?: boolean } {
    const flags = this.byte();
    const min = this.u32();
    const max = flags & 1 ? this.u32() : undefined;
    return { min, max, shared: (flags & 2) !== 0 };
  }
  valtype(): string {
    const t = this.byte();
    const v = VALTYPE[t];
    if (v === undefined) throw new Error(`unsupported Wasm value type 0x${t.toString(16)}`);
    return v;
  }
}

export function readModuleShape(bytes: Uint8Array): ModuleShape {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new Error('not a WebAssembly binary (bad magic)');
  }
  const types: Sig[] = [];
  const imports: ImportEntry[] = [];
  const funcTypes: number[] = []; // function index space -> type index
  const rawExports: Array<{ name: string; kind: number; index: number }> = [];
  const r = new Reader(bytes);
  r.pos = 8;
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (end > bytes.length) throw new Error('malformed Wasm module: section past end');
    const s = new Reader(bytes, end);
    s.pos = r.pos;
    if (id === 1) {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const form = s.byte();
        if (form !== 0x60) throw new Error(`unsupported Wasm type form 0x${form.toString(16)}`);
        let sig = '';
        for (let p = s.u32(); p > 0; p--) sig += s.valtype();
        sig += '>';
        for (let q = s.u32(); q > 0; q--) sig += s.valtype();
        types.push(sig);
      }
    } else if (id === 2) {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const module = s.name();
        const name = s.name();
        const kind = s.byte();
        const entry: ImportEntry = { module, name, kind: KINDS[kind] ?? 'tag' };
        if (kind === 0) {
          const t = s.u32();
          entry.sig = types[t];
          funcTypes.push(t);
        } else if (kind === 1) {
          s.byte();
          entry.limits = s.limits();
        } else if (kind === 2) {
          entry.limits = s.limits();
        } else if (kind === 3) {
          s.valtype();
          s.byte();
        } else if (kind === 4) {
          s.byte();
          s.u32();
        } else {
          throw new Error(`unsupported Wasm import kind ${kind}`);
        }
        imports.push(entry);
      }
    } else if (id === 3) {
      const n = s.u32();
      for (let i = 0; i < n; i++) funcTypes.push(s.u32());
    } else if (id === 7) {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        const name = s.name();
        const kind = s.byte();
        const index = s.u32();
        rawExports.push({ name, kind, index });
      }
    }
    r.pos = end;
  }
  const exports: ExportEntry[] = rawExports.map((e) => {
    const out: ExportEntry = { name: e.name, kind: KINDS[e.kind] ?? 'tag' };
    if (e.kind === 0) out.sig = types[funcTypes[e.index]];
    return out;
  });
  let abi: AbiVersion | null = null;
  for (const e of rawExports) {
    if (e.kind !== 0) continue;
    const hit = ABI_EXPORTS.find(([n]) => n === e.name);
    if (hit) {
      abi = hit[1];
      break;
    }
  }
  return { imports, exports, abi };
}

/** Human-readable form of a compact signature, in the style of cpp-host's messages. */
export function describeSig(sig: Sig | undefined): string {
  if (sig === undefined) return '?';
  const name: Record<string, string> = { i: 'i32', I: 'i64', f: 'f32', F: 'f64', v: 'v128', r: 'funcref', x: 'externref' };
  const [p, q] = sig.split('>');
  return `(${[...p].map((c) => name[c]).join(', ')}) -> (${[...q].map((c) => name[c]).join(', ')})`;
}
