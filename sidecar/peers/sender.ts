// Sends to every peer, once per interval, one frame on a long-lived stream (POST /peers/v1/stream,
// frames.ts): a PREFIX section with the records the own filter exported since (at most what fits
// in --peer-max-bytes) and this replica's LOAD sections, one per pool, named with its replica
// name. A frame goes every interval, new records or loads or not (an empty one keeps the stream
// alive; the loads matter most: a peer's filter forgets a replica's load that has had no news for
// peers.load_ttl_ms, 1 s). An interval costs one write per peer, not an HTTP request: the stream
// is opened once (the token checked then) and reopened when it closes or fails.
// A peer whose stream does not take what was written (the socket's buffer above --peer-max-bytes,
// 'drain' not come) skips the interval (its loads are the latest again next time); one blocked
// longer than --peer-timeout is dropped and reopened. A peer that answers the stream with 404 (a
// sidecar of the previous version) gets one POST /peers/v1/share per interval instead, as before:
// one request in flight, a peer still busy with the last one skipping the interval.
// Records wait in a per-peer queue of at most twice --peer-max-bytes; when a peer cannot keep up
// (down, slow) its oldest records are dropped (reason queue_full): a peer costs this sidecar at
// most its queue and one stream or request, never a delay to the others, the pull or the state
// push. A failed open or request, or a stream that fails or that the peer closes on an error,
// backs off per peer (the interval doubling to 10 s, jittered); a peer that refuses a body (400,
// 413) loses its records rather than getting them again. Frames are not acknowledged: what was
// written to a stream that then breaks is lost, like a POST's body that never arrived. Loads are
// never queued: a failed attempt's loads are stale by the next one.

import type { Logger } from "../observability/log.ts";
import { Backoff } from "../util/backoff.ts";
import type { Peer } from "./discovery.ts";
import type { FailReason } from "./filter-client.ts";
import http from "node:http";
import { FRAME_HEADER_BYTES, writeFrameHeader } from "./frames.ts";
import { binaryRequest, describeTarget, errorOf, newAgent } from "./http.ts";
import type { PeerObserver } from "./observer.ts";
import { MAX_RECORD_BYTES, rebatch, validate } from "./records.ts";
import { concat, encodePrefix, prefixSectionSize, SECTION_HEADER_BYTES, SECTION_PREFIX, SHARE_CONTENT_TYPE, writeSectionHeader } from "./sections.ts";
import type { PeerToken } from "./token.ts";

export const PEER_SHARE_PATH = "/peers/v1/share";
// Still accepted from sidecars of the previous version (records only), during a rolling update.
export const PEER_PREFIX_PATH = "/peers/v1/prefix";
export const PEER_SNAPSHOT_PATH = "/peers/v1/snapshot";
export const PEER_PORT_HEADER = "x-wasm-epp-peer-port";
export const PEER_STREAM_PATH = "/peers/v1/stream";
export const FRAMES_CONTENT_TYPE = "application/vnd.wasm-epp.share-frames";
// After a peer answered the stream with 404, POSTs go to it for this long; then (or as soon as a
// POST finds it unreachable: it may have been replaced) the stream is tried again.
export const POST_FALLBACK_MS = 5 * 60_000;

