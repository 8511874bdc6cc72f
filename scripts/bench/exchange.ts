// The gateway replicas' sidecars sharing their prefix indexes (--gateways N with wasm-epp;
// docs/replicas.md, docs/benchmark.md "Gateway replicas"), in virtual time.
//
// Each replica's sidecar reads its filter's journal and its load record (one
// GET /wasm-epp/v1/share?since=N&pool=…) every intervalMs, at a phase of its own, and sends both
// to every other replica; they reach a replica's filter (POST /wasm-epp/v1/share) latencyMs
// later. The load goes every interval, changed or not: a replica that stops sending
// stops counting once its last record is older than the filter's peers.load_ttl_ms. The replica's router
// does both from its own hooks, in time order with its other events (wasm-epp.ts catchUp), so a
// pull at time t holds exactly what the filter recorded before t. A batch sent to a replica
// whose clock is already past its arrival is merged at the replica's next hook (at most one
// onTick, 10 ms, late).
//
// Chaos: a replica can be cut off for a time (its batches, both ways, are lost), and a
// restarted replica asks one other for its store (the records it exported and received within
// the TTL) before it takes traffic again. The store and the batching are the sidecar's own
// (sidecar/peers/store.ts, records.ts), run on the virtual clock.

import { RecordStore } from '../../sidecar/peers/store.ts';
import { join as joinRecords } from '../../sidecar/peers/records.ts';

export interface ExchangeOptions {
  /** Virtual time 0 in ms since the epoch (record times are the filter's clock). */
  epochMs?: number;
  /** The sidecar's --peer-store-bytes. */
  storeBytes?: number;
  /** The filter's peers.max_import_bytes: snapshot batches are at most this large. */
  maxBatchBytes?: number;
  /** The sidecar's --peer-interval. */
  intervalMs?: number;
  /** From one sidecar's read to the other filter's merge: network, the sidecars, the POST. */
  latencyMs?: number;
  /** Records older than this are not kept for snapshots (the filter's prefix.ttl_ms). */
  ttlMs?: number;
}

export interface Delivery {
  at: number;
  from: number;
  /** Prefix records, or (kind 'load') the sender's load record. */
  kind: 'prefix' | 'load';
  batch: Uint8Array;
}

export interface PeerLink {
  readonly index: number;
  /** When this replica's sidecar next reads its filter's journal. */
  readonly next: number;
  /** The journal cursor (x-wasm-epp-prefix-next of the last read). */
  cursor: number;
  /** Batches on their way to this replica, in arrival order. */
  readonly inbox: Delivery[];
  /** A pull at `at` read `batch` (records back to back): keep it, and send it to the others. */
  send(batch: Uint8Array, at: number): void;
  /** A pull at `at` read this replica's load record: send it to the others. */
  sendLoad(record: Uint8Array, at: number): void;
  /** The pull at nextPull is done: schedule the next. */
  pulled(): void;
  /** This replica's sidecar reads every `ms` instead of the net's interval (before the first read). */
  setInterval(ms: number): void;
  /** A batch was merged here (counts). */
  merged(d: Delivery, hashes: number): void;
  /** What a restarted replica warms up from: one reachable peer's live records, oldest first. */
  snapshot(now: number): Uint8Array[];
}

export class PeerNet {
  readonly intervalMs: number;
  readonly latencyMs: number;
  readonly ttlMs: number;
  readonly epochMs: number;
  readonly storeBytes: number;
  readonly maxBatchBytes: number;
  private links: LinkImpl[] = [];
  private cuts: Array<{ member: number; from: number; to: number }> = [];
  readonly totals = { pulls: 0, batches: 0, bytesSent: 0, bytesDelivered: 0, bytesLost: 0, hashesMerged: 0, loads: 0, loadBytes: 0, snapshots: 0, snapshotBytes: 0 };

  constructor(o: ExchangeOptions = {}) {
    this.intervalMs = o.intervalMs ?? 100;
    this.latencyMs = o.latencyMs ?? 2;
    this.ttlMs = o.ttlMs ?? 600_000;
    this.epochMs = o.epochMs ?? 0;
    this.storeBytes = o.storeBytes ?? 64 << 20;
    this.maxBatchBytes = o.maxBatchBytes ?? 1 << 20;
    if (!(this.intervalMs > 0) || !(this.latencyMs >= 0)) throw new RangeError('exchange: intervalMs > 0 and latencyMs >= 0');
  }

