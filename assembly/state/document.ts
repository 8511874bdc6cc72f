// The state document the sidecar pushes (version 1), decoded and validated.
//
//   {"version": 42, "generated_at_ms": 1763600000000,
//    "pools": [{"name": "default/vllm-qwen-pool", "strategy": "DEFAULT", "runtime": "vllm",
//      "endpoints": [{"pod": "qwen-0", "address": "10.0.0.1:8000", "ready": true,
//        "metrics_age_ms": 35, "waiting": 2, "running": 14, "kv_usage": 0.41,
//        "lora_running": ["travel-helper-v1"], "lora_waiting": [], "max_lora": 2, "score": 0.73}]}],
//    ... a prefill/decode pool also has
//      "pd": {"role_label": "...", "bootstrap_port": 34000, "prefill": {"strategy": "PREFIX_CACHE"},
//             "decode": {"strategy": "DEFAULT"}}, and each of its endpoints a "role" ("prefill" | "decode"),
//    "models": [{"name": "/model/qwen", "pool": "default/vllm-qwen-pool", "criticality": "Critical",
//      "targets": [{"name": "/model/qwen", "weight": 100}]}],
//    "objectives": [{"name": "chat-premium", "pool": "default/vllm-qwen-pool", "priority": 10,
//      "criticality": "Critical"}]}
//    ... a pool may also carry "default_targets": [{"name": "/model/qwen", "weight": 1}], the
//    targets of a model the pool has no entry for.
//
// Decoding is strict where a wrong value would be dangerous (an address that is not ip:port ends
// up in a request header) and lenient where the document may grow: unknown members are ignored,
// an unknown strategy reads as DEFAULT and an unknown criticality as Standard.

import { formatNumber } from "../util/format";
import { JsonValue, parseJsonAt } from "../json/value";
import { isPoolName } from "../config";
import { fnv1a32 } from "../util/hash";

export const STRATEGY_DEFAULT: i32 = 0;
export const STRATEGY_PREFIX_CACHE: i32 = 1;

// An endpoint's part in a prefill/decode pool; ROLE_NONE elsewhere (and never picked in one).
export const ROLE_NONE: i32 = 0;
export const ROLE_PREFILL: i32 = 1;
export const ROLE_DECODE: i32 = 2;

export const CRITICAL: i32 = 0;
export const STANDARD: i32 = 1;
export const SHEDDABLE: i32 = 2;

const MAX_POOLS: i32 = 256;
const MAX_MODELS: i32 = 8192;
const MAX_OBJECTIVES: i32 = 8192;
const MAX_TARGETS: i32 = 256;
const MAX_ADAPTERS: i32 = 256;
const MAX_NAME: i32 = 1024;

export function strategyName(s: i32): string {
  return s == STRATEGY_PREFIX_CACHE ? "PREFIX_CACHE" : "DEFAULT";
}

export function criticalityName(c: i32): string {
  if (c == CRITICAL) return "Critical";
  if (c == SHEDDABLE) return "Sheddable";
  return "Standard";
}

export class Endpoint {
  pod: string = "";
  address: string = "";
  // FNV-1a of the address: the endpoint's identity in the shared load record and prefix index.
  id: u32 = 0;
  ready: bool = true;
  metricsAgeMs: f64 = 0;
  waiting: f64 = 0;
  running: f64 = 0;
  kvUsage: f64 = 0;
  loraRunning: Array<string> = new Array<string>();
  loraWaiting: Array<string> = new Array<string>();
  maxLora: i32 = 0;
  score: f64 = 0.5;
  role: i32 = ROLE_NONE;

  // The address without its port (IPv6 without brackets): SGLang's bootstrap_host.
  get ip(): string {
    const colon = this.address.lastIndexOf(":");
    const h = colon > 0 ? this.address.substring(0, colon) : this.address;
    return h.startsWith("[") ? h.substring(1, h.length - 1) : h;
  }
}

// How a prefill/decode pool is served: where prefill servers take KV-transfer handshakes, and
// each role's routing strategy.
export class PdSpec {
  roleLabel: string = "";
  bootstrapPort: i32 = 8998;
  prefillStrategy: i32 = STRATEGY_DEFAULT;
  decodeStrategy: i32 = STRATEGY_DEFAULT;
}

