// A small JSON document model for the plugin configuration and the state document. Request
// bodies never go through it (they are scanned in place by request/openai.ts): this is for
// documents that are read rarely and read whole.

import { Kind, Scanner } from "./scanner";

const MAX_DOM_DEPTH: i32 = 64;

export class JsonValue {
  kind: Kind;
  num: f64 = 0;
  str: string = "";
  items: Array<JsonValue> | null = null;
  keys: Array<string> | null = null;

  constructor(kind: Kind) {
    this.kind = kind;
  }

  isObject(): bool { return this.kind == Kind.Object; }
  isArray(): bool { return this.kind == Kind.Array; }
  isString(): bool { return this.kind == Kind.String; }
  isNumber(): bool { return this.kind == Kind.Number; }
  isBool(): bool { return this.kind == Kind.True || this.kind == Kind.False; }
  isNull(): bool { return this.kind == Kind.Null; }
  isTrue(): bool { return this.kind == Kind.True; }

  // Member of an object by key; the last occurrence wins, as in most JSON decoders.
  get(key: string): JsonValue | null {
    const keys = this.keys;
    const items = this.items;
    if (keys === null || items === null) return null;
    for (let i = keys.length - 1; i >= 0; i--) {
      if (unchecked(keys[i]) == key) return unchecked(items[i]);
    }
    return null;
  }

  get length(): i32 {
    const items = this.items;
    return items === null ? 0 : items.length;
  }

  at(i: i32): JsonValue {
    return unchecked((this.items as Array<JsonValue>)[i]);
  }

  keyAt(i: i32): string {
    return unchecked((this.keys as Array<string>)[i]);
  }
}

export class JsonParse {
  value: JsonValue | null = null;
  error: string = "";
  errorAt: i32 = 0;

  get ok(): bool {
    return this.value !== null;
  }
}

export function parseJson(buf: ArrayBuffer): JsonParse {
  return parseJsonAt(changetype<usize>(buf), buf.byteLength);
}

export function parseJsonAt(ptr: usize, len: i32): JsonParse {
  const s = new Scanner(ptr, len);
  const result = new JsonParse();
  const v = parseValue(s, 0);
  if (v !== null && !s.atEnd()) s.fail("unexpected data after the JSON value");
  if (s.error !== null || v === null) {
    result.error = s.error !== null ? (s.error as string) : "invalid JSON";
    result.errorAt = s.errorAt;
    return result;
  }
  result.value = v;
  return result;
}

export function parseJsonString(text: string): JsonParse {
  return parseJson(String.UTF8.encode(text));
}

function parseValue(s: Scanner, depth: i32): JsonValue | null {
  const kind = s.peekKind();
  if (kind == Kind.Object || kind == Kind.Array) {
    if (depth >= MAX_DOM_DEPTH) {
      s.fail("JSON nested too deeply");
      return null;
    }
    s.pos++;
    const v = new JsonValue(kind);
    const items = new Array<JsonValue>();
    v.items = items;
    if (kind == Kind.Object) {
      const keys = new Array<string>();
      v.keys = keys;
      if (s.objectEnds()) return v;
      while (true) {
        if (!s.scanKey()) return null;
        const key = s.decodeString();
        if (s.error !== null) return null;
        const child = parseValue(s, depth + 1);
        if (child === null) return null;
        keys.push(key);
        items.push(child);
        const r = s.nextMember(0x7d);
        if (r < 0) return null;
        if (r == 0) return v;
      }
    } else {
      if (s.arrayEnds()) return v;
      while (true) {
        const child = parseValue(s, depth + 1);
        if (child === null) return null;
        items.push(child);
        const r = s.nextMember(0x5d);
        if (r < 0) return null;
        if (r == 0) return v;
      }
    }
  }
  if (kind == Kind.String) {
    if (!s.scanString()) return null;
    const v = new JsonValue(Kind.String);
    v.str = s.decodeString();
    return s.error !== null ? null : v;
  }
  if (kind == Kind.Number) {
    if (!s.scanNumber()) return null;
    const v = new JsonValue(Kind.Number);
    v.num = parseFloat(String.UTF8.decodeUnsafe(s.ptr + <usize>s.numStart, <usize>(s.numEnd - s.numStart)));
    return v;
  }
  if (kind == Kind.True || kind == Kind.False || kind == Kind.Null) {
    if (!s.scanLiteral(kind)) return null;
    return new JsonValue(kind);
  }
  s.fail(kind == Kind.End ? "unexpected end of JSON" : "unexpected character");
  return null;
}
