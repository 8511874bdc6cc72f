import { test } from "node:test";
import assert from "node:assert/strict";
import { Engine, EngineError, type EngineEvent, type EngineOptions } from "./engine.ts";
import { a10Qwen7B, A10, StepTimer, kvBytesPerToken, linearFlopsPerToken, QWEN25_7B, weightBytesReadPerStep } from "./cost-model.ts";

function prompt(len: number, seed: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push((seed * 7919 + i * 104729) % 150000);
  return out;
}

interface Run {
  events: EngineEvent[];
  endMs: number;
  steps: { startMs: number; durationMs: number; tokens: number; seqs: number }[];
}

function runToIdle(e: Engine, startMs = 0, onStep?: (e: Engine) => void): Run {
  const events: EngineEvent[] = [];
  const steps: Run["steps"] = [];
  let now = startMs;
  for (let r = e.step(now); r; r = e.step(now)) {
    steps.push({ startMs: r.startMs, durationMs: r.durationMs, tokens: r.tokens, seqs: r.seqs });
    events.push(...r.events);
    now += r.durationMs;
    onStep?.(e);
    assert.ok(steps.length < 1e6, "runaway engine");
  }
  return { events, endMs: now, steps };
}

function finished(run: Run) {
  return run.events.filter((e) => e.type === "finished") as Extract<EngineEvent, { type: "finished" }>[];
}

test("cost model: a decode step is never faster than streaming the weights and the KV cache at peak bandwidth", () => {
  const t = new StepTimer(a10Qwen7B());
  const floorMs = (weightBytesReadPerStep(QWEN25_7B) / A10.memoryBandwidth) * 1000;
  assert.ok(floorMs > 23 && floorMs < 26, `weights floor ${floorMs}`);
  for (const batch of [1, 8, 40, 128]) {
    for (const ctx of [16, 2048, 6000]) {
      const kvMs = ((batch * ctx * kvBytesPerToken(QWEN25_7B)) / A10.memoryBandwidth) * 1000;
      const ms = t.decodeStepMs(batch, ctx);
      assert.ok(ms >= floorMs + kvMs, `batch ${batch} ctx ${ctx}: ${ms} < ${floorMs + kvMs}`);
    }
  }
  assert.equal(kvBytesPerToken(QWEN25_7B), 57344); // 28 layers x 4 KV heads x 128 x 2 (K,V) x 2 bytes
  // Batch 1 on an A10 in eager mode: ~30 tokens/s.
  const b1 = t.decodeStepMs(1, 2048);
  assert.ok(b1 > 28 && b1 < 40, `batch-1 decode ${b1} ms`);
});

test("cost model: a prefill is never faster than the GPU's peak FLOP rate", () => {
  const t = new StepTimer(a10Qwen7B());
  for (const n of [256, 2048, 8192]) {
    const minMs = ((n * linearFlopsPerToken(QWEN25_7B)) / A10.peakFlops) * 1000;
    const ms = t.prefillStepMs(n);
    assert.ok(ms >= minMs, `prefill ${n}: ${ms} < ${minMs}`);
  }
  const rate = 2048 / (t.prefillStepMs(2048) / 1000);
  assert.ok(rate > 3000 && rate < 8000, `prefill rate ${rate} tokens/s`);
});

test("cost model: KV capacity of the seeds' A10 is on the order of 100k tokens", () => {
  const e = new Engine({ maxLoras: 2 });
  const tokens = e.snapshot().kvBlocksTotal * 16;
  assert.ok(tokens > 80_000 && tokens < 130_000, `KV tokens ${tokens}`);
});

