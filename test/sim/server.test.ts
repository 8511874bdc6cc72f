import { test } from "node:test";
import assert from "node:assert/strict";
import { scanExposition, type Sample } from "../../sidecar/metrics/exposition.ts";
import { extract } from "../../sidecar/metrics/runtime.ts";
import { startPod, type Pod } from "./server.ts";
import { chatPromptTokens, detokenize, FILLER_IDS, tokenize } from "./tokens.ts";

const MODEL = "/model/qwen";

function post(pod: Pod, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(pod.url + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
}

/** The `data:` payloads of a server-sent event stream. */
async function sse(res: Response): Promise<string[]> {
  const text = await res.text();
  assert.ok(text.endsWith("\n\n"), "events end with a blank line");
  return text
    .split("\n\n")
    .filter((e) => e.length > 0)
    .map((e) => {
      assert.ok(e.startsWith("data: "), `event ${JSON.stringify(e.slice(0, 40))}`);
      return e.slice(6);
    });
}

async function scrape(pod: Pod): Promise<{ text: string; samples: Map<string, Sample[]> }> {
  const res = await fetch(pod.url + "/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const samples = new Map<string, Sample[]>();
  const r = scanExposition(text, (s) => {
    const list = samples.get(s.name) ?? [];
    list.push(s);
    samples.set(s.name, list);
  });
  assert.equal(r.invalid, 0, "every line parses");
  return { text, samples };
}

function value(samples: Map<string, Sample[]>, name: string): number {
  const list = samples.get(name);
  assert.ok(list && list.length > 0, `missing ${name}`);
  return list.reduce((a, s) => a + s.value, 0);
}

test("two vLLM pods: streamed chat, non-streamed completion, errors, models, metrics under load, kill", async () => {
  const a = await startPod({ model: MODEL, loraModules: ["travel-helper-v1=/models/Qwen-TravelHelper-Lora"], timeScale: 50, engine: { maxLoras: 2 } });
  const b = await startPod({ model: MODEL, timeScale: 50 });
  try {
    // Streaming chat with usage.
    const messages = [{ role: "user", content: "Plan a trip to Hangzhou." }];
    const res = await post(a, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 12, stream: true, stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    assert.equal(res.headers.get("server"), "uvicorn");
    const events = await sse(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const id = chunks[0].id;
    assert.match(id, /^chatcmpl-[0-9a-f]{32}$/);
    for (const c of chunks) {
      assert.equal(c.id, id);
      assert.equal(c.object, "chat.completion.chunk");
      assert.equal(c.model, MODEL);
      assert.equal(typeof c.created, "number");
    }
    assert.deepEqual(chunks[0].choices, [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
    const content = chunks.slice(1, -1);
    assert.equal(content.length, 12);
    assert.deepEqual(Object.keys(chunks[1]), ["id", "object", "created", "model", "choices"]);
    for (const c of content.slice(0, -1)) assert.equal(c.choices[0].finish_reason, null);
    assert.equal(content.at(-1).choices[0].finish_reason, "length");
    const text = content.map((c) => c.choices[0].delta.content).join("");
    const ids = tokenize(text);
    assert.equal(ids.length, 12);
    assert.equal(detokenize(ids), text);
    for (const t of ids) assert.ok(FILLER_IDS.includes(t), "filler words");
    const usage = chunks.at(-1);
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, { prompt_tokens: chatPromptTokens(messages).length, total_tokens: chatPromptTokens(messages).length + 12, completion_tokens: 12 });

    // Non-streaming completion on the other pod; the client's X-Request-Id names the request.
    const prompt = detokenize(Array.from({ length: 40 }, (_, i) => 1000 + i));
    const r2 = await post(b, "/v1/completions", { model: MODEL, prompt, max_tokens: 5 }, { "x-request-id": "abc123" });
    assert.equal(r2.status, 200);
    assert.equal(r2.headers.get("content-type"), "application/json");
    const body = await r2.json();
    assert.equal(body.id, "cmpl-abc123");
    assert.equal(body.object, "text_completion");
    assert.equal(body.choices[0].finish_reason, "length");
    assert.equal(body.choices[0].text.length, 20);
    assert.deepEqual(body.usage, { prompt_tokens: 40, total_tokens: 45, completion_tokens: 5, prompt_tokens_details: null });

    // Streamed completion without usage: one chunk per token, usage null.
    const r3 = await post(b, "/v1/completions", { model: MODEL, prompt, max_tokens: 3, stream: true });
    const c3 = (await sse(r3)).slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(c3.length, 3);
    assert.deepEqual(Object.keys(c3[0]), ["id", "object", "created", "model", "choices", "usage"]);
    assert.equal(c3[0].usage, null);
    assert.equal(c3[2].choices[0].finish_reason, "length");

    // A LoRA module is a model of its own; unknown models and bad bodies are refused as vLLM does.
    const lora = await post(a, "/v1/completions", { model: "travel-helper-v1", prompt: "hello", max_tokens: 2 });
    assert.equal(lora.status, 200);
    assert.equal((await lora.json()).model, "travel-helper-v1");
    const missing = await post(a, "/v1/completions", { model: "nope", prompt: "hello", max_tokens: 2 });
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { object: "error", message: "The model `nope` does not exist.", type: "NotFoundError", param: null, code: 404 });
    const malformed = await post(a, "/v1/chat/completions", "{not json");
    assert.equal(malformed.status, 400);
    assert.equal((await malformed.json()).type, "BadRequestError");
    const tooLong = await post(a, "/v1/completions", { model: MODEL, prompt: "x".repeat(4 * 8000), max_tokens: 500 });
    assert.equal(tooLong.status, 400);
    assert.match((await tooLong.json()).message, /maximum context length is 8192 tokens/);
    assert.equal((await fetch(a.url + "/nowhere")).status, 404);
    assert.equal((await fetch(a.url + "/v1/completions")).status, 405);

    const models = await (await fetch(a.url + "/v1/models")).json();
    assert.equal(models.object, "list");
    assert.deepEqual(
      models.data.map((m: { id: string; parent: string | null; root: string }) => [m.id, m.parent, m.root]),
      [
        [MODEL, null, MODEL],
        ["travel-helper-v1", MODEL, "/models/Qwen-TravelHelper-Lora"],
      ],
    );
    const health = await fetch(a.url + "/health");
    assert.equal(health.status, 200);
    assert.equal(await health.text(), "");

    // Metrics reflect load: start long requests, scrape while they run.
    const idle = await scrape(b);
    const idleM = extract("vllm", idle.samples);
    assert.ok(idleM.ok);
    assert.equal(idleM.metrics.running, 0);
    assert.equal(idleM.metrics.kvUsage, 0);
    assert.equal(idleM.metrics.kvBlockSize, 16);
    assert.equal(idleM.metrics.kvBlocks, b.engine.snapshot().kvBlocksTotal);
    const long = Array.from({ length: 6 }, (_, i) => {
      const ac = new AbortController();
      const p = fetch(b.url + "/v1/completions", {
        method: "POST",
        signal: ac.signal,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, prompt: detokenize(Array.from({ length: 3000 }, (_, j) => (i * 7919 + j) % 150000)), max_tokens: 4000, stream: true }),
      }).then((r) => r.body?.getReader().read());
      return { ac, p };
    });
    await Promise.all(long.map((x) => x.p));
    await new Promise((r) => setTimeout(r, 50));
    const busy = await scrape(b);
    const busyM = extract("vllm", busy.samples);
    assert.ok(busyM.ok);
    assert.equal(busyM.metrics.running + busyM.metrics.waiting, 6);
    assert.ok(busyM.metrics.kvUsage > 0.1, `kv ${busyM.metrics.kvUsage}`);
    assert.ok(value(busy.samples, "vllm:prompt_tokens_total") >= 40 + 40);
    assert.equal(value(busy.samples, "vllm:request_success_total"), 2);
    assert.equal(busy.samples.get("vllm:time_to_first_token_seconds_count")?.[0].value, busy.samples.get("vllm:time_to_first_token_seconds_bucket")!.find((s) => s.labels.le === "+Inf")!.value);
    assert.deepEqual(busy.samples.get("vllm:num_requests_running")![0].labels, { engine: "0", model_name: MODEL });
    assert.ok(busy.samples.has("vllm:gpu_cache_usage_perc"));
    assert.ok(busy.samples.has("vllm:prefix_cache_queries_total") && busy.samples.has("vllm:prefix_cache_hits_total"));
    assert.match(busy.text, /# TYPE vllm:e2e_request_latency_seconds histogram/);
    // Clients going away abort their requests.
    for (const x of long) x.ac.abort();
    for (let k = 0; k < 50 && b.engine.hasWork(); k++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(b.engine.hasWork(), false);

    // LoRA info on the pod with adapters, once its earlier requests (an adapter's among them) have
    // finished: on a busy machine they may still be running.
    for (let k = 0; k < 100 && a.engine.hasWork(); k++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(a.engine.hasWork(), false);
    const loraM = extract("vllm", (await scrape(a)).samples);
    assert.ok(loraM.ok);
    assert.equal(loraM.metrics.maxLora, 2);
    assert.deepEqual(loraM.metrics.loraRunning, []);

    // kill(): streams in flight break, new connections are refused.
    const doomed = await post(a, "/v1/completions", { model: MODEL, prompt, max_tokens: 4000, stream: true });
    const reader = doomed.body!.getReader();
    await reader.read();
    a.kill();
    await assert.rejects(
      async () => {
        for (;;) if ((await reader.read()).done) throw new Error("stream ended cleanly");
      },
      (e: Error) => e.message !== "stream ended cleanly",
    );
    await assert.rejects(fetch(a.url + "/health"));
    assert.equal(a.engine.hasWork(), false, "the killed pod's requests are gone");
  } finally {
    await a.close();
    await b.close();
  }
});

test("an SGLang pod serves SGLang's metric names; prefix hits show in its counters", async () => {
  const pod = await startPod({ runtime: "sglang", model: MODEL, timeScale: 100 });
  try {
    const prompt = detokenize(Array.from({ length: 640 }, (_, j) => j + 5));
    for (let k = 0; k < 2; k++) assert.equal((await post(pod, "/v1/completions", { model: MODEL, prompt, max_tokens: 2 })).status, 200);
    const { samples } = await scrape(pod);
    const m = extract("sglang", samples);
    assert.ok(m.ok);
    assert.equal(m.metrics.kvBlockSize, 16);
    assert.equal(m.metrics.kvBlocks, pod.engine.snapshot().kvBlocksTotal);
    assert.equal(value(samples, "sglang:cached_tokens_total"), 624);
    assert.equal(value(samples, "sglang:prompt_tokens_total"), 1280);
    assert.ok(!samples.has("vllm:num_requests_running"));
    assert.equal(samples.get("sglang:inter_token_latency_seconds_bucket")![0].labels.le, "0.002");
  } finally {
    await pod.close();
  }
});
