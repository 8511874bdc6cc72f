// The share format: what the own filter's /wasm-epp/v1/share and the peer port's /peers/v1/share
// carry, prefix records and replicas' loads in one body. A body is sections back to back, each
//
//   u8   kind
//   u32  payload length (little-endian)
//   payload
//
//   kind 1 PREFIX  payload: prefix records back to back (records.ts)
//   kind 2 LOAD    payload: u8 pool length, pool (ASCII "ns/name"), u8 replica length, replica name
//                  (ASCII, 1..253; empty only in the filter's GET answer, where it means "this
//                  replica"), then the load record (opaque, possibly empty) to the payload's end
//
// Any number of sections in any order; a kind not known here is skipped (a newer sidecar or
// filter may send more). A body with a section cut short, a malformed PREFIX payload or a LOAD
// section with a bad pool or replica is malformed, and the error names the byte offset. Pure
// functions over Uint8Array; no I/O, no clock.

import { validate } from "./records.ts";

export const SECTION_PREFIX = 1;
export const SECTION_LOAD = 2;
export const SECTION_HEADER_BYTES = 5;
export const MAX_POOL_BYTES = 255;
export const MAX_REPLICA_BYTES = 253;
export const SHARE_CONTENT_TYPE = "application/vnd.wasm-epp.share";

export class MalformedShare extends Error {
  readonly offset: number;

  constructor(offset: number, message: string) {
    super(`malformed share body at byte ${offset}: ${message}`);
    this.name = "MalformedShare";
    this.offset = offset;
  }
}

export interface LoadSection {
  pool: string;
  replica: string; // "" only in the filter's GET answer: this replica
  record: Uint8Array; // a view into the body
  section: Uint8Array; // the whole section, header included (a view into the body)
}

export interface Share {
  // The PREFIX sections' payloads (views into the body), each a valid batch, in order.
  prefix: Uint8Array[];
  prefixBytes: number;
  prefixRecords: number;
  loads: LoadSection[];
  // Sections of a kind not known here, skipped.
  unknown: number;
}

export interface DecodeOptions {
  // Whether a LOAD section may have an empty replica name (the filter's GET answer only).
  emptyReplica?: boolean;
}

// A pool name as the filter takes it: "namespace/name", lower-case letters, digits, '-' and '.'.
export function isPoolName(s: string): boolean {
  return s.length <= MAX_POOL_BYTES && /^[a-z0-9.-]+\/[a-z0-9.-]+$/.test(s);
}

// A replica name: 1..253 printable ASCII characters, no space.
export function isReplicaName(s: string): boolean {
  return s.length >= 1 && s.length <= MAX_REPLICA_BYTES && /^[\x21-\x7e]+$/.test(s);
}

function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

function ascii(b: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i]);
  return s;
}

// Every section of a body, or the first problem. An empty body is valid (no sections).
export function decodeShare(body: Uint8Array, opts: DecodeOptions = {}): { ok: true; share: Share } | { ok: false; error: MalformedShare } {
  const share: Share = { prefix: [], prefixBytes: 0, prefixRecords: 0, loads: [], unknown: 0 };
  let off = 0;
  const fail = (at: number, message: string) => ({ ok: false as const, error: new MalformedShare(at, message) });
  while (off < body.length) {
    const left = body.length - off;
    if (left < SECTION_HEADER_BYTES) return fail(off, `a section needs ${SECTION_HEADER_BYTES} header bytes, ${left} left`);
    const kind = body[off];
    const length = u32(body, off + 1);
    const start = off + SECTION_HEADER_BYTES;
    if (length > body.length - start) return fail(off + 1, `a section of ${length} bytes, ${body.length - start} left`);
    const end = start + length;
    const payload = body.subarray(start, end);
    if (kind === SECTION_PREFIX) {
      const v = validate(payload);
      if (!v.ok) return fail(start + v.error.offset, `in a PREFIX section: ${v.error.message.replace(/^malformed prefix records at byte \d+: /, "")}`);
      if (payload.length > 0) share.prefix.push(payload);
      share.prefixBytes += payload.length;
      share.prefixRecords += v.offsets.length;
    } else if (kind === SECTION_LOAD) {
      if (length < 2) return fail(start, `a LOAD section needs at least 2 bytes, has ${length}`);
      const poolLength = body[start];
      const poolEnd = start + 1 + poolLength;
      if (poolEnd + 1 > end) return fail(start, `a pool of ${poolLength} bytes and a replica length do not fit in a LOAD section of ${length} bytes`);
      const pool = ascii(body, start + 1, poolEnd);
      if (!isPoolName(pool)) return fail(start + 1, "the pool is not namespace/name (lower-case letters, digits, '-', '.')");
      const replicaLength = body[poolEnd];
      const replicaEnd = poolEnd + 1 + replicaLength;
      if (replicaEnd > end) return fail(poolEnd, `a replica name of ${replicaLength} bytes does not fit in the LOAD section`);
      const replica = ascii(body, poolEnd + 1, replicaEnd);
      if (replica.length === 0 ? !opts.emptyReplica : !isReplicaName(replica)) {
        return fail(poolEnd, replica.length === 0 ? "the replica name is empty" : "the replica name is not 1 to 253 printable ASCII characters");
      }
      share.loads.push({ pool, replica, record: body.subarray(replicaEnd, end), section: body.subarray(off, end) });
    } else {
      share.unknown++;
    }
    off = end;
  }
  return { ok: true, share };
}

