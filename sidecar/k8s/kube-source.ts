// Kubernetes mode: informers for the inference resources the cluster serves (per watched
// namespace, or cluster-wide), plus one Pod informer per distinct (namespace, selector) of the
// pools served, listing and watching with that labelSelector.
//
// Which resources are served is discovered (GET /apis/{group}/{version} per API the sidecar
// reads): a cluster may have the v1alpha2 InferencePool and InferenceModel, the v1 InferencePool
// with InferenceObjective and InferenceModelRewrite, or both. Discovery is repeated every
// `discoveryIntervalMs`, so CRDs installed (or removed) later are picked up; when it fails, every
// resource is watched and an informer treats a 404 as "not served".

import { CoreV1Api, CustomObjectsApi, KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import { SidecarError } from "../errors.ts";
import type { Logger } from "../observability/log.ts";
import { Informer, statusOf } from "./informer.ts";
import { apiVersionOf, collectionPath, CUSTOM_RESOURCES, INFERENCE_MODEL, INFERENCE_MODEL_REWRITE, INFERENCE_OBJECTIVE, INFERENCE_POOL, INFERENCE_POOL_V1, INFERENCE_TRAFFIC_POLICY, labelSelectorString, POD, type Resource } from "./resources.ts";
import type { InferenceModel, InferenceModelRewrite, InferenceObjective, InferencePool, InferencePoolV1, InferenceTrafficPolicy, Pod, PodSelector, ResourceSource, Snapshot } from "./types.ts";

export interface KubeSourceOptions {
  kubeconfig?: string; // path; default in-cluster or the default loading rules
  kubeConfigObject?: KubeConfig; // tests
  // Namespaces to watch; empty: all namespaces.
  namespaces: string[];
  log: Logger;
  onRestart?: (resource: string) => void;
  watchTimeoutSeconds?: () => number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  missingRetryMs?: number;
  discoveryIntervalMs?: number; // default 60 s
}

export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (err) {
    throw new SidecarError("kubeconfig_invalid", `cannot load the Kubernetes configuration${path ? ` from ${path}` : ""}: ${(err as Error).message}`);
  }
  if (!kc.getCurrentCluster()) {
    throw new SidecarError("kubeconfig_invalid", `the Kubernetes configuration${path ? ` in ${path}` : ""} names no current cluster`);
  }
  return kc;
}

export class KubeSource implements ResourceSource {
  private readonly kc: KubeConfig;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly crdInformers: Array<{ resource: Resource; informer: Informer<KubernetesObject> }> = [];
  private readonly podInformers = new Map<string, Informer<KubernetesObject>>();
  private onChange: () => void = () => {};
  private started = false;
  private discovered = false;
  private discoveryTimer?: NodeJS.Timeout;
  private lastServed = "";
  private discoveryFailing = false;

  constructor(private readonly opts: KubeSourceOptions) {
    this.kc = opts.kubeConfigObject ?? loadKubeConfig(opts.kubeconfig);
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.custom = this.kc.makeApiClient(CustomObjectsApi);
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    this.started = true;
    void this.discover();
  }

  async stop(): Promise<void> {
    this.started = false;
    clearTimeout(this.discoveryTimer);
    const all = [...this.crdInformers.map((c) => c.informer), ...this.podInformers.values()];
    await Promise.all(all.map((i) => i.stop()));
  }

  synced(): boolean {
    return this.discovered && this.crdInformers.every((c) => c.informer.synced()) && [...this.podInformers.values()].every((i) => i.synced());
  }

  // The resources the sidecar watches now (tests, logs).
  watching(): Resource[] {
    return [...new Set(this.crdInformers.map((c) => c.resource))];
  }

  // One discovery round: which of the resources are served, then informers for exactly those.
  private async discover(): Promise<void> {
    if (!this.started) return;
    let served: Resource[];
    try {
      served = await this.servedResources();
      if (this.discoveryFailing) this.opts.log.info("api_discovery_recovered", "discovering the inference APIs works again");
      this.discoveryFailing = false;
    } catch (err) {
      // Watch everything; an informer whose resource is not served treats its 404 as empty.
      served = CUSTOM_RESOURCES;
      if (!this.discoveryFailing) {
        this.opts.log.warn("api_discovery_failed", `discovering the inference APIs failed (${(err as Error).message}); watching every resource the sidecar reads`, { code: "api_discovery_failed" });
      }
      this.discoveryFailing = true;
    }
    if (!this.started) return;
    const names = served.map((r) => `${r.kind} ${apiVersionOf(r)}`).join(", ");
    if (names !== this.lastServed) {
      this.lastServed = names;
      const pools = served.filter((r) => r.kind === "InferencePool").length;
      this.opts.log[pools === 0 ? "warn" : "info"]("api_discovered", pools === 0 ? `the cluster serves no InferencePool API (inference.networking.k8s.io/v1 or inference.networking.x-k8s.io/v1alpha2); checking again` : `watching ${names}`, { resources: served.map((r) => `${r.plural}.${r.group}/${r.version}`) });
    }
    const scopes = this.opts.namespaces.length > 0 ? this.opts.namespaces : [undefined];
    let changed = false;
    for (const resource of CUSTOM_RESOURCES) {
      const has = this.crdInformers.some((c) => c.resource === resource);
      const want = served.includes(resource);
      if (want && !has) {
        for (const ns of scopes) {
          const informer = this.informer(`${informerName(resource)} ${ns ?? "(all namespaces)"}`, collectionPath(resource, ns), () => this.listCustom(resource, ns));
          this.crdInformers.push({ resource, informer });
          informer.start();
        }
      } else if (!want && has) {
        for (let i = this.crdInformers.length - 1; i >= 0; i--) {
          if (this.crdInformers[i].resource !== resource) continue;
          void this.crdInformers[i].informer.stop();
          this.crdInformers.splice(i, 1);
        }
        changed = true;
      }
    }
    this.discovered = true;
    if (changed || served.length === 0) this.onChange();
    this.discoveryTimer = setTimeout(() => void this.discover(), this.opts.discoveryIntervalMs ?? 60_000);
    this.discoveryTimer.unref();
  }