interface Stream {
  req: http.ClientRequest;
  open: boolean; // answered 200
  needDrain: boolean; // write() returned false, 'drain' not come yet
  blockedSince: number;
  lastWrite: number;
  openTimer?: NodeJS.Timeout;
}

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
  stream?: Stream;
  postUntil = 0; // POSTs instead of the stream until then

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
  private tick?: NodeJS.Timeout;

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
      this.closeStream(link, false);
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
    if (this.links.size > 0 && !this.tick && !this.stopped) {
      this.tick = setInterval(() => this.keepAlive(), this.opts.intervalMs);
      this.tick.unref();
    }
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

  // Peers whose stream is open (the others: opening, backing off, or taking POSTs).
  streamsOpen(): number {
    let n = 0;
    for (const l of this.links.values()) if (l.stream?.open) n++;
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

  // Writes one frame to every peer's open stream (opening those that have none), or starts one
  // POST to a peer that takes no stream, with none in flight; none to a peer whose backoff runs.
  // Called once per interval.
  flush(): void {
    const now = this.now();
    const loads = this.loads;
    const room = this.opts.maxBytes - (loads?.block.length ?? 0) - SECTION_HEADER_BYTES;
    for (const link of this.links.values()) {
      if (this.stopped || now < link.retryAt) continue;
      if (now < link.postUntil) {
        if (link.inFlight || (link.queue.length === 0 && loads === undefined)) continue;
        const { pieces, size } = this.take(link, room);
        link.inFlight = this.send(link, pieces, size, loads).finally(() => {
          link.inFlight = undefined;
        });
        continue;
      }
      const s = link.stream;
      if (!s) {
        this.open(link);
        continue;
      }
      if (!s.open) continue;
      if (s.needDrain) {
        if (now - s.blockedSince > this.opts.timeoutMs) {
          this.streamFailed(link, s, "timeout", `the stream to ${describeTarget(link.peer)} took nothing for ${now - s.blockedSince}ms`);
          continue;
        }
        if (s.req.writableLength > this.opts.maxBytes) continue; // busy: skip this interval
      }
      const { pieces, size } = this.take(link, room);
      const frame = shareBody(loads?.block, pieces, size, FRAME_HEADER_BYTES);
      this.write(link, s, frame, now);
      const records = pieces.reduce((n, p) => n + p.records, 0);
      if (records > 0) this.opts.observer.peerRecords("sent", records);
      if (loads) this.opts.observer.peerRecords("load_sent", loads.sections);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.tick);
    for (const l of this.links.values()) this.closeStream(l, true);
    await Promise.all([...this.links.values()].map((l) => l.inFlight));
    for (const l of this.links.values()) l.agent.destroy();
  }

  // The records that go next to a peer: the head of its queue, as much as fits in `room`.
  private take(link: Link, room: number): { pieces: Piece[]; size: number } {
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
    return { pieces, size };
  }

  // A frame (its 4 header bytes left free) onto a stream.
  private write(link: Link, s: Stream, frame: Uint8Array, now: number): void {
    writeFrameHeader(frame, frame.length - FRAME_HEADER_BYTES);
    s.lastWrite = now;
    if (!s.req.write(frame) && !s.needDrain) {
      s.needDrain = true;
      s.blockedSince = now;
    }
    this.opts.observer.peerSent(link.peer.id, frame.length);
  }

  // An empty frame onto every open stream that had none for 1.5 intervals: the pull may be
  // backing off (the filter down or with sharing off) while the streams must stay alive.
  private keepAlive(): void {
    const now = this.now();
    for (const link of this.links.values()) {
      const s = link.stream;
      if (!s?.open || s.needDrain || now - s.lastWrite < 1.5 * this.opts.intervalMs) continue;
      this.write(link, s, new Uint8Array(FRAME_HEADER_BYTES), now);
    }
  }

  // Opens a stream to a peer: 200 opens it, 404 turns the peer to POSTs, anything else fails.
  private open(link: Link): void {
    const req = http.request({
      host: link.peer.host,
      port: link.peer.port,
      path: PEER_STREAM_PATH,
      method: "POST",
      agent: false,
      headers: {
        authorization: `Bearer ${this.opts.token.token}`,
        "content-type": FRAMES_CONTENT_TYPE,
        "transfer-encoding": "chunked",
        ...(this.selfPort !== undefined ? { [PEER_PORT_HEADER]: String(this.selfPort) } : {}),
      },
    });
    const s: Stream = { req, open: false, needDrain: false, blockedSince: 0, lastWrite: 0 };
    link.stream = s;
    const where = `${describeTarget(link.peer)}${PEER_STREAM_PATH}`;
    s.openTimer = setTimeout(() => this.streamFailed(link, s, "timeout", `no answer from ${where} within ${this.opts.timeoutMs}ms`), this.opts.timeoutMs);
    req.on("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? "";
      this.streamFailed(link, s, code === "ETIMEDOUT" ? "timeout" : "unreachable", `${where}: ${err.message}${code && !err.message.includes(code) ? ` (${code})` : ""}`);
    });
    req.on("drain", () => {
      s.needDrain = false;
    });
    req.on("response", (res) => {
      clearTimeout(s.openTimer);
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        if (size + c.length > 64 * 1024) return; // only an error's first bytes matter
        chunks.push(c);
        size += c.length;
      });
      res.on("end", () => this.streamAnswered(link, s, res.statusCode ?? 0, Buffer.concat(chunks, size)));
      res.on("close", () => {
        if (!res.complete) this.streamFailed(link, s, "unreachable", `${where}: the stream broke off`);
      });
      if (res.statusCode === 200 && link.stream === s && !this.stopped) {
        s.open = true;
        this.succeeded(link);
      }
    });
    req.flushHeaders();
  }

  // The answer to a stream ended: a refusal at the open, or the peer closed an open stream.
  private streamAnswered(link: Link, s: Stream, status: number, body: Buffer): void {
    if (link.stream !== s) return;
    const e = errorOf(body);
    if (status === 404) {
      this.closeStream(link, false);
      link.postUntil = this.now() + POST_FALLBACK_MS;
      this.opts.log.info("peer_stream_unsupported", `${link.peer.id} does not serve ${PEER_STREAM_PATH} (a sidecar of an earlier version): one POST ${PEER_SHARE_PATH} per interval instead`, { peer: link.peer.id });
      return;
    }
    if (status === 401) {
      this.streamFailed(link, s, "unauthorized", `answered 401 (${e.message}): the replicas' peer tokens differ${this.opts.token.reload() ? "; the token file changed, retrying with the new token" : ""}`);
      return;
    }
    if (status !== 200) {
      this.streamFailed(link, s, "http_status", `answered ${status} to ${PEER_STREAM_PATH}: ${e.message}`);
      return;
    }
    switch (e.code) {
      case undefined:
      case "stream_idle":
      case "shutting_down":
        // Closed in good order: opened again at the next interval.
        this.closeStream(link, false);
        return;
      case "frame_too_large":
        this.streamFailed(link, s, "too_large", `closed the stream (${e.message}): its --peer-max-bytes is smaller; the records are dropped`);
        return;
      case "malformed_share":
        this.streamFailed(link, s, "rejected", `closed the stream (${e.message}); the records are dropped`);
        return;
      default:
        this.streamFailed(link, s, "http_status", `closed the stream: ${e.code}: ${e.message}`);
    }
  }

  private streamFailed(link: Link, s: Stream, reason: FailReason, message: string): void {
    if (link.stream !== s || this.stopped) return;
    this.closeStream(link, false);
    if (!this.links.has(link.peer.id)) return;
    this.failed(link, reason, message);
  }

  // Drops a link's stream: ended in good order (the sidecar stops) or at once.
  private closeStream(link: Link, graceful: boolean): void {
    const s = link.stream;
    if (!s) return;
    link.stream = undefined;
    clearTimeout(s.openTimer);
    if (graceful && s.open) {
      s.req.end(() => s.req.destroy());
      setTimeout(() => s.req.destroy(), 1000).unref(); // a peer that takes nothing more
    } else s.req.destroy();
  }

  private succeeded(link: Link): void {
    link.backoff.reset();
    link.retryAt = 0;
    if (!link.reachable || link.failing) {
      if (link.failing) this.opts.log.info("peer_recovered", `${link.peer.id}: accepting records again`, { peer: link.peer.id, after: link.failing });
      link.failing = undefined;
      link.reachable = true;
      this.report();
    }
  }

  private failed(link: Link, reason: FailReason, message: string): void {
    this.opts.observer.peerError(link.peer.id, reason);
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
      this.succeeded(link);
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
    // The peer may have been replaced by a sidecar that takes the stream: try it next time.
    if (reason === "unreachable") link.postUntil = 0;
    this.failed(link, reason, message);
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

// The loads, then one PREFIX section with the pieces (none without records), after `headroom`
// bytes left free (a frame's header).
function shareBody(loads: Uint8Array | undefined, pieces: Piece[], size: number, headroom = 0): Uint8Array {
  if (headroom === 0 && pieces.length === 0) return loads ?? new Uint8Array(0);
  if (headroom === 0 && loads === undefined && pieces.length === 1) return encodePrefix(pieces[0].data);
  const out = new Uint8Array(headroom + (loads?.length ?? 0) + (pieces.length > 0 ? prefixSectionSize(size) : 0));
  let at = headroom;
  if (loads) {
    out.set(loads, at);
    at += loads.length;
  }
  if (pieces.length === 0) return out;
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
