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

export class SidecarMetrics implements ScrapeObserver, PushObserver {
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
