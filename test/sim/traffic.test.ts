import { test } from "node:test";
import assert from "node:assert/strict";
import { arrivalTimes, zipfSampler } from "./arrivals.ts";
import { simulate } from "./cluster.ts";
import { Engine } from "./engine.ts";
import { Rng } from "./rng.ts";
import { leastRequest } from "./routers.ts";
import { percentile } from "./stats.ts";
import { answerTokens, planTraffic, tokensFor, traffic, type PlannedRequest, type TrafficOptions } from "./traffic.ts";

const CHATTY: TrafficOptions = {
  requests: 6000,
  ratePerSec: 10,
  warmupMs: 300_000,
  systemLen: 200,
  userLen: { median: 60, sigma: 1.6, max: 6000 },
  outputLen: { median: 180, sigma: 0.6, min: 8, max: 1024 },
  turnsZipf: 2.2,
  turnGapMs: { median: 90_000, sigma: 0.5, min: 20_000 },
  seed: 3,
};
const sent = (o: TrafficOptions) => planTraffic(o).filter((p) => p.atMs >= 0);
const ratio = (xs: number[]) => {
  const s = xs.slice().sort((a, b) => a - b);
  return percentile(s, 99) / percentile(s, 50);
};
const perMinute = (times: number[]) => {
  const n: number[] = [];
  for (const t of times) n[Math.floor(t / 60_000)] = (n[Math.floor(t / 60_000)] ?? 0) + 1;
  return n.slice(0, -1); // the last minute is partial
};

test("prompt lengths are long-tailed: p99 about 10x the median", () => {
  const r = ratio(sent(CHATTY).map((p) => p.promptLen));
  assert.ok(r > 7 && r < 14, `p99/median ${r}`);
  // Single requests: the tail is the messages' own; without it the ratio collapses.
  const single = ratio(sent({ ...CHATTY, maxTurns: 1, userLen: { median: 300, sigma: 1.0 } }).map((p) => p.promptLen));
  assert.ok(single > 5, `single requests p99/median ${single}`);
  const narrow = ratio(sent({ ...CHATTY, maxTurns: 1, userLen: { median: 300, sigma: 0.1 } }).map((p) => p.promptLen));
  assert.ok(narrow < 1.5, `narrow p99/median ${narrow}`);
});

test("every request of a conversation that has the system prompt starts with it; systemShare sets the share", async () => {
  const o = { ...CHATTY, requests: 300, systemShare: 0.9 };
  const plan = sent(o);
  const share = plan.filter((p) => p.system).length / plan.length;
  assert.ok(share > 0.85 && share < 0.95, `share ${share}`);
  const system = tokensFor(o.seed!, "system", o.systemLen);
  // Through the driver, open loop, every planned request is sent, at its planned time or later.
  const r = await simulate({ cluster: { pods: 2, seed: 1 }, source: traffic(o), router: leastRequest(), arrival: { kind: "open" } });
  assert.equal(r.requests.length, 300);
  const at = new Map(plan.map((p) => [`c${p.conversation}-t${p.turn}`, p.atMs]));
  for (const q of r.requests) {
    assert.ok(q.sentMs >= at.get(q.id)!, q.id);
    if (q.id.endsWith("-t0")) assert.equal(q.sentMs, at.get(q.id), q.id); // never waits for anything
  }
  let starts = 0;
  const src = traffic(o);
  for (let req = src.next(Infinity); req; req = src.next(Infinity)) {
    const p = plan.find((q) => `c${q.conversation}-t${q.turn}` === req!.id)!;
    const opens = system.every((t, i) => req!.tokens[i] === t);
    assert.equal(opens, p.system, req.id);
    if (opens) starts++;
    src.onFinished!(req, answerTokens(req.id, req.maxTokens), 0);
  }
  assert.equal(starts, plan.filter((p) => p.system).length);
});

