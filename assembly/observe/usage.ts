// The token counts a model server reports at the end of its answer, read without buffering it.
//
// An OpenAI-style answer ends with its `usage` object: last in a JSON body (only null fields and
// a few short ones follow it), and in a stream in the last data event before `data: [DONE]`
// (`stream_options.include_usage`). So the filter keeps only the last bytes of the response, in
// a fixed ring (ResponseTail), reading no more than that from each chunk however large, and at the
// end looks for the last complete `"usage": {...}` in them (findUsage). Memory per stream is the
// ring; the work per chunk is at most the ring's size; the search is one backward pass and one
// forward pass over at most the ring's bytes. Anything else — a truncated, malformed or
// non-JSON answer, a usage object that starts before the ring — gives "no usage", never a trap.

export class Usage {
  found: bool = false;
  // -1: the field was absent.
  promptTokens: i64 = -1;
  completionTokens: i64 = -1;
  // usage.prompt_tokens_details.cached_tokens. vLLM reports it only with
  // --enable-prompt-tokens-details and leaves it out when it is 0; SGLang with
  // --enable-cache-report.
  cachedTokens: i64 = -1;
}

// The last `capacity` bytes of a stream.
export class ResponseTail {
  private buf: Uint8Array;
  private head: i32 = 0; // where the next byte goes
  private held: i32 = 0; // bytes held (at most capacity)
  total: i64 = 0; // bytes seen in all

  constructor(capacity: i32) {
    this.buf = new Uint8Array(capacity > 0 ? capacity : 1);
  }

  get capacity(): i32 {
    return this.buf.length;
  }

  // How many of a chunk's `size` bytes are worth reading: its last `capacity`.
  wanted(size: i32): i32 {
    return size < this.buf.length ? size : this.buf.length;
  }

  // Notes a chunk of `size` bytes whose last `n` are at `src` (n = wanted(size), or fewer if the
  // host gave fewer).
  push(size: i32, src: usize, n: i32): void {
    this.total += <i64>size;
    const cap = this.buf.length;
    if (n > cap) {
      src += <usize>(n - cap);
      n = cap;
    }
    // Bytes of the chunk that were not read break the stream: what came before is not adjacent.
    if (n < size) {
      this.head = 0;
      this.held = 0;
    }
    const base = this.buf.dataStart;
    let first = cap - this.head;
    if (first > n) first = n;
    memory.copy(base + <usize>this.head, src, <usize>first);
    if (n > first) memory.copy(base, src + <usize>first, <usize>(n - first));
    this.head = (this.head + n) % cap;
    this.held = this.held + n > cap ? cap : this.held + n;
  }

  // The bytes held, oldest first (a copy).
  bytes(): Uint8Array {
    return this.linear().slice(0);
  }

  // The bytes held, oldest first, as a view of the ring itself: the ring is rotated in place
  // when they wrap around its end (three reversals, nothing allocated but the view).
  linear(): Uint8Array {
    const cap = this.buf.length;
    const start = (this.head - this.held + cap) % cap;
    if (start + this.held > cap) {
      reverse(this.buf, 0, start);
      reverse(this.buf, start, cap);
      reverse(this.buf, 0, cap);
      this.head = this.held % cap;
      return this.buf.subarray(0, this.held);
    }
    return this.buf.subarray(start, start + this.held);
  }

  // Empties the ring for another answer.
  reset(): void {
    this.head = 0;
    this.held = 0;
    this.total = 0;
  }
}

function reverse(b: Uint8Array, from: i32, to: i32): void {
  let i = from;
  let j = to - 1;
  while (i < j) {
    const t = unchecked(b[i]);
    unchecked((b[i] = b[j]));
    unchecked((b[j] = t));
    i++;
    j--;
  }
}

const QUOTE: u8 = 0x22;
const BACKSLASH: u8 = 0x5c;
const COLON: u8 = 0x3a;
const OPEN: u8 = 0x7b;
const CLOSE: u8 = 0x7d;
const OPEN_ARRAY: u8 = 0x5b;
const CLOSE_ARRAY: u8 = 0x5d;
const MAX_COUNT: i64 = 1_000_000_000_000;

@inline function isSpace(c: u8): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d;
}

// A quote at p is a real one (not \" inside a string): an even number of backslashes before it.
function unescaped(b: Uint8Array, p: i32): bool {
  let n = 0;
  for (let k = p - 1; k >= 0 && unchecked(b[k]) == BACKSLASH; k--) n++;
  return (n & 1) == 0;
}

