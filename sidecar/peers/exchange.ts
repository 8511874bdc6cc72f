// Sharing between gateway replicas, the sidecar's half: every --peer-interval one request to the
// own filter (GET /wasm-epp/v1/share) brings the prefix records it journaled since the last one and
// this replica's load of every pool the sidecar serves; the records are kept in the store, and
// the records and the loads go to every peer in one frame on a long-lived stream per peer (one
// POST per peer and interval to a peer of the previous version). Peers' records and loads arrive
// on the peer port and go into the own filter in one POST per interval; the records also go into
// the store. The exchange follows the peer list and warms a starting replica up from one peer's
// snapshot (prefix records only: loads are current or nothing).
//
// Nothing here waits on anything else: the pull, each peer's stream or sends, the imports into the filter
// and the state push (elsewhere) each have their own request in flight, deadline and backoff.

import type http from "node:http";
import type { Logger } from "../observability/log.ts";
import type { TokenSource } from "../push/token.ts";
import { Backoff } from "../util/backoff.ts";
import { peerId, type Peer, type PeerSource } from "./discovery.ts";
import { FilterClient, type FailReason } from "./filter-client.ts";
import { binaryRequest, errorOf, newAgent } from "./http.ts";
import { Importer, SHARING_OFF_RETRY_MS } from "./importer.ts";
import { FILTER_PEER, OTHER_PEER, type PeerObserver } from "./observer.ts";
import { count, join, rebatch } from "./records.ts";
import { encodeLoad, SECTION_HEADER_BYTES, type Share } from "./sections.ts";
import { PEER_SNAPSHOT_PATH, Sender } from "./sender.ts";
import { startPeerServer, type PeerServer } from "./server.ts";
import { RecordStore } from "./store.ts";
import type { PeerToken } from "./token.ts";
import { warmUp, type WarmupOutcome } from "./warmup.ts";

// Pools one read of the filter may name (the filter refuses more).
export const MAX_POOLS_PER_READ = 64;

export interface PeerExchangeOptions {
  filterOrigin: URL;
  pushToken: TokenSource;
  peerToken: PeerToken;
  sources: PeerSource[];
  // Leaves this replica out of the peer list.
  isSelf: (peer: Peer, ownPort: number) => boolean;
  // This replica's name in the LOAD sections it sends (--replica-name).
  replicaName: string;
  // The pools whose loads to share: every pool the sidecar serves (none known yet: empty).
  pools: () => readonly string[];
  intervalMs: number;
  maxBytes: number;
  timeoutMs: number;
  storeBytes: number;
  ttlMs: number;
  port: number;
  address: string;
  warmupTimeoutMs: number;
  log: Logger;
  observer: PeerObserver;
  now?: () => number;
}

export class PeerExchange {
  readonly store: RecordStore;
  readonly sender: Sender;
  readonly filter: FilterClient;
  readonly importer: Importer;
  private server?: PeerServer;
  private readonly now: () => number;
  private since?: number;
  private pullTimer?: NodeJS.Timeout;
  private pulling?: Promise<void>;
  private readonly pullBackoff = new Backoff(100, 5000);
  private pullFailing?: FailReason;
  private sharingOffLogged = false;
  private losing = false;
  private stopped = false;
  private warmed = false;
  private loadsLeftOutLogged = false;
  private nameClashLogged = false;
  private poolsCappedLogged = false;
  private readonly snapshotAgent: http.Agent = newAgent();
  warmup!: Promise<WarmupOutcome>;

  private constructor(private readonly o: PeerExchangeOptions) {
    this.now = o.now ?? Date.now;
    this.store = new RecordStore({ maxBytes: o.storeBytes, ttlMs: o.ttlMs });
    this.filter = new FilterClient({ origin: o.filterOrigin, token: o.pushToken, timeoutMs: o.timeoutMs });
    this.sender = new Sender({ token: o.peerToken, maxBytes: o.maxBytes, timeoutMs: o.timeoutMs, intervalMs: o.intervalMs, log: o.log, observer: o.observer, now: this.now });
    this.importer = new Importer({ filter: this.filter, maxBytes: o.maxBytes, log: o.log, observer: o.observer, onSharingOff: (m) => this.sharingOff(m) });
  }

  // Opens the peer port, starts following the peers, pulling, and the warm-up.
  static async start(o: PeerExchangeOptions): Promise<PeerExchange> {
    const x = new PeerExchange(o);
    x.server = await startPeerServer({
      port: o.port,
      address: o.address,
      token: o.peerToken,
      maxBytes: o.maxBytes,
      intervalMs: o.intervalMs,
      log: o.log,
      observer: o.observer,
      peerLabel: (addr, port) => x.labelFor(addr, port),
      onShare: (share, from) => x.received(share, from),
      snapshot: () => join(x.store.snapshot(x.now()), 1024 * 1024),
    });
    x.sender.setSelfPort(x.server.port);
    for (const s of o.sources) s.start(() => x.refreshPeers());
    x.refreshPeers();
    x.schedulePull(0);
    x.warmup = x.runWarmup().then((outcome) => {
      x.warmed = true;
      return outcome;
    });
    return x;
  }

