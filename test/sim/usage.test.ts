// Prompt cache hits in `usage`, as vLLM (--enable-prompt-tokens-details) and SGLang
// (--enable-cache-report) report them: flags off by default; on, `prompt_tokens_details:
// {"cached_tokens": N}` for a hit of N > 0 tokens at the request's first admission, else null
// (non-streaming) or, in a stream's usage chunk, absent (vLLM, SGLang's completions) or null
// (SGLang's chat).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startPod, type Pod, type PodOptions } from "./server.ts";
import { chatPromptTokens } from "./tokens.ts";

const MODEL = "/model/qwen";
const USAGE_KEYS = ["prompt_tokens", "total_tokens", "completion_tokens"];
const USAGE_KEYS_WITH_DETAILS = [...USAGE_KEYS, "prompt_tokens_details"];

function post(pod: Pod, path: string, body: unknown, requestId?: string): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (requestId) headers["x-request-id"] = requestId;
  return fetch(pod.url + path, { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
}

/** The JSON chunks of an event stream (without the final `[DONE]`, which is checked). */
async function chunks(res: Response): Promise<any[]> {
  assert.equal(res.status, 200);
  const events = (await res.text())
    .split("\n\n")
    .filter((e) => e.length > 0)
    .map((e) => {
      assert.ok(e.startsWith("data: "), e);
      return e.slice(6);
    });
  assert.equal(events.at(-1), "[DONE]");
  return events.slice(0, -1).map((e) => JSON.parse(e));
}

async function json(res: Response): Promise<any> {
  assert.equal(res.status, 200);
  return res.json();
}

/**
 * The engine's prefix-cache hit per request id, from its `scheduled` events: the first admission's
 * (`first`), and every resumption's after a preemption (`resumed`).
 */
function recordHits(pod: Pod): { first: Map<string, number>; resumed: Map<string, number[]> } {
  const first = new Map<string, number>();
  const resumed = new Map<string, number[]>();
  const engine = pod.engine;
  const step = engine.step.bind(engine);
  engine.step = (nowMs: number) => {
    const r = step(nowMs);
    for (const e of r?.events ?? []) {
      if (e.type !== "scheduled") continue;
      if (!e.resumed) first.set(e.id, e.cachedTokens);
      else resumed.set(e.id, [...(resumed.get(e.id) ?? []), e.cachedTokens]);
    }
    return r;
  };
  return { first, resumed };
}

/** Distinct prompts of `n` token ids (`seed` varies them). */
const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 1000 + seed * 7919 + i);
/** A conversation whose first KV block is its own (its system message starts with `text`). */
const chat = (text: string) => [
  { role: "system", content: text },
  { role: "user", content: "Go on." },
];
const LONG = (what: string) => `${what}: ${"a long shared instruction that fills several KV blocks ".repeat(12)}`;

async function withPod(opts: PodOptions, body: (pod: Pod, hits: ReturnType<typeof recordHits>) => Promise<void>): Promise<void> {
  const pod = await startPod({ model: MODEL, timeScale: 200, ...opts });
  const hits = recordHits(pod);
  try {
    await body(pod, hits);
  } finally {
    await pod.close();
  }
}

/** A stream's content chunks and its usage chunk; checks the sums in the usage chunk. */
function streamUsage(cs: any[], prompt: number): { content: any[]; usage: any } {
  const last = cs.at(-1);
  assert.deepEqual(last.choices, [], "the usage chunk has no choices");
  const content = cs.slice(0, -1);
  const generated = content.filter((c) => c.choices[0].delta?.content || c.choices[0].text).length;
  const u = last.usage;
  assert.equal(u.prompt_tokens, prompt);
  assert.equal(u.completion_tokens, generated);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  return { content, usage: u };
}

/** A reported hit: whole KV blocks of the prompt, never all of it (the last token is computed). */
function plausibleHit(cached: number, prompt: number): void {
  assert.ok(cached > 0 && cached < prompt && cached % 16 === 0, `cached_tokens ${cached} of ${prompt}`);
}

