// Sends to every peer, once per interval, one POST /peers/v1/share: a PREFIX section with the
// records the own filter exported since (at most what fits in --peer-max-bytes) and this
// replica's LOAD sections, one per pool, named with its replica name. The loads go every
// interval, new records or not: a peer's filter forgets a replica's load that has had no news
// for peers.load_ttl_ms (1 s). One request in flight per peer; a peer still busy with the last
// one skips the interval (its loads are the latest again next time).
// Records wait in a per-peer queue of at most twice --peer-max-bytes; when a peer cannot keep up
// (down, slow) its oldest records are dropped (reason queue_full): a peer costs this sidecar at
// most its queue and one request at a time, never a delay to the others, the pull or the state
// push. A failed request backs off per peer (the interval doubling to 10 s, jittered); a peer
// that refuses a body (400, 413) loses its records rather than getting them again. Loads are
// never queued: a failed request's loads are stale by the next attempt.

import type http from "node:http";
import type { Logger } from "../observability/log.ts";
import { Backoff } from "../util/backoff.ts";
import type { Peer } from "./discovery.ts";
import type { FailReason } from "./filter-client.ts";
import { binaryRequest, errorOf, newAgent } from "./http.ts";
import type { PeerObserver } from "./observer.ts";
import { MAX_RECORD_BYTES, rebatch, validate } from "./records.ts";
import { concat, encodePrefix, prefixSectionSize, SECTION_HEADER_BYTES, SECTION_PREFIX, SHARE_CONTENT_TYPE, writeSectionHeader } from "./sections.ts";
import type { PeerToken } from "./token.ts";

export const PEER_SHARE_PATH = "/peers/v1/share";
// Still accepted from sidecars of the previous version (records only), during a rolling update.
export const PEER_PREFIX_PATH = "/peers/v1/prefix";
export const PEER_SNAPSHOT_PATH = "/peers/v1/snapshot";
export const PEER_PORT_HEADER = "x-wasm-epp-peer-port";

interface Piece {
  data: Uint8Array;
  records: number;
}

class Link {
  readonly agent: http.Agent = newAgent();
  readonly queue: Piece[] = [];
  queuedBytes = 0;
  inFlight?: Promise<void>;
  retryAt = 0;
  reachable = false;
  failing?: FailReason;
  readonly backoff: Backoff;

  constructor(
    readonly peer: Peer,
    baseMs: number,
  ) {
    this.backoff = new Backoff(baseMs, 10_000);
  }
}

export interface SenderOptions {
  token: PeerToken;
  maxBytes: number;
  timeoutMs: number;
  intervalMs: number;
  log: Logger;
  observer: PeerObserver;
  now?: () => number;
}

export class Sender {
  private readonly links = new Map<string, Link>();
  private readonly now: () => number;
  private stopped = false;
  private selfPort?: number;
  private loads?: Loads;

  constructor(private readonly opts: SenderOptions) {
    this.now = opts.now ?? Date.now;
  }

  // The port this replica's peer server listens on, announced to peers so that they can label
  // what they receive from it.
  setSelfPort(port: number): void {
    this.selfPort = port;
  }

  // Follows the peer list: new peers get a link (starting with an empty queue), removed peers
  // lose theirs and their metric series.
  setPeers(peers: Peer[]): { added: Peer[]; removed: Peer[] } {
    const wanted = new Map(peers.map((p) => [p.id, p]));
    const added: Peer[] = [];
    const removed: Peer[] = [];
    for (const [id, link] of this.links) {
      if (wanted.has(id)) continue;
      this.links.delete(id);
      link.agent.destroy();
      removed.push(link.peer);
      this.opts.observer.forgetPeer(id);
    }
    for (const [id, p] of wanted) {
      if (this.links.has(id)) continue;
      this.links.set(id, new Link(p, Math.max(100, this.opts.intervalMs)));
      added.push(p);
    }
    this.report();
    return { added, removed };
  }

