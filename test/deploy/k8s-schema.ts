// Validates custom resources against a CRD's openAPIV3Schema the way the API server would on
// `kubectl apply` (kubectl's default strict field validation):
//
// - JSON-schema keywords by ajv;
// - unknown fields are errors wherever the schema lists properties and does not preserve unknown
//   fields (the server prunes them silently; strict validation rejects them);
// - defaults are applied (structural defaulting), so callers can inspect the defaulted object;
// - formats int32, int64 and date-time are checked; other formats are ignored, as the server does
//   (kube-openapi's format check looks at strings only, so the server may take an integer outside
//   int32 that this validator rejects: here the validator is the stricter);
// - x-kubernetes-int-or-string: an integer or a string;
// - x-kubernetes-list-type map (unique x-kubernetes-list-map-keys tuples) and set (unique items);
// - x-kubernetes-validations (CEL): each rule string must have an evaluator in CEL_RULES below;
//   transition rules (using oldSelf) run only when an old object is given, as on update. A rule
//   with no evaluator is an error, so a new rule cannot go untested.
// - x-kubernetes-preserve-unknown-fields, x-kubernetes-map-type, x-kubernetes-embedded-resource:
//   accepted (no value check beyond the above).
//
// validate() words each error the way this file always has (ajv's wording, JSON-pointer paths);
// apiErrors() words the same errors as the API server's field errors (kubectl's "The X "name" is
// invalid: ..." list): the apiextensions-apiserver's mapping of kube-openapi results
// (`spec.targetPorts[0].number: Invalid value: 0: spec.targetPorts[0].number in body should be
// greater than or equal to 1`), CEL failures as `<path>: Invalid value: "<schema type>": <message>`,
// and strict field validation's `strict decoding error: unknown field "spec.x"` (which replaces the
// field errors: the server stops at decoding). Modelled on the server's sources; no API
// server runs in the tests, so the wording of rarer cases (too long, duplicates) may drift with
// Kubernetes releases.

import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { isDeepStrictEqual } from "node:util";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Schema = { [k: string]: any };

type Rule = (self: any, oldSelf: any) => boolean;

function has(o: any, k: string): boolean {
  return o !== null && typeof o === "object" && Object.prototype.hasOwnProperty.call(o, k);
}

