// --gateways N: each strategy as N replicas behind a random spreader (scripts/bench/spread.ts).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { simulate, type HeldDecision, type HoldControl, type PodMetrics, type RouteDecision, type Router, type RouterView, type SimRequest } from "../sim/cluster.ts";
import { fromList } from "../sim/workload.ts";
import { spread } from "../../scripts/bench/spread.ts";
import { replicas, setup } from "../../scripts/bench/setup.ts";
import { runJob } from "../../scripts/bench/runner.ts";
import { precise } from "../../scripts/bench/strategies/precise.ts";
import { gie } from "../../scripts/bench/strategies/gie.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "bench-gateways-"));

const PODS = 3;
const view = (): RouterView => ({
  now: 0,
  pods: Array.from({ length: PODS }, (_, i) => ({ index: i, name: `pod-${i}`, address: `10.0.0.${10 + i}:8000`, metrics: null, outstanding: 0 })),
});
const req = (k: number): SimRequest => ({ id: `r${k}`, tokens: [1, 2, 3, k], maxTokens: 4 });
const METRICS: PodMetrics = { scrapedAtMs: 0, waiting: 0, running: 0, kvUsage: 0, kvBlocksTotal: 100, blockSize: 16, prefixCacheQueries: 0, prefixCacheHits: 0, lora: null };

// A router that logs every hook it gets and sends request rK to pod K mod PODS (with `pd`, to
// decode pod K mod PODS and prefill pod K + 1 mod PODS).
function recorder(tag: string, pd = false) {
  const log: Array<[string, string]> = [];
  const seen: number[][] = []; // the in-flight counts its view showed at each route()
  const r: Router = {
    name: tag,
    route(q, _now, v) {
      log.push(["route", q.id]);
      seen.push(v.pods.map((p) => p.outstanding));
      const k = Number(q.id.slice(1));
      return pd ? { decode: k % PODS, prefill: (k + 1) % PODS } : k % PODS;
    },
    onFirstToken: (q) => void log.push(["first", q.id]),
    onPrefillDone: (q) => void log.push(["prefill", q.id]),
    onFinished: (q) => void log.push(["finished", q.id]),
    onScrape: (pod, _m, _now, page) => void log.push(["scrape", `${pod}:${page()}`]),
    stats: () => ({ routed: log.filter((e) => e[0] === "route").length, one: 1 }),
  };
  return { r, log, seen };
}

test("the spreader sends each request to a replica drawn uniformly at random, the same draws for the same seed", () => {
  const reps = [0, 1, 2, 3].map((i) => recorder(`x${i}`));
  const s = spread(reps.map((x) => x.r), 7);
  const v = view();
  for (let k = 0; k < 4000; k++) s.route(req(k), 0, v);
  const counts = reps.map((x) => x.log.length);
  assert.equal(counts.reduce((a, b) => a + b, 0), 4000);
  for (const c of counts) assert.ok(c > 900 && c < 1100, `replica shares ${counts.join(" ")}`);
  const again = [0, 1, 2, 3].map((i) => recorder(`y${i}`));
  const t = spread(again.map((x) => x.r), 7);
  for (let k = 0; k < 4000; k++) t.route(req(k), 0, v);
  assert.deepEqual(again.map((x) => x.log.map((e) => e[1])), reps.map((x) => x.log.map((e) => e[1])));
  const other = [0, 1, 2, 3].map((i) => recorder(`z${i}`));
  const u = spread(other.map((x) => x.r), 8);
  for (let k = 0; k < 400; k++) u.route(req(k), 0, v);
  assert.notDeepEqual(other.map((x) => x.log.map((e) => e[1])), reps.map((x) => x.log.filter((e) => Number(e[1].slice(1)) < 400).map((e) => e[1])));
});

