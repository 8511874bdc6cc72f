// Helpers for the peer-sharing tests: free ports, token files, an observer that records, and a
// replica (a stub filter plus the sidecar's PeerExchange) on loopback.

import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parsePeerAddress, StaticPeers, type PeerSource } from "../../sidecar/peers/discovery.ts";
import { PeerExchange } from "../../sidecar/peers/exchange.ts";
import type { Direction, PeerErrorReason, PeerObserver } from "../../sidecar/peers/observer.ts";
import { PeerToken } from "../../sidecar/peers/token.ts";
import { TokenSource } from "../../sidecar/push/token.ts";
import type { Logger } from "../../sidecar/observability/log.ts";
import { memoryLogger } from "./helpers.ts";
import { PrefixFilterStub } from "./prefix-filter.ts";

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function tokenFile(token: string): string {
  const dir = mkdtempSync(join(tmpdir(), "wasm-epp-peer-"));
  const file = join(dir, "token");
  writeFileSync(file, token + "\n");
  return file;
}

export class RecordingObserver implements PeerObserver {
  readonly sent = new Map<string, number>();
  readonly received = new Map<string, number>();
  readonly records: Record<Direction, number> = { exported: 0, sent: 0, received: 0, imported: 0, load_sent: 0, load_received: 0 };
  readonly errors: Array<{ peer: string; reason: PeerErrorReason }> = [];
  counts = { known: 0, reachable: 0 };
  storeBytes = 0;
  lost = 0;
  readonly forgotten: string[] = [];

  peerSent(peer: string, bytes: number): void {
    this.sent.set(peer, (this.sent.get(peer) ?? 0) + bytes);
  }
  peerReceived(peer: string, bytes: number): void {
    this.received.set(peer, (this.received.get(peer) ?? 0) + bytes);
  }
  peerRecords(direction: Direction, n: number): void {
    this.records[direction] += n;
  }
  peerError(peer: string, reason: PeerErrorReason): void {
    this.errors.push({ peer, reason });
  }
  peerCounts(known: number, reachable: number): void {
    this.counts = { known, reachable };
  }
  peerStoreBytes(bytes: number): void {
    this.storeBytes = bytes;
  }
  journalLost(n: number): void {
    this.lost += n;
  }
  forgetPeer(peer: string): void {
    this.forgotten.push(peer);
  }
  errorsOf(reason: PeerErrorReason, peer?: string): number {
    return this.errors.filter((e) => e.reason === reason && (peer === undefined || e.peer === peer)).length;
  }
}

export interface Replica {
  filter: PrefixFilterStub;
  exchange: PeerExchange;
  observer: RecordingObserver;
  records: Array<Record<string, unknown>>;
  log: Logger;
  id: string; // 127.0.0.1:<peer port>
  stop(): Promise<void>;
}

export interface ReplicaOptions {
  port: number;
  peers: string[]; // ADDR:PORT
  peerToken?: string;
  filter?: PrefixFilterStub;
  sources?: PeerSource[];
  intervalMs?: number;
  maxBytes?: number;
  timeoutMs?: number;
  storeBytes?: number;
  ttlMs?: number;
  warmupTimeoutMs?: number;
  replicaName?: string; // default replica-<peer port>
  pools?: string[] | (() => string[]); // the pools served (default none)
}

export async function startReplica(o: ReplicaOptions): Promise<Replica> {
  const filter = o.filter ?? (await PrefixFilterStub.start());
  const observer = new RecordingObserver();
  const { log, records } = memoryLogger();
  const exchange = await PeerExchange.start({
    filterOrigin: new URL(filter.origin),
    pushToken: new TokenSource(undefined, { WASM_EPP_PUSH_TOKEN: filter.token }),
    peerToken: new PeerToken(tokenFile(o.peerToken ?? "peer-secret")),
    sources: o.sources ?? [new StaticPeers(o.peers.map((p) => parsePeerAddress(p)!))],
    isSelf: (p, own) => p.port === own && p.host === "127.0.0.1",
    replicaName: o.replicaName ?? `replica-${o.port}`,
    pools: typeof o.pools === "function" ? o.pools : () => (o.pools as string[] | undefined) ?? [],
    intervalMs: o.intervalMs ?? 20,
    maxBytes: o.maxBytes ?? 1024 * 1024,
    timeoutMs: o.timeoutMs ?? 1000,
    storeBytes: o.storeBytes ?? 8 * 1024 * 1024,
    ttlMs: o.ttlMs ?? 600_000,
    port: o.port,
    address: "127.0.0.1",
    warmupTimeoutMs: o.warmupTimeoutMs ?? 0,
    log,
    observer,
  });
  return {
    filter,
    exchange,
    observer,
    records,
    log,
    id: `127.0.0.1:${exchange.port}`,
    async stop() {
      await exchange.stop();
      await filter.down();
    },
  };
}

// N replicas that all know each other (each list names every replica, itself included).
export async function startMesh(n: number, extra: Partial<ReplicaOptions> = {}): Promise<Replica[]> {
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
  const all = ports.map((p) => `127.0.0.1:${p}`);
  return Promise.all(ports.map((port) => startReplica({ port, peers: all, ...extra })));
}
