// The benchmark's command line as a user runs it (scripts/bench/main.ts in a child process).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "bench-cli-"));

function bench(...args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", "scripts/bench/main.ts", ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const trace = join(dir, "prod.jsonl");
const lines: string[] = [];
for (let i = 0; i < 30; i++) lines.push(JSON.stringify({ timestamp: 5000 + i * 150, input_length: 800 + 61 * i, output_length: 40, hash_ids: [0, 1 + (i % 4), 10 + i] }));
writeFileSync(trace, lines.join("\n") + "\n");
const list = join(dir, "tiny.json");
writeFileSync(list, JSON.stringify({
  name: "tiny",
  pods: 2,
  arrival: { kind: "closed", concurrency: 4 },
  source: { type: "list", requests: Array.from({ length: 20 }, (_, i) => ({ prompt: `question ${i} `.repeat(20), maxTokens: 20 })) },
}));

const FIELDS = ["ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "queue_delay_p50_ms", "queue_delay_p90_ms", "queue_delay_p99_ms", "tpot_p50_ms", "e2e_p50_ms", "throughput_tok_s", "prefix_hit_rate", "kv_util_spread", "pod_share", "pod_share_cv"];

test("--json prints exactly one JSON object on stdout: every metric per strategy, and the verdicts", () => {
  const run = (jobs: string) => bench("--json", "--workload", trace, "--workload", list, "--strategies", "round-robin,least-request", "--pods", "3", "--trace-block-tokens", "128", "--jobs", jobs);
  const r = run("2"); // in two worker processes
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout); // the whole of stdout
  const alone = run("1");
  assert.deepEqual(JSON.parse(alone.stdout), out, "the same results in one process");
  assert.deepEqual(Object.keys(out), ["workloads", "verdicts"]);
  assert.deepEqual(Object.keys(out.workloads), ["prod", "tiny"]);
  for (const w of ["prod", "tiny"]) {
    assert.deepEqual(Object.keys(out.workloads[w].strategies), ["round-robin", "least-request"]);
    for (const m of Object.values(out.workloads[w].strategies) as Array<Record<string, unknown>>) {
      assert.deepEqual(Object.keys(m), FIELDS);
      assert.equal((m.pod_share as number[]).length, 3);
      assert.ok(Math.abs((m.pod_share as number[]).reduce((a, b) => a + b, 0) - 1) < 1e-3);
      assert.ok((m.ttft_p90_ms as number) >= (m.queue_delay_p90_ms as number));
    }
    assert.deepEqual(Object.keys(out.verdicts[w]), ["beats_peers", "near_precise", "default_vs_least_request"]);
    assert.equal(out.verdicts[w].beats_peers.pass, null); // wasm-epp was not run
  }
  assert.equal(out.workloads.prod.strategies["round-robin"].pod_share_cv, 0); // 30 requests, 3 pods, in turn
});

test("the report: queueing delay, share columns and the verdict section", () => {
  const out = join(dir, "report");
  const r = bench("--workload", trace, "--strategies", "round-robin,least-request", "--out", out, "--jobs", "1");
  assert.equal(r.status, 0, r.stderr);
  const md = readFileSync(join(out, "report.md"), "utf8");
  assert.match(md, /\| strategy \| TTFT p50 \(s\) \| TTFT p90 \(s\) \| TTFT p99 \(s\) \| queue p50 \(s\) \| queue p90 \(s\) \|.*\| share CV \| max share \|/);
  assert.match(md, /30 requests over 4 s, 512 tokens per hash id, sent at their timestamps; 8 pods/);
  assert.match(md, /## wasm-epp against the bar/);
  assert.match(md, /\| prod \| - \| (round-robin|least-request) [\d.]+ \| n\/a \|/);
  assert.deepEqual(Object.keys(JSON.parse(readFileSync(join(out, "results.json"), "utf8"))), ["workloads", "verdicts"]);
});

test("a malformed trace line, an unknown option or a missing filter module is a clear error", () => {
  const bad = join(dir, "bad.jsonl");
  writeFileSync(bad, `${lines[0]}\n${lines[1]}\n{"timestamp": 1, "input_length": "many"}\n`);
  const r = bench("--json", "--workload", bad, "--strategies", "round-robin", "--jobs", "1");
  assert.equal(r.status, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /bad\.jsonl:3: input_length must be an integer >= 1/);
  const u = bench("--json", "--quik");
  assert.equal(u.status, 2);
  assert.match(u.stderr, /unknown argument --quik/);
  const s = bench("--json", "--workload", list, "--scrape-ms", "50,20");
  assert.equal(s.status, 2);
  assert.match(s.stderr, /--scrape-ms 50,20: MIN,MAX in milliseconds, 1 <= MIN <= MAX/);
  const w = bench("--json", "--workload", list, "--strategies", "wasm-epp", "--wasm", join(dir, "missing.wasm"), "--jobs", "2");
  assert.equal(w.status, 2);
  assert.match(w.stderr, /cannot read the filter module .*missing\.wasm/);
});

test("--scrape-ms: the scrape cadence reaches the simulation (a faster one changes a load-aware strategy's results)", () => {
  const run = (...extra: string[]) => bench("--json", "--workload", list, "--strategies", "gie", "--pods", "3", "--jobs", "1", ...extra);
  const base = run();
  const same = run("--scrape-ms", "50,100");
  const fast = run("--scrape-ms", "5,5");
  assert.equal(fast.status, 0, fast.stderr);
  assert.deepEqual(JSON.parse(same.stdout), JSON.parse(base.stdout), "50,100 is the default");
  assert.notDeepEqual(JSON.parse(fast.stdout).workloads, JSON.parse(base.stdout).workloads);
});

test("the build writes its informational lines to stderr, leaving stdout to the bench", () => {
  const build = readFileSync(join(ROOT, "scripts/build.mjs"), "utf8");
  assert.doesNotMatch(build, /console\.log|process\.stdout/);
  assert.match(build, /console\.error\(`build\/wasm-epp\.wasm/);
});