// Evaluators for the CEL rules our CRDs use, keyed by the exact rule text.
export const CEL_RULES: Record<string, { transition: boolean; evaluate: Rule }> = {
  "self == oldSelf": { transition: true, evaluate: (self, oldSelf) => isDeepStrictEqual(self, oldSelf) },
  "self.all(model, has(model.weight)) || self.all(model, !has(model.weight))": {
    transition: false,
    evaluate: (self: any[]) => self.every((m) => has(m, "weight")) || self.every((m) => !has(m, "weight")),
  },
  "!has(self.prefillPolicyRef) || (self.prefillPolicyRef == 'prefixCache' && has(self.trafficPolicy) && has(self.trafficPolicy.prefixCache))": {
    transition: false,
    evaluate: (self) => !has(self, "prefillPolicyRef") || (self.prefillPolicyRef === "prefixCache" && has(self, "trafficPolicy") && has(self.trafficPolicy, "prefixCache")),
  },
  "!has(self.decodePolicyRef) || (self.decodePolicyRef == 'prefixCache' && has(self.trafficPolicy) && has(self.trafficPolicy.prefixCache))": {
    transition: false,
    evaluate: (self) => !has(self, "decodePolicyRef") || (self.decodePolicyRef === "prefixCache" && has(self, "trafficPolicy") && has(self.trafficPolicy, "prefixCache")),
  },
  // InferencePool v1: every port number appears exactly once in targetPorts.
  "self.all(p1, self.exists_one(p2, p1.number==p2.number))": {
    transition: false,
    evaluate: (self: any[]) => self.every((p1) => self.filter((p2) => p2?.number === p1?.number).length === 1),
  },
  // InferencePool v1: endpointPickerRef of kind Service (the default, applied before CEL runs) names a port.
  "self.kind != 'Service' || has(self.port)": {
    transition: false,
    evaluate: (self) => self.kind !== "Service" || has(self, "port"),
  },
};

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function newAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, verbose: true, useDefaults: true, strict: true, strictTypes: false, strictRequired: false, allowUnionTypes: true });
  ajv.addFormat("int32", { type: "number", validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n <= 2 ** 31 - 1 });
  ajv.addFormat("int64", { type: "number", validate: (n: number) => Number.isSafeInteger(n) });
  ajv.addFormat("date-time", { type: "string", validate: (s: string) => RFC3339.test(s) && !Number.isNaN(Date.parse(s)) });
  ajv.addKeyword({ keyword: "x-kubernetes-preserve-unknown-fields", schemaType: "boolean" });
  ajv.addKeyword({ keyword: "x-kubernetes-map-type", schemaType: "string" });
  ajv.addKeyword({ keyword: "x-kubernetes-embedded-resource", schemaType: "boolean" });
  ajv.addKeyword({ keyword: "x-kubernetes-validations", schemaType: "array" }); // evaluated in celErrors
  ajv.addKeyword({
    keyword: "x-kubernetes-int-or-string",
    schemaType: "boolean",
    errors: false,
    validate: (on: boolean, data: unknown) => !on || typeof data === "string" || (typeof data === "number" && Number.isInteger(data)),
  });
  ajv.addKeyword({
    keyword: "x-kubernetes-list-type",
    schemaType: "string",
    errors: false,
    validate: (kind: string, data: unknown) => {
      if (!Array.isArray(data) || kind !== "set") return true;
      return data.every((v, i) => data.findIndex((w) => isDeepStrictEqual(v, w)) === i);
    },
  });
  ajv.addKeyword({
    keyword: "x-kubernetes-list-map-keys",
    schemaType: "array",
    errors: false,
    validate: (keys: string[], data: unknown) => {
      if (!Array.isArray(data)) return true;
      const seen = new Set<string>();
      for (const item of data) {
        const k = JSON.stringify(keys.map((key) => (item as any)?.[key] ?? null));
        if (seen.has(k)) return false;
        seen.add(k);
      }
      return true;
    },
  });
  return ajv;
}

// Turns an OpenAPI v3.0 schema into what ajv (JSON Schema) reads the same way — boolean
// exclusiveMinimum/exclusiveMaximum become numeric, nullable: true admits null — and closes every
// object that lists properties and does not preserve unknown fields.
export function strictCopy(schema: Schema): Schema {
  const s: Schema = Array.isArray(schema) ? (schema as any).map(strictCopy) : { ...schema };
  if (Array.isArray(schema)) return s;
  for (const key of ["properties", "patternProperties"]) {
    if (s[key]) s[key] = Object.fromEntries(Object.entries(s[key]).map(([k, v]) => [k, strictCopy(v as Schema)]));
  }
  for (const key of ["items", "additionalProperties", "not"]) {
    if (s[key] && typeof s[key] === "object") s[key] = strictCopy(s[key]);
  }
  for (const key of ["allOf", "anyOf", "oneOf"]) {
    if (Array.isArray(s[key])) s[key] = s[key].map(strictCopy);
  }
  if (s.properties && s.additionalProperties === undefined && s["x-kubernetes-preserve-unknown-fields"] !== true) {
    s.additionalProperties = false;
  }
  for (const [flag, bound] of [["exclusiveMinimum", "minimum"], ["exclusiveMaximum", "maximum"]] as const) {
    if (typeof s[flag] !== "boolean") continue;
    if (s[flag] && typeof s[bound] === "number") {
      s[flag] = s[bound];
      delete s[bound];
    } else {
      delete s[flag];
    }
  }
  if (s.nullable === true) {
    delete s.nullable;
    if (typeof s.type === "string") s.type = [s.type, "null"];
    if (Array.isArray(s.enum) && !s.enum.includes(null)) s.enum = [...s.enum, null];
  } else if (s.nullable === false) {
    delete s.nullable;
  }
  return s;
}

