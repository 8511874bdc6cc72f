// Wiring: source -> reconciler <- scraper; reconciler -> pusher; metrics and the HTTP endpoints.

import type { KubeConfig } from "@kubernetes/client-node";
import type { Options } from "./cli.ts";
import { FileSource } from "./k8s/file-source.ts";
import { KubeSource } from "./k8s/kube-source.ts";
import type { ResourceSource } from "./k8s/types.ts";
import { Scraper } from "./metrics/scraper.ts";
import { Logger } from "./observability/log.ts";
import { SidecarMetrics } from "./observability/metrics.ts";
import { startObservabilityServer, type ObservabilityServer } from "./observability/server.ts";
import { Pusher } from "./push/pusher.ts";
import { TokenSource } from "./push/token.ts";
import { Reconciler } from "./state/reconciler.ts";

export interface SidecarDeps {
  log?: Logger;
  env?: NodeJS.ProcessEnv;
  kubeConfig?: KubeConfig; // tests: a configuration built in memory
  watchTimeoutSeconds?: () => number;
  watchBackoffMaxMs?: number;
  manifestPollMs?: number;
}

export interface Sidecar {
  readonly metricsPort: number;
  readonly metrics: SidecarMetrics;
  readonly reconciler: Reconciler;
  readonly scraper: Scraper;
  ready(): boolean;
  // Stops watching and scraping, lets the pushes in flight finish, closes the metrics port.
  stop(): Promise<void>;
}

export async function startSidecar(o: Options, deps: SidecarDeps = {}): Promise<Sidecar> {
  const log = deps.log ?? new Logger(o.logLevel);
  const token = new TokenSource(o.pushTokenFile, deps.env ?? process.env);
  const metrics = new SidecarMetrics(Date.now, o.pushUrls.map((u) => new URL(u).href));
  const defaultNamespace = o.namespace ?? "default";

  let source: ResourceSource;
  if (o.manifests !== undefined) {
    source = new FileSource({ dir: o.manifests, defaultNamespace, log, pollMs: deps.manifestPollMs, onWarning: (code) => metrics.warning(code) });
  } else {
    const namespaces = o.pools.length > 0 ? [...new Set(o.pools.map((p) => p.split("/")[0]))] : o.namespace ? [o.namespace] : [];
    source = new KubeSource({
      kubeconfig: o.kubeconfig,
      kubeConfigObject: deps.kubeConfig,
      namespaces,
      log,
      onRestart: (r) => metrics.watchRestarted(r),
      watchTimeoutSeconds: deps.watchTimeoutSeconds,
      backoffMaxMs: deps.watchBackoffMaxMs,
    });
  }

  let accepted = false;
  const pusher = new Pusher({
    urls: o.pushUrls,
    token,
    timeoutMs: o.pushTimeoutMs,
    intervalMs: o.pushIntervalMs,
    log,
    observer: metrics,
    onAccepted: (url, version) => {
      if (!accepted) log.info("first_push_accepted", `${url} accepted state version ${version}; ready`, { url, version });
      accepted = true;
    },
  });

  let reconciler: Reconciler | undefined;
  const scraper = new Scraper({
    intervalMs: o.scrapeIntervalMs,
    jitter: o.scrapeJitter,
    timeoutMs: o.scrapeTimeoutMs,
    concurrency: o.scrapeConcurrency,
    maxBytes: o.scrapeMaxBytes,
    unreachableAfter: o.unreachableAfter,
    log,
    observer: metrics,
    onUpdate: () => reconciler?.markDirty(),
  });

  reconciler = new Reconciler({
    source,
    scraper,
    offer: (p) => pusher.offer(p),
    pools: o.pools,
    defaultNamespace,
    metricsStaleMs: o.metricsStaleMs,
    spacingMs: o.pushCoalesceMs,
    firstPushWaitMs: o.scrapeTimeoutMs + o.scrapeIntervalMs,
    tickMs: Math.max(10, Math.min(o.pushIntervalMs, Math.floor(o.metricsStaleMs / 4))),
    log,
    metrics,
  });

  const server: ObservabilityServer = await startObservabilityServer({ port: o.metricsPort, address: o.metricsAddress, registry: metrics.registry, ready: () => accepted });
  try {
    await source.start(() => reconciler!.markDirty());
  } catch (err) {
    await server.close();
    throw err;
  }
  // Continue the version numbering of the document Envoy holds, if any (bounded wait; the first
  // document waits for the resources to be listed anyway).
  const stored = await pusher.storedVersion(Math.min(1000, o.pushTimeoutMs));
  if (stored !== undefined) {
    reconciler.continueFrom(stored);
    log.info("state_found", `the push listener holds state version ${stored}; continuing from there`, { version: stored });
  }
  reconciler.start();
  log.info("started", `watching ${o.manifests !== undefined ? `manifests in ${o.manifests}` : "the Kubernetes API"}; pushing to ${o.pushUrls.join(", ")}; metrics on port ${server.port}`, {
    mode: o.manifests !== undefined ? "files" : "kubernetes",
    metrics_port: server.port,
    push_urls: o.pushUrls,
    pools: o.pools,
  });

  let stopping: Promise<void> | undefined;
  return {
    metricsPort: server.port,
    metrics,
    reconciler,
    scraper,
    ready: () => accepted,
    stop() {
      stopping ??= (async () => {
        reconciler!.stop();
        await source.stop();
        await scraper.stop();
        await pusher.stop();
        await server.close();
      })();
      return stopping;
    },
  };
}