test("vLLM pod, prompt tokens details off (the default): no cached_tokens anywhere, though the prompt hits the cache", async () => {
  await withPod({}, async (pod, hits) => {
    const messages = chat(LONG("off"));
    const prompt = chatPromptTokens(messages).length;
    for (const rid of ["a1", "a2"]) {
      const body = await json(await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 3 }, rid));
      assert.deepEqual(Object.keys(body.usage), USAGE_KEYS_WITH_DETAILS);
      assert.equal(body.usage.prompt_tokens_details, null);
    }
    plausibleHit(hits.first.get("chatcmpl-a2")!, prompt);

    const res = await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 4, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }, "a3");
    const text = await res.clone().text();
    assert.ok(!text.includes("cached_tokens") && !text.includes("prompt_tokens_details"), "neither the chunks nor the usage chunk mention details");
    const { content, usage } = streamUsage(await chunks(res), prompt);
    plausibleHit(hits.first.get("chatcmpl-a3")!, prompt);
    assert.deepEqual(Object.keys(usage), USAGE_KEYS);
    for (const c of content) assert.deepEqual(Object.keys(c.usage), USAGE_KEYS);

    const tokens = ids(200, 1);
    await json(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 2 }));
    const cs = await chunks(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 3, stream: true, stream_options: { include_usage: true } }, "a4"));
    plausibleHit(hits.first.get("cmpl-a4")!, 200);
    const s = streamUsage(cs, 200);
    for (const c of s.content) assert.equal(c.usage, null, "completion chunks carry usage: null");
    assert.deepEqual(Object.keys(s.usage), USAGE_KEYS);
  });
});

test("vLLM pod with enablePromptTokensDetails: a repeated prompt reports the engine's hit, a fresh one none (null, or absent in a stream)", async () => {
  await withPod({ enablePromptTokensDetails: true }, async (pod, hits) => {
    // Chat, non-streaming.
    const messages = chat(LONG("chat"));
    const prompt = chatPromptTokens(messages).length;
    const fresh = await json(await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 3 }, "c1"));
    assert.equal(hits.first.get("chatcmpl-c1"), 0);
    assert.deepEqual(fresh.usage, { prompt_tokens: prompt, total_tokens: prompt + 3, completion_tokens: 3, prompt_tokens_details: null });
    const again = await json(await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 3 }, "c2"));
    const hit = hits.first.get("chatcmpl-c2")!;
    plausibleHit(hit, prompt);
    assert.deepEqual(again.usage, { prompt_tokens: prompt, total_tokens: prompt + 3, completion_tokens: 3, prompt_tokens_details: { cached_tokens: hit } });
    assert.deepEqual(Object.keys(again.usage), USAGE_KEYS_WITH_DETAILS);

    // Chat, streaming: a fresh prompt's usage chunk has no details; a repeated one's has the hit.
    const other = chat(LONG("stream"));
    const otherPrompt = chatPromptTokens(other).length;
    const streamed = { model: MODEL, messages: other, max_tokens: 5, stream: true, stream_options: { include_usage: true } };
    const s1 = streamUsage(await chunks(await post(pod, "/v1/chat/completions", streamed, "c3")), otherPrompt);
    assert.equal(hits.first.get("chatcmpl-c3"), 0);
    assert.deepEqual(Object.keys(s1.usage), USAGE_KEYS, "no prompt_tokens_details key without a hit");
    for (const c of s1.content) assert.ok(!("usage" in c), "chat chunks have no usage key");
    const s2 = streamUsage(await chunks(await post(pod, "/v1/chat/completions", streamed, "c4")), otherPrompt);
    const hit2 = hits.first.get("chatcmpl-c4")!;
    plausibleHit(hit2, otherPrompt);
    assert.deepEqual(Object.keys(s2.usage), USAGE_KEYS_WITH_DETAILS);
    assert.deepEqual(s2.usage.prompt_tokens_details, { cached_tokens: hit2 });
    assert.equal(s2.usage.completion_tokens, 5);

    // Chat with continuous usage: every chunk (the role chunk too) has the counts so far, no details.
    const s3 = streamUsage(await chunks(await post(pod, "/v1/chat/completions", { ...streamed, stream_options: { include_usage: true, continuous_usage_stats: true } }, "c5")), otherPrompt);
    assert.deepEqual(s3.content.map((c) => c.usage.completion_tokens), [0, 1, 2, 3, 4, 5]);
    for (const c of s3.content) assert.deepEqual(Object.keys(c.usage), USAGE_KEYS);
    assert.deepEqual(s3.usage.prompt_tokens_details, { cached_tokens: hits.first.get("chatcmpl-c5") });

    // Completions: non-streaming, then streaming with continuous usage.
    const tokens = ids(300, 2);
    const n1 = await json(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 2 }, "p1"));
    assert.equal(n1.usage.prompt_tokens_details, null);
    const n2 = await json(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 2 }, "p2"));
    assert.equal(hits.first.get("cmpl-p2"), 288);
    assert.deepEqual(n2.usage.prompt_tokens_details, { cached_tokens: 288 });
    const cs = await chunks(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 4, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }, "p3"));
    const s4 = streamUsage(cs, 300);
    s4.content.forEach((c, i) => assert.deepEqual(c.usage, { prompt_tokens: 300, total_tokens: 301 + i, completion_tokens: i + 1, prompt_tokens_details: null }));
    assert.deepEqual(s4.usage, { prompt_tokens: 300, total_tokens: 304, completion_tokens: 4, prompt_tokens_details: { cached_tokens: 288 } });
    const fresh2 = streamUsage(await chunks(await post(pod, "/v1/completions", { model: MODEL, prompt: ids(100, 3), max_tokens: 2, stream: true, stream_options: { include_usage: true } })), 100);
    assert.deepEqual(fresh2.usage, { prompt_tokens: 100, total_tokens: 102, completion_tokens: 2 });
  });
});