function formatAjvError(e: ErrorObject): string {
  const where = e.instancePath || "/";
  if (e.keyword === "additionalProperties") return `${where}: unknown field "${(e.params as any).additionalProperty}"`;
  if (e.keyword === "x-kubernetes-list-map-keys") return `${where}: duplicate entries for the list's map keys`;
  if (e.keyword === "x-kubernetes-list-type") return `${where}: duplicate entries in a set`;
  if (e.keyword === "x-kubernetes-int-or-string") return `${where}: must be an integer or a string`;
  return `${where}: ${e.message}`;
}

// --- the API server's wording -------------------------------------------------------------------

// A JSON pointer into obj as a field path: spec.targetPorts[0].number.
function fieldPath(root: any, pointer: string): string {
  let out = "";
  let cur = root;
  for (const raw of pointer.split("/").slice(1)) {
    const seg = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    out += Array.isArray(cur) ? `[${seg}]` : out === "" ? seg : `.${seg}`;
    cur = cur !== null && typeof cur === "object" ? cur[seg] : undefined;
  }
  return out === "" ? "<nil>" : out;
}

function child(path: string, key: string): string {
  return path === "<nil>" ? key : `${path}.${key}`;
}

function valueAt(root: any, pointer: string): any {
  let cur = root;
  for (const raw of pointer.split("/").slice(1)) cur = cur?.[raw.replace(/~1/g, "/").replace(/~0/g, "~")];
  return cur;
}

// A bad value as field.Error prints it: numbers and booleans bare, strings quoted.
function goValue(v: any): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v); // strings as %q; maps and lists approximated
}

function jsonType(v: any): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function firstDuplicate(list: any[], key: (item: any) => string): number {
  const seen = new Set<string>();
  for (let i = 0; i < list.length; i++) {
    const k = key(list[i]);
    if (seen.has(k)) return i;
    seen.add(k);
  }
  return -1;
}

function apiAjvError(e: ErrorObject, root: any): string {
  const p = fieldPath(root, e.instancePath);
  const value = valueAt(root, e.instancePath);
  const params = e.params as any;
  const invalid = (detail: string, bad: any = value) => `${p}: Invalid value: ${goValue(bad)}: ${detail}`;
  switch (e.keyword) {
    case "required":
      return `${child(p, params.missingProperty)}: Required value`;
    case "additionalProperties":
      return `unknown field "${child(p, params.additionalProperty)}"`;
    case "enum": {
      const allowed = (params.allowedValues as any[]).map((v) => JSON.stringify(typeof v === "string" ? v : JSON.stringify(v)));
      return `${p}: Unsupported value: ${goValue(value)}: supported values: ${allowed.join(", ")}`;
    }
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum": {
      const words: Record<string, string> = { ">=": "greater than or equal to", "<=": "less than or equal to", ">": "greater than", "<": "less than" };
      return invalid(`${p} in body should be ${words[params.comparison]} ${params.limit}`);
    }
    case "minItems":
      return invalid(`${p} in body should have at least ${params.limit} items`, (value as any[]).length);
    case "maxItems":
      return `${p}: Too many: ${(value as any[]).length}: must have at most ${params.limit} items`;
    case "minProperties":
      return invalid(`${p} in body should have at least ${params.limit} properties`, Object.keys(value).length);
    case "maxProperties":
      return `${p}: Too many: ${Object.keys(value).length}: must have at most ${params.limit} items`;
    case "minLength":
      return invalid(`${p} in body should be at least ${params.limit} chars long`);
    case "maxLength":
      return `${p}: Too long: may not be more than ${params.limit} bytes`;
    case "pattern":
      return invalid(`${p} in body should match '${params.pattern}'`);
    case "type":
      return invalid(`${p} in body must be of type ${params.type}: "${jsonType(value)}"`, jsonType(value));
    case "format":
      return invalid(typeof value === "string" ? `${p} in body must be of type ${params.format}: ${JSON.stringify(value)}` : `${p} in body must be of type ${params.format}`);
    case "x-kubernetes-int-or-string":
      return invalid(`${p} in body must be of type integer,string: "${jsonType(value)}"`, jsonType(value));
    case "x-kubernetes-list-map-keys": {
      const keys = (e.schema ?? []) as string[];
      const tuple = (item: any) => JSON.stringify(Object.fromEntries(keys.map((k) => [k, item?.[k] ?? null])));
      const i = firstDuplicate(value as any[], tuple);
      return `${p}[${i}]: Duplicate value: ${tuple((value as any[])[i])}`;
    }
    case "x-kubernetes-list-type": {
      const i = firstDuplicate(value as any[], (item) => JSON.stringify(item));
      return `${p}[${i}]: Duplicate value: ${goValue((value as any[])[i])}`;
    }
    default:
      return invalid(`${p} ${e.message}`);
  }
}

