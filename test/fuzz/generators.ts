// Input generators for fuzzing the filter: plausible OpenAI bodies and state documents, and
// mutations of them that break them in the ways real traffic and real bugs do. Seeded, so a
// failure reproduces from the seed printed with it.

export class Prng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }

  // mulberry32
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}

const WORDS = ["hi", "zork", "mailbox", "the", "model", "cache", "qwen", "é", "日本", "😀", "\n", "\"", "\\", "\t", "{", "}", "[", "]", ":", ","];

export function text(r: Prng, maxWords: number): string {
  const n = r.int(maxWords + 1);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(r.pick(WORDS));
  return parts.join(r.chance(0.8) ? " " : "");
}

export function randomJsonValue(r: Prng, depth: number): unknown {
  const k = r.int(depth > 4 ? 4 : 7);
  switch (k) {
    case 0: return null;
    case 1: return r.chance(0.5);
    case 2: return r.chance(0.5) ? r.int(1e6) - 5e5 : (r.next() - 0.5) * 1e10;
    case 3: return text(r, 6);
    case 4: return text(r, 3);
    case 5: {
      const a: unknown[] = [];
      for (let i = r.int(4); i > 0; i--) a.push(randomJsonValue(r, depth + 1));
      return a;
    }
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(4); i > 0; i--) o[text(r, 2) || "k"] = randomJsonValue(r, depth + 1);
      return o;
    }
  }
}

const MODELS = ["/model/qwen", "travel", "unknown-model", "", "a\"b", "/model/qwen\u0000", "x".repeat(300)];

// A body of one of the OpenAI shapes, sometimes with odd but valid members.
export function openaiBody(r: Prng): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (!r.chance(0.05)) body.model = r.chance(0.9) ? r.pick(MODELS) : randomJsonValue(r, 3);
  const shape = r.int(5);
  if (shape === 0) {
    const messages: unknown[] = [];
    for (let i = r.int(6); i >= 0; i--) {
      const content = r.chance(0.7)
        ? text(r, 40)
        : [{ type: "text", text: text(r, 10) }, { type: "image_url", image_url: { url: "data:image/png;base64," + text(r, 3) } }, randomJsonValue(r, 2)];
      messages.push(r.chance(0.9) ? { role: r.pick(["system", "user", "assistant", "tool"]), content } : randomJsonValue(r, 2));
    }
    body.messages = messages;
  } else if (shape === 1) {
    body.prompt = r.chance(0.6) ? text(r, 60) : r.chance(0.5) ? [text(r, 10), text(r, 10)] : [1, 2, 3, r.int(50000)];
  } else if (shape === 2) {
    body.input = r.chance(0.5) ? text(r, 20) : [{ role: "user", content: [{ type: "input_text", text: text(r, 10) }] }, text(r, 3)];
    if (r.chance(0.5)) body.instructions = text(r, 10);
  } else if (shape === 3) {
    body.input = [text(r, 5), text(r, 5)];
  }
  if (r.chance(0.3)) body.stream = r.chance(0.5) ? r.chance(0.5) : randomJsonValue(r, 3);
  if (r.chance(0.2)) body.tools = [{ type: "function", function: { name: "f", parameters: randomJsonValue(r, 1) } }];
  if (r.chance(0.2)) body.cache_salt = text(r, 2);
  if (r.chance(0.3)) body[text(r, 1) || "extra"] = randomJsonValue(r, 1);
  return body;
}

