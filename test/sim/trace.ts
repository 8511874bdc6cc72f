// Replaying timestamped request traces in the Mooncake format (JSONL), one request per line:
//
//   {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]}
//
// timestamp is in ms; hash_ids names each 512-token block of the prompt, so two requests whose
// first k hash ids are equal share their first k blocks of prompt. The replay keeps exactly that
// and nothing more: a block's tokens are a deterministic function of its hash id (a PRNG stream
// seeded by the id), every block has blockTokens tokens (512 by default; less shrinks a trace to
// fit the simulated pods, and input_length shrinks in proportion), and a prompt that ends inside
// a block takes that block's first tokens. Prompt tokens beyond the listed hash ids come from a
// stream of the request's own. Output lengths are kept.
//
// Requests are sent at their timestamps (open loop), the earliest at time 0, divided by `speed`.
// A request that does not fit the pods' max model length (prompt + output) is cut: output to at
// most half of it, then the prompt to what is left (its start kept, so shared prefixes stay
// shared). Such requests are counted in `truncated`.

import { Rng, hashString } from "./rng.ts";
import { REGULAR_VOCAB } from "./tokens.ts";
import type { RequestSource, SimRequest } from "./workload.ts";

export const TRACE_BLOCK_TOKENS = 512;

export interface TraceRecord {
  timestamp: number;
  input_length: number;
  output_length: number;
  hash_ids: number[];
  /** 1-based line in the file. */
  line: number;
}

/** Parses a JSONL trace; throws naming the file and line of the first malformed record. */
export function parseTrace(text: string, file = "trace"): TraceRecord[] {
  const out: TraceRecord[] = [];
  const lines = text.split("\n");
  for (let k = 0; k < lines.length; k++) {
    const line = lines[k].trim();
    if (line === "") continue;
    const where = `${file}:${k + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: not a JSON object (${(e as Error).message})`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${where}: not a JSON object`);
    const r = v as Record<string, unknown>;
    const problem =
      typeof r.timestamp !== "number" || !Number.isFinite(r.timestamp) || r.timestamp < 0 ? "timestamp must be a number of ms >= 0"
      : !Number.isInteger(r.input_length) || (r.input_length as number) < 1 ? "input_length must be an integer >= 1"
      : !Number.isInteger(r.output_length) || (r.output_length as number) < 0 ? "output_length must be an integer >= 0"
      : !Array.isArray(r.hash_ids) || !r.hash_ids.every((h) => Number.isSafeInteger(h)) ? "hash_ids must be an array of integers"
      : null;
    if (problem) throw new Error(`${where}: ${problem}`);
    out.push({ timestamp: r.timestamp as number, input_length: r.input_length as number, output_length: r.output_length as number, hash_ids: r.hash_ids as number[], line: k + 1 });
  }
  if (out.length === 0) throw new Error(`${file}: no requests`);
  return out;
}

/** The first n tokens of the block named by a hash id: the same for every request and every run. */
export function blockTokens(hashId: number, n: number): number[] {
  const rng = new Rng(hashString(`block/${hashId}`));
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, REGULAR_VOCAB - 1);
  return out;
}

export interface TraceOptions {
  /** Tokens per hash id (default 512). */
  blockTokens?: number;
  /** Time compression: timestamps are divided by this (default 1). */
  speed?: number;
  /** Only the first `limit` requests (in time order). */
  limit?: number;
  /** Prompt plus output never exceeds this (default 8192). */
  maxModelLen?: number;
}

export interface TraceRequest {
  atMs: number;
  promptLen: number;
  maxTokens: number;
  record: TraceRecord;
}

export interface TracePlan {
  requests: TraceRequest[];
  /** Requests cut to fit maxModelLen. */
  truncated: number;
  blockTokens: number;
  durationMs: number;
}

/** Arrival times and lengths of a trace's requests, after scaling, limiting and truncation. */
export function planTrace(records: readonly TraceRecord[], o: TraceOptions = {}): TracePlan {
  const b = o.blockTokens ?? TRACE_BLOCK_TOKENS;
  const speed = o.speed ?? 1;
  const limit = o.maxModelLen ?? 8192;
  if (!Number.isInteger(b) || b < 1) throw new RangeError(`trace block tokens must be a positive integer, got ${b}`);
  if (!(speed > 0)) throw new RangeError(`trace speed must be > 0, got ${speed}`);
  const sorted = records.slice().sort((x, y) => x.timestamp - y.timestamp); // stable: ties keep file order
  const chosen = o.limit !== undefined ? sorted.slice(0, o.limit) : sorted;
  const t0 = chosen.length ? chosen[0].timestamp : 0;
  let truncated = 0;
  const requests = chosen.map((record): TraceRequest => {
    let maxTokens = Math.max(1, record.output_length);
    let promptLen = Math.max(1, Math.round((record.input_length * b) / TRACE_BLOCK_TOKENS));
    if (promptLen + maxTokens > limit) {
      truncated++;
      maxTokens = Math.min(maxTokens, Math.floor(limit / 2));
      promptLen = Math.min(promptLen, limit - maxTokens);
    }
    return { atMs: (record.timestamp - t0) / speed, promptLen, maxTokens, record };
  });
  return { requests, truncated, blockTokens: b, durationMs: requests.length ? requests[requests.length - 1].atMs : 0 };
}

/** A request's prompt: its hash ids' blocks, cut to promptLen (then the request's own tokens). */
export function traceTokens(r: TraceRequest, b: number): number[] {
  const out: number[] = [];
  for (const h of r.record.hash_ids) {
    if (out.length >= r.promptLen) break;
    out.push(...blockTokens(h, Math.min(b, r.promptLen - out.length)));
  }
  if (out.length < r.promptLen) {
    const rng = new Rng(hashString(`line/${r.record.line}`));
    while (out.length < r.promptLen) out.push(rng.int(0, REGULAR_VOCAB - 1));
  }
  return out;
}

/** The trace as a request source: open loop at the timestamps, or (closedLoop) all ready at once. */
export function traceSource(plan: TracePlan, opts: { closedLoop?: boolean } = {}): RequestSource {
  let i = 0;
  const at = (k: number) => (opts.closedLoop ? 0 : plan.requests[k].atMs);
  return {
    next(now): SimRequest | null {
      if (i >= plan.requests.length || at(i) > now) return null;
      const r = plan.requests[i++];
      return { id: `line${r.record.line}`, tokens: traceTokens(r, plan.blockTokens), maxTokens: r.maxTokens, lora: null };
    },
    nextReadyAt: (now) => (i < plan.requests.length && at(i) > now ? at(i) : Infinity),
    exhausted: () => i >= plan.requests.length,
  };
}