// One problem with an object, in this file's wording and in the API server's. Unknown fields are
// found while decoding: under strict field validation the server answers 400 with all of them and
// validates nothing else.
interface Problem {
  text: string;
  api: string;
  unknownField?: boolean;
}

// CEL rules, walking schema, object and (for updates) the old object together.
function celErrors(schema: Schema, value: any, old: any, path: string, root: any, out: Problem[]): void {
  if (value === undefined) return;
  for (const v of (schema["x-kubernetes-validations"] ?? []) as Array<{ rule: string; message?: string }>) {
    const rule = CEL_RULES[v.rule];
    if (!rule) {
      const text = `${path || "/"}: no evaluator for x-kubernetes-validations rule ${JSON.stringify(v.rule)}`;
      out.push({ text, api: text });
      continue;
    }
    if (rule.transition && old === undefined) continue;
    if (!rule.evaluate(value, old)) {
      const message = v.message ?? `failed rule: ${v.rule}`;
      out.push({ text: `${path || "/"}: ${message}`, api: `${fieldPath(root, path)}: Invalid value: "${schema.type}": ${message}` });
    }
  }
  if (schema.properties && value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, sub] of Object.entries(schema.properties as Record<string, Schema>)) {
      celErrors(sub, value[k], old !== null && typeof old === "object" ? old[k] : undefined, `${path}/${k}`, root, out);
    }
  }
  if (schema.additionalProperties && typeof schema.additionalProperties === "object" && value !== null && typeof value === "object") {
    for (const k of Object.keys(value)) {
      if (schema.properties?.[k]) continue;
      celErrors(schema.additionalProperties, value[k], old?.[k], `${path}/${k}`, root, out);
    }
  }
  if (schema.items && Array.isArray(value)) {
    // Transition rules inside lists need correlated items; our CRDs have none, so items are checked as new.
    value.forEach((item, i) => celErrors(schema.items, item, undefined, `${path}/${i}`, root, out));
  }
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN_HELP = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_HELP = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";

function metadataErrors(obj: any): Problem[] {
  const m = obj?.metadata;
  if (m === null || typeof m !== "object") return [{ text: "/metadata: required", api: "metadata.name: Required value: name or generateName is required" }];
  const out: Problem[] = [];
  if (typeof m.name !== "string" || m.name.length === 0) {
    out.push({ text: `/metadata/name: ${JSON.stringify(m.name)} is not a DNS subdomain`, api: "metadata.name: Required value: name or generateName is required" });
  } else if (m.name.length > 253 || !DNS_SUBDOMAIN.test(m.name)) {
    out.push({ text: `/metadata/name: ${JSON.stringify(m.name)} is not a DNS subdomain`, api: `metadata.name: Invalid value: ${JSON.stringify(m.name)}: ${SUBDOMAIN_HELP}` });
  }
  if (m.namespace !== undefined && (typeof m.namespace !== "string" || m.namespace.length > 63 || !DNS_LABEL.test(m.namespace))) {
    out.push({ text: "/metadata/namespace: not a DNS label", api: `metadata.namespace: Invalid value: ${goValue(m.namespace)}: ${LABEL_HELP}` });
  }
  for (const key of ["labels", "annotations"]) {
    const map = m[key];
    if (map === undefined) continue;
    if (map === null || typeof map !== "object" || Array.isArray(map)) out.push({ text: `/metadata/${key}: must be a map`, api: `metadata.${key}: Invalid value: ${goValue(map)}: must be a map` });
    else for (const [k, v] of Object.entries(map)) if (typeof v !== "string") out.push({ text: `/metadata/${key}/${k}: must be a string`, api: `metadata.${key}.${k}: Invalid value: ${goValue(v)}: must be a string` });
  }
  return out;
}

