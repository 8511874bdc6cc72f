import { test } from "node:test";
import assert from "node:assert/strict";
import { scanExposition, type Sample } from "../../sidecar/metrics/exposition.ts";
import { extract } from "../../sidecar/metrics/runtime.ts";
import { startPod, type Pod, type PdPodOptions } from "./server.ts";
import { tokenize } from "./tokens.ts";

const MODEL = "/model/qwen";
const SCALE = 50;

function pdPod(role: "prefill" | "decode", pd: Partial<PdPodOptions> = {}, timeScale = SCALE): Promise<Pod> {
  return startPod({ model: MODEL, runtime: "sglang", timeScale, pd: { role, bootstrapPort: 0, ...pd } });
}

/** ~6 700 tokens: a prefill of about 1.6 simulated seconds. */
const LONG = "lorem ipsum dolor sit amet ".repeat(1000);

/** A request body with the bootstrap fields, the room written as an integer literal (up to 2^63 - 1). */
function body(fields: Record<string, unknown>, prefill: Pod | null, room: string | null): string {
  const o: Record<string, unknown> = { model: MODEL, ...fields };
  if (prefill) {
    o.bootstrap_host = prefill.host;
    o.bootstrap_port = prefill.bootstrapPort;
  }
  const json = JSON.stringify(o);
  return room === null ? json : `${json.slice(0, -1)},"bootstrap_room":${room}}`;
}

function post(pod: Pod, path: string, b: string): Promise<Response> {
  return fetch(pod.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: b });
}

async function sse(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((e) => e.length > 0)
    .map((e) => {
      assert.ok(e.startsWith("data: "), e);
      return e.slice(6);
    });
}

async function metrics(pod: Pod): Promise<Map<string, Sample[]>> {
  const text = await (await fetch(pod.url + "/metrics")).text();
  const samples = new Map<string, Sample[]>();
  const r = scanExposition(text, (s) => samples.set(s.name, [...(samples.get(s.name) ?? []), s]));
  assert.equal(r.invalid, 0);
  return samples;
}