// b[p..] spells the key `"usage"` (p at its opening quote).
function isUsageKey(b: Uint8Array, p: i32): bool {
  if (p + 7 > b.length) return false;
  return unchecked(b[p]) == QUOTE && unchecked(b[p + 1]) == 0x75 && unchecked(b[p + 2]) == 0x73 && unchecked(b[p + 3]) == 0x61 &&
    unchecked(b[p + 4]) == 0x67 && unchecked(b[p + 5]) == 0x65 && unchecked(b[p + 6]) == QUOTE;
}

// The last complete usage object in b, or a Usage with found = false.
export function findUsage(b: Uint8Array): Usage {
  for (let p = b.length - 7; p >= 0; p--) {
    if (unchecked(b[p]) != QUOTE || !isUsageKey(b, p) || !unescaped(b, p)) continue;
    let q = p + 7;
    while (q < b.length && isSpace(unchecked(b[q]))) q++;
    if (q >= b.length || unchecked(b[q]) != COLON) continue;
    q++;
    while (q < b.length && isSpace(unchecked(b[q]))) q++;
    if (q >= b.length || unchecked(b[q]) != OPEN) continue; // "usage": null
    const u = readUsage(b, q);
    if (u.found) return u;
  }
  return new Usage();
}

// Names of the fields read, as bytes.
const PROMPT_TOKENS = "prompt_tokens";
const COMPLETION_TOKENS = "completion_tokens";
const CACHED_TOKENS = "cached_tokens";
const PROMPT_DETAILS = "prompt_tokens_details";

function keyIs(b: Uint8Array, start: i32, end: i32, name: string): bool {
  if (end - start != name.length) return false;
  for (let k = 0; k < name.length; k++) if (<i32>unchecked(b[start + k]) != name.charCodeAt(k)) return false;
  return true;
}

// Reads the object starting at b[open] ('{'): found only if it closes within b.
function readUsage(b: Uint8Array, open: i32): Usage {
  const u = new Usage();
  let depth = 0;
  let inDetails = false; // inside prompt_tokens_details (depth 2)
  let keyStart = -1; // the key just read, waiting for its value
  let keyEnd = -1;
  let keyDepth = 0;
  let detailsNext = false; // the next object opened is prompt_tokens_details
  let q = open;
  const n = b.length;
  while (q < n) {
    const c = unchecked(b[q]);
    if (c == QUOTE) {
      // A string: a key if a colon follows it.
      const s = q + 1;
      let e = s;
      while (e < n) {
        const d = unchecked(b[e]);
        if (d == BACKSLASH) {
          e += 2;
          continue;
        }
        if (d == QUOTE) break;
        e++;
      }
      if (e >= n) return u; // runs past the end: incomplete
      let after = e + 1;
      while (after < n && isSpace(unchecked(b[after]))) after++;
      if (after < n && unchecked(b[after]) == COLON) {
        keyStart = s;
        keyEnd = e;
        keyDepth = depth;
        q = after + 1;
        continue;
      }
      keyStart = -1;
      q = e + 1;
      continue;
    }
    if (c == OPEN || c == OPEN_ARRAY) {
      depth++;
      if (c == OPEN && depth == 2 && keyStart >= 0 && keyDepth == 1 && keyIs(b, keyStart, keyEnd, PROMPT_DETAILS)) detailsNext = true;
      inDetails = detailsNext && depth == 2;
      detailsNext = false;
      keyStart = -1;
      q++;
      continue;
    }
    if (c == CLOSE || c == CLOSE_ARRAY) {
      depth--;
      if (depth < 2) inDetails = false;
      keyStart = -1;
      q++;
      if (depth == 0) {
        u.found = u.promptTokens >= 0 || u.completionTokens >= 0;
        return u;
      }
      if (depth < 0) return u;
      continue;
    }
    if (c >= 0x30 && c <= 0x39 && keyStart >= 0) {
      let v: i64 = 0;
      while (q < n) {
        const d = unchecked(b[q]);
        if (d < 0x30 || d > 0x39) break;
        if (v < MAX_COUNT) v = v * 10 + <i64>(d - 0x30);
        q++;
      }
      if (v > MAX_COUNT) v = MAX_COUNT;
      if (keyDepth == 1) {
        if (keyIs(b, keyStart, keyEnd, PROMPT_TOKENS)) u.promptTokens = v;
        else if (keyIs(b, keyStart, keyEnd, COMPLETION_TOKENS)) u.completionTokens = v;
      } else if (keyDepth == 2 && inDetails && keyIs(b, keyStart, keyEnd, CACHED_TOKENS)) {
        u.cachedTokens = v;
      }
      keyStart = -1;
      continue;
    }
    if (!isSpace(c) && c != 0x2c) keyStart = -1;
    q++;
  }
  return u;
}
