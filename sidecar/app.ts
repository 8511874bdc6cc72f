// Wiring: source -> reconciler <- scraper; reconciler -> pusher; metrics and the HTTP endpoints.

import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import { DEFAULT_PEER_PORT, peerSharing, POD_IP_ENV, POD_NAME_ENV, type Options } from "./cli.ts";
import { SidecarError } from "./errors.ts";
import { FileSource } from "./k8s/file-source.ts";
import { KubeSource, loadKubeConfig } from "./k8s/kube-source.ts";
import type { ResourceSource } from "./k8s/types.ts";
import { Scraper } from "./metrics/scraper.ts";
import { Logger } from "./observability/log.ts";
import { SidecarMetrics } from "./observability/metrics.ts";
import { startObservabilityServer, type ObservabilityServer } from "./observability/server.ts";
import { Pusher } from "./push/pusher.ts";
import { TokenSource } from "./push/token.ts";
import { Reconciler } from "./state/reconciler.ts";
import { EndpointSlicePeers, localAddresses, parsePeerAddress, StaticPeers, type Peer, type PeerSource } from "./peers/discovery.ts";
import { PeerExchange } from "./peers/exchange.ts";
import { isReplicaName } from "./peers/sections.ts";
import { PeerToken } from "./peers/token.ts";

export interface SidecarDeps {
  log?: Logger;
  env?: NodeJS.ProcessEnv;
  kubeConfig?: KubeConfig; // tests: a configuration built in memory
  watchTimeoutSeconds?: () => number;
  watchBackoffMaxMs?: number;
  manifestPollMs?: number;
  discoveryIntervalMs?: number; // tests: how often the served inference APIs are rediscovered
  serviceAccountNamespaceFile?: string; // tests
  localAddresses?: Set<string>; // tests: this host's addresses
}