// Breaks a byte string: flips, truncations, insertions, duplications, deep nesting.
export function mutate(r: Prng, input: Uint8Array): Uint8Array {
  let b = Buffer.from(input);
  const rounds = 1 + r.int(4);
  for (let k = 0; k < rounds; k++) {
    const op = r.int(9);
    const at = b.length > 0 ? r.int(b.length) : 0;
    if (op === 0 && b.length > 0) b[at] = r.int(256);
    else if (op === 1) b = b.subarray(0, at);
    else if (op === 2) b = Buffer.concat([b.subarray(0, at), Buffer.from(r.pick(["\"", "\\", "{", "[", "]", "}", ",", ":", "\u0000", "\\u", "\\ud800", "1e999999", "-", "nul", "\xff\xfe"]), "latin1"), b.subarray(at)]);
    else if (op === 3) b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + r.int(64)), b.subarray(at)]);
    else if (op === 4) b = Buffer.concat([b.subarray(0, at), Buffer.from("[".repeat(1 + r.int(3000))), b.subarray(at)]);
    else if (op === 5 && b.length > 1) b = Buffer.concat([b.subarray(at), b.subarray(0, at)]);
    else if (op === 6) b = Buffer.concat([b, Buffer.from(r.pick([" ", "x", "{}", "\n\n", "]"]))]);
    else if (op === 7) b = Buffer.from(b.toString("latin1").replace(/"model"/, r.pick(["\"model\"", "\"mode\"", "\"model\":1,\"model\"", "\"\\u006dodel\""])), "latin1");
    else b = Buffer.concat([b.subarray(0, at), Buffer.alloc(r.int(8), r.int(256)), b.subarray(at)]);
  }
  return new Uint8Array(b);
}

export interface EndpointSpec {
  pod: string;
  address: string;
  waiting?: number;
  running?: number;
  kv_usage?: number;
  score?: number;
  ready?: boolean;
  metrics_age_ms?: number;
  lora_running?: string[];
  lora_waiting?: string[];
  max_lora?: number;
}

export function endpoints(n: number, base = 10): EndpointSpec[] {
  const out: EndpointSpec[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      pod: `qwen-${i}`,
      address: `10.${base}.${Math.floor(i / 250)}.${(i % 250) + 1}:8000`,
      ready: true, metrics_age_ms: 20, waiting: 0, running: 2, kv_usage: 0.1, score: 0.8,
      lora_running: [], lora_waiting: [], max_lora: 2,
    });
  }
  return out;
}

export function stateDocument(opts: {
  version?: number; generatedAtMs: number; pool?: string; strategy?: string; endpoints: EndpointSpec[];
  models?: { name: string; criticality?: string; targets?: { name: string; weight: number }[] }[];
}): Record<string, unknown> {
  const pool = opts.pool ?? "default/vllm-qwen-pool";
  return {
    version: opts.version ?? 1,
    generated_at_ms: opts.generatedAtMs,
    pools: [{ name: pool, strategy: opts.strategy ?? "DEFAULT", runtime: "vllm", endpoints: opts.endpoints }],
    models: (opts.models ?? [{ name: "/model/qwen", criticality: "Critical", targets: [{ name: "/model/qwen", weight: 100 }] }])
      .map((m) => ({ pool, ...m })),
  };
}

// A random, mostly plausible state document.
export function randomState(r: Prng, generatedAtMs: number): Record<string, unknown> {
  const eps = endpoints(r.int(12), r.int(200));
  for (const e of eps) {
    e.waiting = r.chance(0.1) ? -1 : r.int(20);
    e.running = r.int(60);
    e.kv_usage = r.chance(0.1) ? r.next() * 3 - 1 : r.next();
    e.score = r.next();
    e.ready = r.chance(0.85);
    e.metrics_age_ms = r.int(3000);
    if (r.chance(0.2)) e.lora_running = [text(r, 1)];
  }
  return stateDocument({
    version: r.int(1000), generatedAtMs, strategy: r.pick(["DEFAULT", "PREFIX_CACHE", "ODD"]), endpoints: eps,
    models: [
      { name: "/model/qwen", criticality: r.pick(["Critical", "Standard", "Sheddable", "Weird"]) },
      { name: "travel", targets: [{ name: "travel-helper-v1", weight: r.int(100) }, { name: "travel-helper-v2", weight: r.int(100) }] },
    ],
  });
}

