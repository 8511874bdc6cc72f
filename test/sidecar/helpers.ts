// Shared helpers for the sidecar tests.

import { KubeConfig } from "@kubernetes/client-node";
import { Logger, type Level } from "../../sidecar/observability/log.ts";
import type { Obj } from "../fakes/apiserver.ts";

export async function waitUntil(pred: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// A logger that keeps its records for assertions.
export function memoryLogger(level: Level = "debug"): { log: Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const log = new Logger(level, (line) => records.push(JSON.parse(line)));
  return { log, records };
}

export function kubeConfigFor(yaml: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(yaml);
  return kc;
}

export function poolObj(name: string, selector: Record<string, string>, opts: { namespace?: string; port?: number; annotations?: Record<string, string> } = {}): Obj {
  return {
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    kind: "InferencePool",
    metadata: { name, namespace: opts.namespace ?? "default", ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: { targetPortNumber: opts.port ?? 8000, selector, extensionRef: { name: "inference-gateway-ext-proc" } },
  };
}

export function modelObj(name: string, modelName: string, pool: string, opts: { namespace?: string; criticality?: string; targets?: Array<{ name: string; weight?: number }>; created?: string } = {}): Obj {
  const spec: Record<string, unknown> = { modelName, poolRef: { group: "inference.networking.x-k8s.io", kind: "InferencePool", name: pool } };
  if (opts.criticality) spec.criticality = opts.criticality;
  if (opts.targets) spec.targetModels = opts.targets;
  return { apiVersion: "inference.networking.x-k8s.io/v1alpha2", kind: "InferenceModel", metadata: { name, namespace: opts.namespace ?? "default", ...(opts.created ? { creationTimestamp: opts.created } : {}) }, spec };
}

// A v1 InferencePool (inference.networking.k8s.io).
export function poolV1Obj(name: string, matchLabels: Record<string, string>, opts: { namespace?: string; ports?: number[]; annotations?: Record<string, string> } = {}): Obj {
  return {
    apiVersion: "inference.networking.k8s.io/v1",
    kind: "InferencePool",
    metadata: { name, namespace: opts.namespace ?? "default", ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: { selector: { matchLabels }, targetPorts: (opts.ports ?? [8000]).map((number) => ({ number })), endpointPickerRef: { name: `${name}-epp`, port: { number: 9002 } } },
  };
}

export function objectiveObj(name: string, pool: string, priority?: number, opts: { namespace?: string; created?: string } = {}): Obj {
  return {
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    kind: "InferenceObjective",
    metadata: { name, namespace: opts.namespace ?? "default", ...(opts.created ? { creationTimestamp: opts.created } : {}) },
    spec: { poolRef: { name: pool }, ...(priority === undefined ? {} : { priority }) },
  };
}

export interface RewriteRule {
  matches?: Array<{ model: { type?: string; value: string } }>;
  targets: Array<{ modelRewrite: string; weight?: number }>;
}

export function rewriteObj(name: string, pool: string, rules: RewriteRule[], opts: { namespace?: string; created?: string } = {}): Obj {
  return {
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    kind: "InferenceModelRewrite",
    metadata: { name, namespace: opts.namespace ?? "default", ...(opts.created ? { creationTimestamp: opts.created } : {}) },
    spec: { poolRef: { group: "inference.networking.k8s.io", kind: "InferencePool", name: pool }, rules },
  };
}

export function podObj(name: string, ip: string, labels: Record<string, string>, opts: { namespace?: string; ready?: boolean; terminating?: boolean } = {}): Obj {
  const metadata: Obj["metadata"] = { name, namespace: opts.namespace ?? "default", labels };
  if (opts.terminating) metadata.deletionTimestamp = "2025-11-20T10:00:00Z";
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata,
    spec: { containers: [{ name: "vllm", image: "vllm/vllm-openai" }] },
    status: { phase: "Running", podIP: ip, conditions: [{ type: "Ready", status: opts.ready === false ? "False" : "True" }] },
  };
}

// YAML for the same objects, for file mode.
export function toYaml(objs: Obj[]): string {
  return objs.map((o) => JSON.stringify(o)).join("\n---\n") + "\n";
}
