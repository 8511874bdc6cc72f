// Bounds-checked access to a module's linear memory, with the same rules as
// cpp-host's WasmVm::getMemory / setMemory / setWord (src/v8/v8.cc): any range
// that is not entirely inside the current memory is refused, and the caller
// turns that into WasmResult::InvalidMemoryAccess (or a WASI EFAULT) instead
// of throwing. Views are re-derived only when the memory has grown.

const utf8Decoder = new TextDecoder('utf-8', { fatal: false });
const utf8Encoder = new TextEncoder();

export class VmMemory {
  private buf: ArrayBuffer;
  u8: Uint8Array;
  dv: DataView;

  constructor(readonly memory: WebAssembly.Memory) {
    this.buf = memory.buffer;
    this.u8 = new Uint8Array(this.buf);
    this.dv = new DataView(this.buf);
  }

  /** Re-derive views if the module grew its memory since the last access. */
  refresh(): void {
    if (this.memory.buffer !== this.buf) {
      this.buf = this.memory.buffer;
      this.u8 = new Uint8Array(this.buf);
      this.dv = new DataView(this.buf);
    }
  }

  get size(): number {
    this.refresh();
    return this.u8.length;
  }

  /** True when [ptr, ptr+len) lies inside memory. ptr and len are unsigned 32-bit values. */
  ok(ptr: number, len: number): boolean {
    this.refresh();
    return ptr + len <= this.u8.length;
  }

  /** A view (not a copy) of guest memory, or null when out of bounds. */
  view(ptr: number, len: number): Uint8Array | null {
    this.refresh();
    if (ptr + len > this.u8.length) return null;
    return this.u8.subarray(ptr, ptr + len);
  }

  /** A copy of guest memory, or null when out of bounds. */
  copy(ptr: number, len: number): Uint8Array | null {
    this.refresh();
    if (ptr + len > this.u8.length) return null;
    return this.u8.slice(ptr, ptr + len);
  }

  string(ptr: number, len: number): string | null {
    this.refresh();
    if (ptr + len > this.u8.length) return null;
    if (len === 0) return '';
    return decodeUtf8(this.u8, ptr, len);
  }

  setU32(ptr: number, v: number): boolean {
    this.refresh();
    if (ptr + 4 > this.u8.length) return false;
    this.dv.setUint32(ptr, v >>> 0, true);
    return true;
  }

  setU16(ptr: number, v: number): boolean {
    this.refresh();
    if (ptr + 2 > this.u8.length) return false;
    this.dv.setUint16(ptr, v, true);
    return true;
  }

  setU64(ptr: number, v: bigint): boolean {
    this.refresh();
    if (ptr + 8 > this.u8.length) return false;
    this.dv.setBigUint64(ptr, BigInt.asUintN(64, v), true);
    return true;
  }

  getU32(ptr: number): number | null {
    this.refresh();
    if (ptr + 4 > this.u8.length) return null;
    return this.dv.getUint32(ptr, true);
  }

  write(ptr: number, data: Uint8Array): boolean {
    this.refresh();
    if (ptr + data.length > this.u8.length) return false;
    this.u8.set(data, ptr);
    return true;
  }
}

/** Decode UTF-8 from a byte range; pure-ASCII short strings skip TextDecoder. */
export function decodeUtf8(u8: Uint8Array, ptr: number, len: number): string {
  if (len <= 32) {
    let ascii = true;
    for (let i = ptr, e = ptr + len; i < e; i++) {
      if (u8[i] >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      // String.fromCharCode over a small range is cheaper than TextDecoder setup.
      return String.fromCharCode.apply(null, u8.subarray(ptr, ptr + len) as unknown as number[]);
    }
  }
  return utf8Decoder.decode(u8.subarray(ptr, ptr + len));
}

/** Byte length of a string in UTF-8 without encoding it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** Encode a string into `dst` at `pos`; returns bytes written. */
export function encodeUtf8Into(s: string, dst: Uint8Array, pos: number): number {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) {
    for (let i = 0; i < s.length; i++) dst[pos + i] = s.charCodeAt(i);
    return s.length;
  }
  return utf8Encoder.encodeInto(s, dst.subarray(pos)).written;
}

export function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? utf8Encoder.encode(data) : data;
}

export function bytesToString(data: Uint8Array): string {
  return utf8Decoder.decode(data);
}