test("a request preempted and resumed reports its hit at first admission, not the resumption's", async () => {
  // 40 blocks = 640 tokens; four requests growing to 300 tokens each need 76 blocks.
  await withPod({ enablePromptTokensDetails: true, engine: { kvBlocks: 40, maxModelLen: 512 } }, async (pod, hits) => {
    const shared = ids(64, 4);
    await json(await post(pod, "/v1/completions", { model: MODEL, prompt: [...shared, 9], max_tokens: 1 }, "warm"));
    const bodies = await Promise.all(
      [0, 1, 2, 3].map(async (i) => json(await post(pod, "/v1/completions", { model: MODEL, prompt: [...shared, ...ids(36, 10 + i)], max_tokens: 200 }, `q${i}`))),
    );
    assert.ok(pod.engine.snapshot().preemptions > 0, "some request was preempted");
    let differs = false;
    bodies.forEach((b, i) => {
      const id = `cmpl-q${i}`;
      const first = hits.first.get(id)!;
      assert.equal(first, 64, "the warmed prefix");
      assert.deepEqual(b.usage.prompt_tokens_details, { cached_tokens: first });
      for (const h of hits.resumed.get(id) ?? []) differs ||= h !== first;
    });
    assert.ok(differs, "a resumption hit more of the cache (its own blocks) than the first admission");
  });
});

test("SGLang pod without the cache report (the default): usage null in chunks, prompt_tokens_details null (chat) or absent (completions usage chunk)", async () => {
  await withPod({ runtime: "sglang" }, async (pod, hits) => {
    const messages = chat(LONG("sglang off"));
    const prompt = chatPromptTokens(messages).length;
    await json(await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 2 }));
    const body = await json(await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 2 }, "s1"));
    plausibleHit(hits.first.get("chatcmpl-s1")!, prompt);
    assert.deepEqual(Object.keys(body.usage), USAGE_KEYS_WITH_DETAILS);
    assert.equal(body.usage.prompt_tokens_details, null);

    const s = streamUsage(await chunks(await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 3, stream: true, stream_options: { include_usage: true } }, "s2")), prompt);
    plausibleHit(hits.first.get("chatcmpl-s2")!, prompt);
    for (const c of s.content) assert.equal(c.usage, null, "SGLang writes usage: null in every chunk");
    assert.deepEqual(Object.keys(s.usage), USAGE_KEYS_WITH_DETAILS);
    assert.equal(s.usage.prompt_tokens_details, null);

    const tokens = ids(200, 5);
    await json(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 2 }));
    const sc = streamUsage(await chunks(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 3, stream: true, stream_options: { include_usage: true } }, "s3")), 200);
    plausibleHit(hits.first.get("cmpl-s3")!, 200);
    for (const c of sc.content) assert.equal(c.usage, null);
    assert.deepEqual(Object.keys(sc.usage), USAGE_KEYS, "the completions usage chunk drops nulls");
  });
});

