// The prefix-record format shared by the filter and the sidecars (little-endian), a batch being
// records back to back:
//
//   u32  endpoint id   FNV-1a (32-bit) of the endpoint's "ip:port", the same on every replica
//   u32  time          ms since the Unix epoch, modulo 2^32
//   u8   n             1..64
//   n x u64            chained prefix hashes (opaque here)
//
// A record is 9 + 8n bytes. A batch with a record cut short, n = 0 or n > 64 is malformed.
// Pure functions over Uint8Array (Node Buffers are Uint8Arrays); no I/O, no clock.

export const HEADER_BYTES = 9;
export const HASH_BYTES = 8;
export const MAX_HASHES = 64;
export const MAX_RECORD_BYTES = HEADER_BYTES + HASH_BYTES * MAX_HASHES;
export const CONTENT_TYPE = "application/vnd.wasm-epp.prefix-records";

export class MalformedBatch extends Error {
  readonly offset: number;

  constructor(offset: number, message: string) {
    super(`malformed prefix records at byte ${offset}: ${message}`);
    this.name = "MalformedBatch";
    this.offset = offset;
  }
}

export function recordSize(n: number): number {
  return HEADER_BYTES + HASH_BYTES * n;
}

// The size of the record starting at `offset`, or a MalformedBatch describing why there is none.
function sizeAt(batch: Uint8Array, offset: number): number | MalformedBatch {
  const left = batch.length - offset;
  if (left < HEADER_BYTES) return new MalformedBatch(offset, `a record needs ${HEADER_BYTES} header bytes, ${left} left`);
  const n = batch[offset + 8];
  if (n === 0) return new MalformedBatch(offset + 8, "n is 0");
  if (n > MAX_HASHES) return new MalformedBatch(offset + 8, `n is ${n}, more than ${MAX_HASHES}`);
  const size = recordSize(n);
  if (size > left) return new MalformedBatch(offset, `a record of ${n} hashes needs ${size} bytes, ${left} left`);
  return size;
}

// The start offset of every record, or the first problem. An empty batch is valid (no records).
export function validate(batch: Uint8Array): { ok: true; offsets: number[] } | { ok: false; error: MalformedBatch } {
  const offsets: number[] = [];
  let off = 0;
  while (off < batch.length) {
    const size = sizeAt(batch, off);
    if (typeof size !== "number") return { ok: false, error: size };
    offsets.push(off);
    off += size;
  }
  return { ok: true, offsets };
}

// The records of a batch as views into it (no copy); throws MalformedBatch.
export function split(batch: Uint8Array): Uint8Array[] {
  const v = validate(batch);
  if (!v.ok) throw v.error;
  const out: Uint8Array[] = [];
  for (let i = 0; i < v.offsets.length; i++) {
    const start = v.offsets[i];
    const end = i + 1 < v.offsets.length ? v.offsets[i + 1] : batch.length;
    out.push(batch.subarray(start, end));
  }
  return out;
}

// Number of records in a valid batch; throws MalformedBatch.
export function count(batch: Uint8Array): number {
  const v = validate(batch);
  if (!v.ok) throw v.error;
  return v.offsets.length;
}

function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

function putU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}

// Fields of one record (the view `split` returns, or a record at `offset` of a batch).
export function endpointOf(record: Uint8Array, offset = 0): number {
  return u32(record, offset);
}

export function timeOf(record: Uint8Array, offset = 0): number {
  return u32(record, offset + 4);
}

export function hashCountOf(record: Uint8Array, offset = 0): number {
  return record[offset + 8];
}

// The i-th hash's 8 bytes (a view).
export function hashOf(record: Uint8Array, i: number, offset = 0): Uint8Array {
  const at = offset + HEADER_BYTES + HASH_BYTES * i;
  return record.subarray(at, at + HASH_BYTES);
}

// One record. `hashes` holds 8n bytes (n = 1..64), each hash little-endian as the filter writes it.
export function encode(endpoint: number, timeMs32: number, hashes: Uint8Array): Uint8Array {
  if (hashes.length === 0 || hashes.length % HASH_BYTES !== 0 || hashes.length > HASH_BYTES * MAX_HASHES) {
    throw new RangeError(`hashes must be 1 to ${MAX_HASHES} times ${HASH_BYTES} bytes, not ${hashes.length}`);
  }
  const out = new Uint8Array(HEADER_BYTES + hashes.length);
  putU32(out, 0, endpoint >>> 0);
  putU32(out, 4, timeMs32 >>> 0);
  out[8] = hashes.length / HASH_BYTES;
  out.set(hashes, HEADER_BYTES);
  return out;
}

// Records (each a whole record) into batches of at most `maxBytes`, in order; every batch holds at
// least one record. Throws when a single record is larger than maxBytes.
export function join(records: Uint8Array[], maxBytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < records.length) {
    let size = 0;
    let j = i;
    while (j < records.length && size + records[j].length <= maxBytes) size += records[j++].length;
    if (j === i) throw new RangeError(`a record of ${records[i].length} bytes does not fit in batches of ${maxBytes} bytes`);
    const batch = new Uint8Array(size);
    let at = 0;
    for (let k = i; k < j; k++) {
      batch.set(records[k], at);
      at += records[k].length;
    }
    out.push(batch);
    i = j;
  }
  return out;
}

// Splits a valid batch into batches of at most maxBytes without copying (cuts fall between
// records). Throws MalformedBatch, or RangeError when a record is larger than maxBytes.
export function rebatch(batch: Uint8Array, maxBytes: number): Uint8Array[] {
  const v = validate(batch);
  if (!v.ok) throw v.error;
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < v.offsets.length; i++) {
    const off = v.offsets[i];
    const end = i + 1 < v.offsets.length ? v.offsets[i + 1] : batch.length;
    if (end - off > maxBytes) throw new RangeError(`a record of ${end - off} bytes does not fit in batches of ${maxBytes} bytes`);
    if (end - start > maxBytes) {
      out.push(batch.subarray(start, off));
      start = off;
    }
  }
  if (batch.length > start) out.push(batch.subarray(start));
  return out;
}

// The endpoint id of "ip:port": FNV-1a over its UTF-8 bytes, 32 bits.
export function endpointId(address: string): number {
  let h = 0x811c9dc5;
  const bytes = new TextEncoder().encode(address);
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// ms since the epoch, modulo 2^32, as records carry it.
export function ms32(nowMs: number): number {
  return Math.floor(nowMs) % 0x1_0000_0000 >>> 0;
}

// Signed difference a - b of two ms32 times, wrap-safe for differences under 2^31 ms (24.8 days).
export function diff32(a: number, b: number): number {
  return ((a - b) | 0);
}
