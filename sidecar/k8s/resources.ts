// The API resources the sidecar reads, and their REST paths.

export interface Resource {
  kind: string;
  group: string; // "" for the core group
  version: string;
  plural: string;
}

export const INFERENCE_POOL: Resource = {
  kind: "InferencePool",
  group: "inference.networking.x-k8s.io",
  version: "v1alpha2",
  plural: "inferencepools",
};

export const INFERENCE_POOL_V1: Resource = {
  kind: "InferencePool",
  group: "inference.networking.k8s.io",
  version: "v1",
  plural: "inferencepools",
};

export const INFERENCE_OBJECTIVE: Resource = {
  kind: "InferenceObjective",
  group: "inference.networking.x-k8s.io",
  version: "v1alpha2",
  plural: "inferenceobjectives",
};

export const INFERENCE_MODEL_REWRITE: Resource = {
  kind: "InferenceModelRewrite",
  group: "inference.networking.x-k8s.io",
  version: "v1alpha2",
  plural: "inferencemodelrewrites",
};

export const INFERENCE_MODEL: Resource = {
  kind: "InferenceModel",
  group: "inference.networking.x-k8s.io",
  version: "v1alpha2",
  plural: "inferencemodels",
};

export const INFERENCE_TRAFFIC_POLICY: Resource = {
  kind: "InferenceTrafficPolicy",
  group: "inferenceextension.alibabacloud.com",
  version: "v1alpha1",
  plural: "inferencetrafficpolicies",
};

export const POD: Resource = { kind: "Pod", group: "", version: "v1", plural: "pods" };

// The custom resources, watched where the cluster serves them (kube-source.ts discovers which).
export const CUSTOM_RESOURCES = [INFERENCE_POOL, INFERENCE_MODEL, INFERENCE_POOL_V1, INFERENCE_OBJECTIVE, INFERENCE_MODEL_REWRITE, INFERENCE_TRAFFIC_POLICY];

export const RESOURCES = [...CUSTOM_RESOURCES, POD];

export function apiVersionOf(r: Resource): string {
  return r.group === "" ? r.version : `${r.group}/${r.version}`;
}

// The collection path: /api/v1/namespaces/ns/pods, /apis/g/v/plural (all namespaces), ...
export function collectionPath(r: Resource, namespace?: string): string {
  const base = r.group === "" ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
  return namespace ? `${base}/namespaces/${encodeURIComponent(namespace)}/${r.plural}` : `${base}/${r.plural}`;
}

// Which resource a manifest object is, by apiVersion and kind. Version mismatches are accepted
// for the group's kinds (the fields the sidecar reads are the same), core Pods need "v1".
export function resourceOf(apiVersion: unknown, kind: unknown): Resource | undefined {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return undefined;
  const group = apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.indexOf("/")) : "";
  return RESOURCES.find((r) => r.kind === kind && r.group === group);
}

// metadata.labels matches every key=value of `selector` (a plain label map, as
// InferencePool.spec.selector is). An empty selector matches nothing: a pool without a selector
// is a configuration error, not "every pod in the namespace".
export function selectorMatches(selector: Record<string, string>, labels: Record<string, string> | null | undefined): boolean {
  const keys = Object.keys(selector);
  if (keys.length === 0 || !labels) return false;
  for (const k of keys) if (labels[k] !== selector[k]) return false;
  return true;
}

// The labelSelector query parameter for a label map ("app=qwen,role=leader"), keys sorted.
export function labelSelectorString(selector: Record<string, string>): string {
  return Object.keys(selector)
    .sort()
    .map((k) => `${k}=${selector[k]}`)
    .join(",");
}