test("SGLang pod with enableCacheReport: a repeated prompt reports the engine's hit, a fresh one none", async () => {
  await withPod({ runtime: "sglang", enableCacheReport: true }, async (pod, hits) => {
    const messages = chat(LONG("sglang on"));
    const prompt = chatPromptTokens(messages).length;
    const fresh = await json(await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 2 }, "t1"));
    assert.equal(fresh.usage.prompt_tokens_details, null);
    const again = await json(await post(pod, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 2 }, "t2"));
    const hit = hits.first.get("chatcmpl-t2")!;
    plausibleHit(hit, prompt);
    assert.deepEqual(again.usage, { prompt_tokens: prompt, total_tokens: prompt + 2, completion_tokens: 2, prompt_tokens_details: { cached_tokens: hit } });

    // Chat streams: continuous usage in the content chunks (not the role chunk), details only in the usage chunk.
    const other = chat(LONG("sglang stream"));
    const otherPrompt = chatPromptTokens(other).length;
    const streamed = { model: MODEL, messages: other, max_tokens: 4, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } };
    const s1 = streamUsage(await chunks(await post(pod, "/v1/chat/completions", streamed, "t3")), otherPrompt);
    assert.deepEqual(Object.keys(s1.usage), USAGE_KEYS_WITH_DETAILS);
    assert.equal(s1.usage.prompt_tokens_details, null, "SGLang's chat usage chunk keeps the null");
    const s2 = streamUsage(await chunks(await post(pod, "/v1/chat/completions", streamed, "t4")), otherPrompt);
    const hit2 = hits.first.get("chatcmpl-t4")!;
    plausibleHit(hit2, otherPrompt);
    assert.deepEqual(s2.usage.prompt_tokens_details, { cached_tokens: hit2 });
    assert.equal(s2.content[0].usage, null, "the role chunk");
    s2.content.slice(1).forEach((c, i) => assert.deepEqual(c.usage, { prompt_tokens: otherPrompt, total_tokens: otherPrompt + i + 1, completion_tokens: i + 1, prompt_tokens_details: null }));

    // Completions.
    const tokens = ids(300, 6);
    const c1 = streamUsage(await chunks(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 2, stream: true, stream_options: { include_usage: true } }, "t5")), 300);
    assert.deepEqual(c1.usage, { prompt_tokens: 300, total_tokens: 302, completion_tokens: 2 });
    const c2 = streamUsage(await chunks(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 2, stream: true, stream_options: { include_usage: true } }, "t6")), 300);
    assert.equal(hits.first.get("cmpl-t6"), 288);
    assert.deepEqual(c2.usage, { prompt_tokens: 300, total_tokens: 302, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 288 } });
    const n = await json(await post(pod, "/v1/completions", { model: MODEL, prompt: tokens, max_tokens: 2 }, "t7"));
    assert.deepEqual(n.usage.prompt_tokens_details, { cached_tokens: hits.first.get("cmpl-t7") });
  });
});

test("SGLang prefill/decode with enableCacheReport: both report the prefill pod's hit; without it, null", async () => {
  for (const report of [true, false]) {
    const prefill = await startPod({ model: MODEL, runtime: "sglang", timeScale: 100, pd: { role: "prefill", bootstrapPort: 0 }, enableCacheReport: report });
    const decode = await startPod({ model: MODEL, runtime: "sglang", timeScale: 100, pd: { role: "decode" }, enableCacheReport: report });
    const prefillHits = recordHits(prefill);
    const decodeHits = recordHits(decode);
    try {
      const messages = chat(LONG(`pd ${report}`));
      const prompt = chatPromptTokens(messages).length;
      const send = async (room: number, stream: boolean) => {
        const o = { model: MODEL, messages, max_tokens: 4, rid: `r${room}`, bootstrap_host: prefill.host, bootstrap_port: prefill.bootstrapPort, bootstrap_room: room, ...(stream ? { stream, stream_options: { include_usage: true } } : {}) };
        const [p, d] = await Promise.all([post(prefill, "/v1/chat/completions", o), post(decode, "/v1/chat/completions", o)]);
        if (!stream) return { prefill: (await json(p)).usage, decode: (await json(d)).usage };
        return { prefill: streamUsage(await chunks(p), prompt).usage, decode: streamUsage(await chunks(d), prompt).usage };
      };
      const first = await send(1, false);
      assert.equal(prefillHits.first.get("r1"), 0);
      assert.equal(first.prefill.prompt_tokens_details, null);
      assert.equal(first.decode.prompt_tokens_details, null);
      for (const [room, stream] of [[2, false], [3, true]] as const) {
        const u = await send(room, stream);
        const hit = prefillHits.first.get(`r${room}`)!;
        plausibleHit(hit, prompt);
        assert.equal(decodeHits.first.get(`r${room}`), hit, "the decode engine got the prefill's hit with the KV");
        const expected = report ? { cached_tokens: hit } : null;
        assert.deepEqual(u.prefill.prompt_tokens_details, expected);
        assert.deepEqual(u.decode.prompt_tokens_details, expected);
        assert.equal(u.decode.completion_tokens, 4);
        assert.equal(u.prefill.completion_tokens, 1);
      }
    } finally {
      await decode.close();
      await prefill.close();
    }
  }
});

test("each flag belongs to its server", async () => {
  await assert.rejects(startPod({ runtime: "sglang", enablePromptTokensDetails: true }), RangeError);
  await assert.rejects(startPod({ runtime: "vllm", enableCacheReport: true }), RangeError);
  await assert.rejects(startPod({ enableCacheReport: true }), RangeError);
});

