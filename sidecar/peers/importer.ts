// Posts peers' records into the own filter (POST /wasm-epp/v1/prefix): records arriving from
// the peers wait for the next flush() (once per --peer-interval, with the pull), and go together,
// in batches of at most `maxBytes` (lowered to the filter's limit when it answers 413 naming one),
// one request in flight. With N replicas that is one import per interval instead of N - 1. At most 4 x maxBytes
// wait; beyond that the oldest are dropped. Failures back off (100 ms doubling to 5 s); a filter
// with prefix sharing off is logged once as an error and tried again every 10 s.

import type { Logger } from "../observability/log.ts";
import { Backoff } from "../util/backoff.ts";
import type { FailReason, FilterClient } from "./filter-client.ts";
import { FILTER_PEER, type PeerObserver } from "./observer.ts";
import { rebatch } from "./records.ts";

export const SHARING_OFF_RETRY_MS = 10_000;

interface Piece {
  data: Uint8Array;
  records: number;
}

export interface ImporterOptions {
  filter: FilterClient;
  maxBytes: number;
  log: Logger;
  observer: PeerObserver;
  onSharingOff?: (message: string) => void;
  onImported?: () => void;
}

export class Importer {
  private readonly queue: Piece[] = [];
  private queuedBytes = 0;
  private inFlight?: Promise<void>;
  private retryTimer?: NodeJS.Timeout;
  private readonly backoff = new Backoff(100, 5000);
  private failing?: FailReason;
  private limit: number;
  private stopped = false;
  dropped = 0;

  constructor(private readonly opts: ImporterOptions) {
    this.limit = opts.maxBytes;
  }

  get importLimit(): number {
    return this.limit;
  }

  // Queues a valid batch (not copied: the caller hands it over).
  offer(data: Uint8Array, records: number): void {
    if (records === 0 || this.stopped) return;
    this.queue.push({ data, records });
    this.queuedBytes += data.length;
    while (this.queuedBytes > 4 * this.opts.maxBytes && this.queue.length > 1) {
      const d = this.queue.shift()!;
      this.queuedBytes -= d.data.length;
      this.dropped += d.records;
    }
  }

  // Sends what waits (called once per interval).
  flush(): void {
    this.kick();
  }

  get idle(): boolean {
    return this.queue.length === 0 && !this.inFlight;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.inFlight;
  }

  private kick(): void {
    if (this.stopped || this.inFlight || this.retryTimer || this.queue.length === 0) return;
    const pieces: Piece[] = [];
    let size = 0;
    while (this.queue.length > 0 && (pieces.length === 0 || size + this.queue[0].data.length <= this.limit)) {
      const p = this.queue.shift()!;
      pieces.push(p);
      size += p.data.length;
    }
    this.queuedBytes -= size;
    this.inFlight = this.send(pieces, size).finally(() => {
      this.inFlight = undefined;
      // More than one batch waited: the rest goes at once rather than a batch per interval.
      if (this.queuedBytes >= this.limit) this.kick();
    });
  }

  private async send(pieces: Piece[], size: number): Promise<void> {
    const body = pieces.length === 1 ? pieces[0].data : Buffer.concat(pieces.map((p) => p.data), size);
    const records = pieces.reduce((n, p) => n + p.records, 0);
    const r = await this.opts.filter.import(body);
    if (r.ok) {
      this.opts.observer.peerRecords("imported", records);
      this.backoff.reset();
      if (this.failing) {
        this.opts.log.info("prefix_import_recovered", `${this.opts.filter.where}: accepting peers' records again`, { after: this.failing });
        this.failing = undefined;
      }
      this.opts.onImported?.();
      return;
    }
    this.opts.observer.peerError(FILTER_PEER, r.reason);
    let requeue = true;
    let delay: number;
    if (r.reason === "too_large" && r.limit !== undefined && r.limit < this.limit && r.limit >= 1024) {
      this.limit = r.limit;
      delay = 0;
      this.opts.log.warn("prefix_import_limit", `${r.message}; sending batches of at most ${r.limit} bytes from now on (lower --peer-max-bytes to match the filter's peers.max_import_bytes)`, { limit: r.limit });
    } else if (r.reason === "sharing_off") {
      delay = SHARING_OFF_RETRY_MS;
      this.opts.onSharingOff?.(r.message);
    } else {
      if (r.reason === "rejected" || r.reason === "too_large") requeue = false; // the filter will not take it
      delay = this.backoff.next();
    }
    if (requeue) {
      // Re-split to the (possibly lowered) limit, back at the head of the queue.
      const again: Piece[] = [];
      for (const p of pieces) {
        for (const b of p.data.length > this.limit ? rebatch(p.data, this.limit) : [p.data]) again.push({ data: b, records: b === p.data ? p.records : countIn(b) });
      }
      this.queue.unshift(...again);
      this.queuedBytes += size;
    } else {
      this.dropped += records;
    }
    if (this.failing !== r.reason && r.reason !== "sharing_off" && delay > 0) {
      const level = r.reason === "unauthorized" || r.reason === "rejected" || r.reason === "too_large" ? "error" : "warn";
      this.opts.log[level]("prefix_import_failed", `${r.message}; retrying in ${delay}ms`, { reason: r.reason });
      this.failing = r.reason;
    } else if (r.reason === "sharing_off") {
      this.failing = r.reason;
    }
    if (this.stopped) return;
    if (delay > 0) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, delay);
    }
  }
}

function countIn(batch: Uint8Array): number {
  let n = 0;
  for (let off = 0; off < batch.length; off += 9 + 8 * batch[off + 8]) n++;
  return n;
}
