// Model lookup, target choice and the body rewrite: what happens between reading a request and
// picking an endpoint. Pure logic; the filter calls it with the decoded state.

import { Endpoint, Model, Pool, STANDARD, criticalityName } from "./state/document";
import { Pick } from "./schedule/pick";
import { Rng } from "./util/rng";
import { quote } from "./json/writer";

export class Resolution {
  model: Model | null = null;
  target: string = "";
  criticality: i32 = STANDARD;
  // The pool's default targets chose the target (the model has no entry of its own).
  byDefault: bool = false;
  // The InferenceObjective that set the criticality, "" when none did (objective/lookup.ts).
  objective: string = "";

  get known(): bool {
    return this.model !== null;
  }
}

// Looks `name` up among the pool's InferenceModels and chooses a target model by weight. A model
// without an entry takes the pool's default targets (Standard) when it has some, and is known
// then; otherwise it resolves to itself as Standard and is unknown (the filter decides whether
// that is allowed).
export function resolveModel(pool: Pool, name: string, rng: Rng): Resolution {
  const r = new Resolution();
  r.target = name;
  if (pool.models.has(name)) {
    const m = pool.models.get(name);
    r.model = m;
    r.criticality = m.criticality;
    r.target = chooseTarget(m, rng);
    return r;
  }
  const d = pool.defaultModel;
  if (d === null) return r;
  r.model = d;
  r.byDefault = true;
  r.criticality = d.criticality;
  r.target = chooseTarget(d, rng);
  return r;
}

// Weighted random choice; no targets means the model itself, all-zero weights mean uniform.
export function chooseTarget(m: Model, rng: Rng): string {
  const targets = m.targets;
  const n = targets.length;
  if (n == 0) return m.name;
  if (n == 1) return unchecked(targets[0]).name;
  let sum: f64 = 0;
  for (let i = 0; i < n; i++) sum += unchecked(targets[i]).weight;
  if (sum <= 0) return unchecked(targets[rng.below(n)]).name;
  let x = rng.float() * sum;
  for (let i = 0; i < n; i++) {
    const t = unchecked(targets[i]);
    if (x < t.weight) return t.name;
    x -= t.weight;
  }
  return unchecked(targets[n - 1]).name;
}

// The body with the model's string token (body[start:end], quotes included) replaced.
export function rewriteModel(body: ArrayBuffer, start: i32, end: i32, target: string): ArrayBuffer {
  const token = String.UTF8.encode(quote(target));
  const tlen = token.byteLength;
  const out = new ArrayBuffer(body.byteLength - (end - start) + tlen);
  const o = changetype<usize>(out);
  const b = changetype<usize>(body);
  memory.copy(o, b, <usize>start);
  memory.copy(o + <usize>start, changetype<usize>(token), <usize>tlen);
  memory.copy(o + <usize>(start + tlen), b + <usize>end, <usize>(body.byteLength - end));
  return out;
}

// Whether a body should be read as JSON: declared as JSON, or undeclared but shaped like it
// (curl -d sends form content-type by default).
export function looksLikeJson(contentType: string, body: ArrayBuffer): bool {
  if (contentType.toLowerCase().includes("json")) return true;
  const p = changetype<usize>(body);
  for (let i = 0; i < body.byteLength; i++) {
    const c = load<u8>(p + <usize>i);
    if (c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09) continue;
    return c == 0x7b;
  }
  return false;
}

// A value safe to put in a log line: plain tokens as they are, anything else quoted.
export function logValue(s: string): string {
  if (s.length == 0) return "-";
  if (s.length > 256) s = s.substring(0, 256);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c == 0x22 || c == 0x7f) return quote(s);
  }
  return s;
}

// The info line logged for every routed request (the seeds grep these). model and target are ""
// for a request without a JSON body; totalBlocks is 0 when no prefix was hashed.
export function handledLine(model: string, target: string, e: Endpoint, pool: Pool, picked: Pick, totalBlocks: i32,
  criticality: i32, stateVersion: f64, degraded: bool, knownModel: bool): string {
  return "Request Handled model=" + logValue(model) + " target=" + logValue(target) + " pod=" + logValue(e.pod) +
    " endpoint=" + e.address + " strategy=" + pool.strategyText + " prefix_blocks=" + picked.prefixBlocks.toString() + "/" + totalBlocks.toString() +
    " criticality=" + criticalityName(criticality) + " candidates=" + picked.candidates.toString() +
    " outstanding=" + (<i64>Math.round(picked.outstanding)).toString() + " state_version=" + (<i64>stateVersion).toString() +
    (degraded ? " degraded=true" : "") + (knownModel ? "" : " unknown_model=true");
}

// The end of a `Request Handled` line for a request whose criticality an objective set: after
// every other key, so that lines without one read exactly as before.
export function objectiveSuffix(res: Resolution): string {
  return res.objective.length > 0 ? " objective=" + logValue(res.objective) : "";
}
