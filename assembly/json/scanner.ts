// A validating JSON lexer over raw bytes in linear memory.
//
// Everything that reads JSON in the filter (request bodies, the state document, the plugin
// configuration) goes through this one lexer. It never throws: every method returns false on
// malformed input and leaves a message and a byte offset in `error` / `errorAt`, so a hostile
// body turns into a 400, never into a trap. Nesting is tracked with an explicit stack instead of
// recursion, so depth is bounded by MAX_DEPTH and not by the wasm call stack.

export const MAX_DEPTH: i32 = 512;

// Byte classes used by the string fast path: 1 for bytes that end or escape a run of plain
// string bytes ('"', '\\' and control characters below 0x20).
const STOP: StaticArray<u8> = buildStopTable();

function buildStopTable(): StaticArray<u8> {
  const t = new StaticArray<u8>(256);
  for (let i = 0; i < 0x20; i++) t[i] = 1;
  t[0x22] = 1; // "
  t[0x5c] = 1; // \
  return t;
}

export const enum Kind {
  End = 0,
  Object = 1,
  Array = 2,
  String = 3,
  Number = 4,
  True = 5,
  False = 6,
  Null = 7,
  Invalid = 8,
}

export class Scanner {
  ptr: usize;
  len: i32;
  pos: i32 = 0;
  error: string | null = null;
  errorAt: i32 = 0;
  // Set by scanString: the bytes between the quotes, and whether they contain escapes.
  strStart: i32 = 0;
  strEnd: i32 = 0;
  strEscaped: bool = false;
  // Set by scanNumber.
  numStart: i32 = 0;
  numEnd: i32 = 0;
  private stack: StaticArray<u8> = new StaticArray<u8>(MAX_DEPTH);

  constructor(ptr: usize, len: i32) {
    this.ptr = ptr;
    this.len = len;
  }

  static of(buf: ArrayBuffer): Scanner {
    return new Scanner(changetype<usize>(buf), buf.byteLength);
  }

  @inline byteAt(i: i32): i32 {
    return <i32>load<u8>(this.ptr + <usize>i);
  }

  fail(message: string, at: i32 = -1): bool {
    if (this.error === null) {
      this.error = message;
      this.errorAt = at < 0 ? this.pos : at;
    }
    return false;
  }

  skipWs(): void {
    let p = this.pos;
    const n = this.len;
    while (p < n) {
      const c = this.byteAt(p);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      p++;
    }
    this.pos = p;
  }

  // Kind of the next value after whitespace, without consuming it.
  peekKind(): Kind {
    this.skipWs();
    if (this.pos >= this.len) return Kind.End;
    const c = this.byteAt(this.pos);
    if (c == 0x7b) return Kind.Object;
    if (c == 0x5b) return Kind.Array;
    if (c == 0x22) return Kind.String;
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return Kind.Number;
    if (c == 0x74) return Kind.True;
    if (c == 0x66) return Kind.False;
    if (c == 0x6e) return Kind.Null;
    return Kind.Invalid;
  }

  // Consumes `c` after optional whitespace.
  expect(c: i32, what: string): bool {
    this.skipWs();
    if (this.pos < this.len && this.byteAt(this.pos) == c) {
      this.pos++;
      return true;
    }
    return this.fail(this.pos >= this.len ? "unexpected end of JSON, expected " + what : "expected " + what);
  }

  // After '{' or ',' inside an object: true when the object ends here ('}' consumed).
  objectEnds(): bool {
    this.skipWs();
    if (this.pos < this.len && this.byteAt(this.pos) == 0x7d) {
      this.pos++;
      return true;
    }
    return false;
  }

  arrayEnds(): bool {
    this.skipWs();
    if (this.pos < this.len && this.byteAt(this.pos) == 0x5d) {
      this.pos++;
      return true;
    }
    return false;
  }

  // After a member or element: consumes ',' (returns 1), or the closing bracket (returns 0);
  // -1 on malformed input.
  nextMember(close: i32): i32 {
    this.skipWs();
    if (this.pos >= this.len) {
      this.fail("unexpected end of JSON");
      return -1;
    }
    const c = this.byteAt(this.pos);
    if (c == 0x2c) {
      this.pos++;
      return 1;
    }
    if (c == close) {
      this.pos++;
      return 0;
    }
    this.fail(close == 0x7d ? "expected ',' or '}'" : "expected ',' or ']'");
    return -1;
  }

  // Reads an object key and the ':' after it. The key bytes are in strStart..strEnd.
  scanKey(): bool {
    this.skipWs();
    if (this.pos >= this.len) return this.fail("unexpected end of JSON");
    if (this.byteAt(this.pos) != 0x22) return this.fail("expected a string key");
    if (!this.scanString()) return false;
    return this.expect(0x3a, "':'");
  }

