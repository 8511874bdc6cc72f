// Header-map wire format shared by host and module (src/pairs_util.cc):
//
//   u32 count | count x (u32 key_len, u32 value_len) | count x (key \0 value \0)
//
// All integers little-endian. Decoding is all-or-nothing: a malformed buffer,
// more than 1024 pairs or more than 1 MiB decodes to an EMPTY list (not an
// error), so e.g. proxy_set_header_map_pairs with a bad buffer clears the map.

import { PAIRS_MAX_BYTES, PAIRS_MAX_COUNT } from './abi.ts';
import { decodeUtf8, encodeUtf8Into, utf8Length } from './memory.ts';

export type Pair = [string, string];
export type Pairs = Pair[];

/** Serialized size of `pairs` (PairsUtil::pairsSize). */
export function pairsSize(pairs: readonly Pair[], lens?: number[]): number {
  let size = 4;
  for (let i = 0; i < pairs.length; i++) {
    const k = utf8Length(pairs[i][0]);
    const v = utf8Length(pairs[i][1]);
    if (lens) {
      lens[2 * i] = k;
      lens[2 * i + 1] = v;
    }
    size += 8 + k + 1 + v + 1;
  }
  return size;
}

/** Write `pairs` at `ptr` (which must have `size` bytes), using lengths from pairsSize. */
export function marshalPairs(pairs: readonly Pair[], lens: number[], u8: Uint8Array, dv: DataView, ptr: number): void {
  dv.setUint32(ptr, pairs.length, true);
  let pos = ptr + 4;
  for (let i = 0; i < pairs.length; i++) {
    dv.setUint32(pos, lens[2 * i], true);
    dv.setUint32(pos + 4, lens[2 * i + 1], true);
    pos += 8;
  }
  for (let i = 0; i < pairs.length; i++) {
    pos += encodeUtf8Into(pairs[i][0], u8, pos);
    u8[pos++] = 0;
    pos += encodeUtf8Into(pairs[i][1], u8, pos);
    u8[pos++] = 0;
  }
}

/** Standalone encoding (for tests and for building buffers outside a VM). */
export function encodePairs(pairs: readonly Pair[]): Uint8Array {
  const lens: number[] = [];
  const size = pairsSize(pairs, lens);
  const u8 = new Uint8Array(size);
  marshalPairs(pairs, lens, u8, new DataView(u8.buffer), 0);
  return u8;
}

/** PairsUtil::toPairs over guest memory [ptr, ptr+len). Malformed input yields []. */
export function decodePairs(u8: Uint8Array, dv: DataView, ptr: number, len: number): Pairs {
  if (len > PAIRS_MAX_BYTES) return [];
  const end = ptr + len;
  let pos = ptr;
  if (pos + 4 > end) return [];
  const n = dv.getUint32(pos, true);
  pos += 4;
  if (n > PAIRS_MAX_COUNT) return [];
  if (pos + n * 8 > end) return [];
  const sizes = new Array<number>(2 * n);
  for (let i = 0; i < n; i++) {
    sizes[2 * i] = dv.getUint32(pos, true);
    sizes[2 * i + 1] = dv.getUint32(pos + 4, true);
    pos += 8;
  }
  const out: Pairs = new Array(n);
  for (let i = 0; i < n; i++) {
    const kl = sizes[2 * i];
    if (pos + kl + 1 > end) return [];
    const key = decodeUtf8(u8, pos, kl);
    pos += kl;
    if (u8[pos++] !== 0) return [];
    const vl = sizes[2 * i + 1];
    if (pos + vl + 1 > end) return [];
    const value = decodeUtf8(u8, pos, vl);
    pos += vl;
    if (u8[pos++] !== 0) return [];
    out[i] = [key, value];
  }
  if (pos !== end) return [];
  return out;
}
