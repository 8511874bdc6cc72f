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

// inference.networking.k8s.io/v1 (GIE's GA API): a label selector with matchLabels only, up to 8
// target ports (one in v1.0), and the endpoint picker the gateway would call (wasm-epp is the
// picker itself, so that reference is only reported).
export interface InferencePoolV1 extends KubeObject {
  spec?: {
    selector?: { matchLabels?: Record<string, string> | null } | null;
    targetPorts?: Array<{ number?: number } | null> | null;
    endpointPickerRef?: { group?: string; kind?: string; name?: string; port?: { number?: number } | null; failureMode?: string } | null;
  };
}

export interface PoolRef {
  group?: string;
  kind?: string;
  name?: string;
}

// inference.networking.x-k8s.io/v1alpha2: what a request selects by name (the objective header);
// priority orders the queue, below 0 is sheddable.
export interface InferenceObjective extends KubeObject {
  spec?: {
    poolRef?: PoolRef | null;
    priority?: number | null;
  };
}

// inference.networking.x-k8s.io/v1alpha2: the model a request names, rewritten to weighted targets.
export interface InferenceModelRewrite extends KubeObject {
  spec?: {
    poolRef?: PoolRef | null;
    rules?: Array<{
      matches?: Array<{ model?: { type?: string; value?: string } | null } | null> | null;
      targets?: Array<{ modelRewrite?: string; weight?: number | null } | null> | null;
    } | null> | null;
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
  // The GA API's pools and the objectives and rewrites beside them (empty where not served).
  poolsV1: InferencePoolV1[];
  objectives: InferenceObjective[];
  rewrites: InferenceModelRewrite[];
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
