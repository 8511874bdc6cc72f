import { test } from "node:test";
import assert from "node:assert/strict";
import { simulate } from "./cluster.ts";
import { roundRobin } from "./routers.ts";
import { blockTokens, parseTrace, planTrace, traceSource, traceTokens, type TraceRecord } from "./trace.ts";

const line = (timestamp: number, input_length: number, output_length: number, hash_ids: number[]) => JSON.stringify({ timestamp, input_length, output_length, hash_ids });

const TRACE = [
  line(1000, 1300, 20, [0, 1, 2]),
  line(1500, 1100, 30, [0, 1, 3]),
  "",
  line(2500, 700, 10, [0, 4]),
  line(4000, 300, 5, [0]),
].join("\n");

const firstDifference = (a: number[], b: number[]) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

test("parses Mooncake JSONL; blank lines are skipped and line numbers kept", () => {
  const recs = parseTrace(TRACE, "t.jsonl");
  assert.equal(recs.length, 4);
  assert.deepEqual(recs[2], { timestamp: 2500, input_length: 700, output_length: 10, hash_ids: [0, 4], line: 4 });
});

test("malformed lines fail with the file and line number", () => {
  const bad = (text: string, message: RegExp) => assert.throws(() => parseTrace(text, "prod.jsonl"), message);
  bad(`${line(0, 10, 1, [0])}\n{"timestamp": 5, "input_length": 10,`, /^Error: prod\.jsonl:2: not a JSON object/);
  bad(`${line(0, 10, 1, [0])}\n\n[1, 2]`, /prod\.jsonl:3: not a JSON object/);
  bad(`{"input_length": 10, "output_length": 1, "hash_ids": []}`, /prod\.jsonl:1: timestamp must be/);
  bad(`{"timestamp": 1, "input_length": 0, "output_length": 1, "hash_ids": []}`, /prod\.jsonl:1: input_length must be an integer >= 1/);
  bad(`{"timestamp": 1, "input_length": 5, "output_length": -1, "hash_ids": []}`, /prod\.jsonl:1: output_length/);
  bad(`{"timestamp": 1, "input_length": 5, "output_length": 1, "hash_ids": [1, "2"]}`, /prod\.jsonl:1: hash_ids must be an array of integers/);
  bad("\n\n", /prod\.jsonl: no requests/);
});

test("requests sharing their first k hash ids share exactly their first k blocks of tokens", () => {
  for (const b of [512, 128, 16]) {
    const plan = planTrace(parseTrace(TRACE), { blockTokens: b });
    const [a, c, d] = plan.requests.map((r) => traceTokens(r, b));
    // a and c share hash ids 0 and 1, then differ (2 vs 3).
    assert.equal(firstDifference(a, c), 2 * b + firstDifference(blockTokens(2, b), blockTokens(3, b)));
    assert.ok(firstDifference(a, c) < 3 * b);
    // a and d share only hash id 0.
    const k = firstDifference(a, d);
    assert.ok(k >= b && k < 2 * b, `block size ${b}: ${k}`);
    // Input lengths scale with the block size.
    assert.equal(a.length, Math.round((1300 * b) / 512));
    assert.equal(d.length, Math.round((700 * b) / 512));
  }
});

test("a prompt ending inside a block takes that block's first tokens; the same id gives the same tokens everywhere", () => {
  const plan = planTrace(parseTrace(TRACE));
  const last = traceTokens(plan.requests[3], 512); // 300 tokens of block 0
  assert.deepEqual(last, blockTokens(0, 512).slice(0, 300));
  const first = traceTokens(plan.requests[0], 512); // 1300 = 512 + 512 + 276 of block 2
  assert.deepEqual(first.slice(1024), blockTokens(2, 276));
  assert.deepEqual(blockTokens(7, 100), blockTokens(7, 512).slice(0, 100));
  assert.notDeepEqual(blockTokens(7, 100), blockTokens(8, 100));
  // Tokens past the listed hash ids are the request's own.
  const r: TraceRecord = { timestamp: 0, input_length: 900, output_length: 1, hash_ids: [0], line: 9 };
  const t = traceTokens({ atMs: 0, promptLen: 900, maxTokens: 1, record: r }, 512);
  assert.equal(t.length, 900);
  assert.deepEqual(t.slice(0, 512), blockTokens(0, 512));
});

test("timestamps: the first request at 0, divided by speed, sorted; limit keeps the first n", () => {
  const shuffled = [line(9000, 10, 1, [1]), line(5000, 10, 1, [2]), line(7000, 10, 1, [3])].join("\n");
  const plan = planTrace(parseTrace(shuffled), { speed: 2 });
  assert.deepEqual(plan.requests.map((r) => r.atMs), [0, 1000, 2000]);
  assert.deepEqual(plan.requests.map((r) => r.record.line), [2, 3, 1]);
  assert.equal(plan.durationMs, 2000);
  assert.deepEqual(planTrace(parseTrace(shuffled), { limit: 2 }).requests.map((r) => r.record.line), [2, 3]);
  assert.throws(() => planTrace(parseTrace(shuffled), { speed: 0 }), /speed/);
  assert.throws(() => planTrace(parseTrace(shuffled), { blockTokens: 1.5 }), /block tokens/);
});

test("requests longer than the max model length are cut and counted", () => {
  const text = [line(0, 9000, 100, [1]), line(1, 4000, 6000, [2]), line(2, 100, 0, [3]), line(3, 8000, 192, [4])].join("\n");
  const plan = planTrace(parseTrace(text), { maxModelLen: 8192 });
  assert.equal(plan.truncated, 2);
  assert.deepEqual(plan.requests.map((r) => [r.promptLen, r.maxTokens]), [[8092, 100], [4000, 4096], [100, 1], [8000, 192]]);
  for (const r of plan.requests) assert.ok(r.promptLen + r.maxTokens <= 8192);
});

test("replay is open loop: each request is sent at its timestamp, whatever is in flight", async () => {
  const lines: string[] = [];
  for (let i = 0; i < 30; i++) lines.push(line(10_000 + i * 40, 600 + 37 * i, 50, [0, 100 + i]));
  const plan = planTrace(parseTrace(lines.join("\n")), { speed: 2 });
  const r = await simulate({ cluster: { pods: 2, seed: 3 }, source: traceSource(plan), router: roundRobin(), arrival: { kind: "open" } });
  assert.equal(r.requests.length, 30);
  for (const q of r.requests) assert.equal(q.sentMs, plan.requests[Number(q.id.slice(4)) - 1].atMs);
  assert.ok(r.requests.some((q) => q.cachedTokens >= 512), "the shared first block is a prefix-cache hit");
});