test("conversations: Zipf-distributed turns, the next turn minutes and hundreds of requests later", () => {
  const draw = zipfSampler(2, 40);
  const rng = new Rng(1);
  const counts = new Array(41).fill(0);
  for (let i = 0; i < 20_000; i++) counts[draw(rng)]++;
  const p12 = counts[1] / counts[2], p24 = counts[2] / counts[4];
  assert.ok(p12 > 3.4 && p12 < 4.6 && p24 > 3.2 && p24 < 4.8, `P(1)/P(2) ${p12}, P(2)/P(4) ${p24} (4 for n^-2)`);

  const plan = planTraffic({ ...CHATTY, requests: 20_000 }).filter((p) => p.atMs >= 0);
  const per = new Map<number, number>();
  for (const p of plan) per.set(p.conversation, (per.get(p.conversation) ?? 0) + 1);
  const sizes = [...per.values()].sort((a, b) => b - a);
  const top = sizes.slice(0, Math.ceil(sizes.length / 10)).reduce((a, b) => a + b, 0) / plan.length;
  assert.ok(top > 0.25, `top 10% of conversations carry ${top} of the requests`);

  const last = new Map<number, number>();
  const gapMs: number[] = [], gapReq: number[] = [];
  plan.forEach((p, i) => {
    const j = last.get(p.conversation);
    if (j !== undefined) {
      gapMs.push(p.atMs - plan[j].atMs);
      gapReq.push(i - j);
      assert.equal(p.turn, plan[j].turn + 1);
    }
    last.set(p.conversation, i);
  });
  gapMs.sort((a, b) => a - b);
  gapReq.sort((a, b) => a - b);
  assert.ok(gapMs.length > 0.3 * plan.length, `${gapMs.length} follow-up turns`);
  assert.ok(percentile(gapMs, 50) > 60_000 && gapMs[0] >= 20_000, `gap median ${percentile(gapMs, 50)} ms, min ${gapMs[0]}`);
  assert.ok(percentile(gapReq, 50) > 500, `gap median ${percentile(gapReq, 50)} requests`);
  // A turn's prompt extends the previous one by its answer and a new message, within the limit.
  const prev = new Map<number, PlannedRequest>();
  for (const p of planTraffic({ ...CHATTY, requests: 2000 })) {
    const q = prev.get(p.conversation);
    if (q) assert.equal(p.promptLen, q.promptLen + q.outputLen + p.userLen);
    assert.ok(p.promptLen + p.outputLen <= 8192);
    prev.set(p.conversation, p);
  }
});

test("the rate swings +-25% from minute to minute, with short bursts; the mean rate holds", () => {
  const counts = perMinute(arrivalTimes(60_000, { ratePerSec: 10, burstEveryMs: 0 }, new Rng(4)));
  const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
  assert.ok(Math.abs(mean - 600) < 36, `mean ${mean} per minute`);
  const hi = Math.max(...counts) / mean, lo = Math.min(...counts) / mean;
  assert.ok(hi > 1.15 && hi < 1.35 && lo < 0.85 && lo > 0.65, `minutes from ${lo} to ${hi} of the mean`);
  const withBursts = perMinute(arrivalTimes(60_000, { ratePerSec: 10 }, new Rng(5)));
  const burstMean = withBursts.reduce((a, b) => a + b, 0) / withBursts.length;
  assert.ok(Math.abs(burstMean - 600) < 36, `mean with bursts ${burstMean} per minute`);
  const flat = perMinute(arrivalTimes(12_000, { ratePerSec: 10, swing: 0, burstEveryMs: 0 }, new Rng(4)));
  assert.ok(Math.max(...flat) / Math.min(...flat) < 1.25, `a constant rate: ${Math.min(...flat)}..${Math.max(...flat)}`);
  // Bursts: some 5-second windows hold about twice the mean.
  const times = arrivalTimes(12_000, { ratePerSec: 10, swing: 0 }, new Rng(4));
  const windows: number[] = [];
  for (const t of times) windows[Math.floor(t / 5000)] = (windows[Math.floor(t / 5000)] ?? 0) + 1;
  const busiest = Math.max(...windows.slice(0, -1)) / 50;
  assert.ok(busiest > 1.7, `busiest 5 s: ${busiest}x the mean`);
  const calm = arrivalTimes(12_000, { ratePerSec: 10, swing: 0, burstEveryMs: 0 }, new Rng(4));
  const calmWindows: number[] = [];
  for (const t of calm) calmWindows[Math.floor(t / 5000)] = (calmWindows[Math.floor(t / 5000)] ?? 0) + 1;
  assert.ok(Math.max(...calmWindows.slice(0, -1)) / 50 < busiest);
});

