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