// ---------------- answers: what model servers send back ----------------
//
// vLLM- and SGLang-shaped OpenAI answers (chat and completions, streamed as server-sent events or
// as one JSON body), with their usage where the server reports it, in varied field order and
// whitespace, and mutations of them. Each valid answer knows the usage it reports last and where
// that usage's key starts, so a test knows whether it lies within the bytes the filter keeps.

export interface AnswerUsage {
  prompt: number;
  completion: number;
  cached: number; // prompt_tokens_details.cached_tokens, 0 when absent or null
}

export interface Answer {
  kind: string;
  streaming: boolean;
  body: Uint8Array;
  // The usage reported last, or null when the answer reports none.
  usage: AnswerUsage | null;
  // Byte offset of that usage's `"usage"` key in body, -1 without usage.
  usageAt: number;
}

// Words of answer text: plain, multi-byte, characters JSON escapes, and text that looks like a
// usage object or an SSE line (all of it ends up escaped inside a JSON string).
const ANSWER_WORDS = [
  "the", "cache", "model", "tok", "é", "日本語", "😀", "\n", "\r\n", "\t", "\"", "\\", "\u0000", "\u2028", "{", "}", "[", "]",
  "\"usage\"", "\"usage\": {\"prompt_tokens\": 5}", "\\\"usage\\\":{", "usage", "{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}",
  "data: [DONE]", "data: {\"usage\":null}\n\n", "prompt_tokens", "\\u0022usage\\u0022",
];

function answerText(r: Prng, maxWords: number): string {
  const n = r.int(maxWords + 1);
  let s = "";
  for (let i = 0; i < n; i++) s += (i > 0 && r.chance(0.7) ? " " : "") + r.pick(ANSWER_WORDS);
  return s;
}

// A few kilobytes of varied text, repeated to fill large contents quickly.
let fillerPool: string | null = null;
function filler(r: Prng, chars: number): string {
  if (fillerPool === null) {
    const p = new Prng(7);
    let s = "";
    while (s.length < 64 * 1024) s += answerText(p, 12) + " ";
    fillerPool = s;
  }
  let out = "";
  while (out.length < chars) {
    const at = r.int(fillerPool.length - 1024);
    out += fillerPool.slice(at, at + Math.min(chars - out.length, 1024 + r.int(16 * 1024)));
  }
  return out.slice(0, chars);
}

// A JSON writer with chosen whitespace that notes where a top-level "usage" key with an object
// value starts (in UTF-16 units of its output).
class JsonWriter {
  out = "";
  usageAt = -1;

  constructor(private readonly space: () => string) {}

  value(v: unknown, depth: number): void {
    if (v === null || typeof v !== "object") {
      this.out += JSON.stringify(v);
      return;
    }
    if (Array.isArray(v)) {
      this.out += "[";
      v.forEach((x, i) => {
        if (i > 0) this.out += "," + this.space();
        this.out += this.space();
        this.value(x, depth + 1);
      });
      this.out += this.space() + "]";
      return;
    }
    this.out += "{";
    let first = true;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (!first) this.out += this.space() + ",";
      first = false;
      this.out += this.space();
      if (depth === 0 && k === "usage" && x !== null && typeof x === "object") this.usageAt = this.out.length;
      this.out += JSON.stringify(k) + this.space() + ":" + this.space();
      this.value(x, depth + 1);
    }
    this.out += this.space() + "}";
  }
}

// Whitespace between JSON tokens: none (vLLM, pydantic), Python's ", " and ": " style, or any
// (a JSON body may be pretty-printed; an SSE data line has no raw newlines).
function spacing(r: Prng, newlines: boolean): () => string {
  const style = r.int(newlines ? 4 : 3);
  if (style === 0) return () => "";
  if (style === 1) return () => (r.chance(0.5) ? " " : "");
  if (style === 2) return () => r.pick(["", "", " ", "  ", "\t"]);
  return () => r.pick(["", " ", "\n", "\n  ", "\r\n", "\n    ", "\t"]);
}