export class Pool {
  name: string = "";
  strategy: i32 = STRATEGY_DEFAULT;
  strategyText: string = "DEFAULT";
  runtime: string = "vllm";
  // Set for a prefill/decode disaggregated pool.
  pd: PdSpec | null = null;
  endpoints: Array<Endpoint> = new Array<Endpoint>();
  // ids[i] == endpoints[i].id; indexById: id -> i
  ids: Array<u32> = new Array<u32>();
  indexById: Map<u32, i32> = new Map<u32, i32>();
  // LoRA adapters some endpoint has loaded or queued.
  adapters: Set<string> = new Set<string>();
  models: Map<string, Model> = new Map<string, Model>();
  // The targets of a model the pool has no entry for (`default_targets`), as a nameless model of
  // Standard criticality; null when the document gives none (such a model stays unknown).
  defaultModel: Model | null = null;
  // InferenceObjectives of this pool by name.
  objectives: Map<string, Objective> = new Map<string, Objective>();

  addEndpoint(e: Endpoint): void {
    this.indexById.set(e.id, this.endpoints.length);
    this.endpoints.push(e);
    this.ids.push(e.id);
    for (let k = 0; k < e.loraRunning.length; k++) this.adapters.add(e.loraRunning[k]);
    for (let k = 0; k < e.loraWaiting.length; k++) this.adapters.add(e.loraWaiting[k]);
  }
}

export class Target {
  name: string;
  weight: f64;

  constructor(name: string, weight: f64) {
    this.name = name;
    this.weight = weight;
  }
}

export class Model {
  name: string = "";
  pool: string = "";
  criticality: i32 = STANDARD;
  targets: Array<Target> = new Array<Target>();
}

// An InferenceObjective: a name clients put in the objective header, and the band its priority
// maps to (priority > 0 Critical, 0 Standard, < 0 Sheddable).
export class Objective {
  name: string = "";
  pool: string = "";
  priority: i32 = 0;
  criticality: i32 = STANDARD;
}

// The band of an objective's priority, as GIE treats priorities: below 0 is sheddable.
export function criticalityOfPriority(priority: i32): i32 {
  if (priority > 0) return CRITICAL;
  if (priority < 0) return SHEDDABLE;
  return STANDARD;
}

export class State {
  version: f64 = 0;
  generatedAtMs: f64 = 0;
  pools: Array<Pool> = new Array<Pool>();
  warnings: Array<string> = new Array<string>();

  findPool(name: string): Pool | null {
    for (let i = 0; i < this.pools.length; i++) {
      const p = unchecked(this.pools[i]);
      if (p.name == name) return p;
    }
    return null;
  }
}

export class StateDecode {
  state: State | null = null;
  error: string = "";
}

class Decoder {
  error: string = "";
  maxEndpoints: i32;

  constructor(maxEndpoints: i32) {
    this.maxEndpoints = maxEndpoints;
  }

  fail(path: string, message: string): void {
    if (this.error.length == 0) this.error = path + ": " + message;
  }

  requiredString(obj: JsonValue, key: string, path: string): string {
    const v = obj.get(key);
    if (v === null || !v.isString()) {
      this.fail(path + "." + key, "must be a string");
      return "";
    }
    if (v.str.length == 0 || v.str.length > MAX_NAME) {
      this.fail(path + "." + key, "must have 1 to " + MAX_NAME.toString() + " characters");
      return "";
    }
    return v.str;
  }

  optionalString(obj: JsonValue, key: string, dflt: string, path: string): string {
    const v = obj.get(key);
    if (v === null || v.isNull()) return dflt;
    if (!v.isString() || v.str.length > MAX_NAME) {
      this.fail(path + "." + key, "must be a string");
      return dflt;
    }
    return v.str;
  }

  number(obj: JsonValue, key: string, dflt: f64, min: f64, max: f64, path: string, clamp: bool = false): f64 {
    const v = obj.get(key);
    if (v === null || v.isNull()) return dflt;
    if (!v.isNumber() || !isFinite(v.num)) {
      this.fail(path + "." + key, "must be a number");
      return dflt;
    }
    if (v.num < min || v.num > max) {
      if (clamp) return v.num < min ? min : max;
      this.fail(path + "." + key, "must be between " + formatNumber(min) + " and " + formatNumber(max));
      return dflt;
    }
    return v.num;
  }

  array(obj: JsonValue, key: string, path: string, required: bool, max: i32): JsonValue | null {
    const v = obj.get(key);
    if (v === null || v.isNull()) {
      if (required) this.fail(path + "." + key, "is required");
      return null;
    }
    if (!v.isArray()) {
      this.fail(path + "." + key, "must be an array");
      return null;
    }
    if (v.length > max) {
      this.fail(path + "." + key, "has more than " + max.toString() + " entries");
      return null;
    }
    return v;
  }