export interface Sidecar {
  readonly metricsPort: number;
  readonly metrics: SidecarMetrics;
  readonly reconciler: Reconciler;
  readonly scraper: Scraper;
  // Prefix-index sharing with the other gateway replicas, when a peer source is configured.
  readonly peers?: PeerExchange;
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
      discoveryIntervalMs: deps.discoveryIntervalMs,
    });
  }

  let accepted = false;
  let peers: PeerExchange | undefined;
  const pusher = new Pusher({
    urls: o.pushUrls,
    token,
    timeoutMs: o.pushTimeoutMs,
    intervalMs: o.pushIntervalMs,
    log,
    observer: metrics,
    onAccepted: (url, version) => {
      if (!accepted) log.info("first_push_accepted", `${url} accepted state version ${version}; ${peers && !peers.warmedUp() ? "ready once the warm-up from a peer is over" : "ready"}`, { url, version });
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
    scrapeNameFilter: o.scrapeNameFilter,
    defaultNamespace,
    metricsStaleMs: o.metricsStaleMs,
    spacingMs: o.pushCoalesceMs,
    firstPushWaitMs: o.scrapeTimeoutMs + o.scrapeIntervalMs,
    tickMs: Math.max(10, Math.min(o.pushIntervalMs, Math.floor(o.metricsStaleMs / 4))),
    log,
    metrics,
  });

  // Peer sharing's sources and token are checked before anything listens.
  const peerSetup = peerSharing(o) ? peerSources(o, deps, log, metrics) : undefined;
  // Ready: Envoy accepted a state document, and a replica sharing prefixes has warmed up (or
  // given up within --peer-warmup-timeout).
  const ready = () => accepted && (peers === undefined || peers.warmedUp());
  const server: ObservabilityServer = await startObservabilityServer({ port: o.metricsPort, address: o.metricsAddress, registry: metrics.registry, ready, notReady: () => (accepted ? "warming up from a peer's snapshot" : "no push accepted yet") });
  try {
    if (peerSetup) {
      peers = await PeerExchange.start({
        filterOrigin: new URL(new URL(o.pushUrls[0]).origin),
        pushToken: token,
        peerToken: peerSetup.token,
        sources: peerSetup.sources,
        isSelf: peerSetup.isSelf,
        replicaName: peerSetup.replicaName,
        // The pools of the last state document; none before the first.
        pools: () => reconciler!.last?.pools.map((p) => p.name) ?? [],
        intervalMs: o.peerIntervalMs,
        maxBytes: o.peerMaxBytes,
        timeoutMs: o.peerTimeoutMs,
        storeBytes: o.peerStoreBytes,
        ttlMs: o.peerTtlMs,
        port: o.peerPort,
        address: o.peerAddress,
        warmupTimeoutMs: o.peerWarmupTimeoutMs,
        log,
        observer: metrics,
      });
    }
    await source.start(() => reconciler!.markDirty());
  } catch (err) {
    await peers?.stop();
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
  log.info("started", `watching ${o.manifests !== undefined ? `manifests in ${o.manifests}` : "the Kubernetes API"}; pushing to ${o.pushUrls.join(", ")}; metrics on port ${server.port}${peers ? `; sharing prefixes and loads with peers on port ${peers.port} as replica ${peerSetup!.replicaName}` : ""}`, {
    mode: o.manifests !== undefined ? "files" : "kubernetes",
    metrics_port: server.port,
    push_urls: o.pushUrls,
    pools: o.pools,
    ...(peers ? { peer_port: peers.port, replica: peerSetup!.replicaName } : {}),
  });

  let stopping: Promise<void> | undefined;
  return {
    metricsPort: server.port,
    metrics,
    reconciler,
    scraper,
    peers,
    ready,
    stop() {
      stopping ??= (async () => {
        reconciler!.stop();
        await peers?.stop();
        await source.stop();
        await scraper.stop();
        await pusher.stop();
        await server.close();
      })();
      return stopping;
    },
  };
}

const SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

// The peer sources (static list, EndpointSlices), the peer token, and how to recognise this
// replica among the peers.
function peerSources(o: Options, deps: SidecarDeps, log: Logger, metrics: SidecarMetrics): { sources: PeerSource[]; token: PeerToken; isSelf: (p: Peer, ownPort: number) => boolean; replicaName: string } {
  const env = deps.env ?? process.env;
  const replicaName = o.replicaName ?? ((env[POD_NAME_ENV] ?? "").trim() || hostname());
  if (!isReplicaName(replicaName)) {
    throw new SidecarError("usage", `this replica's name ${JSON.stringify(replicaName)} (${o.replicaName !== undefined ? "--replica-name" : env[POD_NAME_ENV] ? `$${POD_NAME_ENV}` : "the host name"}) is not 1 to 253 printable ASCII characters: give --replica-name`);
  }
  const token = new PeerToken(o.peerTokenFile!);
  const podIp = (o.podIp ?? env[POD_IP_ENV] ?? "").trim().toLowerCase() || undefined;
  const local = deps.localAddresses ?? localAddresses();
  const ownAddress = (host: string) => host === podIp || local.has(host) || host === "localhost";
  const sources: PeerSource[] = [];
  if (o.peers.length > 0) sources.push(new StaticPeers(o.peers.map((p) => parsePeerAddress(p)!)));
  if (o.peerService !== undefined || o.peerSelector !== undefined) {
    const namespace = o.peerNamespace ?? podNamespace(env, deps.serviceAccountNamespaceFile ?? SERVICE_ACCOUNT_NAMESPACE);
    if (namespace === undefined) throw new SidecarError("usage", "--peer-service / --peer-selector: give --peer-namespace (no POD_NAMESPACE and no service account namespace file)");
    const port = o.peerDiscoveryPort === undefined ? (o.peerPort || DEFAULT_PEER_PORT) : /^\d+$/.test(o.peerDiscoveryPort) ? Number(o.peerDiscoveryPort) : o.peerDiscoveryPort;
    sources.push(
      new EndpointSlicePeers({
        kubeconfig: deps.kubeConfig ?? loadKubeConfig(o.kubeconfig),
        namespace,
        labelSelector: o.peerService !== undefined ? `kubernetes.io/service-name=${o.peerService}` : o.peerSelector!,
        port,
        exclude: ownAddress,
        log,
        onRestart: (r) => metrics.watchRestarted(r),
        watchTimeoutSeconds: deps.watchTimeoutSeconds,
        backoffMaxMs: deps.watchBackoffMaxMs,
      }),
    );
  }
  // A static list may name every replica, this one included: leave out an entry on this host at
  // this replica's own peer port.
  return { sources, token, isSelf: (p, ownPort) => p.port === ownPort && ownAddress(p.host), replicaName };
}

function podNamespace(env: NodeJS.ProcessEnv, file: string): string | undefined {
  const fromEnv = (env.POD_NAMESPACE ?? "").trim();
  if (fromEnv) return fromEnv;
  try {
    const ns = readFileSync(file, "utf8").trim();
    return ns || undefined;
  } catch {
    return undefined;
  }
}