function shuffled<T>(r: Prng, items: T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

// An object from entries, in a random order when `shuffle`.
function obj(r: Prng, entries: [string, unknown][], shuffle: boolean): Record<string, unknown> {
  return Object.fromEntries(shuffle ? shuffled(r, entries) : entries);
}

function randomUsage(r: Prng): AnswerUsage & { detailsShape: number } {
  const big = r.chance(0.02);
  const prompt = big ? r.int(1e12) : r.int(r.chance(0.5) ? 2000 : 200_000);
  const completion = big ? r.int(1e12) : r.int(r.chance(0.5) ? 300 : 40_000);
  // 0: no details; 1: details null; 2: cached_tokens; 3: cached_tokens null; 4: cached and audio tokens.
  const detailsShape = r.int(5);
  const cached = detailsShape === 2 || detailsShape === 4 ? (r.chance(0.2) ? 0 : r.int(prompt + 1)) : 0;
  return { prompt, completion, cached, detailsShape };
}

function usageObject(r: Prng, u: AnswerUsage & { detailsShape: number }, server: "vllm" | "sglang", shuffle: boolean): Record<string, unknown> {
  const entries: [string, unknown][] = [["prompt_tokens", u.prompt], ["total_tokens", u.prompt + u.completion], ["completion_tokens", u.completion]];
  if (u.detailsShape === 1) entries.push(["prompt_tokens_details", null]);
  else if (u.detailsShape === 2) entries.push(["prompt_tokens_details", { cached_tokens: u.cached }]);
  else if (u.detailsShape === 3) entries.push(["prompt_tokens_details", { cached_tokens: null }]);
  else if (u.detailsShape === 4) entries.push(["prompt_tokens_details", obj(r, [["audio_tokens", 0], ["cached_tokens", u.cached]], shuffle)]);
  if (server === "sglang") entries.push(["reasoning_tokens", r.int(50)]);
  if (r.chance(0.1)) entries.push(["completion_tokens_details", { reasoning_tokens: r.int(100), accepted_prediction_tokens: 0 }]);
  return obj(r, entries, shuffle);
}

function toAnswer(kind: string, streaming: boolean, text: string, usage: AnswerUsage | null, usageAtChar: number): Answer {
  const body = new Uint8Array(Buffer.from(text, "utf8"));
  const usageAt = usage && usageAtChar >= 0 ? Buffer.byteLength(text.slice(0, usageAtChar), "utf8") : -1;
  return { kind, streaming, body, usage: usageAt >= 0 ? usage : null, usageAt };
}

// A valid answer of about `size` bytes (at least what its shape needs).
export function randomAnswer(r: Prng, size: number): Answer {
  const server = r.chance(0.6) ? "vllm" as const : "sglang" as const;
  const api = r.chance(0.75) ? "chat" as const : "completions" as const;
  return r.chance(0.6) ? streamedAnswer(r, server, api, size) : jsonAnswer(r, server, api, size);
}

function streamedAnswer(r: Prng, server: "vllm" | "sglang", api: "chat" | "completions", size: number): Answer {
  // usage: "final" (include_usage: a last chunk with empty choices), "continuous" (every chunk,
  // vLLM's continuous_usage_stats, with or without the final chunk), or "none".
  const usageMode = r.pick(["final", "final", "final", "continuous", "none"] as const);
  const finalChunk = usageMode === "final" || (usageMode === "continuous" && r.chance(0.6));
  const u = randomUsage(r);
  const shuffle = r.chance(0.3);
  const space = spacing(r, false);
  const prefix = r.pick(["data: ", "data: ", "data:"]);
  const eol = r.chance(0.85) ? "\n" : "\r\n";
  const id = `${api === "chat" ? "chatcmpl" : "cmpl"}-${r.int(1e9).toString(16)}`;
  const object = api === "chat" ? "chat.completion.chunk" : "text_completion";
  const created = 1733450000 + r.int(1e6);
  const write = (fields: [string, unknown][]): { text: string; usageAt: number } => {
    const w = new JsonWriter(space);
    w.value(obj(r, fields, shuffle), 0);
    return { text: `${prefix}${w.out}${eol}${eol}`, usageAt: w.usageAt >= 0 ? prefix.length + w.usageAt : -1 };
  };
  const choice = (i: number, last: boolean): Record<string, unknown> => {
    const content = i === 0 && api === "chat" ? "" : r.chance(0.9) ? answerText(r, 4) : filler(r, 200);
    const finish = last ? r.pick(["stop", "length"]) : null;
    if (api === "chat") {
      const delta: [string, unknown][] = i === 0 ? [["role", "assistant"], ["content", content]] : [["content", content]];
      if (server === "sglang") delta.push(["reasoning_content", null], ["tool_calls", null]);
      const entries: [string, unknown][] = [["index", 0], ["delta", obj(r, delta, shuffle)], ["logprobs", null], ["finish_reason", finish]];
      entries.push(server === "vllm" ? ["stop_reason", null] : ["matched_stop", last ? 151645 : null]);
      return obj(r, entries, shuffle);
    }
    return obj(r, [["index", 0], ["text", content], ["logprobs", null], ["finish_reason", finish], ["stop_reason", null]], shuffle);
  };
  let text = "";
  let usageAt = -1;
  const tail = finalChunk ? 400 : 0;
  // Past the first few dozen, middle events repeat earlier ones (long answers stay quick to make).
  const made: { text: string; usageAt: number }[] = [];
  for (let i = 0; ; i++) {
    const last = text.length + 200 + tail >= size;
    let e: { text: string; usageAt: number };
    if (!last && made.length >= 48) {
      e = r.pick(made);
    } else {
      const fields: [string, unknown][] = [["id", id], ["object", object], ["created", created], ["model", "/model/qwen"], ["choices", [choice(i, last)]]];
      if (usageMode === "continuous") {
        const sofar = last ? u.completion : Math.min(u.completion, i);
        fields.push(["usage", { prompt_tokens: u.prompt, total_tokens: u.prompt + sofar, completion_tokens: sofar }]);
      } else if (server === "sglang") {
        fields.push(["usage", null]);
      }
      e = write(fields);
      if (i > 0 && !last) made.push(e);
    }
    if (e.usageAt >= 0) usageAt = text.length + e.usageAt;
    text += e.text;
    if (r.chance(0.01)) text += `: keep-alive${eol}${eol}`;
    if (last) break;
  }
  let usage: AnswerUsage | null = null;
  if (usageMode === "continuous") usage = { prompt: u.prompt, completion: u.completion, cached: 0 };
  if (finalChunk) {
    const e = write([["id", id], ["object", object], ["created", created], ["model", "/model/qwen"], ["choices", []], ["usage", usageObject(r, u, server, shuffle)]]);
    usageAt = text.length + e.usageAt;
    text += e.text;
    usage = { prompt: u.prompt, completion: u.completion, cached: u.cached };
  }
  if (r.chance(0.9)) text += `${prefix}[DONE]${eol}${eol}`;
  return toAnswer(`${server}-${api}-stream-${usageMode === "continuous" && !finalChunk ? "continuous-only" : usageMode}`, true, text, usage, usageAt);
}

function jsonAnswer(r: Prng, server: "vllm" | "sglang", api: "chat" | "completions", size: number): Answer {
  const u = randomUsage(r);
  const withUsage = r.chance(0.9);
  const shuffle = r.chance(0.3);
  const space = spacing(r, true);
  const content = filler(r, Math.max(0, size - 600));
  const finish = r.pick(["stop", "length"]);
  let choice: Record<string, unknown>;
  if (api === "chat") {
    const message: [string, unknown][] = [["role", "assistant"], ["content", content], ["tool_calls", server === "vllm" ? [] : null]];
    if (server === "sglang") message.push(["reasoning_content", null]);
    const entries: [string, unknown][] = [["index", 0], ["message", obj(r, message, shuffle)], ["logprobs", null], ["finish_reason", finish]];
    entries.push(server === "vllm" ? ["stop_reason", null] : ["matched_stop", 151645]);
    choice = obj(r, entries, shuffle);
  } else {
    choice = obj(r, [["index", 0], ["text", content], ["logprobs", null], ["finish_reason", finish], ["stop_reason", null], ["prompt_logprobs", null]], shuffle);
  }
  const head: [string, unknown][] = [["id", `${api === "chat" ? "chatcmpl" : "cmpl"}-${r.int(1e9).toString(16)}`], ["object", api === "chat" ? "chat.completion" : "text_completion"],
    ["created", 1733450000 + r.int(1e6)], ["model", "/model/qwen"], ["choices", [choice]]];
  const usageEntry: [string, unknown] = ["usage", withUsage ? usageObject(r, u, server, shuffle) : null];
  // After the usage: what the servers put there, and now and then a long member (usage no longer
  // among the last bytes), or the usage first of all (varied field order).
  const after: [string, unknown][] = server === "vllm" ? [["prompt_logprobs", null], ["kv_transfer_params", null]] : [["metadata", { weight_version: "default" }]];
  if (r.chance(0.05)) after.push(["system_fingerprint", filler(r, 1000 + r.int(8000))]);
  const order = r.int(10);
  const entries = order === 0 ? [usageEntry, ...head, ...after] : order === 1 ? [...shuffled(r, [...head, usageEntry]), ...after] : [...head, usageEntry, ...after];
  const w = new JsonWriter(space);
  w.value(Object.fromEntries(entries), 0);
  const text = w.out + (r.chance(0.3) ? r.pick(["\n", "\r\n", " \n"]) : "");
  return toAnswer(`${server}-${api}-json${withUsage ? "" : "-no-usage"}`, false, text, withUsage ? { prompt: u.prompt, completion: u.completion, cached: u.cached } : null, w.usageAt);
}

// Breaks an answer the ways a bad server, a proxy or a bug would, most of it near the end (where
// the filter reads).
export function mutateAnswer(r: Prng, input: Uint8Array): Uint8Array {
  let b = Buffer.from(input);
  const rounds = 1 + r.int(4);
  for (let k = 0; k < rounds; k++) {
    const near = b.length > 0 ? (r.chance(0.7) ? Math.max(0, b.length - 1 - r.int(Math.min(b.length, 8192))) : r.int(b.length)) : 0;
    const op = r.int(14);
    const insert = (s: string | Buffer): void => {
      b = Buffer.concat([b.subarray(0, near), typeof s === "string" ? Buffer.from(s, "latin1") : s, b.subarray(near)]);
    };
    if (op === 0) b = b.subarray(0, near); // truncated
    else if (op === 1 && b.length > 0) for (let i = 1 + r.int(8); i > 0; i--) b[Math.min(b.length - 1, near + r.int(64))] = r.int(256); // flipped bytes
    else if (op === 2) {
      // Huge, negative, fractional and malformed numbers in the usage.
      const s = b.toString("latin1");
      const huge = r.pick(["99999999999999999999999999999", "18446744073709551616", "9223372036854775807", "1e999999", "-5", "1.5e3", "0x10", "NaN", "00012", "1".repeat(5000)]);
      b = Buffer.from(s.replace(/("(?:prompt|completion|cached)_tokens"\s*:\s*)\d+/g, (m, key: string) => (r.chance(0.5) ? key + huge : m)), "latin1");
    } else if (op === 3) insert(r.chance(0.5) ? "[".repeat(1 + r.int(100_000)) : "{\"a\":".repeat(1 + r.int(20_000))); // deep nesting
    else if (op === 4) insert(r.pick(["\"usage\":{\"prompt_tokens\":", "{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}", "\\\"usage\\\":{\\\"prompt_tokens\\\":3}", "\\\\\"usage\\\\\":{\"prompt_tokens\":4}",
      "\"usage\"", "\"usage\":null", "\"usage\" :\t{ \"prompt_tokens\" : 6 , \"prompt_tokens_details\":{\"cached_tokens\":7}}", "\"usage\":{\"prompt_tokens_details\":{\"prompt_tokens\":8}}"]));
    else if (op === 5) insert(Buffer.from(r.pick([[0xff], [0xfe, 0xff], [0xc0, 0x80], [0x80], [0xf0, 0x9f, 0x98], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]]))); // invalid UTF-8
    else if (op === 6) insert(Buffer.alloc(1 + r.int(64))); // NULs
    else if (op === 7) insert("\"usage\":{".repeat(1 + r.int(2000))); // many openings, none closed
    else if (op === 8) insert("\"usage\":{\"prompt_tokens\":1}".repeat(1 + r.int(500)));
    else if (op === 9) b = Buffer.from(b.toString("latin1").replace(/[}\]]/g, () => (r.chance(0.3) ? "" : "}")), "latin1"); // unbalanced
    else if (op === 10) insert(r.pick(["data: [DONE]\n\n", "\n\n", "data: ", "event: error\ndata: {\"error\":\"x\"}\n\n", "\r", "\\"]));
    else if (op === 11 && b.length > 1) b = Buffer.concat([b.subarray(near), b.subarray(0, near)]); // rotated
    else if (op === 12) b = Buffer.concat([b, b.subarray(near)]); // a repeated tail
    else insert(Buffer.alloc(1 + r.int(8), r.int(256)));
  }
  return new Uint8Array(b);
}