  strings(obj: JsonValue, key: string, path: string): Array<string> {
    const out = new Array<string>();
    const a = this.array(obj, key, path, false, MAX_ADAPTERS);
    if (a === null) return out;
    for (let i = 0; i < a.length; i++) {
      const v = a.at(i);
      if (!v.isString() || v.str.length > MAX_NAME) {
        this.fail(path + "." + key + "[" + i.toString() + "]", "must be a string");
        return out;
      }
      out.push(v.str);
    }
    return out;
  }
}

export function decodeState(buf: ArrayBuffer, maxEndpoints: i32): StateDecode {
  return decodeStateAt(changetype<usize>(buf), buf.byteLength, maxEndpoints);
}

export function decodeStateAt(ptr: usize, len: i32, maxEndpoints: i32): StateDecode {
  const result = new StateDecode();
  const parsed = parseJsonAt(ptr, len);
  if (!parsed.ok) {
    result.error = "not valid JSON: " + parsed.error + " at byte " + parsed.errorAt.toString();
    return result;
  }
  const root = parsed.value as JsonValue;
  if (!root.isObject()) {
    result.error = "the state document must be a JSON object";
    return result;
  }
  const d = new Decoder(maxEndpoints);
  const st = new State();
  const version = root.get("version");
  if (version === null || !version.isNumber() || !isFinite(version.num) || version.num < 0) {
    d.fail("version", "must be a non-negative number");
  } else st.version = version.num;
  const gen = root.get("generated_at_ms");
  if (gen === null || !gen.isNumber() || !isFinite(gen.num) || gen.num < 0) {
    d.fail("generated_at_ms", "must be a non-negative number (milliseconds since the epoch)");
  } else st.generatedAtMs = gen.num;

  const pools = d.array(root, "pools", "", true, MAX_POOLS);
  if (pools !== null) {
    for (let i = 0; i < pools.length && d.error.length == 0; i++) {
      const pool = decodePool(d, pools.at(i), "pools[" + i.toString() + "]", st);
      if (pool !== null) {
        if (st.findPool(pool.name) !== null) d.fail("pools[" + i.toString() + "].name", "duplicate pool " + pool.name);
        st.pools.push(pool);
      }
    }
  }
  const models = d.array(root, "models", "", true, MAX_MODELS);
  if (models !== null) {
    for (let i = 0; i < models.length && d.error.length == 0; i++) {
      decodeModel(d, models.at(i), "models[" + i.toString() + "]", st);
    }
  }
  const objectives = d.array(root, "objectives", "", false, MAX_OBJECTIVES);
  if (objectives !== null) {
    for (let i = 0; i < objectives.length && d.error.length == 0; i++) {
      decodeObjective(d, objectives.at(i), "objectives[" + i.toString() + "]", st);
    }
  }
  if (d.error.length > 0) {
    result.error = d.error;
    return result;
  }
  result.state = st;
  return result;
}

function decodePool(d: Decoder, v: JsonValue, path: string, st: State): Pool | null {
  if (!v.isObject()) {
    d.fail(path, "must be an object");
    return null;
  }
  const p = new Pool();
  p.name = d.requiredString(v, "name", path);
  if (p.name.length > 0 && !isPoolName(p.name)) d.fail(path + ".name", "must be \"namespace/name\"");
  const strategy = d.optionalString(v, "strategy", "DEFAULT", path);
  if (strategy == "PREFIX_CACHE") {
    p.strategy = STRATEGY_PREFIX_CACHE;
  } else if (strategy != "DEFAULT") {
    st.warnings.push(path + ".strategy: unknown strategy \"" + strategy + "\", using DEFAULT");
  }
  p.strategyText = strategyName(p.strategy);
  p.runtime = d.optionalString(v, "runtime", "vllm", path);
  const pd = v.get("pd");
  if (pd !== null && !pd.isNull()) p.pd = decodePd(d, pd, path + ".pd", st);
  const defaults = d.array(v, "default_targets", path, false, MAX_TARGETS);
  if (defaults !== null) {
    if (defaults.length == 0) {
      d.fail(path + ".default_targets", "must have 1 to " + MAX_TARGETS.toString() + " entries");
      return p;
    }
    const m = new Model();
    m.pool = p.name;
    m.targets = decodeTargets(d, defaults, path + ".default_targets");
    p.defaultModel = m;
  }
  const eps = d.array(v, "endpoints", path, true, d.maxEndpoints);
  if (eps === null) return p;
  for (let i = 0; i < eps.length && d.error.length == 0; i++) {
    const epath = path + ".endpoints[" + i.toString() + "]";
    const e = decodeEndpoint(d, eps.at(i), epath, st);
    if (e === null) continue;
    for (let j = 0; j < p.endpoints.length; j++) {
      if (unchecked(p.endpoints[j]).address == e.address) {
        d.fail(epath + ".address", "duplicate address " + e.address);
        break;
      }
    }
    p.addEndpoint(e);
  }
  return p;
}

