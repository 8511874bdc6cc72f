// Posts what peers sent into the own filter (POST /wasm-epp/v1/share): peers' prefix records and
// loads wait for the next flush() (once per --peer-interval, with the pull) and go together, in
// one request: the LOAD sections first — only the latest per (sending replica, pool), an older
// one being worth nothing once a newer has arrived — then one PREFIX section with every peer's
// records. With N replicas that is one import per interval instead of N - 1. A body stays within
// `maxBytes` (lowered to the filter's limit when it answers 413 naming one); what does not fit
// goes in further requests at once. A failed request's loads are dropped (newer ones come every
// interval); its records are tried again. At most 4 x maxBytes of records wait; beyond that the oldest
// are dropped. Failures back off (100 ms doubling to 5 s); a filter with prefix sharing off is
// logged once as an error and tried again every 10 s.

import type { Logger } from "../observability/log.ts";
import { Backoff } from "../util/backoff.ts";
import type { FailReason, FilterClient } from "./filter-client.ts";
import { FILTER_PEER, type PeerObserver } from "./observer.ts";
import { MAX_RECORD_BYTES, rebatch, validate } from "./records.ts";
import { prefixSectionSize, SECTION_HEADER_BYTES, SECTION_PREFIX, writeSectionHeader } from "./sections.ts";

export const SHARING_OFF_RETRY_MS = 10_000;

interface Piece {
  data: Uint8Array;
  records: number;
}

interface Load {
  key: string;
  section: Uint8Array; // a whole LOAD section
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
  // The latest LOAD section per "pool replica", in arrival order of their keys.
  private readonly loads = new Map<string, Uint8Array>();
  private inFlight?: Promise<void>;
  private retryTimer?: NodeJS.Timeout;
  private readonly backoff = new Backoff(100, 5000);
  private failing?: FailReason;
  private limit: number;
  private stopped = false;
  private leftOver = false; // the last request left things behind for lack of room
  private oversizeLogged = false;
  private loadRefusedLogged = false;
  private recordsOnly = false; // the next post leaves the loads out
  dropped = 0;
  droppedLoads = 0;

  constructor(private readonly opts: ImporterOptions) {
    this.limit = opts.maxBytes;
  }

  get importLimit(): number {
    return this.limit;
  }

  // Queues a valid batch of records (not copied: the caller hands it over).
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

  // Keeps a peer's LOAD section (replica = the sender), replacing an earlier one of the same
  // replica and pool that has not gone yet.
  offerLoad(pool: string, replica: string, section: Uint8Array): void {
    if (this.stopped) return;
    const key = `${pool} ${replica}`;
    if (this.loads.has(key)) this.droppedLoads++;
    this.loads.set(key, section);
  }

  // Sends what waits (called once per interval).
  flush(): void {
    this.kick();
  }

  get idle(): boolean {
    return this.queue.length === 0 && this.loads.size === 0 && !this.inFlight;
  }

  // LOAD sections waiting.
  get waitingLoads(): number {
    return this.loads.size;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.inFlight;
  }

  private kick(): void {
    if (this.stopped || this.inFlight || this.retryTimer || (this.queue.length === 0 && this.loads.size === 0)) return;
    // Loads first, leaving room for a PREFIX section with at least one record when records wait.
    const loadRoom = this.queue.length > 0 ? this.limit - prefixSectionSize(MAX_RECORD_BYTES) : this.limit;
    const loads: Load[] = [];
    let loadBytes = 0;
    let left = false;
    for (const [key, section] of this.loads) {
      if (this.recordsOnly) break; // they wait for the next interval
      if (section.length > this.limit) {
        this.loads.delete(key);
        this.droppedLoads++;
        if (!this.oversizeLogged) {
          this.oversizeLogged = true;
          this.opts.log.warn("load_too_large", `a peer's load section of ${section.length} bytes is larger than the filter's import limit of ${this.limit} bytes; dropped`, { bytes: section.length, limit: this.limit });
        }
        continue;
      }
      if (loadBytes + section.length > loadRoom) {
        left = true;
        continue;
      }
      loads.push({ key, section });
      loadBytes += section.length;
    }
    for (const l of loads) this.loads.delete(l.key);
    const room = this.limit - loadBytes - SECTION_HEADER_BYTES;
    const pieces: Piece[] = [];
    let size = 0;
    while (this.queue.length > 0) {
      const head = this.queue[0];
      if (size + head.data.length <= room) {
        pieces.push(this.queue.shift()!);
        size += head.data.length;
      } else if (pieces.length === 0 && room >= MAX_RECORD_BYTES) {
        this.queue.splice(0, 1, ...rebatch(head.data, room).map((data) => ({ data, records: countIn(data) })));
      } else {
        left = true;
        break;
      }
    }
    this.recordsOnly = false;
    if (loads.length === 0 && pieces.length === 0) return;
    this.queuedBytes -= size;
    this.leftOver = left;
    this.inFlight = this.send(loads, loadBytes, pieces, size).finally(() => {
      this.inFlight = undefined;
      // More than one request's worth waited: the rest goes at once rather than next interval.
      if (this.leftOver) this.kick();
    });
  }