const value = (m: Map<string, Sample[]>, name: string) => {
  const l = m.get(name);
  assert.ok(l && l.length > 0, `missing ${name}`);
  return l.reduce((a, s) => a + s.value, 0);
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (real time) until `cond` holds. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const ROOM = "9223372036854775807"; // 2^63 - 1: beyond a double's exact integers

test("P/D pods over HTTP: without a room SGLang refuses; the same room on a prefill and a decode pod completes", async () => {
  const prefill = await pdPod("prefill");
  const decode = await pdPod("decode");
  try {
    assert.equal(prefill.role, "prefill");
    assert.ok(prefill.bootstrapPort! > 0 && prefill.bootstrapPort !== prefill.port);
    assert.equal(decode.bootstrapPort, undefined, "only prefill pods serve a bootstrap endpoint");
    assert.equal((await fetch(`http://${prefill.host}:${prefill.bootstrapPort}/health`)).status, 200);

    // No room: 400 with SGLang's scheduler message (non-streaming), an error event (streaming).
    const bad = await post(decode, "/v1/completions", body({ prompt: "hello", max_tokens: 4, rid: "r-noroom" }, prefill, null));
    assert.equal(bad.status, 400);
    assert.deepEqual(await bad.json(), {
      object: "error",
      message: "Invalid request: Disaggregated request received without bootstrap room id. req.rid='r-noroom'",
      type: "BadRequestError",
      param: null,
      code: 400,
    });
    const badStream = await post(decode, "/v1/chat/completions", body({ messages: [{ role: "user", content: "hi" }], stream: true, rid: "r-noroom2" }, prefill, null));
    assert.equal(badStream.status, 200);
    const ev = await sse(badStream);
    assert.equal(ev.at(-1), "[DONE]");
    const err = JSON.parse(ev[0]).error;
    assert.equal(err.code, 400);
    assert.equal(err.type, "BAD_REQUEST");
    assert.match(err.message, /without bootstrap room id/);
    assert.equal((await post(prefill, "/v1/completions", body({ prompt: "x", max_tokens: 2 }, null, null))).status, 400, "a prefill pod refuses too");
    assert.equal(decode.engine.hasWork(), false);

    // Non-streaming completion, decode first (its registration waits for the prefill's request).
    const prompt = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    const b = body({ prompt, max_tokens: 8, rid: "r-1" }, prefill, ROOM);
    const dec = post(decode, "/v1/completions", b);
    await until(() => decode.engine.snapshot().pd!.transferQueue === 1, "preallocated, waiting for the KV");
    const pre = post(prefill, "/v1/completions", b);
    const [dr, pr] = await Promise.all([dec, pre]);
    assert.equal(dr.status, 200);
    assert.equal(pr.status, 200);
    const dj = await dr.json();
    const pj = await pr.json();
    assert.equal(dj.id, "r-1", "the rid is the request id");
    assert.equal(dj.usage.completion_tokens, 8);
    assert.equal(dj.choices[0].finish_reason, "length");
    // The prefill server answers with the one token it generated, which is the decode's first.
    assert.equal(pj.usage.completion_tokens, 1);
    assert.equal(pj.usage.prompt_tokens, tokenize(prompt).length);
    assert.equal(pj.choices[0].finish_reason, "length");
    assert.ok(dj.choices[0].text.startsWith(pj.choices[0].text));
    assert.equal(tokenize(dj.choices[0].text).length, 8);
    // The decode pod never computed the prompt; the prefill pod keeps it cached.
    assert.equal(decode.engine.snapshot().promptTokens, 0);
    assert.equal(prefill.engine.snapshot().promptTokens, tokenize(prompt).length);
    assert.ok(prefill.engine.cachedPrefixTokens(tokenize(prompt)) > 0);
    assert.equal(prefill.engine.snapshot().kvBlocksUsed, 0, "the prefill pod freed the KV after the transfer");

    // Streaming chat, prefill first; a second request with the same prompt hits the prefill's cache.
    const messages = [{ role: "user", content: prompt }];
    const b2 = body({ messages, max_tokens: 5, stream: true, stream_options: { include_usage: true }, rid: "r-2" }, prefill, "12345");
    const pre2 = post(prefill, "/v1/chat/completions", b2);
    await sleep(20);
    const dec2 = await post(decode, "/v1/chat/completions", b2);
    assert.equal(dec2.status, 200);
    assert.equal(dec2.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const events = await sse(dec2);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const content = chunks.filter((x) => x.choices.length > 0).map((x) => x.choices[0].delta.content).join("");
    assert.equal(tokenize(content).length, 5);
    assert.equal(chunks.at(-1).usage.completion_tokens, 5);
    const p2 = await sse(await pre2);
    assert.equal(p2.at(-1), "[DONE]");
    const pc = p2.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(pc.filter((x) => x.choices.length > 0 && x.choices[0].delta.content).length, 1, "one token from the prefill server");
    assert.ok(content.startsWith(pc.map((x) => x.choices[0]?.delta?.content ?? "").join("")));

    // Each pod logs the bootstrap fields it received, the room exactly as written.
    const logged = prefill.pdRequests().find((x) => x.rid === "r-1")!;
    assert.deepEqual(logged, { rid: "r-1", room: ROOM, host: prefill.host, port: prefill.bootstrapPort, atMs: logged.atMs });
    assert.deepEqual(
      decode.pdRequests().map((x) => [x.rid, x.room]),
      [["r-noroom", null], ["r-noroom2", null], ["r-1", ROOM], ["r-2", "12345"]],
    );

    // Role-specific /metrics, readable by the sidecar.
    const pm = await metrics(prefill);
    const dm = await metrics(decode);
    assert.equal(value(pm, "sglang:num_prefill_bootstrap_queue_reqs"), 0);
    assert.equal(value(pm, "sglang:num_prefill_inflight_queue_reqs"), 0);
    assert.equal(value(pm, "sglang:kv_transfer_latency_ms_count"), 2);
    assert.equal(value(dm, "sglang:num_decode_prealloc_queue_reqs"), 0);
    assert.equal(value(dm, "sglang:num_decode_transfer_queue_reqs"), 0);
    assert.equal(pm.has("sglang:num_decode_prealloc_queue_reqs"), false);
    assert.equal(dm.has("sglang:num_prefill_bootstrap_queue_reqs"), false);
    for (const m of [pm, dm]) assert.ok(extract("sglang", m).ok);
  } finally {
    await prefill.close();
    await decode.close();
  }
});

test("P/D pods over HTTP: /abort_request ends a waiting request with SGLang's error, a decoding one with finish_reason abort", async () => {
  const prefill = await pdPod("prefill");
  const decode = await pdPod("decode");
  try {
    // Decode waiting for a KV that never comes (no prefill request was sent).
    const waiting = post(decode, "/v1/chat/completions", body({ messages: [{ role: "user", content: "hello" }], max_tokens: 5, rid: "ab-1" }, prefill, "77"));
    await until(() => decode.engine.stateOf("ab-1") === "awaiting_kv", "ab-1 to wait");
    const a = await post(decode, "/abort_request", JSON.stringify({ rid: "ab-1" }));
    assert.equal(a.status, 200);
    assert.equal(await a.text(), "");
    assert.equal(a.headers.get("content-type"), null);
    const w = await waiting;
    assert.equal(w.status, 500);
    assert.deepEqual(await w.json(), {
      object: "error",
      message: "Decode transfer failed for request rank=0 decode_req.req.rid='ab-1' decode_req.req.bootstrap_room=77 with exception KVTransferError(bootstrap_room=77): Aborted by AbortReq.",
      type: "500",
      param: null,
      code: 500,
    });
    assert.equal(decode.engine.snapshot().kvBlocksUsed, 0);

    // Streaming: no headers were sent before the error, which comes as an event.
    const waitingS = post(decode, "/v1/completions", body({ prompt: "hello", max_tokens: 5, stream: true, rid: "ab-2" }, prefill, "78"));
    await until(() => decode.engine.stateOf("ab-2") === "awaiting_kv", "ab-2 to wait");
    await post(decode, "/abort_request", JSON.stringify({ rid: "ab-2" }));
    const ws = await waitingS;
    assert.equal(ws.status, 200);
    const wev = await sse(ws);
    assert.equal(wev.length, 2);
    assert.equal(JSON.parse(wev[0]).error.type, "INTERNAL_SERVER_ERROR");
    assert.match(JSON.parse(wev[0]).error.message, /Aborted by AbortReq\.$/);

    // A prefill request whose decode side never registers: aborted in the bootstrap queue.
    const pw = post(prefill, "/v1/completions", body({ prompt: "hello", max_tokens: 5, rid: "ab-3" }, prefill, "79"));
    await until(() => prefill.engine.stateOf("ab-3") === "bootstrap", "ab-3 to wait");
    await post(prefill, "/abort_request", JSON.stringify({ rid: "ab-3" }));
    const pwr = await pw;
    assert.equal(pwr.status, 500);
    assert.equal(
      (await pwr.json()).message,
      "Prefill bootstrap failed for request rank=0 req.rid='ab-3' req.bootstrap_room=79 with exception KVTransferError(bootstrap_room=79): Aborted by AbortReq.",
    );
    assert.equal(value(await metrics(prefill), "sglang:num_bootstrap_failed_reqs_total"), 1);
    assert.equal(value(await metrics(decode), "sglang:num_transfer_failed_reqs_total"), 2);
    assert.equal(value(await metrics(decode), "sglang:num_bootstrap_failed_reqs_total"), 0);

    // A prefill aborted after its decode side registered: the decode side is not told and keeps
    // waiting (the 300 s wait a router must cut short with its own /abort_request).
    const b5 = body({ prompt: LONG, max_tokens: 5, rid: "ab-5" }, prefill, "81");
    const d5 = post(decode, "/v1/completions", b5);
    const p5 = post(prefill, "/v1/completions", b5);
    await until(() => prefill.engine.stateOf("ab-5") === "running", "ab-5 to prefill");
    await post(prefill, "/abort_request", JSON.stringify({ rid: "ab-5" }));
    const p5r = await p5;
    assert.equal(p5r.status, 200);
    assert.equal((await p5r.json()).choices[0].finish_reason, "abort", "a running request ends gracefully");
    await sleep(40);
    assert.equal(decode.engine.stateOf("ab-5"), "awaiting_kv", "still waiting 2 simulated seconds later");
    await post(decode, "/abort_request", JSON.stringify({ rid: "ab-5" }));
    assert.equal((await d5).status, 500);
    assert.equal(prefill.engine.snapshot().kvBlocksUsed, 0);

    // Decoding already: a graceful abort.
    const b = body({ prompt: "count to a thousand", max_tokens: 3000, rid: "ab-4" }, prefill, "80");
    const [dl] = await Promise.all([post(decode, "/v1/completions", b), (async () => {
      const pr = await post(prefill, "/v1/completions", b);
      assert.equal(pr.status, 200);
      await sleep(40);
      assert.equal(decode.engine.stateOf("ab-4"), "running");
      await post(decode, "/abort_request", JSON.stringify({ rid: "ab-4" }));
    })()]);
    assert.equal(dl.status, 200);
    const dj = await dl.json();
    assert.equal(dj.choices[0].finish_reason, "abort");
    assert.ok(dj.usage.completion_tokens > 1 && dj.usage.completion_tokens < 3000);
    assert.equal(decode.engine.hasWork(), false);

    // Unknown rids are ignored.
    assert.equal((await post(decode, "/abort_request", JSON.stringify({ rid: "nope" }))).status, 200);
  } finally {
    await prefill.close();
    await decode.close();
  }
});

test("P/D pods over HTTP: the decode side's wait and the prefill side's bootstrap time out as SGLang's do", async () => {
  const prefill = await pdPod("prefill", { bootstrapTimeoutMs: 3000 });
  const decode = await pdPod("decode", { waitingTimeoutMs: 2000 });
  try {
    const t0 = decode.now();
    const r = await post(decode, "/v1/completions", body({ prompt: "hello", max_tokens: 5, rid: "to-1" }, prefill, "5"));
    const waited = decode.now() - t0;
    assert.equal(r.status, 500);
    assert.equal(
      (await r.json()).message,
      "Decode transfer failed for request rank=0 decode_req.req.rid='to-1' decode_req.req.bootstrap_room=5 with exception KVTransferError(bootstrap_room=5): Request 5 timed out after 2.0s in KVPoll.WaitingForInput",
    );
    // At least the wait; the ceiling only tells it from SGLang's 300 s default (simulated time runs
    // ahead with the wall clock when the machine stalls the event loop).
    assert.ok(waited >= 2000 && waited < 60_000, `waited ${waited} simulated ms`);

    const p0 = prefill.now();
    const pr = await post(prefill, "/v1/completions", body({ prompt: "hello", max_tokens: 5, rid: "to-2" }, prefill, "6"));
    assert.equal(pr.status, 500);
    assert.match((await pr.json()).message, /^Prefill bootstrap failed .* Request 6 timed out after 3\.0s in KVPoll\.Bootstrapping$/);
    assert.ok(prefill.now() - p0 >= 3000);
    assert.equal(prefill.engine.hasWork(), false);
  } finally {
    await prefill.close();
    await decode.close();
  }
});

test("P/D pods over HTTP: a killed prefill pod resets its connections and the decode side's wait fails within its heartbeats", async () => {
  const prefill = await pdPod("prefill", {}, 10);
  const decode = await pdPod("decode", {}, 10);
  try {
    // A long prompt so that the prefill is still computing when it dies.
    const b = body({ prompt: LONG, max_tokens: 20, rid: "k-1" }, prefill, "42");
    const dec = post(decode, "/v1/completions", b).catch((e: Error) => e);
    const pre = post(prefill, "/v1/completions", b).then(
      (r) => r.status,
      (e: Error) => e,
    );
    await until(() => prefill.engine.stateOf("k-1") === "running", "the prefill to run");
    const killedAt = decode.now();
    prefill.kill();
    assert.ok((await pre) instanceof Error, "the prefill's client sees its connection reset");
    await assert.rejects(fetch(`http://${prefill.host}:${prefill.bootstrapPort}/health`), "the bootstrap endpoint is gone too");
    const d = await dec;
    const failedAfter = decode.now() - killedAt;
    assert.ok(!(d instanceof Error));
    assert.equal(d.status, 500);
    assert.equal(
      (await d.json()).message,
      `Decode transfer failed for request rank=0 decode_req.req.rid='k-1' decode_req.req.bootstrap_room=42 with exception KVTransferError(bootstrap_room=42): Losing connection with prefill instance (bootstrap_addr: ${prefill.host}:${prefill.bootstrapPort})`,
    );
    // Two missed heartbeats, 5 simulated seconds apart: well before the 300 s wait.
    assert.ok(failedAfter < 16_000, `failed ${failedAfter} simulated ms after the kill`);
    assert.equal(decode.engine.snapshot().kvBlocksUsed, 0);
  } finally {
    await prefill.close();
    await decode.close();
  }
});

test("P/D pods over HTTP: a decode pod that goes away makes the prefill's transfer fail", async () => {
  const prefill = await pdPod("prefill", {}, 10);
  const decode = await pdPod("decode", {}, 10);
  try {
    const b = body({ prompt: LONG, max_tokens: 20, rid: "g-1" }, prefill, "43");
    const dec = post(decode, "/v1/completions", b).catch((e: Error) => e);
    await until(() => decode.engine.stateOf("g-1") === "awaiting_kv", "the decode to wait");
    const pre = post(prefill, "/v1/completions", b);
    await until(() => prefill.engine.stateOf("g-1") === "running", "the prefill to run");
    decode.kill();
    assert.ok((await dec) instanceof Error, "the decode's client sees its connection reset");
    const p = await pre;
    assert.equal(p.status, 500);
    assert.match((await p.json()).message, /^Prefill transfer failed for request rank=0 req\.rid='g-1' req\.bootstrap_room=43 with exception KVTransferError\(bootstrap_room=43\): Failed to send kv chunk of 43 to /);
    assert.equal(prefill.engine.snapshot().kvBlocksUsed, 0);
    assert.equal(value(await metrics(prefill), "sglang:num_transfer_failed_reqs_total"), 1);
  } finally {
    await prefill.close();
    await decode.close();
  }
});

test("P/D pods: options are checked", async () => {
  await assert.rejects(startPod({ runtime: "vllm", pd: { role: "prefill", bootstrapPort: 0 } }), RangeError);
  const p = await pdPod("prefill");
  try {
    await assert.rejects(startPod({ runtime: "sglang", pd: { role: "prefill", bootstrapPort: p.bootstrapPort } }), /EADDRINUSE/);
  } finally {
    await p.close();
  }
});