export interface Validator {
  /** Errors for obj (defaults are applied to obj in place); with old, as an update of old. */
  validate(obj: any, old?: any): string[];
  /**
   * The API server's answer, as its error strings (defaults are applied to obj in place): the
   * field errors, or, when the object has unknown fields, the one strict decoding error.
   */
  apiErrors(obj: any, old?: any): string[];
}

export function validatorFor(openAPIV3Schema: Schema): Validator {
  const ajv = newAjv();
  const fn: ValidateFunction = ajv.compile(strictCopy(openAPIV3Schema));
  const problems = (obj: any, old?: any): Problem[] => {
    const out = metadataErrors(obj);
    if (!fn(obj)) out.push(...(fn.errors ?? []).map((e) => ({ text: formatAjvError(e), api: apiAjvError(e, obj), unknownField: e.keyword === "additionalProperties" })));
    celErrors(openAPIV3Schema, obj, old, "", obj, out);
    return out;
  };
  return {
    validate: (obj, old) => problems(obj, old).map((p) => p.text),
    apiErrors: (obj, old) => {
      const all = problems(obj, old);
      const unknown = all.filter((p) => p.unknownField);
      if (unknown.length > 0) return [`strict decoding error: ${unknown.map((p) => p.api).join(", ")}`];
      return all.map((p) => p.api);
    },
  };
}

/** kubectl's one-line message for the API server's answer to an invalid object. */
export function invalidMessage(obj: any, errors: string[]): string {
  const body = errors.length === 1 ? errors[0] : `[${errors.join(", ")}]`;
  return `The ${obj?.kind} ${JSON.stringify(obj?.metadata?.name ?? "")} is invalid: ${body}`;
}

// A CRD schema must be structural for the API server to accept it (every node typed, or marked
// int-or-string / preserve-unknown-fields; arrays with items; properties and additionalProperties
// not both), its defaults must validate against their own schema, and we describe every field.
export function structuralProblems(schema: Schema, path = ""): string[] {
  const out: string[] = [];
  const typed = typeof schema.type === "string" || schema["x-kubernetes-int-or-string"] === true || schema["x-kubernetes-preserve-unknown-fields"] === true;
  if (!typed) out.push(`${path || "/"}: no type`);
  if (schema.type === "array" && !schema.items) out.push(`${path}: array without items`);
  if (schema.properties && schema.additionalProperties !== undefined) out.push(`${path}: properties and additionalProperties together`);
  if (path !== "" && path !== "/metadata" && typeof schema.description !== "string") out.push(`${path}: no description`);
  if (schema.default !== undefined) {
    const ajv = newAjv();
    const { default: _ignored, ...withoutDefault } = schema;
    const fn = ajv.compile(strictCopy(withoutDefault));
    const copy = structuredClone(schema.default);
    if (!fn(copy)) out.push(`${path}: default does not validate: ${(fn.errors ?? []).map(formatAjvError).join("; ")}`);
  }
  for (const [k, sub] of Object.entries((schema.properties ?? {}) as Record<string, Schema>)) out.push(...structuralProblems(sub, `${path}/${k}`));
  if (schema.items) out.push(...structuralProblems(schema.items, `${path}/items`));
  if (schema.additionalProperties && typeof schema.additionalProperties === "object") out.push(...structuralProblems(schema.additionalProperties, `${path}/additionalProperties`));
  return out;
}

/** Every format named anywhere in the schema. */
export function formatsUsed(schema: Schema, out = new Set<string>()): Set<string> {
  if (schema === null || typeof schema !== "object") return out;
  if (typeof schema.format === "string") out.add(schema.format);
  for (const v of Object.values(schema)) if (v && typeof v === "object") formatsUsed(v as Schema, out);
  return out;
}