test("every request produces exactly maxTokens tokens; events are ordered and timed", () => {
  const e = new Engine();
  e.submit({ id: "a", tokens: prompt(100, 1), maxTokens: 5 }, 0);
  const run = runToIdle(e);
  const types = run.events.map((x) => x.type);
  assert.deepEqual(types, ["scheduled", "first_token", "token", "token", "token", "token", "finished"]);
  const fin = finished(run)[0];
  assert.equal(fin.outputTokens.length, 5);
  assert.equal(fin.promptTokens, 100);
  assert.equal(run.steps.length, 5);
  assert.equal(fin.atMs, run.endMs);
  assert.ok(fin.ttftMs > 30 && fin.ttftMs < 100, `ttft ${fin.ttftMs}`);
  assert.equal(e.hasWork(), false);
  assert.equal(e.step(run.endMs), null);
  const s = e.snapshot();
  assert.equal(s.generationTokens, 5);
  assert.equal(s.promptTokens, 100);
  assert.equal(s.histograms.ttft.count, 1);
  assert.equal(s.histograms.tpot.count, 4);
  assert.equal(s.finished, 1);
});

test("deterministic: the same inputs give the same events", () => {
  const go = () => {
    const e = new Engine({ kvBlocks: 600 });
    for (let i = 0; i < 12; i++) e.submit({ id: `r${i}`, tokens: prompt(300 + i * 37, i), maxTokens: 40 + i }, i * 3);
    return JSON.stringify(runToIdle(e).events);
  };
  assert.equal(go(), go());
});

test("continuous batching: 32 concurrent requests get far more tokens per second than one at a time", () => {
  const serial = new Engine();
  let now = 0;
  for (let i = 0; i < 4; i++) {
    serial.submit({ id: `s${i}`, tokens: prompt(200, i), maxTokens: 100 }, now);
    now = runToIdle(serial, now).endMs;
  }
  const serialRate = 400 / now;
  const batched = new Engine();
  for (let i = 0; i < 32; i++) batched.submit({ id: `b${i}`, tokens: prompt(200, i), maxTokens: 100 }, 0);
  const run = runToIdle(batched);
  assert.equal(finished(run).length, 32);
  const batchedRate = 3200 / run.endMs;
  assert.ok(batchedRate > 15 * serialRate, `batched ${batchedRate * 1000} tok/s vs serial ${serialRate * 1000} tok/s`);
  // New requests join a running batch between steps.
  const e = new Engine();
  e.submit({ id: "first", tokens: prompt(50, 1), maxTokens: 50 }, 0);
  let t = 0;
  for (let k = 0; k < 5; k++) t += e.step(t)!.durationMs;
  e.submit({ id: "second", tokens: prompt(50, 2), maxTokens: 5 }, t);
  const r = e.step(t)!;
  assert.equal(r.seqs, 2);
  assert.deepEqual(e.queues().running, ["first", "second"]);
});

test("prefix caching: a request sharing a cached prefix skips its prefill and gets its first token sooner", () => {
  const e = new Engine();
  const shared = prompt(4000, 3);
  e.submit({ id: "cold", tokens: shared.concat(prompt(40, 4)), maxTokens: 1 }, 0);
  const cold = finished(runToIdle(e))[0];
  assert.equal(cold.cachedTokens, 0);
  const t0 = 10_000;
  e.submit({ id: "warm", tokens: shared.concat(prompt(40, 5)), maxTokens: 1 }, t0);
  const warm = finished(runToIdle(e, t0))[0];
  assert.equal(warm.cachedTokens, 4000);
  assert.ok(warm.ttftMs < cold.ttftMs / 5, `warm ${warm.ttftMs} ms vs cold ${cold.ttftMs} ms`);
  const s = e.snapshot();
  assert.equal(s.prefixCacheQueries, 8080);
  assert.equal(s.prefixCacheHits, 4000);
  // The whole prompt cached: all but the last block's worth is reused (the last token is always computed).
  e.submit({ id: "again", tokens: shared, maxTokens: 1 }, 20_000);
  assert.equal(finished(runToIdle(e, 20_000))[0].cachedTokens, 3984);
  // A LoRA adapter does not share the base model's cache.
  const l = new Engine({ maxLoras: 2 });
  l.submit({ id: "base", tokens: shared, maxTokens: 1 }, 0);
  runToIdle(l);
  assert.equal(l.cachedPrefixTokens(shared, null), 3984);
  assert.equal(l.cachedPrefixTokens(shared, "travel-helper-v1"), 0);
});