  /** A replica joins; members get distinct phases once all have joined (at the first pull). */
  join(): PeerLink {
    const l = new LinkImpl(this, this.links.length);
    this.links.push(l);
    return l;
  }

  get size(): number {
    return this.links.length;
  }

  /** Replica `member` is unreachable from `from` to `to` (virtual ms): its batches are lost both ways. */
  cut(member: number, from: number, to: number): void {
    this.cuts.push({ member, from, to });
  }

  isCut(member: number, at: number): boolean {
    return this.cuts.some((c) => c.member === member && at >= c.from && at < c.to);
  }

  /** @internal */
  fanOut(from: LinkImpl, batch: Uint8Array, at: number): void {
    this.totals.pulls++;
    if (batch.byteLength === 0) return;
    from.keep(batch, at);
    for (const to of this.links) {
      if (to === from) continue;
      this.totals.batches++;
      this.totals.bytesSent += batch.byteLength;
      const arrives = at + this.latencyMs;
      if (this.isCut(from.index, at) || this.isCut(to.index, arrives)) {
        this.totals.bytesLost += batch.byteLength;
        continue;
      }
      to.receive({ at: arrives, from: from.index, kind: 'prefix', batch });
    }
  }

  /** @internal */
  fanOutLoad(from: LinkImpl, record: Uint8Array, at: number): void {
    for (const to of this.links) {
      if (to === from) continue;
      this.totals.loads++;
      this.totals.loadBytes += record.byteLength;
      const arrives = at + this.latencyMs;
      if (this.isCut(from.index, at) || this.isCut(to.index, arrives)) continue;
      to.receive({ at: arrives, from: from.index, kind: 'load', batch: record });
    }
  }

  /** @internal A reachable peer's store for member `who` (the first other member not cut off). */
  snapshotFor(who: number, now: number): Uint8Array[] {
    if (this.isCut(who, now)) return [];
    for (let k = 1; k < this.links.length; k++) {
      const peer = this.links[(who + k) % this.links.length];
      if (this.isCut(peer.index, now)) continue;
      const out = peer.live(now);
      this.totals.snapshots++;
      this.totals.snapshotBytes += out.reduce((s, b) => s + b.byteLength, 0);
      return out;
    }
    return [];
  }
}

class LinkImpl implements PeerLink {
  nextPull = 0;
  cursor = 0;
  readonly inbox: Delivery[] = [];
  // What this replica's sidecar exported and received, for snapshots.
  private store: RecordStore;
  private phased = false;
  private interval = 0;

  constructor(
    private readonly net: PeerNet,
    readonly index: number,
  ) {
    this.store = new RecordStore({ maxBytes: net.storeBytes, ttlMs: net.ttlMs });
  }

  private phase(): void {
    if (this.phased) return;
    this.phased = true;
    if (!(this.interval > 0)) this.interval = this.net.intervalMs;
    // Spread the members' reads over the interval.
    this.nextPull = (this.interval * this.index) / Math.max(1, this.net.size);
  }

  setInterval(ms: number): void {
    if (!(ms > 0)) throw new RangeError(`exchange: interval ${ms}`);
    this.interval = ms;
  }

  get next(): number {
    this.phase();
    return this.nextPull;
  }

  send(batch: Uint8Array, at: number): void {
    this.net.fanOut(this, batch, at);
  }

  sendLoad(record: Uint8Array, at: number): void {
    this.net.fanOutLoad(this, record, at);
  }

  pulled(): void {
    this.phase();
    this.nextPull += this.interval;
  }

  receive(d: Delivery): void {
    let k = this.inbox.length;
    while (k > 0 && this.inbox[k - 1].at > d.at) k--;
    this.inbox.splice(k, 0, d);
  }

  merged(d: Delivery, hashes: number): void {
    this.net.totals.bytesDelivered += d.batch.byteLength;
    this.net.totals.hashesMerged += hashes;
    this.keep(d.batch, d.at);
  }

  keep(batch: Uint8Array, at: number): void {
    this.store.add(batch, this.net.epochMs + at);
  }

  live(now: number): Uint8Array[] {
    return joinRecords(this.store.snapshot(this.net.epochMs + now), this.net.maxBatchBytes);
  }

  snapshot(now: number): Uint8Array[] {
    return this.net.snapshotFor(this.index, now);
  }
}
