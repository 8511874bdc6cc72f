// A byte buffer with the operations Envoy's Buffer::Instance offers to the
// Wasm glue (append, prepend, drain, move), plus the set_buffer_bytes rules
// of Envoy's Wasm Buffer::copyFrom (source/extensions/common/wasm/context.cc):
//
//   start == 0          -> drain `length` bytes from the front (clamped), then
//                          prepend the data; so (0, size) replaces everything
//                          and (0, 0) prepends
//   start >= size       -> append the data (length ignored)
//   0 < start < size    -> BadArgument (no mid-buffer edits)

import { WasmResult } from './abi.ts';

export class BodyBuffer {
  private chunks: Uint8Array[] = [];
  private len = 0;

  constructor(initial?: Uint8Array) {
    if (initial && initial.length) {
      this.chunks.push(initial);
      this.len = initial.length;
    }
  }

  get length(): number {
    return this.len;
  }

  append(data: Uint8Array): void {
    if (data.length === 0) return;
    this.chunks.push(data);
    this.len += data.length;
  }

  prepend(data: Uint8Array): void {
    if (data.length === 0) return;
    this.chunks.unshift(data);
    this.len += data.length;
  }

  drain(n: number): void {
    let left = Math.min(n, this.len);
    this.len -= left;
    while (left > 0) {
      const c = this.chunks[0];
      if (c.length <= left) {
        this.chunks.shift();
        left -= c.length;
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
  }

  clear(): void {
    this.chunks = [];
    this.len = 0;
  }

  /** Move every byte of `other` to the end of this buffer (Buffer::move). */
  moveFrom(other: BodyBuffer): void {
    if (other === this) return;
    for (const c of other.chunks) this.chunks.push(c);
    this.len += other.len;
    other.clear();
  }

  /** Contiguous bytes; collapses the chunk list so repeated reads stay cheap. */
  bytes(): Uint8Array {
    if (this.chunks.length === 0) return new Uint8Array(0);
    if (this.chunks.length === 1) return this.chunks[0];
    const out = new Uint8Array(this.len);
    let pos = 0;
    for (const c of this.chunks) {
      out.set(c, pos);
      pos += c.length;
    }
    this.chunks = [out];
    return out;
  }

  /** Copy [start, start+length) into dst at dstPos; the range must be valid. */
  copyOut(start: number, length: number, dst: Uint8Array, dstPos: number): void {
    const all = this.bytes();
    dst.set(all.subarray(start, start + length), dstPos);
  }

  /** set_buffer_bytes on a mutable HTTP body buffer (Envoy Buffer::copyFrom). */
  copyFrom(start: number, length: number, data: Uint8Array): number {
    if (start === 0) {
      if (length !== 0) this.drain(length);
      this.prepend(data);
      return WasmResult.Ok;
    }
    if (start >= this.len) {
      this.append(data);
      return WasmResult.Ok;
    }
    return WasmResult.BadArgument;
  }
}
