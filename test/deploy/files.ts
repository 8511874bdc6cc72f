// Reading the repository's deployment files for the deploy tests.

import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { validatorFor, type Schema, type Validator } from "./k8s-schema.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export function repoPath(...parts: string[]): string {
  return join(ROOT, ...parts);
}

export function rel(path: string): string {
  return relative(ROOT, path);
}

/** The non-empty YAML documents of a file or text, as plain objects. Throws on a YAML error. */
export function yamlDocs(text: string, source = "<text>"): any[] {
  const out: any[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0].message}`);
    const value = doc.toJS();
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

export function yamlFile(path: string): any[] {
  return yamlDocs(readFileSync(path, "utf8"), rel(path));
}

/** *.yaml / *.yml files under dir, recursively, sorted. */
export function yamlFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFilesUnder(p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out;
}

export interface CrdVersion {
  file: string;
  crd: any;
  group: string;
  version: string;
  kind: string;
  schema: Schema;
  validator: Validator;
}

/** Every served version of every CRD in deploy/crds, keyed "apiVersion/Kind". */
export function loadCrds(): Map<string, CrdVersion> {
  const out = new Map<string, CrdVersion>();
  for (const file of yamlFilesUnder(repoPath("deploy/crds"))) {
    for (const crd of yamlFile(file)) {
      for (const v of crd.spec.versions) {
        const schema = v.schema.openAPIV3Schema;
        const key = `${crd.spec.group}/${v.name}/${crd.spec.names.kind}`;
        out.set(key, { file, crd, group: crd.spec.group, version: v.name, kind: crd.spec.names.kind, schema, validator: validatorFor(schema) });
      }
    }
  }
  return out;
}

export function crdKey(obj: any): string {
  return `${obj.apiVersion}/${obj.kind}`;
}

/** The CRD version for key ("group/version/Kind"), failing the test when deploy/crds has none. */
export function crdIn(crds: Map<string, CrdVersion>, key: string): CrdVersion {
  const c = crds.get(key);
  if (!c) throw new Error(`no CRD for ${key} in deploy/crds`);
  return c;
}

/** The sub-schema at a dotted path ("spec.targetPorts.[].number"), failing when it is absent. */
export function schemaAt(schema: any, path: string): any {
  let s = schema;
  for (const part of path.split(".")) {
    s = part === "[]" ? s.items : s.properties?.[part];
    if (!s) throw new Error(`schema has no ${path}`);
  }
  return s;
}