test("a request's later hooks reach only the replica that routed it; each replica sees its own requests in flight", async () => {
  const reps = [0, 1, 2].map((i) => recorder(`x${i}`, true));
  const s = spread(reps.map((x) => x.r), 7);
  assert.equal(s.name, "x0");
  const v = view();
  for (let k = 0; k < 60; k++) assert.deepEqual(s.route(req(k), 0, v), { decode: k % PODS, prefill: (k + 1) % PODS }, "the replica's pods pass through");
  for (let k = 0; k < 60; k++) {
    s.onFirstToken!(req(k), k % PODS, 1);
    await s.onPrefillDone!(req(k), (k + 1) % PODS, true, 1);
    s.onFinished!(req(k), k % PODS, 2, { promptTokens: 4, completionTokens: 4, cachedTokens: 0 });
  }
  for (const x of reps) {
    const mine = new Set(x.log.filter((e) => e[0] === "route").map((e) => e[1]));
    assert.ok(mine.size > 5, `${mine.size} requests`);
    for (const hook of ["first", "prefill", "finished"]) assert.deepEqual(new Set(x.log.filter((e) => e[0] === hook).map((e) => e[1])), mine, hook);
    // At each route() the replica's view counted only the requests it had sent itself, on their
    // decode and prefill pods (none had finished yet).
    const sent = new Array<number>(PODS).fill(0);
    x.log.filter((e) => e[0] === "route").forEach((e, n) => {
      assert.deepEqual(x.seen[n], sent);
      const k = Number(e[1].slice(1));
      sent[k % PODS]++;
      sent[(k + 1) % PODS]++;
    });
  }
  // Every prefill ended and every request finished: every replica's counts are back to 0.
  for (let k = 1000; k < 1030; k++) s.route(req(k), 0, v);
  for (const x of reps) assert.deepEqual(x.seen[x.log.filter((e) => e[0] === "route").findIndex((e) => Number(e[1].slice(1)) >= 1000)], [0, 0, 0]);
  assert.throws(() => s.onFinished!(req(5000), 0, 3), /a request no replica took/);
});

test("every scrape goes to every replica, the page rendered once; stats are summed key by key", async () => {
  const reps = [0, 1, 2, 3].map((i) => recorder(`x${i}`));
  const s = spread(reps.map((x) => x.r), 7);
  let rendered = 0;
  await s.onScrape!(2, METRICS, 50, () => `page ${++rendered}`);
  assert.equal(rendered, 1);
  for (const x of reps) assert.deepEqual(x.log, [["scrape", "2:page 1"]]);
  const v = view();
  for (let k = 0; k < 10; k++) s.route(req(k), 0, v);
  assert.deepEqual(s.stats!(), { routed: 10, one: 4 });
  assert.equal(spread([{ name: "a", route: () => 0 }, { name: "b", route: () => 0 }], 7).stats, undefined, "no stats when no replica keeps any");
});

// A router that holds every request; its onTick (every tickMs) sends the held ones to the pod it
// has the fewest in flight on, or rejects every fifth; `now` decides through its HoldControl.
function holder(tag: string, tickMs: number) {
  const held: string[] = [];
  const ticks: number[] = [];
  let control: HoldControl | undefined;
  const r: Router = {
    name: tag,
    tickMs,
    attach: (c) => void (control = c),
    route(q) {
      held.push(q.id);
      return { hold: true } satisfies RouteDecision;
    },
    onTick(now, v) {
      ticks.push(now);
      const out: HeldDecision[] = [];
      for (const id of held.splice(0)) {
        if (Number(id.slice(1)) % 5 === 4) out.push({ id, reject: 429 });
        else {
          const loads = v.pods.map((p) => p.outstanding);
          const pod = loads.indexOf(Math.min(...loads));
          out.push({ id, pod });
        }
      }
      return out;
    },
  };
  return { r, held, ticks, now: (id: string, pod: number) => control!.dispatch(id, pod), shed: (id: string) => control!.reject(id, 429) };
}

test("holds pass through: a held request is decided by its own replica, through its control or its onTick, ticks at each replica's period", async () => {
  const reps = [holder("h0", 20), holder("h1", 10), holder("h2", 30)];
  const s = spread(reps.map((x) => x.r), 7);
  assert.equal(s.tickMs, 10, "the smallest period");
  const calls: string[] = [];
  s.attach!({ dispatch: (id, pod) => void calls.push(`${id}->${pod}`), reject: (id, st) => void calls.push(`${id}:${st}`) });
  const v = view();
  for (let k = 0; k < 30; k++) assert.deepEqual(await s.route(req(k), 0, v), { hold: true });
  const [a, b] = reps.filter((x) => x.held.length > 0);
  const mine = a.held.shift()!;
  a.now(mine, 2);
  const shed = a.held.shift()!;
  a.shed(shed);
  assert.deepEqual(calls, [`${mine}->2`, `${shed}:429`], "the cluster's control gets the replica's decisions");
  assert.throws(() => b.now(a.held[0], 0), /decided on r\d+, a request it does not hold/);
  const before = reps.flatMap((x) => x.held);
  const first = (await s.onTick!(10, v))!;
  assert.equal(first.length, 28);
  assert.deepEqual(first.map((d) => d.id), before, "every held request decided, the replicas' decisions merged in replica order");
  for (const d of first) assert.equal("reject" in d, Number(d.id.slice(1)) % 5 === 4);
  assert.deepEqual(reps.map((x) => x.ticks), [[10], [10], [10]]);
  await s.onTick!(20, v);
  await s.onTick!(30, v);
  await s.onTick!(40, v);
  assert.deepEqual(reps.map((x) => x.ticks), [[10, 20, 40], [10, 20, 30, 40], [10, 30]], "each replica at its own tickMs");
  assert.equal(await s.onTick!(50, v), undefined, "nothing held, nothing decided");
});

