// The sidecar's own Prometheus metrics (prom-client, a private registry).
//
// GIE-compatible pool gauges, label `name` = the pool's name (plus `namespace`):
//   inference_pool_average_kv_cache_utilization, inference_pool_average_queue_size,
//   inference_pool_average_running_requests, inference_pool_ready_pods
// Sidecar metrics, prefix wasm_epp_sidecar_: see docs/sidecar.md.

import client from "prom-client";
import type { ErrorCode } from "../errors.ts";
import type { ScrapeObserver, ScrapeTarget } from "../metrics/scraper.ts";
import type { PushObserver } from "../push/pusher.ts";
import type { PoolStats } from "../state/document.ts";
import { DIRECTIONS, PEER_ERROR_REASONS, type Direction, type PeerErrorReason, type PeerObserver } from "../peers/observer.ts";

export class SidecarMetrics implements ScrapeObserver, PushObserver, PeerObserver {
  readonly registry = new client.Registry();
  private readonly poolKv: client.Gauge<"name" | "namespace">;
  private readonly poolQueue: client.Gauge<"name" | "namespace">;
  private readonly poolRunning: client.Gauge<"name" | "namespace">;
  private readonly poolReady: client.Gauge<"name" | "namespace">;
  private readonly scrapeDuration: client.Histogram<"pool" | "pod">;
  private readonly scrapeErrors: client.Counter<"pool" | "pod" | "code">;
  private readonly scrapeBytes: client.Counter;
  private readonly pushDuration: client.Histogram<"url">;
  private readonly pushErrors: client.Counter<"url" | "code">;
  private readonly scrapeToPush: client.Histogram<"url">;
  private readonly pushBytes: client.Gauge<"url">;
  private readonly stateVersion: client.Gauge;
  private readonly watchRestarts: client.Counter<"resource">;
  private readonly warnings: client.Counter<"code">;
  private readonly lastPush = new Map<string, number>();
  private readonly peerSentBytes: client.Counter<"peer">;
  private readonly peerReceivedBytes: client.Counter<"peer">;
  private readonly peerRecordsTotal: client.Counter<"direction">;
  private readonly peerErrors: client.Counter<"peer" | "reason">;
  private readonly peersGauge: client.Gauge<"state">;
  private readonly peerStore: client.Gauge;
  private readonly journalLostTotal: client.Counter;
  private readonly pools = new Map<string, { name: string; namespace: string }>();

