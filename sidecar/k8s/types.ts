// The parts of the Kubernetes objects the sidecar reads. Objects come from the API (raw JSON from
// watches and custom-object lists, typed V1Pod models from the core list, where timestamps are
// Date objects) or from YAML files, so every field is optional and read defensively.

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string | Date;
  deletionTimestamp?: string | Date | null;
  labels?: Record<string, string> | null;
  annotations?: Record<string, string> | null;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

export interface InferencePool extends KubeObject {
  spec?: {
    targetPortNumber?: number;
    selector?: Record<string, string> | null;
    extensionRef?: { name?: string } | null;
  };
}

export interface InferenceModel extends KubeObject {
  spec?: {
    modelName?: string;
    criticality?: string | null;
    poolRef?: { group?: string; kind?: string; name?: string } | null;
    targetModels?: Array<{ name?: string; weight?: number | null }> | null;
  };
}

export interface InferenceTrafficPolicy extends KubeObject {
  spec?: {
    poolRef?: { name?: string } | null;
    modelServerRuntime?: string | null;
    profile?: unknown;
  };
}

export interface PodCondition {
  type?: string;
  status?: string;
}

export interface Pod extends KubeObject {
  status?: {
    phase?: string;
    podIP?: string | null;
    conditions?: PodCondition[] | null;
  };
}

// What a resource source (Kubernetes or files) hands to the reconciler.
export interface Snapshot {
  pools: InferencePool[];
  models: InferenceModel[];
  policies: InferenceTrafficPolicy[];
  // The Pods in `namespace` whose labels match `selector`.
  podsFor(namespace: string, selector: Record<string, string>): Pod[];
}

export interface ResourceSource {
  // Starts listing and watching; `onChange` is called (without arguments: the reconciler reads
  // snapshot() itself) whenever anything may have changed.
  start(onChange: () => void): Promise<void>;
  stop(): Promise<void>;
  // True once every resource has been listed at least once.
  synced(): boolean;
  snapshot(): Snapshot;
  // Called by the reconciler with the pools it serves, so a source can watch their Pods.
  setPodSelectors?(selectors: PodSelector[]): void;
}

export interface PodSelector {
  namespace: string;
  selector: Record<string, string>;
}

export function namespaceOf(obj: KubeObject, fallback: string): string {
  const ns = obj.metadata?.namespace;
  return typeof ns === "string" && ns.length > 0 ? ns : fallback;
}

export function nameOf(obj: KubeObject): string {
  const n = obj.metadata?.name;
  return typeof n === "string" ? n : "";
}