  private async send(loads: Load[], loadBytes: number, pieces: Piece[], size: number): Promise<void> {
    const body = new Uint8Array(loadBytes + (pieces.length > 0 ? prefixSectionSize(size) : 0));
    let at = 0;
    for (const l of loads) {
      body.set(l.section, at);
      at += l.section.length;
    }
    if (pieces.length > 0) {
      writeSectionHeader(body, at, SECTION_PREFIX, size);
      at += SECTION_HEADER_BYTES;
      for (const p of pieces) {
        body.set(p.data, at);
        at += p.data.length;
      }
    }
    const records = pieces.reduce((n, p) => n + p.records, 0);
    const r = await this.opts.filter.import(body);
    if (r.ok) {
      if (records > 0) this.opts.observer.peerRecords("imported", records);
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
      this.opts.log.warn("prefix_import_limit", `${r.message}; sending at most ${r.limit} bytes from now on (lower --peer-max-bytes to match the filter's peers.max_import_bytes)`, { limit: r.limit });
    } else if (r.reason === "sharing_off") {
      delay = SHARING_OFF_RETRY_MS;
      this.opts.onSharingOff?.(r.message);
    } else if (r.reason === "rejected" && loads.length > 0 && pieces.length > 0) {
      // The filter takes a body whole or not at all: one peer's load it does not take (a record
      // of another format) must not cost every peer's records. Those go again at once, alone.
      delay = 0;
      this.recordsOnly = true;
      if (!this.loadRefusedLogged) {
        this.loadRefusedLogged = true;
        this.opts.log.warn("load_import_refused", `${r.message}; posting the records again without the loads`, {});
      }
    } else {
      if (r.reason === "rejected" || r.reason === "too_large") requeue = false; // the filter will not take it
      delay = this.backoff.next();
    }
    if (requeue) {
      // Records: re-split to the (possibly lowered) limit, back at the head of the queue. Loads are
      // not put back: each peer sends a newer one every interval, and an old one would count in
      // the filter as if it were current.
      const again: Piece[] = [];
      const pieceMax = Math.max(MAX_RECORD_BYTES, this.limit - prefixSectionSize(0));
      for (const p of pieces) {
        for (const b of p.data.length > pieceMax ? rebatch(p.data, pieceMax) : [p.data]) again.push({ data: b, records: b === p.data ? p.records : countIn(b) });
      }
      this.queue.unshift(...again);
      this.queuedBytes += size;
    } else {
      this.dropped += records;
    }
    this.droppedLoads += loads.length;
    if (this.failing !== r.reason && r.reason !== "sharing_off" && delay > 0) {
      const level = r.reason === "unauthorized" || r.reason === "rejected" || r.reason === "too_large" ? "error" : "warn";
      this.opts.log[level]("prefix_import_failed", `${r.message}; retrying in ${delay}ms`, { reason: r.reason });
      this.failing = r.reason;
    } else if (r.reason === "sharing_off") {
      this.failing = r.reason;
    }
    if (this.stopped) return;
    if (delay > 0) {
      this.leftOver = false;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, delay);
    } else this.leftOver = true;
  }
}

function countIn(batch: Uint8Array): number {
  const v = validate(batch);
  return v.ok ? v.offsets.length : 0;
}
