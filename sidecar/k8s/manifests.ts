// Reading manifests: multi-document YAML into the objects the sidecar uses. Pure; the file
// source does the I/O.

import { parseAllDocuments } from "yaml";
import { resourceOf, type Resource } from "./resources.ts";
import type { KubeObject } from "./types.ts";

export interface ManifestObject {
  resource: Resource;
  object: KubeObject;
}

export interface ManifestParse {
  objects: ManifestObject[];
  // Problems that dropped a document, or the whole file when it is not YAML at all.
  errors: string[];
  // Kinds the sidecar does not read (Gateway, HTTPRoute, Deployment, ...): skipped silently.
  ignored: number;
}

// Objects of the four kinds the sidecar reads; `defaultNamespace` is filled in where
// metadata.namespace is absent. A `List` (kind: List, items: [...]) is unpacked.
export function parseManifests(text: string, defaultNamespace: string, source = "<text>"): ManifestParse {
  const out: ManifestParse = { objects: [], errors: [], ignored: 0 };
  let docs;
  try {
    docs = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: false });
  } catch (err) {
    out.errors.push(`${source}: ${(err as Error).message}`);
    return out;
  }
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    if (doc.errors.length > 0) {
      out.errors.push(`${source} document ${i + 1}: ${doc.errors[0].message.split("\n")[0]}`);
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      out.errors.push(`${source} document ${i + 1}: ${(err as Error).message}`);
      return;
    }
    if (value === null || value === undefined) return; // empty document ("---" at the end)
    collect(value, `${source} document ${i + 1}`, defaultNamespace, out);
  });
  return out;
}

function collect(value: unknown, where: string, defaultNamespace: string, out: ManifestParse): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    out.errors.push(`${where}: not a Kubernetes object`);
    return;
  }
  const obj = value as Record<string, unknown>;
  if (obj.kind === "List" && Array.isArray(obj.items)) {
    obj.items.forEach((item, j) => collect(item, `${where} item ${j + 1}`, defaultNamespace, out));
    return;
  }
  if (typeof obj.kind !== "string" || typeof obj.apiVersion !== "string") {
    out.errors.push(`${where}: missing apiVersion or kind`);
    return;
  }
  const resource = resourceOf(obj.apiVersion, obj.kind);
  if (!resource) {
    out.ignored++;
    return;
  }
  const meta = obj.metadata as Record<string, unknown> | undefined;
  if (!meta || typeof meta !== "object" || typeof meta.name !== "string" || meta.name.length === 0) {
    out.errors.push(`${where}: ${obj.kind} without metadata.name`);
    return;
  }
  if (typeof meta.namespace !== "string" || meta.namespace.length === 0) meta.namespace = defaultNamespace;
  out.objects.push({ resource, object: obj as KubeObject });
}