test("LoRA adapters are drawn per conversation by weight", () => {
  const plan = sent({ ...CHATTY, requests: 4000, loras: [{ name: null, weight: 0.5 }, { name: "a", weight: 0.3 }, { name: "b", weight: 0.2 }] });
  const share = (l: string | null) => plan.filter((p) => p.lora === l).length / plan.length;
  assert.ok(Math.abs(share(null) - 0.5) < 0.06 && Math.abs(share("a") - 0.3) < 0.06 && Math.abs(share("b") - 0.2) < 0.06, `${share(null)} ${share("a")} ${share("b")}`);
  const byConv = new Map<number, string | null>();
  for (const p of plan) {
    if (byConv.has(p.conversation)) assert.equal(p.lora, byConv.get(p.conversation));
    byConv.set(p.conversation, p.lora);
  }
});

test("the source: a turn is the previous prompt, the answer generated and a new message, sent after the answer", () => {
  const o: TrafficOptions = { ...CHATTY, requests: 400, warmupMs: 0, ratePerSec: 50, turnGapMs: { median: 1000, sigma: 0, min: 1000 } };
  const src = traffic(o);
  const first = src.next(0)!;
  assert.equal(first.turn, 0);
  const plan = planTraffic(o);
  const second = plan.find((p) => p.conversation === 0 && p.turn === 1)!;
  // Its previous turn is unanswered: the second turn waits past its planned time.
  const seen: string[] = [];
  for (let r = src.next(second.atMs + 5000); r; r = src.next(second.atMs + 5000)) seen.push(r.id);
  assert.ok(!seen.includes("c0-t1"), "sent before the answer");
  const answer = [7, 8, 9];
  src.onFinished!(first, answer, second.atMs + 6000);
  const next = src.next(second.atMs + 6000)!;
  assert.equal(next.id, "c0-t1");
  assert.deepEqual(next.tokens.slice(0, first.tokens.length + 3), first.tokens.concat(answer));
  assert.equal(next.tokens.length, first.tokens.length + 3 + second.userLen);
});

test("warm-up histories are what the engine would have generated", () => {
  const e = new Engine({ tokenEvents: false });
  e.submit({ id: "c5-t0", tokens: [1, 2, 3, 4], maxTokens: 20 }, 0);
  let out: number[] = [];
  for (let now = 0, r = e.step(now); r; now += r.durationMs, r = e.step(now)) {
    for (const ev of r.events) if (ev.type === "finished") out = ev.outputTokens;
  }
  assert.deepEqual(out, answerTokens("c5-t0", 20));
  // A conversation first sent after the warm-up carries its earlier turns.
  const o = { ...CHATTY, requests: 500 };
  const plan = planTraffic(o);
  const warm = plan.find((p) => p.atMs >= 0 && p.turn > 0 && plan.some((q) => q.conversation === p.conversation && q.atMs < 0))!;
  const src = traffic(o);
  let r = src.next(Infinity);
  while (r && r.id !== `c${warm.conversation}-t${warm.turn}`) r = src.next(Infinity);
  assert.ok(r, "the warm conversation's turn is sent");
  assert.equal(r.tokens.length, warm.promptLen);
});
