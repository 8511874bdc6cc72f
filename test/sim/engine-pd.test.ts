import { test } from "node:test";
import assert from "node:assert/strict";
import { Engine, type EngineEvent } from "./engine.ts";
import { kvBytesPerToken, kvTransferBytes, kvTransferDoneMs, QWEN25_7B, RDMA_200G, TCP_25G } from "./cost-model.ts";

function prompt(len: number, seed: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push((seed * 7919 + i * 104729) % 150000);
  return out;
}

type Ev<T extends EngineEvent["type"]> = Extract<EngineEvent, { type: T }>;

/** Steps until idle; returns every event and the time reached. */
function drain(e: Engine, now: number): { events: EngineEvent[]; now: number; tokens: number[] } {
  const events: EngineEvent[] = [];
  const tokens: number[] = [];
  for (let r = e.step(now); r; r = e.step(now)) {
    events.push(...r.events);
    tokens.push(r.tokens);
    now += r.durationMs;
  }
  return { events, now, tokens };
}

test("prefill role: waits for the bootstrap, computes the prompt once, holds its KV until the transfer is done, keeps the prefix cached", () => {
  const e = new Engine({ role: "prefill", kvBlocks: 2000 });
  const p = prompt(1000, 1);
  e.submit({ id: "a", tokens: p, maxTokens: 500, awaitBootstrap: true }, 0);
  assert.equal(e.hasWork(), false, "nothing to compute before the decode side preallocated");
  assert.equal(e.step(0), null);
  assert.deepEqual(e.snapshot().pd, { role: "prefill", bootstrapQueue: 1, inflightQueue: 0, preallocQueue: 0, transferQueue: 0 });
  assert.equal(e.stateOf("a"), "bootstrap");

  assert.ok(e.bootstrapped("a", 5));
  assert.equal(e.bootstrapped("a", 5), false, "only once");
  const run = drain(e, 5);
  const first = run.events.filter((x) => x.type === "first_token") as Ev<"first_token">[];
  const pre = run.events.filter((x) => x.type === "prefilled") as Ev<"prefilled">[];
  assert.equal(first.length, 1);
  assert.equal(pre.length, 1);
  assert.equal(run.events.filter((x) => x.type === "finished").length, 0, "not finished before the transfer");
  assert.equal(pre[0].token, first[0].token);
  assert.equal(pre[0].atMs, first[0].atMs);
  assert.equal(pre[0].promptTokens, 1000);
  assert.equal(pre[0].cachedTokens, 0);
  assert.equal(pre[0].chunks.reduce((a, c) => a + c.tokens, 0), 1000, "every prompt token's KV is sent, once");
  assert.deepEqual(run.tokens, [1000], "one step, the whole prompt, nothing generated beyond the first token");

  // The KV is held: blocks in use, the request in the inflight queue.
  const held = e.snapshot();
  assert.equal(held.pd!.inflightQueue, 1);
  assert.equal(held.kvBlocksUsed, Math.ceil(1000 / 16));
  assert.equal(held.running, 0);
  assert.equal(e.stateOf("a"), "transferring");

  const fin = e.transferDone("a", run.now + 4)!;
  assert.equal(fin.type, "finished");
  assert.deepEqual(fin.outputTokens, [first[0].token], "the prefill server's answer is its one token");
  assert.equal(fin.atMs, run.now + 4);
  assert.equal(e.transferDone("a", run.now + 5), null);
  const after = e.snapshot();
  assert.equal(after.kvBlocksUsed, 0, "blocks freed");
  assert.equal(after.pd!.inflightQueue, 0);
  assert.equal(after.finished, 1);
  assert.equal(after.kvBlocksCached, Math.floor(1000 / 16), "full blocks stay in the prefix cache");
  assert.equal(e.cachedPrefixTokens(p), 992);

  // The next request with the same prompt hits the cache, and its first chunk still carries the
  // cached prefix (the decode side has none of it).
  e.submit({ id: "b", tokens: p, maxTokens: 10 }, run.now + 10);
  const run2 = drain(e, run.now + 10);
  const pre2 = run2.events.find((x) => x.type === "prefilled") as Ev<"prefilled">;
  assert.equal(pre2.cachedTokens, 992);
  assert.deepEqual(pre2.chunks.map((c) => c.tokens), [1000]);
  assert.deepEqual(run2.tokens, [8], "only the uncached tail is computed");
});