  peers(): Peer[] {
    return [...this.links.values()].map((l) => l.peer);
  }

  isKnown(id: string): boolean {
    return this.links.has(id);
  }

  reachableCount(): number {
    let n = 0;
    for (const l of this.links.values()) if (l.reachable) n++;
    return n;
  }

  // This replica's loads to send from now on (LOAD sections, replica = its own name), replacing
  // the last ones; none (an empty list) after a failed pull. Sections that do not fit in
  // --peer-max-bytes with room left for one prefix record are left out; returns how many.
  setLoads(sections: Uint8Array[]): number {
    const budget = loadBudget(this.opts.maxBytes);
    const kept: Uint8Array[] = [];
    let size = 0;
    for (const s of sections) {
      if (size + s.length > budget) continue;
      kept.push(s);
      size += s.length;
    }
    this.loads = kept.length === 0 ? undefined : { block: concat(kept), sections: kept.length };
    return sections.length - kept.length;
  }

  // Queues records (a valid batch of at most maxBytes) for every peer.
  enqueue(data: Uint8Array, records: number): void {
    if (records === 0) return;
    const cap = 2 * this.opts.maxBytes;
    for (const link of this.links.values()) {
      link.queue.push({ data, records });
      link.queuedBytes += data.length;
      while (link.queuedBytes > cap && link.queue.length > 1) {
        const dropped = link.queue.shift()!;
        link.queuedBytes -= dropped.data.length;
        this.opts.observer.peerError(link.peer.id, "queue_full");
      }
    }
  }