  constructor(
    private readonly now: () => number = Date.now,
    urls: string[] = [],
  ) {
    const r = this.registry;
    client.collectDefaultMetrics({ register: r, prefix: "wasm_epp_sidecar_" });
    const pool = { labelNames: ["name", "namespace"] as const, registers: [r] };
    this.poolKv = new client.Gauge({ name: "inference_pool_average_kv_cache_utilization", help: "Mean KV-cache usage (0-1) over the pool's ready endpoints, from their last scrapes.", ...pool });
    this.poolQueue = new client.Gauge({ name: "inference_pool_average_queue_size", help: "Mean number of waiting requests over the pool's ready endpoints, from their last scrapes.", ...pool });
    this.poolRunning = new client.Gauge({ name: "inference_pool_average_running_requests", help: "Mean number of running requests over the pool's ready endpoints, from their last scrapes.", ...pool });
    this.poolReady = new client.Gauge({ name: "inference_pool_ready_pods", help: "Endpoints of the pool published as ready in the state document.", ...pool });
    this.scrapeDuration = new client.Histogram({
      name: "wasm_epp_sidecar_scrape_duration_seconds",
      help: "Duration of successful scrapes of a model server's /metrics.",
      labelNames: ["pool", "pod"] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [r],
    });
    this.scrapeErrors = new client.Counter({ name: "wasm_epp_sidecar_scrape_errors_total", help: "Failed scrapes, by error code.", labelNames: ["pool", "pod", "code"] as const, registers: [r] });
    this.scrapeBytes = new client.Counter({ name: "wasm_epp_sidecar_scrape_bytes_total", help: "Bytes of exposition read and parsed.", registers: [r] });
    this.pushDuration = new client.Histogram({
      name: "wasm_epp_sidecar_push_duration_seconds",
      help: "Duration of accepted pushes of the state document.",
      labelNames: ["url"] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [r],
    });
    this.pushErrors = new client.Counter({ name: "wasm_epp_sidecar_push_errors_total", help: "Failed pushes, by error code.", labelNames: ["url", "code"] as const, registers: [r] });
    this.scrapeToPush = new client.Histogram({
      name: "wasm_epp_sidecar_scrape_to_push_seconds",
      help: "Time from a successful scrape's completion to the push listener accepting the first document that carries its values.",
      labelNames: ["url"] as const,
      // Fine around --push-coalesce (tens of ms), coarse out to a listener that is down for seconds.
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.pushBytes = new client.Gauge({ name: "wasm_epp_sidecar_push_document_bytes", help: "Size of the last accepted state document.", labelNames: ["url"] as const, registers: [r] });
    const lastPush = this.lastPush;
    new client.Gauge({
      name: "wasm_epp_sidecar_last_push_age_seconds",
      help: "Seconds since the last accepted push (+Inf before the first).",
      labelNames: ["url"] as const,
      registers: [r],
      collect() {
        for (const url of urls) {
          const at = lastPush.get(url);
          this.set({ url }, at === undefined ? Infinity : Math.max(0, (now() - at) / 1000));
        }
      },
    });
    this.stateVersion = new client.Gauge({ name: "wasm_epp_sidecar_state_version", help: "Version of the newest state document built.", registers: [r] });
    this.watchRestarts = new client.Counter({ name: "wasm_epp_sidecar_watch_restarts_total", help: "List/watch restarts after an error, by resource.", labelNames: ["resource"] as const, registers: [r] });
    this.warnings = new client.Counter({ name: "wasm_epp_sidecar_warnings_total", help: "Degraded inputs (invalid manifests, pools, models, addresses), by code.", labelNames: ["code"] as const, registers: [r] });
    // Prefix-index sharing between gateway replicas (sidecar/peers/).
    this.peerSentBytes = new client.Counter({ name: "wasm_epp_sidecar_peer_sent_bytes_total", help: "Bytes of prefix records sent to a peer and accepted by it.", labelNames: ["peer"] as const, registers: [r] });
    this.peerReceivedBytes = new client.Counter({ name: "wasm_epp_sidecar_peer_received_bytes_total", help: "Bytes of prefix records received from a peer (\"other\": an address that is not a known peer).", labelNames: ["peer"] as const, registers: [r] });
    this.peerRecordsTotal = new client.Counter({ name: "wasm_epp_sidecar_peer_records_total", help: "Prefix records: exported by the own filter, sent to peers (once per peer), received from peers, imported into the own filter; load_sent, load_received: load sections (one replica's load of one pool) sent to peers (once per peer) and received from them.", labelNames: ["direction"] as const, registers: [r] });
    this.peerErrors = new client.Counter({ name: "wasm_epp_sidecar_peer_errors_total", help: "Failed prefix-record exchanges, by peer (\"filter\": the own filter) and reason.", labelNames: ["peer", "reason"] as const, registers: [r] });
    this.peersGauge = new client.Gauge({ name: "wasm_epp_sidecar_peers", help: "Peers known (static and discovered, without this replica) and reachable (their last exchange succeeded).", labelNames: ["state"] as const, registers: [r] });
    this.peerStore = new client.Gauge({ name: "wasm_epp_sidecar_peer_store_bytes", help: "Bytes of prefix records kept for peers' snapshots.", registers: [r] });
    this.journalLostTotal = new client.Counter({ name: "wasm_epp_sidecar_prefix_journal_lost_total", help: "Prefix records the own filter's journal overwrote before they were pulled.", registers: [r] });
    for (const direction of DIRECTIONS) this.peerRecordsTotal.inc({ direction }, 0);
  }

  peerSent(peer: string, bytes: number): void {
    this.peerSentBytes.inc({ peer }, bytes);
  }

  peerReceived(peer: string, bytes: number): void {
    this.peerReceivedBytes.inc({ peer }, bytes);
  }

  peerRecords(direction: Direction, n: number): void {
    this.peerRecordsTotal.inc({ direction }, n);
  }

  peerError(peer: string, reason: PeerErrorReason): void {
    this.peerErrors.inc({ peer, reason });
  }

  peerCounts(known: number, reachable: number): void {
    this.peersGauge.set({ state: "known" }, known);
    this.peersGauge.set({ state: "reachable" }, reachable);
  }

  peerStoreBytes(bytes: number): void {
    this.peerStore.set(bytes);
  }

  journalLost(n: number): void {
    this.journalLostTotal.inc(n);
  }

  forgetPeer(peer: string): void {
    this.peerSentBytes.remove({ peer });
    this.peerReceivedBytes.remove({ peer });
    for (const reason of PEER_ERROR_REASONS) this.peerErrors.remove({ peer, reason });
  }

  scraped(t: ScrapeTarget, seconds: number, bytes: number): void {
    this.scrapeDuration.observe({ pool: t.pool, pod: t.pod }, seconds);
    this.scrapeBytes.inc(bytes);
  }

  failed(t: ScrapeTarget | string, code: ErrorCode, _seconds: number): void {
    if (typeof t === "string") this.pushErrors.inc({ url: t, code });
    else this.scrapeErrors.inc({ pool: t.pool, pod: t.pod, code });
  }

  forget(t: ScrapeTarget): void {
    this.scrapeDuration.remove({ pool: t.pool, pod: t.pod });
    for (const code of ["scrape_refused", "scrape_timeout", "scrape_unreachable", "scrape_http_status", "scrape_too_large", "scrape_truncated", "metrics_missing"]) {
      this.scrapeErrors.remove({ pool: t.pool, pod: t.pod, code });
    }
  }

  pushed(url: string, seconds: number, _version: number, bytes: number): void {
    this.pushDuration.observe({ url }, seconds);
    this.pushBytes.set({ url }, bytes);
    this.lastPush.set(url, this.now());
  }

  delivered(url: string, seconds: number): void {
    this.scrapeToPush.observe({ url }, seconds);
  }

  version(v: number): void {
    this.stateVersion.set(v);
  }

  watchRestarted(resource: string): void {
    this.watchRestarts.inc({ resource });
  }

  warning(code: ErrorCode): void {
    this.warnings.inc({ code });
  }

  poolStats(stats: PoolStats[]): void {
    const seen = new Set<string>();
    for (const s of stats) {
      const labels = { name: s.pool.name, namespace: s.pool.namespace };
      seen.add(s.pool.key);
      this.pools.set(s.pool.key, labels);
      this.poolKv.set(labels, s.avgKvUsage);
      this.poolQueue.set(labels, s.avgWaiting);
      this.poolRunning.set(labels, s.avgRunning);
      this.poolReady.set(labels, s.readyPods);
    }
    for (const [key, labels] of this.pools) {
      if (seen.has(key)) continue;
      this.pools.delete(key);
      for (const g of [this.poolKv, this.poolQueue, this.poolRunning, this.poolReady]) g.remove(labels);
    }
  }
}
