import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseTrace } from "../sim/trace.ts";
import { planTraffic, type TrafficOptions } from "../sim/traffic.ts";
import { percentile } from "../sim/stats.ts";
import { builtinWorkloads } from "../../scripts/bench/workloads.ts";
import { CHAT, CONVERSATIONS_TRACE_PATH, LONG_TAIL, LORA_MIX } from "../../scripts/bench/real-workloads.ts";
import { conversationsTrace } from "../../scripts/bench/traces/generate.ts";

const sha256 = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");
const p99OverMedian = (xs: number[]) => {
  const s = xs.slice().sort((a, b) => a - b);
  return percentile(s, 99) / percentile(s, 50);
};

test("the committed trace is the generator's output, byte for byte", () => {
  const committed = readFileSync(CONVERSATIONS_TRACE_PATH);
  assert.equal(sha256(conversationsTrace()), sha256(committed), "run: npx tsx scripts/bench/traces/generate.ts");
  assert.ok(committed.length < 1024 * 1024, `${committed.length} bytes`);
});

test("the committed trace has real traffic's properties", () => {
  const recs = parseTrace(readFileSync(CONVERSATIONS_TRACE_PATH, "utf8"));
  assert.ok(recs.length >= 2000 && recs.length <= 5000, `${recs.length} requests`);
  for (const r of recs) assert.equal(r.hash_ids.length, Math.ceil(r.input_length / 512));
  // One system-prompt block opens nearly every request.
  const system = recs.filter((r) => r.hash_ids[0] === 0).length / recs.length;
  assert.ok(system > 0.94 && system < 1, `system block share ${system}`);
  // Prompt lengths: p99 about 10x the median.
  const ratio = p99OverMedian(recs.map((r) => r.input_length));
  assert.ok(ratio > 7 && ratio < 14, `p99/median ${ratio}`);
  // Conversations come back minutes and hundreds of requests later: a later turn repeats its
  // previous prompt's full blocks, so it shares a block past the system prompt with it.
  const seen = new Map<number, number>();
  const gapMs: number[] = [], gapReq: number[] = [];
  recs.forEach((r, i) => {
    for (const h of r.hash_ids.slice(1)) {
      const j = seen.get(h);
      if (j !== undefined && j !== i) {
        gapMs.push(r.timestamp - recs[j].timestamp);
        gapReq.push(i - j);
        break;
      }
    }
    for (const h of r.hash_ids) seen.set(h, i);
  });
  assert.ok(gapMs.length > 300, `${gapMs.length} returning conversations`);
  gapMs.sort((a, b) => a - b);
  gapReq.sort((a, b) => a - b);
  assert.ok(percentile(gapMs, 50) > 60_000, `median gap ${percentile(gapMs, 50)} ms`);
  assert.ok(percentile(gapReq, 50) > 300, `median gap ${percentile(gapReq, 50)} requests`);
  // The rate moves from minute to minute.
  const perMinute: number[] = [];
  for (const r of recs) perMinute[Math.floor((r.timestamp - recs[0].timestamp) / 60_000)] = (perMinute[Math.floor((r.timestamp - recs[0].timestamp) / 60_000)] ?? 0) + 1;
  const full = perMinute.slice(0, -1);
  const mean = full.reduce((a, b) => a + b, 0) / full.length;
  assert.ok(Math.max(...full) / mean > 1.1 && Math.min(...full) / mean < 0.9, `per minute ${full.join(" ")}`);
});

