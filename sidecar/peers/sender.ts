// Sends the records the own filter exported to every peer: one POST /peers/v1/prefix per peer per
// interval at most, with at most --peer-max-bytes of records, one request in flight per peer.
// Records wait in a per-peer queue of at most twice that; when a peer cannot keep up (down, slow)
// its oldest records are dropped (reason queue_full): a peer costs this sidecar at most its
// queue and one request at a time, never a delay to the others, the pull or the state push. A
// failed request backs off per peer (the interval doubling to 10 s, jittered); a peer that
// refuses a batch (400, 413) loses that batch rather than getting it again.

import type http from "node:http";
import type { Logger } from "../observability/log.ts";
import { Backoff } from "../util/backoff.ts";
import type { Peer } from "./discovery.ts";
import type { FailReason } from "./filter-client.ts";
import { binaryRequest, errorOf, newAgent } from "./http.ts";
import type { PeerObserver } from "./observer.ts";
import { CONTENT_TYPE } from "./records.ts";
import type { PeerToken } from "./token.ts";

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

  // Starts one request to every peer that has records, none in flight and no backoff running.
  flush(): void {
    const now = this.now();
    for (const link of this.links.values()) {
      if (this.stopped || link.inFlight || link.queue.length === 0 || now < link.retryAt) continue;
      const pieces: Piece[] = [];
      let size = 0;
      while (link.queue.length > 0 && (pieces.length === 0 || size + link.queue[0].data.length <= this.opts.maxBytes)) {
        const p = link.queue.shift()!;
        pieces.push(p);
        size += p.data.length;
      }
      link.queuedBytes -= size;
      link.inFlight = this.send(link, pieces, size).finally(() => {
        link.inFlight = undefined;
      });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.links.values()].map((l) => l.inFlight));
    for (const l of this.links.values()) l.agent.destroy();
  }

  private async send(link: Link, pieces: Piece[], size: number): Promise<void> {
    const body = pieces.length === 1 ? pieces[0].data : Buffer.concat(pieces.map((p) => p.data), size);
    const records = pieces.reduce((n, p) => n + p.records, 0);
    const r = await binaryRequest({
      target: link.peer,
      path: PEER_PREFIX_PATH,
      method: "POST",
      headers: {
        authorization: `Bearer ${this.opts.token.token}`,
        "content-type": CONTENT_TYPE,
        ...(this.selfPort !== undefined ? { [PEER_PORT_HEADER]: String(this.selfPort) } : {}),
      },
      body,
      timeoutMs: this.opts.timeoutMs,
      maxReplyBytes: 64 * 1024,
      agent: link.agent,
    });
    if (!this.links.has(link.peer.id)) return; // removed meanwhile
    if (r.ok && (r.reply.status === 204 || r.reply.status === 200)) {
      this.opts.observer.peerSent(link.peer.id, size);
      this.opts.observer.peerRecords("sent", records);
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
    let keep = true; // put the batch back for the next attempt
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
          message = `answered 413 (${e.message}) to ${size} bytes: its --peer-max-bytes is smaller; the batch is dropped`;
          keep = false;
          break;
        case 400:
          reason = "rejected";
          message = `answered 400 (${e.message}); the batch is dropped`;
          keep = false;
          break;
        default:
          reason = "http_status";
          message = `answered ${r.reply.status}: ${e.message}`;
      }
    }
    this.opts.observer.peerError(link.peer.id, reason);
    if (keep) {
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