// Writes a section's 5 header bytes at `at`.
export function writeSectionHeader(out: Uint8Array, at: number, kind: number, length: number): void {
  out[at] = kind;
  out[at + 1] = length & 0xff;
  out[at + 2] = (length >>> 8) & 0xff;
  out[at + 3] = (length >>> 16) & 0xff;
  out[at + 4] = (length >>> 24) & 0xff;
}

// The size of a PREFIX section holding `recordBytes` of records.
export function prefixSectionSize(recordBytes: number): number {
  return SECTION_HEADER_BYTES + recordBytes;
}

// The size of a LOAD section.
export function loadSectionSize(pool: string, replica: string, recordBytes: number): number {
  return SECTION_HEADER_BYTES + 2 + pool.length + replica.length + recordBytes;
}

// One PREFIX section around records (pieces of valid batches, concatenated; not checked here).
export function encodePrefix(pieces: Uint8Array | Uint8Array[]): Uint8Array {
  const list = Array.isArray(pieces) ? pieces : [pieces];
  let size = 0;
  for (const p of list) size += p.length;
  const out = new Uint8Array(prefixSectionSize(size));
  writeSectionHeader(out, 0, SECTION_PREFIX, size);
  let at = SECTION_HEADER_BYTES;
  for (const p of list) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// One LOAD section. Throws RangeError for a pool or replica name the format cannot carry (the
// replica may be empty only for a filter's answer, as the stub in the tests writes).
export function encodeLoad(pool: string, replica: string, record: Uint8Array): Uint8Array {
  if (!isPoolName(pool)) throw new RangeError(`pool ${JSON.stringify(pool)} is not namespace/name`);
  if (replica.length > 0 && !isReplicaName(replica)) throw new RangeError(`replica ${JSON.stringify(replica)} is not 1 to 253 printable ASCII characters`);
  const length = 2 + pool.length + replica.length + record.length;
  const out = new Uint8Array(SECTION_HEADER_BYTES + length);
  writeSectionHeader(out, 0, SECTION_LOAD, length);
  let at = SECTION_HEADER_BYTES;
  out[at++] = pool.length;
  for (let i = 0; i < pool.length; i++) out[at++] = pool.charCodeAt(i);
  out[at++] = replica.length;
  for (let i = 0; i < replica.length; i++) out[at++] = replica.charCodeAt(i);
  out.set(record, at);
  return out;
}

// A section of any kind (tests; a kind this sidecar does not know).
export function encodeSection(kind: number, payload: Uint8Array): Uint8Array {
  if (!(Number.isInteger(kind) && kind >= 0 && kind <= 255)) throw new RangeError(`kind ${kind} is not a byte`);
  const out = new Uint8Array(SECTION_HEADER_BYTES + payload.length);
  writeSectionHeader(out, 0, kind, payload.length);
  out.set(payload, SECTION_HEADER_BYTES);
  return out;
}

// Sections back to back.
export function concat(sections: Uint8Array[]): Uint8Array {
  if (sections.length === 1) return sections[0];
  let size = 0;
  for (const s of sections) size += s.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const s of sections) {
    out.set(s, at);
    at += s.length;
  }
  return out;
}