  // Starts one request to every peer that has something to send (the loads, or records), none in
  // flight and no backoff running. Called once per interval.
  flush(): void {
    const now = this.now();
    const loads = this.loads;
    const room = this.opts.maxBytes - (loads?.block.length ?? 0) - SECTION_HEADER_BYTES;
    for (const link of this.links.values()) {
      if (this.stopped || link.inFlight || now < link.retryAt) continue;
      if (link.queue.length === 0 && loads === undefined) continue;
      const pieces: Piece[] = [];
      let size = 0;
      while (link.queue.length > 0) {
        const head = link.queue[0];
        if (size + head.data.length <= room) {
          pieces.push(link.queue.shift()!);
          size += head.data.length;
        } else if (pieces.length === 0) {
          // Larger than the room the loads leave: cut it between records (room holds at least
          // the largest record).
          link.queue.splice(0, 1, ...rebatch(head.data, room).map((data) => ({ data, records: countOf(data) })));
        } else break;
      }
      link.queuedBytes -= size;
      link.inFlight = this.send(link, pieces, size, loads).finally(() => {
        link.inFlight = undefined;
      });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.links.values()].map((l) => l.inFlight));
    for (const l of this.links.values()) l.agent.destroy();
  }

  private async send(link: Link, pieces: Piece[], size: number, loads: Loads | undefined): Promise<void> {
    const body = shareBody(loads?.block, pieces, size);
    const records = pieces.reduce((n, p) => n + p.records, 0);
    const r = await binaryRequest({
      target: link.peer,
      path: PEER_SHARE_PATH,
      method: "POST",
      headers: {
        authorization: `Bearer ${this.opts.token.token}`,
        "content-type": SHARE_CONTENT_TYPE,
        ...(this.selfPort !== undefined ? { [PEER_PORT_HEADER]: String(this.selfPort) } : {}),
      },
      body,
      timeoutMs: this.opts.timeoutMs,
      maxReplyBytes: 64 * 1024,
      agent: link.agent,
    });
    if (!this.links.has(link.peer.id)) return; // removed meanwhile
    if (r.ok && (r.reply.status === 204 || r.reply.status === 200)) {
      this.opts.observer.peerSent(link.peer.id, body.length);
      if (records > 0) this.opts.observer.peerRecords("sent", records);
      if (loads) this.opts.observer.peerRecords("load_sent", loads.sections);
      link.backoff.reset();
      link.retryAt = 0;
      if (!link.reachable || link.failing) {
        if (link.failing) this.opts.log.info("peer_recovered", `${link.peer.id}: accepting records again`, { peer: link.peer.id, after: link.failing });
        link.failing = undefined;
        link.reachable = true;
        this.report();
      }
      return;
    }
    let reason: FailReason;
    let message: string;
    let keep = true; // put the records back for the next attempt
    if (!r.ok) {
      reason = r.kind === "too_large" ? "bad_reply" : r.kind;
      message = r.message;
    } else {
      const e = errorOf(r.reply.body);
      switch (r.reply.status) {
        case 401:
          reason = "unauthorized";
          message = `answered 401 (${e.message}): the replicas' peer tokens differ${this.opts.token.reload() ? "; the token file changed, retrying with the new token" : ""}`;
          break;
        case 413:
          reason = "too_large";
          message = `answered 413 (${e.message}) to ${body.length} bytes: its --peer-max-bytes is smaller; the records are dropped`;
          keep = false;
          break;
        case 400:
          reason = "rejected";
          message = `answered 400 (${e.message}); the records are dropped`;
          keep = false;
          break;
        case 404:
          reason = "http_status";
          message = `answered 404 (${e.message}): the peer does not serve ${PEER_SHARE_PATH} (a sidecar of an earlier version)`;
          break;
        default:
          reason = "http_status";
          message = `answered ${r.reply.status}: ${e.message}`;
      }
    }
    this.opts.observer.peerError(link.peer.id, reason);
    if (keep && pieces.length > 0) {
      link.queue.unshift(...pieces);
      link.queuedBytes += size;
      const cap = 2 * this.opts.maxBytes;
      while (link.queuedBytes > cap && link.queue.length > 1) {
        const dropped = link.queue.shift()!;
        link.queuedBytes -= dropped.data.length;
        this.opts.observer.peerError(link.peer.id, "queue_full");
      }
    }
    const delay = link.backoff.next();
    link.retryAt = this.now() + delay;
    if (link.failing !== reason) {
      const level = reason === "unauthorized" || reason === "too_large" || reason === "rejected" ? "error" : "warn";
      this.opts.log[level]("peer_failed", `${link.peer.id}: ${message}; next attempt in ${delay}ms`, { peer: link.peer.id, reason });
      link.failing = reason;
    }
    if (link.reachable) {
      link.reachable = false;
      this.report();
    }
  }

  private report(): void {
    this.opts.observer.peerCounts(this.links.size, this.reachableCount());
  }
}

interface Loads {
  block: Uint8Array; // LOAD sections back to back
  sections: number;
}

// Bytes of LOAD sections one request may carry: --peer-max-bytes less room for a PREFIX section
// with the largest record, so that records always move.
export function loadBudget(maxBytes: number): number {
  return maxBytes - prefixSectionSize(MAX_RECORD_BYTES);
}

// The loads, then one PREFIX section with the pieces (none without records).
function shareBody(loads: Uint8Array | undefined, pieces: Piece[], size: number): Uint8Array {
  if (pieces.length === 0) return loads ?? new Uint8Array(0);
  if (loads === undefined && pieces.length === 1) return encodePrefix(pieces[0].data);
  const out = new Uint8Array((loads?.length ?? 0) + prefixSectionSize(size));
  let at = 0;
  if (loads) {
    out.set(loads, 0);
    at = loads.length;
  }
  writeSectionHeader(out, at, SECTION_PREFIX, size);
  at += SECTION_HEADER_BYTES;
  for (const p of pieces) {
    out.set(p.data, at);
    at += p.data.length;
  }
  return out;
}

function countOf(batch: Uint8Array): number {
  const v = validate(batch);
  return v.ok ? v.offsets.length : 0;
}