  // Scans a string starting at the opening quote (after whitespace).
  scanString(): bool {
    this.skipWs();
    let p = this.pos;
    const n = this.len;
    if (p >= n || this.byteAt(p) != 0x22) return this.fail("expected a string");
    p++;
    const start = p;
    let escaped = false;
    const ptr = this.ptr;
    while (true) {
      // Fast path: run over plain bytes.
      while (p < n && unchecked(STOP[load<u8>(ptr + <usize>p)]) == 0) p++;
      if (p >= n) return this.fail("unterminated string", start - 1);
      const c = this.byteAt(p);
      if (c == 0x22) break;
      if (c == 0x5c) {
        escaped = true;
        if (p + 1 >= n) return this.fail("unterminated string", start - 1);
        const e = this.byteAt(p + 1);
        if (e == 0x75) {
          if (p + 5 >= n) return this.fail("unterminated string", start - 1);
          for (let k = 2; k < 6; k++) {
            if (hexValue(this.byteAt(p + k)) < 0) return this.fail("invalid \\u escape", p);
          }
          p += 6;
        } else if (e == 0x22 || e == 0x5c || e == 0x2f || e == 0x62 || e == 0x66 || e == 0x6e || e == 0x72 || e == 0x74) {
          p += 2;
        } else {
          return this.fail("invalid escape in string", p);
        }
      } else {
        return this.fail("control character in string", p);
      }
    }
    this.strStart = start;
    this.strEnd = p;
    this.strEscaped = escaped;
    this.pos = p + 1;
    return true;
  }

  scanNumber(): bool {
    this.skipWs();
    let p = this.pos;
    const n = this.len;
    const start = p;
    if (p < n && this.byteAt(p) == 0x2d) p++;
    if (p >= n) return this.fail("invalid number", start);
    let c = this.byteAt(p);
    if (c == 0x30) {
      p++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (p < n && isDigit(this.byteAt(p))) p++;
    } else {
      return this.fail("invalid number", start);
    }
    if (p < n && this.byteAt(p) == 0x2e) {
      p++;
      if (p >= n || !isDigit(this.byteAt(p))) return this.fail("invalid number", start);
      while (p < n && isDigit(this.byteAt(p))) p++;
    }
    if (p < n) {
      c = this.byteAt(p);
      if (c == 0x65 || c == 0x45) {
        p++;
        if (p < n && (this.byteAt(p) == 0x2b || this.byteAt(p) == 0x2d)) p++;
        if (p >= n || !isDigit(this.byteAt(p))) return this.fail("invalid number", start);
        while (p < n && isDigit(this.byteAt(p))) p++;
      }
    }
    this.numStart = start;
    this.numEnd = p;
    this.pos = p;
    return true;
  }

  private literal(text: string): bool {
    const n = text.length;
    if (this.pos + n > this.len) return this.fail("invalid literal");
    for (let i = 0; i < n; i++) {
      if (this.byteAt(this.pos + i) != text.charCodeAt(i)) return this.fail("invalid literal");
    }
    this.pos += n;
    return true;
  }

  // Scans true / false / null; kind from peekKind().
  scanLiteral(kind: Kind): bool {
    if (kind == Kind.True) return this.literal("true");
    if (kind == Kind.False) return this.literal("false");
    return this.literal("null");
  }

  // Validates and skips one complete value of any kind, iteratively.
  skipValue(): bool {
    let depth = 0;
    const stack = this.stack;
    while (true) {
      // Expect a value.
      const kind = this.peekKind();
      if (kind == Kind.Object || kind == Kind.Array) {
        if (depth >= MAX_DEPTH) return this.fail("JSON nested too deeply");
        this.pos++;
        unchecked((stack[depth] = kind == Kind.Object ? 0x7d : 0x5d));
        depth++;
        const empty = kind == Kind.Object ? this.objectEnds() : this.arrayEnds();
        if (empty) {
          depth--;
        } else {
          if (kind == Kind.Object && !this.scanKey()) return false;
          continue;
        }
      } else if (kind == Kind.String) {
        if (!this.scanString()) return false;
      } else if (kind == Kind.Number) {
        if (!this.scanNumber()) return false;
      } else if (kind == Kind.True || kind == Kind.False || kind == Kind.Null) {
        if (!this.scanLiteral(kind)) return false;
      } else if (kind == Kind.End) {
        return this.fail("unexpected end of JSON");
      } else {
        return this.fail("unexpected character");
      }
      // After a value: close containers or move to the next member.
      while (true) {
        if (depth == 0) return true;
        const close = <i32>unchecked(stack[depth - 1]);
        const r = this.nextMember(close);
        if (r < 0) return false;
        if (r == 0) {
          depth--;
          continue;
        }
        if (close == 0x7d && !this.scanKey()) return false;
        break;
      }
    }
  }