function decodeStrategy(d: Decoder, v: JsonValue, path: string, st: State): i32 {
  const s = d.optionalString(v, "strategy", "DEFAULT", path);
  if (s == "PREFIX_CACHE") return STRATEGY_PREFIX_CACHE;
  if (s != "DEFAULT") st.warnings.push(path + ".strategy: unknown strategy \"" + s + "\", using DEFAULT");
  return STRATEGY_DEFAULT;
}

function decodePd(d: Decoder, v: JsonValue, path: string, st: State): PdSpec | null {
  if (!v.isObject()) {
    d.fail(path, "must be an object");
    return null;
  }
  const pd = new PdSpec();
  pd.roleLabel = d.optionalString(v, "role_label", "", path);
  const port = d.number(v, "bootstrap_port", 8998, 1, 65535, path);
  if (port != Math.floor(port)) d.fail(path + ".bootstrap_port", "must be an integer");
  pd.bootstrapPort = <i32>port;
  const prefill = v.get("prefill");
  if (prefill !== null && prefill.isObject()) pd.prefillStrategy = decodeStrategy(d, prefill, path + ".prefill", st);
  const decode = v.get("decode");
  if (decode !== null && decode.isObject()) pd.decodeStrategy = decodeStrategy(d, decode, path + ".decode", st);
  return pd;
}

function decodeEndpoint(d: Decoder, v: JsonValue, path: string, st: State): Endpoint | null {
  if (!v.isObject()) {
    d.fail(path, "must be an object");
    return null;
  }
  const e = new Endpoint();
  e.pod = d.requiredString(v, "pod", path);
  e.address = d.requiredString(v, "address", path);
  if (e.address.length > 0 && !isHostPort(e.address)) d.fail(path + ".address", "must be ip:port (IPv4, or [IPv6]:port)");
  e.id = fnv1a32(e.address);
  const ready = v.get("ready");
  if (ready !== null && !ready.isNull()) {
    if (!ready.isBool()) d.fail(path + ".ready", "must be true or false");
    else e.ready = ready.isTrue();
  }
  e.metricsAgeMs = d.number(v, "metrics_age_ms", 0, 0, 1e12, path);
  e.waiting = d.number(v, "waiting", 0, 0, 1e9, path);
  e.running = d.number(v, "running", 0, 0, 1e9, path);
  e.kvUsage = d.number(v, "kv_usage", 0, 0, 1, path, true);
  e.score = d.number(v, "score", 0.5, 0, 1, path, true);
  e.maxLora = <i32>d.number(v, "max_lora", 0, 0, 65536, path);
  e.loraRunning = d.strings(v, "lora_running", path);
  e.loraWaiting = d.strings(v, "lora_waiting", path);
  const role = d.optionalString(v, "role", "", path);
  if (role == "prefill") e.role = ROLE_PREFILL;
  else if (role == "decode") e.role = ROLE_DECODE;
  else if (role.length > 0) st.warnings.push(path + ".role: unknown role \"" + role + "\"; the endpoint is not routed to in a prefill/decode pool");
  return e;
}

function decodeModel(d: Decoder, v: JsonValue, path: string, st: State): void {
  if (!v.isObject()) {
    d.fail(path, "must be an object");
    return;
  }
  const m = new Model();
  m.name = d.requiredString(v, "name", path);
  m.pool = d.requiredString(v, "pool", path);
  const crit = d.optionalString(v, "criticality", "Standard", path);
  if (crit == "Critical") m.criticality = CRITICAL;
  else if (crit == "Sheddable") m.criticality = SHEDDABLE;
  else m.criticality = STANDARD;
  const targets = d.array(v, "targets", path, false, MAX_TARGETS);
  if (targets !== null) m.targets = decodeTargets(d, targets, path + ".targets");
  if (d.error.length > 0) return;
  const pool = st.findPool(m.pool);
  if (pool === null) {
    st.warnings.push(path + ".pool: no pool named " + m.pool);
    return;
  }
  // Two InferenceModels with one modelName: the first listed wins (the sidecar lists the oldest first).
  if (!pool.models.has(m.name)) pool.models.set(m.name, m);
}

