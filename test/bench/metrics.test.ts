import { test } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../sim/engine.ts";
import type { ClusterResult, RequestRecord } from "../sim/cluster.ts";
import { coefficientOfVariation, idlePrefillMs, podShares, prefillModel, queueDelays } from "../../scripts/bench/metrics.ts";

// TTFT of each request run alone, one after the other, on one engine (an idle pod each time).
function aloneTtfts(e: Engine, reqs: Array<{ id: string; tokens: number[] }>): Array<{ ttft: number; cached: number }> {
  const out: Array<{ ttft: number; cached: number }> = [];
  let now = 0;
  for (const q of reqs) {
    e.submit({ ...q, maxTokens: 2 }, now);
    const start = now;
    let ttft = NaN, cached = 0;
    for (let r = e.step(now); r; r = e.step(now)) {
      now += r.durationMs;
      for (const ev of r.events) {
        if (ev.type === "scheduled") cached = ev.cachedTokens;
        if (ev.type === "first_token") ttft = ev.atMs - start;
      }
    }
    out.push({ ttft, cached });
  }
  return out;
}

const tokens = (n: number, from = 0) => Array.from({ length: n }, (_, i) => (from + i * 7919) % 150_000);

test("idle prefill time is a lone request's TTFT, chunked as the engine chunks it, after its cached prefix", () => {
  for (const budget of [2048, 512]) {
    const e = new Engine({ maxBatchedTokens: budget, tokenEvents: false });
    const m = prefillModel({ maxBatchedTokens: budget });
    const long = tokens(5000);
    const runs = aloneTtfts(e, [
      { id: "a", tokens: tokens(300, 11) },
      { id: "b", tokens: long },
      { id: "c", tokens: long.slice(0, 4000).concat(tokens(1500, 3)) }, // 4000 cached
    ]);
    assert.equal(runs[2].cached, 4000);
    const records = runs.map((r, i) => ({ ttftMs: r.ttft, promptTokens: [300, 5000, 5500][i], cachedTokens: r.cached }) as RequestRecord);
    for (const d of queueDelays(records, m)) assert.ok(Math.abs(d) < 1e-6, `budget ${budget}: delay ${d} ms alone`);
    // Chunking matters: one 5000-token step would cost less than three.
    assert.ok(idlePrefillMs(m.timer, 5000, 0, budget) > m.timer.prefillStepMs(5000, 0));
    // A cached prefix is not prefilled again.
    assert.ok(idlePrefillMs(m.timer, 5500, 4000, budget) < idlePrefillMs(m.timer, 5500, 0, budget) / 2);
  }
});

test("queueing delay is what a loaded pod adds on top", () => {
  const e = new Engine({ tokenEvents: false });
  const m = prefillModel();
  const reqs = [0, 1, 2, 3].map((i) => ({ id: `q${i}`, tokens: tokens(3000, i * 13) }));
  for (const q of reqs) e.submit({ ...q, maxTokens: 2 }, 0);
  const ttft = new Map<string, number>();
  let now = 0;
  for (let r = e.step(now); r; r = e.step(now)) {
    now += r.durationMs;
    for (const ev of r.events) if (ev.type === "first_token") ttft.set(ev.id, ev.atMs);
  }
  const records = reqs.map((q) => ({ ttftMs: ttft.get(q.id)!, promptTokens: 3000, cachedTokens: 0 }) as RequestRecord);
  const delays = queueDelays(records, m);
  const alone = idlePrefillMs(m.timer, 3000, 0, 2048);
  // The first only shares its second step; the last waits for the others' prefill.
  assert.ok(delays[0] > 0 && delays[0] < alone, `first: ${delays[0]} ms`);
  assert.ok(delays[3] > 2 * alone, `last: ${delays[3]} ms`);
  for (let i = 1; i < 4; i++) assert.ok(delays[i] > delays[i - 1]);
});

test("pod shares pool the runs; their coefficient of variation is 0 when even", () => {
  const run = (counts: number[]) => ({ pods: counts.map((requests) => ({ requests })) }) as unknown as ClusterResult;
  const share = podShares([run([10, 20, 30, 40]), run([30, 20, 10, 0])]);
  assert.deepEqual(share, [0.25, 0.25, 0.25, 0.25]);
  assert.equal(coefficientOfVariation(share), 0);
  const skew = podShares([run([0, 0, 0, 100])]);
  assert.deepEqual(skew, [0, 0, 0, 1]);
  assert.ok(Math.abs(coefficientOfVariation(skew) - Math.sqrt(3)) < 1e-12);
  assert.ok(Math.abs(coefficientOfVariation([0.2, 0.3]) - 0.2) < 1e-12);
});
