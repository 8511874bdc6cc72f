// The records a sidecar keeps for peers that start later: those its own filter exported and those
// received from peers, as they arrived. Bounded twice: by bytes (the oldest arrivals are dropped
// first) and by age (a record older than the TTL is dead; the filter would skip it anyway).
// Record times are ms32 (ms since the epoch modulo 2^32) and are compared wrap-safe with the
// current time, so the store works across the 49.7-day wrap as long as the TTL is under 24.8
// days. No timers and no clock: every call takes `nowMs`, so a benchmark can run it in virtual
// time.

import { diff32, ms32, timeOf, validate } from "./records.ts";

export interface StoreOptions {
  maxBytes: number;
  ttlMs: number;
}

interface Chunk {
  data: Uint8Array; // a private copy of valid records
  offsets: number[];
  newest: number; // ms32 of the newest record
}

export class RecordStore {
  private chunks: Chunk[] = [];
  private head = 0;
  private held = 0;
  private heldRecords = 0;
  dropped = 0; // records dropped to keep within maxBytes (expired ones are not counted)

  constructor(private readonly opts: StoreOptions) {
    if (!(opts.ttlMs > 0 && opts.ttlMs < 2 ** 31)) throw new RangeError("ttlMs must be between 1 ms and 24.8 days");
    if (!(opts.maxBytes > 0)) throw new RangeError("maxBytes must be positive");
  }

  get bytes(): number {
    return this.held;
  }

  get records(): number {
    return this.heldRecords;
  }

  // Keeps the records of a batch (copied). Returns how many were kept; a malformed batch keeps
  // nothing and throws MalformedBatch.
  add(batch: Uint8Array, nowMs: number): number {
    const v = validate(batch);
    if (!v.ok) throw v.error;
    this.expire(nowMs);
    let offsets = v.offsets;
    let data: Uint8Array = batch;
    if (offsets.length === 0) return 0;
    if (data.length > this.opts.maxBytes) {
      // Keep the newest arrivals that fit: the tail of the batch.
      let first = offsets.length - 1;
      while (first > 0 && data.length - offsets[first - 1] <= this.opts.maxBytes) first--;
      if (data.length - offsets[first] > this.opts.maxBytes) {
        this.dropped += offsets.length;
        return 0;
      }
      this.dropped += first;
      const base = offsets[first];
      data = data.subarray(base);
      offsets = offsets.slice(first).map((o) => o - base);
    }
    const now = ms32(nowMs);
    const copy = new Uint8Array(data);
    let newest = timeOf(copy, offsets[0]);
    let live = 0;
    for (const o of offsets) {
      const t = timeOf(copy, o);
      if (diff32(t, newest) > 0) newest = t;
      if (diff32(now, t) <= this.opts.ttlMs) live++;
    }
    if (live === 0) return 0;
    while (this.held + copy.length > this.opts.maxBytes && this.head < this.chunks.length) this.dropHead(true);
    this.chunks.push({ data: copy, offsets, newest });
    this.held += copy.length;
    this.heldRecords += offsets.length;
    return offsets.length;
  }

  // Drops arrivals whose every record has expired, from the oldest arrival on.
  expire(nowMs: number): void {
    const now = ms32(nowMs);
    while (this.head < this.chunks.length && diff32(now, this.chunks[this.head].newest) > this.opts.ttlMs) this.dropHead(false);
  }

  // The live records, oldest first (by record time; arrivals keep their order between equal
  // times), as views into the store: use them before the next add().
  snapshot(nowMs: number): Uint8Array[] {
    this.expire(nowMs);
    const now = ms32(nowMs);
    const views: Uint8Array[] = [];
    const ages: number[] = [];
    for (let c = this.head; c < this.chunks.length; c++) {
      const { data, offsets } = this.chunks[c];
      for (let i = 0; i < offsets.length; i++) {
        const age = diff32(now, timeOf(data, offsets[i]));
        if (age > this.opts.ttlMs) continue;
        const end = i + 1 < offsets.length ? offsets[i + 1] : data.length;
        views.push(data.subarray(offsets[i], end));
        ages.push(age);
      }
    }
    let sorted = true;
    for (let i = 1; i < ages.length && sorted; i++) if (ages[i] > ages[i - 1]) sorted = false;
    if (sorted) return views;
    const order = views.map((_, i) => i);
    order.sort((a, b) => ages[b] - ages[a] || a - b);
    return order.map((i) => views[i]);
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.held = 0;
    this.heldRecords = 0;
  }

  private dropHead(forSpace: boolean): void {
    const c = this.chunks[this.head];
    this.chunks[this.head] = undefined as unknown as Chunk;
    this.head++;
    this.held -= c.data.length;
    this.heldRecords -= c.offsets.length;
    if (forSpace) this.dropped += c.offsets.length;
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