  // True when only whitespace remains.
  atEnd(): bool {
    this.skipWs();
    return this.pos >= this.len;
  }

  // Byte-wise comparison of the last scanned string (raw, escapes not decoded) with ASCII text.
  strEquals(text: string): bool {
    const n = this.strEnd - this.strStart;
    if (n != text.length) return false;
    for (let i = 0; i < n; i++) {
      if (this.byteAt(this.strStart + i) != text.charCodeAt(i)) return false;
    }
    return true;
  }

  // Decodes the last scanned string (escapes included) into an AssemblyScript string. Invalid
  // UTF-8 is an error (as in any strict JSON decoder): decoding it leniently would silently
  // change names and addresses.
  decodeString(): string {
    if (!isValidUtf8(this.ptr, this.strStart, this.strEnd)) {
      this.fail("invalid UTF-8 in string", this.strStart);
      return "";
    }
    return decodeJsonString(this.ptr, this.strStart, this.strEnd, this.strEscaped);
  }
}

@inline function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

// Well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
export function isValidUtf8(ptr: usize, start: i32, end: i32): bool {
  let p = start;
  while (p < end) {
    const c = <i32>load<u8>(ptr + <usize>p);
    if (c < 0x80) {
      p++;
      continue;
    }
    let n = 0;
    let min = 0;
    if (c >= 0xc2 && c <= 0xdf) { n = 1; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; min = 0x10000; }
    else return false;
    if (p + n >= end) return false;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const b = <i32>load<u8>(ptr + <usize>(p + k));
      if ((b & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    p += n + 1;
  }
  return true;
}

export function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

// Decodes JSON string content (between the quotes, already validated by scanString).
export function decodeJsonString(ptr: usize, start: i32, end: i32, escaped: bool): string {
  if (!escaped) return String.UTF8.decodeUnsafe(ptr + <usize>start, <usize>(end - start));
  // Escapes only shrink the text, so the raw length bounds the decoded UTF-8 length.
  const out = new ArrayBuffer(end - start);
  const o = changetype<usize>(out);
  let w = 0;
  let p = start;
  while (p < end) {
    const c = <i32>load<u8>(ptr + <usize>p);
    if (c != 0x5c) {
      store<u8>(o + <usize>w, <u8>c);
      w++;
      p++;
      continue;
    }
    const e = <i32>load<u8>(ptr + <usize>p + 1);
    p += 2;
    let cp: i32 = 0;
    if (e == 0x6e) cp = 0x0a;
    else if (e == 0x74) cp = 0x09;
    else if (e == 0x72) cp = 0x0d;
    else if (e == 0x62) cp = 0x08;
    else if (e == 0x66) cp = 0x0c;
    else if (e == 0x75) {
      cp = readHex4(ptr, p);
      p += 4;
      // A high surrogate followed by an escaped low surrogate forms one code point.
      if (cp >= 0xd800 && cp <= 0xdbff && p + 6 <= end && load<u8>(ptr + <usize>p) == 0x5c && load<u8>(ptr + <usize>p + 1) == 0x75) {
        const lo = readHex4(ptr, p + 2);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          p += 6;
        }
      }
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; // lone surrogate
    } else cp = e; // " \ /
    w += writeUtf8(o + <usize>w, cp);
  }
  return String.UTF8.decodeUnsafe(o, <usize>w);
}

function readHex4(ptr: usize, p: i32): i32 {
  let v = 0;
  for (let k = 0; k < 4; k++) v = (v << 4) | hexValue(<i32>load<u8>(ptr + <usize>(p + k)));
  return v;
}

// Writes one code point as UTF-8; the caller guarantees room (at most as many bytes as the
// escape sequence it replaces: \uXXXX is 6 bytes, a surrogate pair 12).
function writeUtf8(o: usize, cp: i32): i32 {
  if (cp < 0x80) {
    store<u8>(o, <u8>cp);
    return 1;
  }
  if (cp < 0x800) {
    store<u8>(o, <u8>(0xc0 | (cp >> 6)));
    store<u8>(o + 1, <u8>(0x80 | (cp & 0x3f)));
    return 2;
  }
  if (cp < 0x10000) {
    store<u8>(o, <u8>(0xe0 | (cp >> 12)));
    store<u8>(o + 1, <u8>(0x80 | ((cp >> 6) & 0x3f)));
    store<u8>(o + 2, <u8>(0x80 | (cp & 0x3f)));
    return 3;
  }
  store<u8>(o, <u8>(0xf0 | (cp >> 18)));
  store<u8>(o + 1, <u8>(0x80 | ((cp >> 12) & 0x3f)));
  store<u8>(o + 2, <u8>(0x80 | ((cp >> 6) & 0x3f)));
  store<u8>(o + 3, <u8>(0x80 | (cp & 0x3f)));
  return 4;
}
