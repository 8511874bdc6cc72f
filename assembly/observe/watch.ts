// One request's answer as it passes through the filter: when the request arrived and was sent on,
// when the response's headers and first body bytes came back, how it ended, and the usage the
// model server reported. Plain logic; the filter feeds it what the host says.

import { ResponseTail, Usage, findUsage } from "./usage";
import { ModelSeries } from "./series";

export const OUTCOME_OK: i32 = 0; // the response ended with a status below 400
export const OUTCOME_ERROR: i32 = 1; // the model server (or the proxy before it) answered >= 400
export const OUTCOME_INCOMPLETE: i32 = 2; // the stream ended before the response did (reset, client gone)

export class ResponseWatch {
  // When the filter saw the request's headers, and when it let the request go upstream (after
  // any time held in the queue), in ms.
  startMs: f64;
  routedMs: f64 = -1;
  headersMs: f64 = -1;
  firstByteMs: f64 = -1;
  endMs: f64 = -1;
  status: i32 = 0;
  ended: bool = false;
  requestBytes: i64 = 0;
  // What routing decided: labels, the pod sent to, and the pod that computes the prompt (the
  // prefill pod of a prefill/decode pair) with its id; the prefix blocks the pick counted as
  // cached there (with the blocks every pod holds); the index's own record for that pod before
  // any learned retention set it aside, and its age; the pick's time-to-first-token estimate.
  model: string = "";
  target: string = "";
  pod: string = "";
  cachePod: string = "";
  cachePodId: u32 = 0;
  predictedBlocks: i32 = 0;
  recordedBlocks: i32 = 0;
  recordedAgeMs: f64 = -1;
  promptBytes: i64 = 0;
  estimateMs: f64 = -1;
  // The answer's last bytes, taken from the worker's spares when the first are read.
  tail: ResponseTail | null = null;
  tailBytes: i32;
  // Body bytes seen, and the answer's length when its headers said (content-length), else -1.
  seen: i64 = 0;
  expectedBytes: i64 = -1;
  usage: Usage = new Usage();
  // The model's metric series, once routed.
  models: ModelSeries | null = null;

  constructor(startMs: f64, tailBytes: i32) {
    this.startMs = startMs;
    this.tailBytes = tailBytes;
  }

  get routed(): bool {
    return this.routedMs >= 0 && this.models !== null;
  }

  onHeaders(status: i32, endOfStream: bool, now: f64): void {
    if (this.headersMs < 0) this.headersMs = now;
    this.status = status;
    if (endOfStream) this.end(now);
  }

  // A body chunk of `size` bytes arrived: how many of its last bytes to read (0: none, as the
  // answer's known length puts its end further on than the ring reaches back).
  wanted(size: i32): i32 {
    if (this.expectedBytes >= 0 && this.seen + <i64>size + <i64>this.tailBytes <= this.expectedBytes) return 0;
    return size < this.tailBytes ? size : this.tailBytes;
  }

  // The ring, taken from the worker's spares on first use.
  ring(): ResponseTail {
    let t = this.tail;
    if (t === null) {
      t = takeTail(this.tailBytes);
      this.tail = t;
    }
    return t;
  }

  // A chunk of `size` bytes was not read: what the ring held is no longer adjacent to what comes.
  skipped(size: i32): void {
    const t = this.tail;
    if (t !== null) t.push(size, 0, 0);
  }

  // Gives the ring back to the worker's spares.
  release(): void {
    const t = this.tail;
    if (t === null) return;
    this.tail = null;
    giveTail(t);
  }

  end(now: f64): void {
    if (this.ended) return;
    this.ended = true;
    this.endMs = now;
    // Only a successful answer carries usage worth reading.
    const t = this.tail;
    if (t !== null && this.status >= 200 && this.status < 300) this.usage = findUsage(t.linear());
  }

  get outcome(): i32 {
    if (!this.ended) return OUTCOME_INCOMPLETE;
    return this.status >= 400 || this.status < 100 ? OUTCOME_ERROR : OUTCOME_OK;
  }

  // Time to the first body byte (the client's TTFT behind this gateway), from the request's
  // arrival; -1 when no body came.
  get ttftMs(): f64 {
    return this.firstByteMs >= 0 ? this.firstByteMs - this.startMs : -1;
  }

  // Time to the first body byte from when the request went upstream: what the pod took.
  get upstreamTtftMs(): f64 {
    return this.firstByteMs >= 0 && this.routedMs >= 0 ? this.firstByteMs - this.routedMs : -1;
  }

  get durationMs(): f64 {
    return this.endMs >= 0 ? this.endMs - this.startMs : -1;
  }

  // The prompt tokens the pick counted as cached, in the tokens the server counted: predicted
  // bytes scaled by the server's tokens per prompt byte. -1 without usage.
  predictedCachedTokens(blockSize: i32): f64 {
    return this.tokensOf(this.predictedBlocks, blockSize);
  }

  // The same for the index's own record (before learned retention).
  recordedCachedTokens(blockSize: i32): f64 {
    return this.tokensOf(this.recordedBlocks, blockSize);
  }

  private tokensOf(blocks: i32, blockSize: i32): f64 {
    const u = this.usage;
    if (!u.found || u.promptTokens <= 0 || this.promptBytes <= 0) return -1;
    let bytes = <f64>blocks * <f64>blockSize;
    if (bytes > <f64>this.promptBytes) bytes = <f64>this.promptBytes;
    return Math.round(bytes * <f64>u.promptTokens / <f64>this.promptBytes);
  }
}

// Rings of ended answers, kept for the next ones (per worker VM, at most MAX_SPARES).
const MAX_SPARES: i32 = 64;
const spares = new Array<ResponseTail>();

function takeTail(capacity: i32): ResponseTail {
  while (spares.length > 0) {
    const t = spares.pop();
    if (t.capacity == capacity) {
      t.reset();
      return t;
    }
  }
  return new ResponseTail(capacity);
}

function giveTail(t: ResponseTail): void {
  if (spares.length < MAX_SPARES) spares.push(t);
}