// Chunk lengths for sending `size` bytes: one piece, fixed sizes from 1 byte to 256 KB, random
// sizes, or cuts at chosen offsets (`hot`: where the usage key starts), never more than about
// maxChunks pieces (and zero-length pieces here and there).
export function chunking(r: Prng, size: number, hot: number[] = [], maxChunks = 2000): number[] {
  if (size === 0) return [];
  const floor = Math.max(1, Math.ceil(size / maxChunks));
  const mode = r.int(5);
  const out: number[] = [];
  if (mode === 0) {
    out.push(size);
  } else if (mode === 1 || mode === 2) {
    const span = Math.pow(2, r.next() * 18); // 1 byte .. 256 KB
    const len = Math.max(floor, Math.min(256 * 1024, Math.round(span)));
    for (let at = 0; at < size; at += len) out.push(Math.min(len, size - at));
  } else if (mode === 3) {
    const max = Math.max(floor * 2, Math.min(256 * 1024, Math.round(Math.pow(2, 1 + r.next() * 17))));
    for (let at = 0; at < size;) {
      const len = Math.min(size - at, floor + r.int(max));
      out.push(len);
      at += len;
    }
  } else {
    // Cuts around the hot spots, around the last 4 KB boundary, and a few random ones.
    const cuts = new Set<number>();
    for (const h of hot) if (h >= 0) for (let d = -3; d <= 12; d += 1 + r.int(4)) cuts.add(h + d);
    cuts.add(size - 4096 + r.int(8) - 4);
    for (let i = r.int(20); i > 0; i--) cuts.add(r.int(size));
    const sorted = [...cuts].filter((c) => c > 0 && c < size).sort((a, b) => a - b);
    let prev = 0;
    for (const c of sorted) {
      out.push(c - prev);
      prev = c;
    }
    out.push(size - prev);
  }
  // Empty data frames now and then.
  if (r.chance(0.1)) out.splice(r.int(out.length + 1), 0, 0);
  return out;
}