  get port(): number {
    return this.server!.port;
  }

  // The warm-up has finished (or given up).
  warmedUp(): boolean {
    return this.warmed;
  }

  peers(): Peer[] {
    return this.sender.peers();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.pullTimer);
    await Promise.all(this.o.sources.map((s) => s.stop()));
    await this.pulling;
    await this.sender.stop();
    await this.importer.stop();
    await this.server?.close();
    this.filter.close();
    this.snapshotAgent.destroy();
  }

  // --- peers -----------------------------------------------------------------------------------

  private refreshPeers(): void {
    if (this.stopped) return;
    const byId = new Map<string, Peer>();
    for (const s of this.o.sources) for (const p of s.peers()) if (!this.o.isSelf(p, this.server?.port ?? this.o.port)) byId.set(p.id, p);
    const { added, removed } = this.sender.setPeers([...byId.values()]);
    if (added.length > 0 || removed.length > 0) {
      this.o.log.info("peers_changed", `${byId.size} peer(s)${added.length ? `; added ${added.map((p) => p.id).join(", ")}` : ""}${removed.length ? `; removed ${removed.map((p) => p.id).join(", ")}` : ""}`, {
        peers: [...byId.keys()],
        added: added.map((p) => p.id),
        removed: removed.map((p) => p.id),
      });
    }
  }

  // A caller's metrics label: the known peer at that address (and the peer port it announces),
  // else "other", so that label values stay bounded by the peer list.
  private labelFor(remote: string, announcedPort?: number): string {
    const host = remote.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "").toLowerCase();
    if (announcedPort !== undefined) {
      const id = peerId(host, announcedPort);
      if (this.sender.isKnown(id)) return id;
    }
    for (const p of this.sender.peers()) if (p.host === host) return p.id;
    return OTHER_PEER;
  }

  // --- pulling from the own filter ---------------------------------------------------------------

  private schedulePull(delayMs: number): void {
    if (this.stopped) return;
    this.pullTimer = setTimeout(() => {
      this.pullTimer = undefined;
      this.pulling = this.pullOnce().finally(() => (this.pulling = undefined));
    }, delayMs);
  }

  private async pullOnce(): Promise<void> {
    const started = this.now();
    let pools = this.o.pools();
    if (pools.length > MAX_POOLS_PER_READ) {
      if (!this.poolsCappedLogged) {
        this.poolsCappedLogged = true;
        this.o.log.warn("loads_too_many_pools", `the sidecar serves ${pools.length} pools; the filter answers for at most ${MAX_POOLS_PER_READ} in one read: the loads of the others are not shared`, { pools: pools.length });
      }
      pools = [...pools].sort().slice(0, MAX_POOLS_PER_READ);
    }
    const r = await this.filter.pull(this.since, pools);
    if (this.stopped) return;
    let delay = this.o.intervalMs;
    if (r.ok) {
      if (this.pullFailing) {
        this.o.log.info("prefix_pull_recovered", `${this.filter.where}: pulling records again`, { after: this.pullFailing });
        this.pullFailing = undefined;
      }
      this.sharingOffLogged = false;
      this.pullBackoff.reset();
      this.since = r.next;
      if (r.lost > 0) {
        this.o.observer.journalLost(r.lost);
        if (!this.losing) this.o.log.warn("prefix_journal_lost", `the filter's journal overwrote ${r.lost} records before they were pulled: raise peers.journal in the filter's configuration or lower --peer-interval`, { lost: r.lost });
      }
      this.losing = r.lost > 0;
      const leftOut = this.sender.setLoads(r.loads.map((l) => encodeLoad(l.pool, this.o.replicaName, l.record)));
      if (leftOut > 0 && !this.loadsLeftOutLogged) {
        this.loadsLeftOutLogged = true;
        this.o.log.warn("loads_too_large", `${leftOut} of ${r.loads.length} pools' loads do not fit in --peer-max-bytes ${this.o.maxBytes} and are not sent: raise --peer-max-bytes`, { left_out: leftOut, pools: r.loads.length });
      }
      if (r.count > 0) {
        const now = this.now();
        this.o.observer.peerRecords("exported", r.count);
        this.store.add(r.records, now);
        for (const piece of rebatch(r.records, this.o.maxBytes)) this.sender.enqueue(piece, piece === r.records ? r.count : count(piece));
      }
      delay = Math.max(0, this.o.intervalMs - (this.now() - started));
    } else {
      this.sender.setLoads([]); // the last ones are no longer current
      this.o.observer.peerError(FILTER_PEER, r.reason);
      if (r.reason === "sharing_off") {
        this.sharingOff(r.message);
        delay = SHARING_OFF_RETRY_MS;
      } else {
        delay = Math.max(this.o.intervalMs, this.pullBackoff.next());
        if (this.pullFailing !== r.reason) {
          const level = r.reason === "unauthorized" ? "error" : "warn";
          this.o.log[level]("prefix_pull_failed", `${r.message}; retrying in ${delay}ms`, { reason: r.reason });
        }
      }
      // The filter may have restarted with a new journal: start again from its oldest record.
      if (r.reason === "unreachable" || r.reason === "sharing_off") this.since = undefined;
      this.pullFailing = r.reason;
    }
    this.store.expire(this.now());
    this.o.observer.peerStoreBytes(this.store.bytes);
    this.sender.flush();
    this.importer.flush();
    this.schedulePull(delay);
  }

  private sharingOff(message: string): void {
    if (this.sharingOffLogged) return;
    this.sharingOffLogged = true;
    this.o.log.error("prefix_sharing_off", `${message}. Peer sharing does nothing until then; checking again every ${SHARING_OFF_RETRY_MS / 1000}s`, {});
  }

  // --- receiving ---------------------------------------------------------------------------------

  private received(share: Share, from: string): void {
    if (share.prefixRecords > 0) {
      const now = this.now();
      for (const batch of share.prefix) {
        this.store.add(batch, now);
        this.importer.offer(batch, share.prefix.length === 1 ? share.prefixRecords : count(batch));
      }
      this.o.observer.peerStoreBytes(this.store.bytes);
    }
    for (const l of share.loads) {
      if (l.replica === this.o.replicaName && !this.nameClashLogged) {
        this.nameClashLogged = true;
        this.o.log.error("replica_name_clash", `${from} sends loads under this replica's own name "${l.replica}": every replica needs a name of its own (--replica-name, default POD_NAME, else the host name); the filter counts replicas of one name as one`, { peer: from, replica: l.replica });
      }
      this.importer.offerLoad(l.pool, l.replica, l.section);
    }
  }

  // --- warm-up -----------------------------------------------------------------------------------

  private async runWarmup(): Promise<WarmupOutcome> {
    if (this.o.warmupTimeoutMs <= 0) {
      this.o.log.info("warmup_skipped", "--peer-warmup-timeout is 0: no warm-up", {});
      return { result: "disabled" };
    }
    const t0 = Date.now();
    const outcome = await warmUp({
      deadline: t0 + this.o.warmupTimeoutMs,
      now: Date.now,
      peers: async (deadline) => {
        while (!this.o.sources.every((s) => s.synced())) {
          if (this.stopped || Date.now() >= deadline) return undefined;
          await new Promise((r) => setTimeout(r, 20));
        }
        this.refreshPeers();
        return this.sender.peers();
      },
      fetchSnapshot: (peer, timeoutMs) => this.fetchSnapshot(peer, timeoutMs),
      importBatch: async (b, timeoutMs) => {
        const r = await this.filter.importRecords(b, Math.min(timeoutMs, Math.max(this.o.timeoutMs, 1000)));
        if (r.ok) this.o.observer.peerRecords("imported", count(b));
        else this.o.observer.peerError(FILTER_PEER, r.reason);
        return r;
      },
      onSnapshot: (body) => {
        this.store.add(body, this.now());
        this.o.observer.peerStoreBytes(this.store.bytes);
      },
      maxBytes: this.importer.importLimit - SECTION_HEADER_BYTES,
    });
    const ms = Date.now() - t0;
    switch (outcome.result) {
      case "disabled":
        break;
      case "done":
        this.o.log.info("warmup_done", `imported ${outcome.imported} of ${outcome.records} prefix records (${outcome.bytes} bytes) from ${outcome.peer}'s snapshot in ${ms}ms`, { peer: outcome.peer, records: outcome.records, imported: outcome.imported, ms });
        break;
      case "no_peers":
        this.o.log.info("warmup_skipped", "no peer to warm up from: starting with an empty prefix index", { ms });
        break;
      case "sharing_off":
        this.sharingOff(outcome.message);
        this.o.log.warn("warmup_failed", "no warm-up: prefix sharing is off in the filter", { ms });
        break;
      case "unreachable":
        this.o.log.warn("warmup_failed", `no peer's snapshot could be fetched (${outcome.tried.join(", ")}; last: ${outcome.last}): starting with an empty prefix index`, { tried: outcome.tried, ms });
        break;
      case "timeout":
        this.o.log.warn("warmup_failed", `the warm-up took longer than --peer-warmup-timeout ${this.o.warmupTimeoutMs}ms (during ${outcome.during}${outcome.imported !== undefined ? `, ${outcome.imported} records imported` : ""}): ready without the rest`, { during: outcome.during, ms });
        break;
    }
    return outcome;
  }

  private async fetchSnapshot(peer: Peer, timeoutMs: number): Promise<{ ok: true; body: Buffer } | { ok: false; message: string }> {
    const r = await binaryRequest({
      target: peer,
      path: PEER_SNAPSHOT_PATH,
      method: "GET",
      headers: { authorization: `Bearer ${this.o.peerToken.token}` },
      timeoutMs,
      maxReplyBytes: this.o.storeBytes + 1024 * 1024,
      agent: this.snapshotAgent,
    });
    if (!r.ok) return { ok: false, message: r.message };
    if (r.reply.status !== 200) return { ok: false, message: `answered ${r.reply.status}: ${errorOf(r.reply.body).message}` };
    this.o.observer.peerReceived(peer.id, r.reply.body.length);
    return { ok: true, body: r.reply.body };
  }
}