test("holding replicas through the driver: every request completed or answered 429, on the pods each replica chose", async () => {
  const reps = [holder("h0", 10), holder("h1", 10), holder("h2", 10)];
  const reqs = Array.from({ length: 60 }, (_, k) => ({ id: `r${k}`, tokens: Array.from({ length: 200 }, (_, t) => (k * 7 + t) % 500), maxTokens: 20 }));
  const r = await simulate({ cluster: { pods: PODS, seed: 7 }, source: fromList(reqs), router: spread(reps.map((x) => x.r), 7), arrival: { kind: "closed", concurrency: 8 } });
  assert.equal(r.requests.length, 48);
  assert.equal(r.rejected!.length, 12);
  assert.ok(r.rejected!.every((x) => x.status === 429 && Number(x.id.slice(1)) % 5 === 4));
  assert.equal(r.unfinished, 0);
  assert.ok(r.requests.every((q) => q.queuedMs !== undefined && q.queuedMs >= 0));
  assert.ok(r.requests.some((q) => q.queuedMs! > 0));
  assert.ok(reps.every((x) => x.ticks.length > 0));
});

test("an oracle is not spread; one router is returned unchanged", () => {
  assert.throws(() => spread([precise(7), precise(8)], 7), /precise is an oracle/);
  assert.throws(() => spread([{ name: "x", route: () => 0 }, precise(7)], 7), /precise is an oracle/);
  const one = gie(7);
  assert.equal(spread([one], 7), one);
  assert.throws(() => spread([], 7), /no routers/);
  // setup's replicas(): the oracle alone, built with the run's seed; anything else spread.
  const seeds: number[] = [];
  const o = replicas((seed) => (seeds.push(seed), precise(seed)), 7, 4);
  assert.equal(o.oracle, true);
  assert.deepEqual(seeds, [7000, 7]);
  seeds.length = 0;
  const g = replicas((seed) => (seeds.push(seed), gie(seed)), 7, 4);
  assert.deepEqual(seeds, [7000, 7001, 7002, 7003], "each replica its own seed");
  assert.equal(g.name, "gie");
  assert.equal(g.oracle, undefined);
});

// A small multi-turn workload: 3 pods, 24 conversations of 5 turns, each turn repeating the last.
const MULTI = join(dir, "multi.json");
writeFileSync(MULTI, JSON.stringify({ name: "multi", pods: 3, arrival: { kind: "closed", concurrency: 1000 }, source: { type: "multi-turn", sessions: 24, turns: 5, systemLen: 300, userLen: 120, outputLen: 30, thinkTimeMs: 500, startGapMs: 100, seed: 4 } }));

test("with 4 gateway replicas a prefix-aware strategy's hits fade: each replica's prefix index sees a quarter of each conversation", async () => {
  const hit = async (strategy: string, gateways: number) => {
    const s = setup(["--workload", MULTI, "--strategies", strategy, "--gateways", String(gateways), "--jobs", "1"]);
    assert.equal(s.gateways, gateways);
    const r = await runJob(s, { workload: 0, strategy, seed: 7 });
    assert.equal(r.unfinished, 0);
    assert.equal(r.requests.length, 120);
    return r.prefixHitRate;
  };
  for (const strategy of ["gie", "sglang-cache-aware"]) {
    const one = await hit(strategy, 1);
    const four = await hit(strategy, 4);
    assert.ok(one > 0.6, `${strategy}: ${one} with one gateway`);
    assert.ok(four < one - 0.1, `${strategy}: ${four} with 4 gateways, ${one} with one`);
  }
});

function bench(...args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", "scripts/bench/main.ts", ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("--gateways on the command line: 1 to 64; the JSON says how many, the workers build the replicas", () => {
  for (const bad of ["0", "65", "1.5"]) {
    const r = bench("--json", "--workload", MULTI, "--strategies", "round-robin", "--gateways", bad);
    assert.equal(r.status, 2, bad);
    assert.match(r.stderr, new RegExp(`--gateways ${bad.replace(".", "\\.")}: an integer from 1 to 64`));
  }
  const run = (jobs: string) => bench("--json", "--workload", MULTI, "--strategies", "least-request,precise", "--gateways", "3", "--jobs", jobs);
  const r = run("2");
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(out), ["gateways", "workloads", "verdicts"]);
  assert.equal(out.gateways, 3);
  assert.deepEqual(JSON.parse(run("1").stdout), out, "the same in worker processes and in one");
});
