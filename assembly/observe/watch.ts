// One request's answer as it passes through the filter: when the request arrived and was sent on,
// when the response's headers and first body bytes came back, how it ended, and the usage the
// model server reported. Plain logic; the filter feeds it what the host says.

import { ResponseTail, Usage, findUsage } from "./usage";

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
  tail: ResponseTail;
  usage: Usage = new Usage();

  constructor(startMs: f64, tailBytes: i32) {
    this.startMs = startMs;
    this.tail = new ResponseTail(tailBytes);
  }

  get routed(): bool {
    return this.routedMs >= 0;
  }

  onHeaders(status: i32, endOfStream: bool, now: f64): void {
    if (this.headersMs < 0) this.headersMs = now;
    this.status = status;
    if (endOfStream) this.end(now);
  }

  // A body chunk of `size` bytes arrived: how many of its last bytes to read for the tail.
  onBody(size: i32, now: f64): i32 {
    if (size > 0 && this.firstByteMs < 0) this.firstByteMs = now;
    return this.tail.wanted(size);
  }

  end(now: f64): void {
    if (this.ended) return;
    this.ended = true;
    this.endMs = now;
    // Only a successful answer carries usage worth reading.
    if (this.status >= 200 && this.status < 300) this.usage = findUsage(this.tail.bytes());
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