  // GET /apis/{group}/{version} for each API the sidecar reads; a 404 means not served.
  private async servedResources(): Promise<Resource[]> {
    const out: Resource[] = [];
    const versions = [...new Set(CUSTOM_RESOURCES.map((r) => `${r.group}/${r.version}`))];
    for (const gv of versions) {
      const [group, version] = gv.split("/");
      let plurals: Set<string>;
      try {
        const list = await this.custom.getAPIResources({ group, version });
        plurals = new Set((list.resources ?? []).map((r) => r.name));
      } catch (err) {
        if (statusOf(err) === 404) continue;
        throw err;
      }
      for (const r of CUSTOM_RESOURCES) if (r.group === group && r.version === version && plurals.has(r.plural)) out.push(r);
    }
    return out;
  }

  // Starts a Pod informer for each new (namespace, selector) and stops those no pool uses.
  setPodSelectors(selectors: PodSelector[]): void {
    if (!this.started) return;
    const wanted = new Map<string, PodSelector>();
    for (const s of selectors) {
      if (Object.keys(s.selector).length === 0) continue;
      wanted.set(podKey(s.namespace, s.selector), s);
    }
    for (const [key, informer] of this.podInformers) {
      if (!wanted.has(key)) {
        this.podInformers.delete(key);
        void informer.stop();
      }
    }
    for (const [key, s] of wanted) {
      if (this.podInformers.has(key)) continue;
      const selector = labelSelectorString(s.selector);
      const informer = this.informer(
        `pods ${s.namespace} ${selector}`,
        collectionPath(POD, s.namespace),
        () => this.core.listNamespacedPod({ namespace: s.namespace, labelSelector: selector }) as unknown as Promise<KubernetesListObject<KubernetesObject>>,
        selector,
      );
      this.podInformers.set(key, informer);
      informer.start();
    }
  }

  snapshot(): Snapshot {
    const of = (r: Resource) => this.crdInformers.filter((c) => c.resource === r).flatMap((c) => c.informer.list());
    const podInformers = this.podInformers;
    return {
      pools: of(INFERENCE_POOL) as InferencePool[],
      models: of(INFERENCE_MODEL) as InferenceModel[],
      policies: of(INFERENCE_TRAFFIC_POLICY) as InferenceTrafficPolicy[],
      poolsV1: of(INFERENCE_POOL_V1) as InferencePoolV1[],
      objectives: of(INFERENCE_OBJECTIVE) as InferenceObjective[],
      rewrites: of(INFERENCE_MODEL_REWRITE) as InferenceModelRewrite[],
      podsFor(namespace, selector) {
        const informer = podInformers.get(podKey(namespace, selector));
        return informer ? (informer.list() as Pod[]) : [];
      },
    };
  }

  private informer(name: string, path: string, list: () => Promise<KubernetesListObject<KubernetesObject>>, labelSelector?: string): Informer<KubernetesObject> {
    return new Informer<KubernetesObject>({
      kubeconfig: this.kc,
      name,
      path,
      list,
      labelSelector,
      log: this.opts.log,
      onChange: () => this.onChange(),
      onRestart: this.opts.onRestart,
      watchTimeoutSeconds: this.opts.watchTimeoutSeconds,
      backoffBaseMs: this.opts.backoffBaseMs,
      backoffMaxMs: this.opts.backoffMaxMs,
      missingRetryMs: this.opts.missingRetryMs,
    });
  }

  private listCustom(r: Resource, namespace: string | undefined): Promise<KubernetesListObject<KubernetesObject>> {
    return namespace
      ? this.custom.listNamespacedCustomObject({ group: r.group, version: r.version, namespace, plural: r.plural })
      : this.custom.listClusterCustomObject({ group: r.group, version: r.version, plural: r.plural });
  }
}

function podKey(namespace: string, selector: Record<string, string>): string {
  return `${namespace}|${labelSelectorString(selector)}`;
}

// "inferencepools", "inferenceobjectives", ...; the v1 pools with their group, since both
// InferencePool APIs share the plural.
function informerName(r: Resource): string {
  return r === INFERENCE_POOL_V1 ? `${r.plural}.${r.group}` : r.plural;
}