test("prefill role: a long prompt is computed and sent in chunks; the transfer overlaps the prefill", () => {
  const e = new Engine({ role: "prefill", maxBatchedTokens: 2048 });
  e.submit({ id: "long", tokens: prompt(5000, 2), maxTokens: 100 }, 0);
  const run = drain(e, 0);
  const pre = run.events.find((x) => x.type === "prefilled") as Ev<"prefilled">;
  assert.deepEqual(pre.chunks.map((c) => c.tokens), [2048, 2048, 904]);
  assert.ok(pre.chunks[0].atMs < pre.chunks[1].atMs && pre.chunks[1].atMs < pre.chunks[2].atMs);
  assert.equal(pre.chunks[2].atMs, pre.atMs);
  const bpt = kvBytesPerToken(QWEN25_7B);
  const overlapped = kvTransferDoneMs(pre.chunks, bpt, TCP_25G);
  const atEnd = kvTransferDoneMs([{ atMs: pre.atMs, tokens: 5000 }], bpt, TCP_25G);
  // Only the last chunk is on the critical path (the earlier ones left during the next chunk's compute).
  assert.ok(Math.abs(overlapped - (pre.atMs + ((904 * bpt) / TCP_25G.bandwidth) * 1000 + TCP_25G.setupMs)) < 1e-9, `${overlapped}`);
  assert.ok(overlapped < atEnd);
});

test("KV transfer cost: bytes from the model shape over the link's bandwidth, plus its setup latency", () => {
  // Qwen2.5-7B: 56 KiB per token; the seeds' 1560-token prompt is 89.5 MB.
  assert.equal(kvTransferBytes(QWEN25_7B, 1560), 1560 * 57344);
  const rdma = kvTransferDoneMs([{ atMs: 100, tokens: 1560 }], 57344, RDMA_200G) - 100;
  const tcp = kvTransferDoneMs([{ atMs: 100, tokens: 1560 }], 57344, TCP_25G) - 100;
  assert.ok(Math.abs(rdma - ((1560 * 57344) / 21.75e9) * 1000 - 1) < 1e-9);
  assert.ok(rdma > 4.5 && rdma < 5.5, `RDMA ${rdma} ms`);
  assert.ok(tcp > 30 && tcp < 35, `TCP ${tcp} ms`);
  // Chunks queue behind each other on the link.
  assert.equal(kvTransferDoneMs([{ atMs: 0, tokens: 1000 }, { atMs: 0, tokens: 1000 }], 1000, { name: "x", bandwidth: 1e6, setupMs: 0 }), 2000);
  assert.throws(() => kvTransferDoneMs([], 1, RDMA_200G), RangeError);
});

test("decode role: preallocates the prompt's blocks, waits for the KV, never recomputes the prompt, streams the prefill's token first", () => {
  const p = prompt(700, 3);
  const d = new Engine({ role: "decode", kvBlocks: 2000 });
  d.submit({ id: "r", tokens: p, maxTokens: 5 }, 0);
  assert.equal(d.hasWork(), false);
  assert.deepEqual(d.snapshot().pd, { role: "decode", bootstrapQueue: 0, inflightQueue: 0, preallocQueue: 1, transferQueue: 0 });
  assert.deepEqual(d.preallocate(1), ["r"]);
  assert.deepEqual(d.preallocate(1), []);
  const s = d.snapshot();
  assert.equal(s.kvBlocksUsed, Math.ceil(700 / 16), "the prompt's KV is allocated before it arrives");
  assert.equal(s.pd!.transferQueue, 1);
  assert.equal(s.prefixCachingEnabled, false, "no radix cache on the decode side by default");
  assert.equal(d.hasWork(), false, "nothing to do while the KV travels");

  // The prefill side of the same request produced this first token.
  const pf = new Engine({ role: "prefill" });
  pf.submit({ id: "r", tokens: p, maxTokens: 5 }, 0);
  const pre = drain(pf, 0).events.find((x) => x.type === "prefilled") as Ev<"prefilled">;

  assert.equal(d.kvArrived("x", 1, 50), false);
  assert.ok(d.kvArrived("r", pre.token, 300, 64));
  assert.equal(d.kvArrived("r", pre.token, 300), false);
  assert.equal(d.snapshot().waiting, 1, "arrived KV waits in the queue SGLang reports as num_queue_reqs");
  const run = drain(d, 300);
  const first = run.events.find((x) => x.type === "first_token") as Ev<"first_token">;
  assert.equal(first.atMs, 300, "first token delivered when the step that admits it starts");
  assert.equal(first.token, pre.token);
  assert.deepEqual(run.tokens, [1, 1, 1, 1], "one token per step: the prompt is not recomputed");
  const fin = run.events.find((x) => x.type === "finished") as Ev<"finished">;
  assert.equal(fin.outputTokens.length, 5);
  assert.equal(fin.outputTokens[0], pre.token);
  assert.equal(fin.cachedTokens, 64, "the prefill side's prefix-cache hit is reported");
  assert.equal(d.snapshot().kvBlocksUsed, 0);

  // The same request on one engine generates the same tokens.
  const u = new Engine({ kvBlocks: 2000 });
  u.submit({ id: "r", tokens: p, maxTokens: 5 }, 0);
  const uf = drain(u, 0).events.find((x) => x.type === "finished") as Ev<"finished">;
  assert.deepEqual(fin.outputTokens, uf.outputTokens);
});