test("prefix caching: generated tokens are cached too, so the next turn of a conversation hits", () => {
  const e = new Engine();
  e.submit({ id: "turn1", tokens: prompt(500, 6), maxTokens: 200 }, 0);
  const run = runToIdle(e);
  const t1 = finished(run)[0];
  const next = prompt(500, 6).concat(t1.outputTokens, prompt(30, 7));
  assert.equal(e.cachedPrefixTokens(next), Math.floor(699 / 16) * 16);
});

test("cached blocks outlive their requests and are evicted least recently freed first, only under pressure", () => {
  const opts: EngineOptions = { kvBlocks: 64, maxModelLen: 1024 };
  const e = new Engine(opts);
  const a = prompt(320, 11); // 20 blocks
  const b = prompt(320, 12);
  let now = 0;
  e.submit({ id: "a", tokens: a, maxTokens: 1 }, now);
  now = runToIdle(e, now).endMs;
  e.submit({ id: "b", tokens: b, maxTokens: 1 }, now);
  now = runToIdle(e, now).endMs;
  assert.equal(e.snapshot().kvUsage, 0);
  assert.equal(e.cachedPrefixTokens(a), 304);
  assert.equal(e.cachedPrefixTokens(b), 304);
  // Looking does not reorder anything.
  const before = e.pool.freeQueue().join();
  e.cachedPrefixTokens(a);
  assert.equal(e.pool.freeQueue().join(), before);
  // 24 never-used blocks remain at the head of the free queue: a 320-token request takes 20 of them.
  e.submit({ id: "c", tokens: prompt(320, 13), maxTokens: 1 }, now);
  now = runToIdle(e, now).endMs;
  assert.equal(e.cachedPrefixTokens(a), 304, "a survives while uncached blocks remain");
  assert.equal(e.cachedPrefixTokens(b), 304);
  // The next one needs 20 blocks: 4 uncached, then 16 from a (freed first): a's tail goes first.
  e.submit({ id: "d", tokens: prompt(320, 14), maxTokens: 1 }, now);
  now = runToIdle(e, now).endMs;
  assert.equal(e.cachedPrefixTokens(b), 304, "b (freed later) is intact");
  const aLeft = e.cachedPrefixTokens(a);
  assert.ok(aLeft < 304, `a partly evicted (${aLeft} tokens left)`);
  assert.ok(e.pool.evictions > 0);
});

test("preemption under KV pressure: requests are recomputed and all still finish", () => {
  // 40 blocks = 640 tokens; four requests growing to 300 tokens each need 76 blocks.
  const e = new Engine({ kvBlocks: 40, maxModelLen: 512 });
  for (let i = 0; i < 4; i++) e.submit({ id: `p${i}`, tokens: prompt(100, 20 + i), maxTokens: 200 }, 0);
  let maxUsage = 0;
  const run = runToIdle(e, 0, (x) => (maxUsage = Math.max(maxUsage, x.snapshot().kvUsage)));
  const pre = run.events.filter((x) => x.type === "preempted");
  assert.ok(pre.length > 0, "some request was preempted");
  // The newest running request is the victim: the first one admitted is never preempted.
  assert.ok(!pre.some((x) => x.id === "p0"), "p0 was preempted");
  const fins = finished(run);
  assert.equal(fins.length, 4);
  for (const f of fins) assert.equal(f.outputTokens.length, 200);
  assert.ok(fins.some((f) => f.preemptions > 0));
  assert.equal(e.snapshot().preemptions, pre.length);
  assert.ok(maxUsage > 0.9, `usage peaked at ${maxUsage}`);
  // Resumed requests are rescheduled (and hit their own cached blocks when still there).
  assert.ok(run.events.some((x) => x.type === "scheduled" && x.resumed));
});

