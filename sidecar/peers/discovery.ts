// Where the peers are: a static list (--peer ADDR:PORT), and/or the endpoints of the gateway's
// Service from its EndpointSlices (discovery.k8s.io/v1, list and watch through the resilient
// informer), chosen by Service name (the kubernetes.io/service-name label every slice carries) or
// by a label selector (the EndpointSlice controller copies the Service's own labels onto its
// slices; Envoy Gateway labels its Services gateway.envoyproxy.io/owning-gateway-name and
// -namespace, while their names end in a hash).
//
// A discovered peer is every endpoint address that is not terminating — including replicas still
// starting, so that a replica warming up already receives the records produced meanwhile — minus
// this pod (its address: --pod-ip / POD_IP, or any address of this host's interfaces).

import { networkInterfaces } from "node:os";
import { DiscoveryV1Api, type KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import { Informer } from "../k8s/informer.ts";
import type { Logger } from "../observability/log.ts";
import { peerId, type Peer } from "./address.ts";

export { parsePeerAddress, peerId, type Peer } from "./address.ts";

export interface PeerSource {
  start(onChange: () => void): void;
  stop(): Promise<void>;
  peers(): Peer[];
  // Listed at least once (a static list always is).
  synced(): boolean;
}

// This host's own addresses (every interface), to leave this pod out of the discovered peers.
export function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.add(a.address.toLowerCase());
  }
  return out;
}

export class StaticPeers implements PeerSource {
  constructor(private readonly list: Peer[]) {}

  start(): void {}

  async stop(): Promise<void> {}

  peers(): Peer[] {
    return this.list;
  }

  synced(): boolean {
    return true;
  }
}

// The parts of an EndpointSlice read here.
export interface EndpointSlice {
  metadata?: { name?: string };
  addressType?: string;
  endpoints?: Array<{
    addresses?: string[] | null;
    conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null } | null;
  }> | null;
  ports?: Array<{ name?: string | null; port?: number | null }> | null;
}

// The peers the slices name: addresses of endpoints not terminating, on `port` (a number, or the
// name of a port of the slices), without the excluded addresses, deduplicated, sorted by id.
// `problems` names slices that lack the named port.
export function peersFromSlices(slices: EndpointSlice[], port: number | string, exclude: (address: string) => boolean): { peers: Peer[]; problems: string[] } {
  const byId = new Map<string, Peer>();
  const problems: string[] = [];
  for (const s of slices) {
    if (s.addressType !== "IPv4" && s.addressType !== "IPv6") continue; // FQDN slices name no pod
    let p: number | undefined = typeof port === "number" ? port : undefined;
    if (typeof port === "string") {
      const named = (s.ports ?? []).find((x) => x.name === port);
      if (named && typeof named.port === "number" && named.port > 0) p = named.port;
      else {
        problems.push(`EndpointSlice ${s.metadata?.name ?? "?"} has no port named ${port}`);
        continue;
      }
    }
    for (const e of s.endpoints ?? []) {
      if (e.conditions?.terminating === true) continue;
      for (const raw of e.addresses ?? []) {
        const host = raw.toLowerCase();
        if (exclude(host)) continue;
        const peer = { id: peerId(host, p!), host, port: p! };
        byId.set(peer.id, peer);
      }
    }
  }
  return { peers: [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)), problems };
}

export interface EndpointSlicePeersOptions {
  kubeconfig: KubeConfig;
  namespace: string;
  labelSelector: string; // kubernetes.io/service-name=NAME, or the user's selector
  port: number | string;
  exclude: (address: string) => boolean;
  log: Logger;
  onRestart?: (resource: string) => void;
  watchTimeoutSeconds?: () => number;
  backoffMaxMs?: number;
}

export class EndpointSlicePeers implements PeerSource {
  private readonly informer: Informer<KubernetesObject>;
  private reported = "";

  constructor(private readonly opts: EndpointSlicePeersOptions) {
    const api = opts.kubeconfig.makeApiClient(DiscoveryV1Api);
    this.informer = new Informer<KubernetesObject>({
      kubeconfig: opts.kubeconfig,
      name: `endpointslices ${opts.namespace} ${opts.labelSelector}`,
      path: `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(opts.namespace)}/endpointslices`,
      list: () => api.listNamespacedEndpointSlice({ namespace: opts.namespace, labelSelector: opts.labelSelector }) as unknown as Promise<KubernetesListObject<KubernetesObject>>,
      labelSelector: opts.labelSelector,
      log: opts.log,
      onChange: () => this.onChange(),
      onRestart: opts.onRestart,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      backoffMaxMs: opts.backoffMaxMs,
    });
  }

  private onChange: () => void = () => {};

  start(onChange: () => void): void {
    this.onChange = onChange;
    this.informer.start();
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }

  synced(): boolean {
    return this.informer.synced();
  }

  peers(): Peer[] {
    const { peers, problems } = peersFromSlices(this.informer.list() as unknown as EndpointSlice[], this.opts.port, this.opts.exclude);
    const text = problems.join("; ");
    if (text !== this.reported) {
      this.reported = text;
      if (text) this.opts.log.warn("peer_port_missing", `${text}: its endpoints are not used as peers`, { selector: this.opts.labelSelector });
    }
    return peers;
  }
}