// {name, weight} entries of a model's `targets` or a pool's `default_targets`; the weight is
// 0 to 1e6, 1 when absent.
function decodeTargets(d: Decoder, a: JsonValue, path: string): Array<Target> {
  const out = new Array<Target>();
  for (let i = 0; i < a.length && d.error.length == 0; i++) {
    const tpath = path + "[" + i.toString() + "]";
    const t = a.at(i);
    if (!t.isObject()) {
      d.fail(tpath, "must be an object");
      break;
    }
    const name = d.requiredString(t, "name", tpath);
    const weight = d.number(t, "weight", 1, 0, 1e6, tpath);
    out.push(new Target(name, weight));
  }
  return out;
}

// An InferenceObjective: {name, pool, priority (an int32, default 0), criticality}. The band is
// the criticality the sidecar derived; absent or unknown, the filter derives it from the priority.
function decodeObjective(d: Decoder, v: JsonValue, path: string, st: State): void {
  if (!v.isObject()) {
    d.fail(path, "must be an object");
    return;
  }
  const o = new Objective();
  o.name = d.requiredString(v, "name", path);
  o.pool = d.requiredString(v, "pool", path);
  const priority = d.number(v, "priority", 0, -2147483648, 2147483647, path);
  if (priority != Math.floor(priority)) d.fail(path + ".priority", "must be an integer");
  o.priority = <i32>priority;
  const crit = d.optionalString(v, "criticality", "", path);
  if (d.error.length > 0) return;
  if (crit == "Critical") o.criticality = CRITICAL;
  else if (crit == "Standard") o.criticality = STANDARD;
  else if (crit == "Sheddable") o.criticality = SHEDDABLE;
  else {
    o.criticality = criticalityOfPriority(o.priority);
    if (crit.length > 0) st.warnings.push(path + ".criticality: unknown criticality \"" + crit + "\", using " + criticalityName(o.criticality) + " (from the priority)");
  }
  const pool = st.findPool(o.pool);
  if (pool === null) {
    st.warnings.push(path + ".pool: no pool named " + o.pool);
    return;
  }
  // Two objectives with one name in a pool: the first listed wins (the sidecar lists the oldest first).
  if (!pool.objectives.has(o.name)) pool.objectives.set(o.name, o);
}

// ip:port with a dotted-quad IPv4 address or a bracketed IPv6 address, port 1..65535. Nothing
// else can reach the destination header.
export function isHostPort(s: string): bool {
  const colon = s.lastIndexOf(":");
  if (colon <= 0 || colon == s.length - 1 || s.length > 64) return false;
  const port = s.substring(colon + 1);
  if (port.length > 5) return false;
  let pv = 0;
  for (let i = 0; i < port.length; i++) {
    const c = port.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
    pv = pv * 10 + (c - 0x30);
  }
  if (pv < 1 || pv > 65535 || (port.length > 1 && port.charCodeAt(0) == 0x30)) return false;
  const host = s.substring(0, colon);
  if (host.charCodeAt(0) == 0x5b) {
    if (host.charCodeAt(host.length - 1) != 0x5d || host.length < 4) return false;
    return isIPv6(host.substring(1, host.length - 1));
  }
  return isIPv4(host);
}

function isIPv4(s: string): bool {
  let parts = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 0x2e;
    if (c == 0x2e) {
      if (digits == 0 || value > 255) return false;
      parts++;
      value = 0;
      digits = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39) return false;
    if (digits > 0 && value == 0) return false; // leading zero
    value = value * 10 + (c - 0x30);
    digits++;
    if (digits > 3) return false;
  }
  return parts == 4;
}

function isIPv6(s: string): bool {
  if (s.length < 2 || s.length > 39) return false;
  let groups = 0;
  let run = 0;
  let doubleColon = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x3a) {
      if (i + 1 < s.length && s.charCodeAt(i + 1) == 0x3a) {
        if (doubleColon) return false;
        doubleColon = true;
        if (run > 0) groups++;
        run = 0;
        i++;
        continue;
      }
      if (run == 0) return false;
      groups++;
      run = 0;
      continue;
    }
    const hex = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
    if (!hex) return false;
    run++;
    if (run > 4) return false;
  }
  if (run > 0) groups++;
  else if (!s.endsWith("::")) return false;
  return doubleColon ? groups < 8 : groups == 8;
}