test("built-in workloads: the three classic ones unchanged, then the real-traffic ones, then prefill/decode, then priority, --quick smaller", () => {
  const full = builtinWorkloads(false);
  const quick = builtinWorkloads(true);
  assert.deepEqual(full.map((w) => w.name), ["seeds-random", "multi-turn", "shared-prefix", "chat", "long-tail", "lora-mix", "trace-conversations", "pd-chat", "priority-overload", "priority-baseline"]);
  assert.deepEqual(full.map((w) => w.pd?.prefill), [undefined, undefined, undefined, undefined, undefined, undefined, undefined, 3, undefined, undefined]);
  assert.deepEqual(full.map((w) => w.criticalities ?? false), [false, false, false, false, false, false, false, false, true, true]);
  assert.deepEqual(full.map((w) => w.baseline), [undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, "priority-baseline", undefined]);
  assert.deepEqual(full.slice(0, 3).map((w) => [w.pods, w.arrival]), [
    [5, { kind: "closed", concurrency: 200 }],
    [5, { kind: "closed", concurrency: 10_000 }],
    [8, { kind: "poisson", ratePerSec: 5 }],
  ]);
  for (const w of full.slice(3)) assert.deepEqual(w.arrival, { kind: "open" }, w.name);
  assert.deepEqual(full.slice(3).map((w) => w.pods), [8, 8, 5, 8, 8, 4, 4]);
  for (let i = 3; i < full.length; i++) {
    const n = Number(/(\d+) requests/.exec(full[i].description)![1]);
    const q = Number(/(\d+) requests/.exec(quick[i].description)![1]);
    assert.ok(q < n / 2, `${full[i].name}: ${q} quick vs ${n}`);
  }
});

test("the real-traffic workloads' plans: long tails, the shared system prompt, LoRA adapters", () => {
  const plans: Array<[string, TrafficOptions]> = [["chat", CHAT], ["long-tail", LONG_TAIL], ["lora-mix", LORA_MIX]];
  for (const [name, o] of plans) {
    const plan = planTraffic(o).filter((p) => p.atMs >= 0);
    assert.equal(plan.length, o.requests);
    const ratio = p99OverMedian(plan.map((p) => p.promptLen));
    assert.ok(ratio > 7 && ratio < 14, `${name}: p99/median ${ratio}`);
    assert.ok(plan.every((p) => p.system), `${name}: every request has the system prompt`);
    assert.ok(plan.every((p) => p.promptLen + p.outputLen <= 8192));
  }
  const lora = planTraffic(LORA_MIX).filter((p) => p.atMs >= 0);
  const share = (l: string | null) => lora.filter((p) => p.lora === l).length / lora.length;
  assert.ok(share(null) > 0.4 && share("travel-helper-v1") > 0.15 && share("travel-helper-v2") > 0.12, "base model and the seeds' two adapters");
  assert.ok(share("travel-helper-v3") > 0.02 && share("travel-helper-v3") < 0.1, `a third adapter now and then: ${share("travel-helper-v3")}`);
});

test("P/D workloads run the P/D strategies and wasm-epp; the others never run a P/D-only strategy", async () => {
  const { runsOn, PD_ONLY } = await import("../../scripts/bench/setup.ts");
  const [plain] = builtinWorkloads(true);
  const pd = builtinWorkloads(true).find((w) => w.pd)!;
  for (const s of PD_ONLY) {
    assert.equal(runsOn(s, pd), true, s);
    assert.equal(runsOn(s, plain), false, s);
  }
  for (const s of ["wasm-epp", "wasm-epp-default", "wasm-epp:x"]) assert.ok(runsOn(s, pd) && runsOn(s, plain), s);
  for (const s of ["gie", "sglang-cache-aware", "least-request", "precise", "round-robin"]) assert.ok(!runsOn(s, pd) && runsOn(s, plain), s);
});

test("the open-loop workloads run at the rates of the calibration table in docs/benchmark.md", async () => {
  const { readFileSync } = await import("node:fs");
  const rw = await import("../../scripts/bench/real-workloads.ts");
  const doc = readFileSync(new URL("../../docs/benchmark.md", import.meta.url), "utf8");
  const rateIn = (name: string) => {
    const line = doc.split("\n").find((l) => l.startsWith("| `" + name + "` |") && l.split("|").length === 6);
    assert.ok(line, `${name} is in the calibration table`);
    return parseFloat(line!.split("|")[4].trim());
  };
  assert.equal(rw.CHAT.ratePerSec, rateIn("chat"));
  assert.equal(rw.LONG_TAIL.ratePerSec, rateIn("long-tail"));
  assert.equal(rw.LORA_MIX.ratePerSec, rateIn("lora-mix"));
  assert.equal(rw.PD_CHAT.ratePerSec, rateIn("pd-chat"));
});
