// An HTTP header map with Envoy's HeaderMapImpl behaviour as seen through the
// proxy-wasm ABI:
//  - keys are lower-cased (ASCII only, like Http::LowerCaseString) on every
//    add / replace / remove / get;
//  - entries keep insertion order, except that pseudo-headers (":...") always
//    sit before regular headers (HeaderList::insert);
//  - repeated keys are separate entries; get returns the first one;
//  - replace (setCopy) removes every entry for the key and appends a new one;
//  - size() counts entries; byteSize() sums key and value lengths, which is
//    what proxy_get_header_map_size reports (not the entry count).

import type { Pair, Pairs } from './pairs.ts';
import { utf8Length } from './memory.ts';

export type HeaderInput =
  | Record<string, string | number | readonly string[] | undefined>
  | ReadonlyArray<readonly [string, string]>
  | HeaderMap;

export function lowerAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) {
      let out = s.slice(0, i);
      for (let j = i; j < s.length; j++) {
        const d = s.charCodeAt(j);
        out += d >= 65 && d <= 90 ? String.fromCharCode(d + 32) : s[j];
      }
      return out;
    }
  }
  return s;
}

export class HeaderMap {
  /** Entries in iteration order. Treat as read-only outside this class. */
  entries: Pairs = [];
  private pseudoEnd = 0;

  static from(input?: HeaderInput): HeaderMap {
    const m = new HeaderMap();
    if (!input) return m;
    if (input instanceof HeaderMap) {
      for (const [k, v] of input.entries) m.add(k, v);
    } else if (Array.isArray(input)) {
      for (const [k, v] of input as ReadonlyArray<readonly [string, string]>) m.add(k, v);
    } else {
      for (const [k, v] of Object.entries(input as Record<string, string | number | readonly string[] | undefined>)) {
        if (v === undefined) continue;
        if (Array.isArray(v)) for (const x of v) m.add(k, String(x));
        else m.add(k, String(v));
      }
    }
    return m;
  }

  get size(): number {
    return this.entries.length;
  }

  byteSize(): number {
    let n = 0;
    for (const [k, v] of this.entries) n += utf8Length(k) + utf8Length(v);
    return n;
  }

  add(key: string, value: string): void {
    const k = lowerAscii(key);
    const entry: Pair = [k, value];
    if (k.length > 0 && k.charCodeAt(0) === 58 /* ':' */) {
      this.entries.splice(this.pseudoEnd, 0, entry);
      this.pseudoEnd++;
    } else {
      this.entries.push(entry);
    }
  }

  /** Envoy's setCopy: drop every value for the key, then add one. */
  set(key: string, value: string): void {
    this.remove(key);
    this.add(key, value);
  }

  remove(key: string): void {
    const k = lowerAscii(key);
    let w = 0;
    let pseudo = 0;
    const e = this.entries;
    for (let r = 0; r < e.length; r++) {
      if (e[r][0] === k) continue;
      if (r < this.pseudoEnd) pseudo++;
      e[w++] = e[r];
    }
    e.length = w;
    this.pseudoEnd = pseudo;
  }

  get(key: string): string | undefined {
    const k = lowerAscii(key);
    for (const e of this.entries) if (e[0] === k) return e[1];
    return undefined;
  }

  getAll(key: string): string[] {
    const k = lowerAscii(key);
    const out: string[] = [];
    for (const e of this.entries) if (e[0] === k) out.push(e[1]);
    return out;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  clear(): void {
    this.entries = [];
    this.pseudoEnd = 0;
  }

  clone(): HeaderMap {
    const m = new HeaderMap();
    m.entries = this.entries.map(([k, v]) => [k, v] as Pair);
    m.pseudoEnd = this.pseudoEnd;
    return m;
  }

  /** A detached copy of the entries. */
  pairs(): Pairs {
    return this.entries.map(([k, v]) => [k, v] as Pair);
  }

  /** First value per key, for convenient assertions. */
  toObject(): Record<string, string> {
    const o: Record<string, string> = {};
    for (const [k, v] of this.entries) if (!(k in o)) o[k] = v;
    return o;
  }
}
