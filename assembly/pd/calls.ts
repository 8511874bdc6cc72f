// The prefill half of prefill/decode requests: the calls a worker has in flight, and what their
// answers mean. The call belongs to the root context and outlives the client's stream, so the
// prefill pod's load is held here until the call answers, whatever became of the stream.
//
// An answer is classified as:
//   2xx                        ok
//   4xx                        rejected: the request's fault; the client should see the reason
//   reset (no headers), 5xx    failed: the pod is avoided for a while
//   504                        timed out (Envoy's answer when pd.timeout_ms passes)
// Anything but ok leaves the decode half waiting for a KV transfer that will never come: it is
// aborted by rid, and the client, if nothing of the decode answer reached it yet, gets the
// failure as its answer.

export const OUTCOME_OK: i32 = 0;
export const OUTCOME_REJECTED: i32 = 1;
export const OUTCOME_FAILED: i32 = 2;
export const OUTCOME_TIMEOUT: i32 = 3;

// headers: how many headers the answer has (0: reset); status: its :status.
export function classify(headers: u32, status: i32): i32 {
  if (headers == 0 || status <= 0) return OUTCOME_FAILED;
  if (status >= 200 && status < 300) return OUTCOME_OK;
  if (status == 504) return OUTCOME_TIMEOUT;
  if (status >= 400 && status < 500) return OUTCOME_REJECTED;
  return OUTCOME_FAILED;
}

export function outcomeName(o: i32): string {
  if (o == OUTCOME_OK) return "ok";
  if (o == OUTCOME_REJECTED) return "rejected";
  if (o == OUTCOME_TIMEOUT) return "timeout";
  return "failed";
}

export class PendingPrefill {
  pool: string = "";
  prefillId: u32 = 0;
  prefillPod: string = "";
  decodePod: string = "";
  decodeAddress: string = "";
  rid: string = "";
  room: u64 = 0;
  // The client's stream (its context id), and the request path for the abort's log line.
  stream: u32 = 0;
  sentMs: f64 = 0;
}

// One worker's calls in flight, and its live prefill/decode streams.
export class PdCalls {
  private pending: Map<u32, PendingPrefill> = new Map<u32, PendingPrefill>();
  private aborts: Set<u32> = new Set<u32>();
  // Stream context id -> whether response headers reached it.
  private streams: Map<u32, bool> = new Map<u32, bool>();

  get inFlight(): i32 {
    return this.pending.size;
  }

  track(token: u32, p: PendingPrefill): void {
    this.pending.set(token, p);
    this.streams.set(p.stream, false);
  }

  trackAbort(token: u32): void {
    this.aborts.add(token);
  }

  // The pending prefill for `token` (removed), or null.
  take(token: u32): PendingPrefill | null {
    if (!this.pending.has(token)) return null;
    const p = this.pending.get(token);
    this.pending.delete(token);
    return p;
  }

  // Whether `token` was an abort call (forgotten once answered).
  takeAbort(token: u32): bool {
    if (!this.aborts.has(token)) return false;
    this.aborts.delete(token);
    return true;
  }

  responseStarted(stream: u32): void {
    if (this.streams.has(stream)) this.streams.set(stream, true);
  }

  streamDone(stream: u32): void {
    this.streams.delete(stream);
  }

  // The stream is open and no response headers reached it: it can still be answered locally.
  canAnswer(stream: u32): bool {
    return this.streams.has(stream) && !this.streams.get(stream);
  }
}
