// Kubernetes mode: informers for InferencePools, InferenceModels and InferenceTrafficPolicies
// (per watched namespace, or cluster-wide), plus one Pod informer per distinct
// (namespace, selector) of the pools served, listing and watching with that labelSelector.

import { CoreV1Api, CustomObjectsApi, KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import { SidecarError } from "../errors.ts";
import type { Logger } from "../observability/log.ts";
import { Informer } from "./informer.ts";
import { collectionPath, INFERENCE_MODEL, INFERENCE_POOL, INFERENCE_TRAFFIC_POLICY, labelSelectorString, POD, type Resource } from "./resources.ts";
import type { InferenceModel, InferencePool, InferenceTrafficPolicy, Pod, PodSelector, ResourceSource, Snapshot } from "./types.ts";

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

  constructor(private readonly opts: KubeSourceOptions) {
    this.kc = opts.kubeConfigObject ?? loadKubeConfig(opts.kubeconfig);
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.custom = this.kc.makeApiClient(CustomObjectsApi);
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    this.started = true;
    const scopes = this.opts.namespaces.length > 0 ? this.opts.namespaces : [undefined];
    for (const resource of [INFERENCE_POOL, INFERENCE_MODEL, INFERENCE_TRAFFIC_POLICY]) {
      for (const ns of scopes) {
        const informer = this.informer(`${resource.plural} ${ns ?? "(all namespaces)"}`, collectionPath(resource, ns), () => this.listCustom(resource, ns));
        this.crdInformers.push({ resource, informer });
        informer.start();
      }
    }
  }

  async stop(): Promise<void> {
    this.started = false;
    const all = [...this.crdInformers.map((c) => c.informer), ...this.podInformers.values()];
    await Promise.all(all.map((i) => i.stop()));
  }

  synced(): boolean {
    return this.crdInformers.every((c) => c.informer.synced()) && [...this.podInformers.values()].every((i) => i.synced());
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