test("decode role: a one-token request finishes when its KV arrives, with no forward pass", () => {
  const d = new Engine({ role: "decode" });
  d.submit({ id: "one", tokens: prompt(100, 4), maxTokens: 1 }, 0);
  d.preallocate(0);
  d.kvArrived("one", 42, 10);
  const r = d.step(10)!;
  assert.equal(r.durationMs, 0);
  assert.deepEqual(r.events.map((x) => x.type), ["scheduled", "first_token", "finished"]);
  assert.equal(d.step(10), null);
  assert.equal(d.snapshot().kvBlocksUsed, 0);
});

test("decode role: preallocation waits for memory, keeping a reserve per active request; aborts free every state", () => {
  // 100 blocks = 1600 tokens; 512 reserved per active request.
  const d = new Engine({ role: "decode", kvBlocks: 100, maxModelLen: 1600 });
  d.submit({ id: "a", tokens: prompt(600, 5), maxTokens: 10 }, 0);
  d.submit({ id: "b", tokens: prompt(600, 6), maxTokens: 10 }, 0);
  // a: 600 + 512 <= 1600; b: 600 + 512 > 1600 - 38*16 - 512.
  assert.deepEqual(d.preallocate(0), ["a"]);
  assert.equal(d.snapshot().pd!.preallocQueue, 1);
  assert.equal(d.stateOf("b"), "prealloc");
  d.kvArrived("a", 7, 5);
  const run = drain(d, 5);
  assert.equal((run.events.find((x) => x.type === "finished") as Ev<"finished">).id, "a");
  assert.deepEqual(d.preallocate(run.now), ["b"], "room again once a finished");

  assert.ok(d.abort("b"));
  assert.equal(d.snapshot().kvBlocksUsed, 0, "a preallocated request's blocks are freed on abort");
  d.submit({ id: "c", tokens: prompt(100, 7), maxTokens: 10 }, 0);
  assert.ok(d.abort("c"), "abort in the prealloc queue");
  assert.equal(d.snapshot().pd!.preallocQueue, 0);
  d.submit({ id: "e", tokens: prompt(100, 8), maxTokens: 10 }, 0);
  d.preallocate(0);
  d.kvArrived("e", 1, 0);
  assert.ok(d.abort("e"), "abort after the KV arrived");
  assert.equal(d.snapshot().kvBlocksUsed, 0);
  assert.equal(d.hasWork(), false);

  const p = new Engine({ role: "prefill" });
  p.submit({ id: "x", tokens: prompt(100, 9), maxTokens: 10, awaitBootstrap: true }, 0);
  assert.ok(p.abort("x"), "abort in the bootstrap queue");
  assert.equal(p.snapshot().pd!.bootstrapQueue, 0);
  p.submit({ id: "y", tokens: prompt(100, 9), maxTokens: 10 }, 0);
  drain(p, 0);
  assert.equal(p.snapshot().pd!.inflightQueue, 1);
  assert.ok(p.abort("y"), "abort while transferring");
  assert.equal(p.snapshot().kvBlocksUsed, 0);
  assert.equal(p.snapshot().pd!.inflightQueue, 0);
});

test("roles validate the request as a unified server would, and a prefill only ever generates one token", () => {
  const p = new Engine({ role: "prefill", maxModelLen: 1000 });
  assert.throws(() => p.submit({ id: "big", tokens: prompt(600, 1), maxTokens: 500 }, 0), /maximum context length/);
  const d = new Engine({ role: "decode", maxModelLen: 1000 });
  assert.throws(() => d.submit({ id: "big", tokens: prompt(600, 1), maxTokens: 500 }, 0), /maximum context length/);
  assert.throws(() => new Engine({ role: "both" as never }), RangeError);
  assert.equal(new Engine().snapshot().pd, undefined, "no disaggregation queues without a role");
});
