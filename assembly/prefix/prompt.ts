// The prompt prefix as the filter sees it, and its chained block hashes.
//
// While a request body is scanned, the parts of it that become the model's prompt (message roles
// and contents, completion prompts, tools, ...) are recorded as byte ranges of the body, in
// document order, with separator bytes between messages. Nothing is copied during the scan.
// After the target model is chosen, the ranges are cut into fixed-size blocks and hashed:
//
//   seed    = XXH64(target model name ‖ cache_salt)
//   h[0]    = XXH64(block[0] ‖ le64(seed))
//   h[i]    = XXH64(block[i] ‖ le64(h[i-1]))
//
// so h[i] names the whole prefix up to and including block i. Only full blocks are hashed (model
// servers cache whole KV blocks only) and at most `maxBlocks` of them. JSON escapes are hashed as
// they appear on the wire: a client that resends a conversation resends the same bytes.

import { xxh64 } from "./xxhash64";

export const SEP_FIELD: u8 = 0x1f; // between a message's role and its content
export const SEP_RECORD: u8 = 0x1e; // after each message / prompt

export class PromptText {
  // Pairs of (start, end) body offsets; start < 0 encodes a separator byte as -1 - byte.
  private spans: Array<i32> = new Array<i32>();
  bytes: i32 = 0;
  // Prompt bytes seen, recorded or not (past the limit only counted): the prompt's size.
  seen: i64 = 0;
  // Recorded bytes when the first user message ended (chat requests), else -1: what every later
  // turn of the conversation starts with.
  firstUserEnd: i32 = -1;
  limit: i32;

  constructor(limit: i32) {
    this.limit = limit;
  }

  // The block whose chained hash keys the conversation across turns (affinity placement): the
  // last full block within the first user turn; without turns, the `blocks`-th block past the
  // `common` ones every endpoint holds (a shared system prompt says nothing of the
  // conversation), or the last full block of a shorter prompt. -1 when there is none.
  affinityBlock(blockSize: i32, blocks: i32, common: i32): i32 {
    const hashed = blockSize > 0 ? this.bytes / blockSize : 0;
    let k = this.firstUserEnd >= 0 ? this.firstUserEnd / blockSize - 1 : common + blocks - 1;
    if (k > hashed - 1) k = hashed - 1;
    return k;
  }

  get full(): bool {
    return this.bytes >= this.limit;
  }

  get spanCount(): i32 {
    return this.spans.length >> 1;
  }

  addSpan(start: i32, end: i32): void {
    if (end <= start) return;
    this.seen += end - start;
    if (this.bytes >= this.limit) return;
    const room = this.limit - this.bytes;
    if (end - start > room) end = start + room;
    this.spans.push(start);
    this.spans.push(end);
    this.bytes += end - start;
  }

  addSeparator(b: u8): void {
    this.seen++;
    if (this.bytes >= this.limit) return;
    this.spans.push(-1 - <i32>b);
    this.spans.push(0);
    this.bytes += 1;
  }

  // The recorded text, separators shown as '|' (field) and ';' (record): for tests and debugging.
  render(ptr: usize): string {
    let out = "";
    const spans = this.spans;
    for (let i = 0; i < spans.length; i += 2) {
      const start = unchecked(spans[i]);
      if (start < 0) {
        out += <u8>(-1 - start) == SEP_FIELD ? "|" : ";";
        continue;
      }
      out += String.UTF8.decodeUnsafe(ptr + <usize>start, <usize>(unchecked(spans[i + 1]) - start));
    }
    return out;
  }

  // Block hashes over the recorded text of the body at `ptr`.
  hashBlocks(ptr: usize, blockSize: i32, seed: u64): StaticArray<u64> {
    const blocks = blockSize > 0 ? this.bytes / blockSize : 0;
    const out = new StaticArray<u64>(blocks);
    if (blocks == 0) return out;
    const block = new ArrayBuffer(blockSize + 8);
    const b = changetype<usize>(block);
    let fill = 0;
    let prev = seed;
    let k = 0;
    const spans = this.spans;
    for (let i = 0; i < spans.length && k < blocks; i += 2) {
      const start = unchecked(spans[i]);
      if (start < 0) {
        store<u8>(b + <usize>fill, <u8>(-1 - start));
        fill++;
        if (fill == blockSize) {
          store<u64>(b + <usize>blockSize, prev);
          prev = xxh64(b, blockSize + 8);
          unchecked((out[k++] = prev));
          fill = 0;
        }
        continue;
      }
      let p = start;
      const end = unchecked(spans[i + 1]);
      while (p < end && k < blocks) {
        let n = blockSize - fill;
        if (n > end - p) n = end - p;
        memory.copy(b + <usize>fill, ptr + <usize>p, <usize>n);
        fill += n;
        p += n;
        if (fill == blockSize) {
          store<u64>(b + <usize>blockSize, prev);
          prev = xxh64(b, blockSize + 8);
          unchecked((out[k++] = prev));
          fill = 0;
        }
      }
    }
    return out;
  }
}

// Seed of the hash chain: different models (and LoRA adapters, and cache salts) never share KV
// cache, so they never share block hashes either.
export function chainSeed(model: string, cacheSalt: string): u64 {
  const text = String.UTF8.encode(model + cacheSalt);
  return xxh64(changetype<usize>(text), text.byteLength);
}