test("LoRA: a batch holds at most maxLoras adapters; other adapters wait", () => {
  const e = new Engine({ maxLoras: 2, maxCpuLoras: 4 });
  e.submit({ id: "v1", tokens: prompt(64, 1), maxTokens: 30, lora: "travel-helper-v1" }, 0);
  e.submit({ id: "v2", tokens: prompt(64, 2), maxTokens: 30, lora: "travel-helper-v2" }, 0);
  e.submit({ id: "v3", tokens: prompt(64, 3), maxTokens: 10, lora: "travel-helper-v3" }, 0);
  e.submit({ id: "base", tokens: prompt(64, 4), maxTokens: 10 }, 0);
  e.submit({ id: "v1b", tokens: prompt(64, 5), maxTokens: 10, lora: "travel-helper-v1" }, 0);
  const first = e.step(0)!;
  assert.deepEqual(e.queues().running, ["v1", "v2", "base", "v1b"]);
  assert.deepEqual(e.queues().waiting, ["v3"]);
  const s = e.snapshot();
  assert.deepEqual(s.lora, { maxLoras: 2, running: ["travel-helper-v1", "travel-helper-v2"], waiting: ["travel-helper-v3"] });
  const run = runToIdle(e, first.durationMs, (x) => {
    const running = x.queues().running;
    const adapters = new Set(running.filter((id) => id !== "base").map((id) => id.slice(0, 2)));
    assert.ok(adapters.size <= 2, `running adapters ${[...adapters]}`);
  });
  const sched = run.events.find((x) => x.type === "scheduled" && x.id === "v3");
  const v1done = run.events.find((x) => x.type === "finished" && x.id === "v1");
  assert.ok(sched && v1done && sched.atMs >= v1done.atMs, "v3 waits until an adapter's requests are done");
  assert.equal(finished(run).length, 5);
  // Loading an adapter costs step time: from disk when it is not in the CPU cache, over PCIe
  // when it is only not in a GPU slot; a resident adapter costs only its extra kernels.
  const one = new Engine({ maxLoras: 1, maxCpuLoras: 2 });
  const stepFor = (lora: string | null, id: string) => {
    one.submit({ id, tokens: prompt(32, 9), maxTokens: 1, lora }, 0);
    return one.step(0)!.durationMs;
  };
  const base = stepFor(null, "l0");
  const disk = stepFor("a", "l1");
  const resident = stepFor("a", "l2");
  stepFor("b", "l3"); // evicts a from the only GPU slot; both stay in the CPU cache
  const swap = stepFor("a", "l4");
  assert.ok(disk - resident >= one.cost.loraDiskLoadMs, `disk ${disk} resident ${resident}`);
  assert.ok(swap > resident && swap < disk, `swap ${swap}`);
  assert.ok(resident > base, `resident ${resident} base ${base}`);
  assert.throws(() => new Engine().submit({ id: "x", tokens: [1, 2], maxTokens: 1, lora: "a" }, 0), EngineError);
});

test("chunked prefill: no step computes more than the token budget; decodes go first", () => {
  const e = new Engine({ maxBatchedTokens: 512 });
  e.submit({ id: "short", tokens: prompt(40, 1), maxTokens: 20 }, 0);
  let now = e.step(0)!.durationMs;
  e.submit({ id: "long", tokens: prompt(2000, 2), maxTokens: 2 }, now);
  const run = runToIdle(e, now);
  for (const s of run.steps) assert.ok(s.tokens <= 512, `step of ${s.tokens} tokens`);
  // The long prompt is split over ceil(2000 / 511) = 4 steps next to the decoding request.
  const longFirst = run.events.find((x) => x.type === "first_token" && x.id === "long")!;
  const stepsBefore = run.steps.filter((s) => s.startMs + s.durationMs <= longFirst.atMs).length;
  assert.equal(stepsBefore, 4);
  assert.equal(run.steps[0].tokens, 512);
  assert.equal(run.steps[0].seqs, 2);
});

test("requests that cannot fit in max_model_len are refused with vLLM's message", () => {
  const e = new Engine();
  assert.throws(
    () => e.submit({ id: "big", tokens: prompt(8000, 1), maxTokens: 500 }, 0),
    (err: unknown) => err instanceof EngineError && err.status === 400 && /maximum context length is 8192 tokens/.test(err.message),
  );
  e.submit({ id: "ok", tokens: prompt(10, 1), maxTokens: 1 }, 0);
  assert.throws(() => e.submit({ id: "ok", tokens: prompt(10, 1), maxTokens: 1 }, 0), EngineError);
  assert.equal(e.abort("ok"), true);
  assert.equal(e.hasWork(), false);
});
