// The body a prefill/decode pair receives: the client's JSON object with SGLang's three bootstrap
// fields put first (the prefill pod's host and KV-transfer port, and a room that pairs the two
// halves of the request), any bootstrap field the client sent removed, the model rewritten to its
// target, and a request id (`rid`) the decode side can be aborted by.
//
// Keys are compared decoded, as the model server's JSON decoder will see them: an escaped
// "bootstrap\u005froom" is removed like a plain one. The body was validated before (the request
// parser), so a scan error here means the input changed and the rewrite is refused.

import { Kind, Scanner } from "../json/scanner";
import { quote } from "../json/writer";

const HEX = "0123456789abcdef";

export class PdFields {
  host: string = "";
  port: i32 = 0;
  room: u64 = 0;
  // The rid to add when the client sent none and adding one is safe.
  rid: string = "";
}

export class PdBody {
  body: ArrayBuffer | null = null;
  error: string = "";
  // The rid the model servers will know the request by ("" when none: it cannot be aborted).
  rid: string = "";
  // Bootstrap fields the client had set (removed).
  removed: i32 = 0;
}

// 2^63 - 1: SGLang's rooms are non-negative 64-bit integers below 2^63.
export const ROOM_MASK: u64 = 0x7fffffffffffffff;

// A room from 64 random bits, below 2^63.
export function roomOf(bits: u64): u64 {
  return bits & ROOM_MASK;
}

// 32 lowercase hex digits from two 64-bit values.
export function ridOf(a: u64, b: u64): string {
  let out = "";
  for (let i = 15; i >= 0; i--) out += HEX.charAt(<i32>((a >> (<u64>i * 4)) & 15));
  for (let i = 15; i >= 0; i--) out += HEX.charAt(<i32>((b >> (<u64>i * 4)) & 15));
  return out;
}

function isBootstrapKey(k: string): bool {
  return k == "bootstrap_host" || k == "bootstrap_port" || k == "bootstrap_room";
}

function keyText(s: Scanner): string {
  if (!s.strEscaped) return String.UTF8.decodeUnsafe(s.ptr + <usize>s.strStart, <usize>(s.strEnd - s.strStart));
  return s.decodeString();
}

// Builds the body. modelStart/modelEnd locate the model's string token (quotes included) and
// target replaces it when not null.
export function pdBody(body: ArrayBuffer, modelStart: i32, modelEnd: i32, target: string | null, f: PdFields): PdBody {
  const out = new PdBody();
  const s = Scanner.of(body);
  if (s.peekKind() != Kind.Object) {
    out.error = "the body is not a JSON object";
    return out;
  }
  s.pos++;
  // Kept members as [start, end) byte spans of the input.
  const spans = new Array<i32>();
  let clientRid = "";
  // A batch (several prompts, or n > 1) needs one rid per sequence: no scalar rid is added then.
  let batch = false;
  if (!s.objectEnds()) {
    while (true) {
      s.skipWs();
      const start = s.pos;
      if (!s.scanKey()) break;
      const key = keyText(s);
      if (s.error !== null) break;
      const kind = s.peekKind();
      const vstart = s.pos;
      if (key == "rid" && kind == Kind.String) {
        if (!s.scanString()) break;
        clientRid = s.decodeString();
      } else if (key == "n" && kind == Kind.Number) {
        if (!s.scanNumber()) break;
        const text = String.UTF8.decodeUnsafe(s.ptr + <usize>s.numStart, <usize>(s.numEnd - s.numStart));
        if (text != "1" && text != "null") batch = true;
      } else if ((key == "prompt" || key == "input" || key == "text") && kind == Kind.Array) {
        // A list of strings or of token lists is a batch; a flat list of token ids is one prompt.
        s.pos++;
        const inner = s.peekKind();
        s.pos = vstart;
        if (inner == Kind.String || inner == Kind.Array) batch = true;
        if (!s.skipValue()) break;
      } else if (key == "rid" && kind == Kind.Array) {
        batch = true;
        if (!s.skipValue()) break;
      } else {
        if (!s.skipValue()) break;
      }
      const end = s.pos;
      if (isBootstrapKey(key)) out.removed++;
      else {
        spans.push(start);
        spans.push(end);
      }
      const next = s.nextMember(0x7d);
      if (next < 0) break;
      if (next == 0) break;
    }
  }
  if (s.error !== null) {
    out.error = s.error as string;
    return out;
  }
  let head = "{\"bootstrap_host\":" + quote(f.host) + ",\"bootstrap_port\":" + f.port.toString() + ",\"bootstrap_room\":" + f.room.toString();
  let hasRid = false;
  for (let i = 0; i < spans.length; i += 2) {
    // A rid member kept from the client (string or list).
    if (spanKeyIs(body, unchecked(spans[i]), "rid")) hasRid = true;
  }
  if (clientRid.length > 0) out.rid = clientRid;
  else if (!hasRid && !batch && f.rid.length > 0) {
    head += ",\"rid\":" + quote(f.rid);
    out.rid = f.rid;
  }
  const headBytes = String.UTF8.encode(head);
  const tgt = target !== null ? String.UTF8.encode(quote(target as string)) : new ArrayBuffer(0);
  const modelDelta = target !== null ? tgt.byteLength - (modelEnd - modelStart) : 0;
  let size = headBytes.byteLength + 1;
  for (let i = 0; i < spans.length; i += 2) size += 1 + unchecked(spans[i + 1]) - unchecked(spans[i]);
  size += modelDelta;
  const buf = new ArrayBuffer(size);
  const o = changetype<usize>(buf);
  const b = changetype<usize>(body);
  memory.copy(o, changetype<usize>(headBytes), <usize>headBytes.byteLength);
  let p = o + <usize>headBytes.byteLength;
  for (let i = 0; i < spans.length; i += 2) {
    store<u8>(p, 0x2c);
    p++;
    const a = unchecked(spans[i]);
    const z = unchecked(spans[i + 1]);
    if (target !== null && modelStart >= a && modelEnd <= z) {
      memory.copy(p, b + <usize>a, <usize>(modelStart - a));
      p += <usize>(modelStart - a);
      memory.copy(p, changetype<usize>(tgt), <usize>tgt.byteLength);
      p += <usize>tgt.byteLength;
      memory.copy(p, b + <usize>modelEnd, <usize>(z - modelEnd));
      p += <usize>(z - modelEnd);
    } else {
      memory.copy(p, b + <usize>a, <usize>(z - a));
      p += <usize>(z - a);
    }
  }
  store<u8>(p, 0x7d);
  out.body = buf;
  return out;
}

// Whether the member starting at `start` has the (unescaped) key `k`.
function spanKeyIs(body: ArrayBuffer, start: i32, k: string): bool {
  const b = changetype<usize>(body);
  if (start + k.length + 2 > body.byteLength) return false;
  if (load<u8>(b + <usize>start) != 0x22 || load<u8>(b + <usize>(start + k.length + 1)) != 0x22) return false;
  for (let i = 0; i < k.length; i++) {
    if (<i32>load<u8>(b + <usize>(start + 1 + i)) != k.charCodeAt(i)) return false;
  }
  return true;
}
