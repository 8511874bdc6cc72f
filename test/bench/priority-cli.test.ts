// The priority workloads through the benchmark's command line (scripts/bench/main.ts in a child
// process, --quick): by_criticality in --json, the priority checks, the report's tables.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

function bench(...args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", "scripts/bench/main.ts", ...args], { cwd: ROOT, encoding: "utf8", timeout: 180_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const FIELDS = ["ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "queue_delay_p50_ms", "queue_delay_p90_ms", "queue_delay_p99_ms", "tpot_p50_ms", "e2e_p50_ms", "throughput_tok_s", "prefix_hit_rate", "kv_util_spread", "pod_share", "pod_share_cv", "by_criticality"];
const BANDS = ["Critical", "Standard", "Sheddable"];

test("--json on the priority workloads: by_criticality per strategy, sent = completed + rejected, the priority checks", () => {
  const r = bench("--quick", "--json", "--only", "priority-overload,priority-baseline", "--strategies", "gie,gie-flow-control,least-request", "--jobs", "2");
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(out.workloads), ["priority-overload", "priority-baseline"]);
  for (const w of ["priority-overload", "priority-baseline"]) {
    assert.deepEqual(Object.keys(out.workloads[w].strategies), ["gie", "gie-flow-control"], "only the strategies compared on priority run there");
    for (const m of Object.values(out.workloads[w].strategies) as Array<Record<string, any>>) {
      assert.deepEqual(Object.keys(m), FIELDS);
      assert.deepEqual(Object.keys(m.by_criticality), BANDS);
      for (const c of BANDS) {
        const b = m.by_criticality[c];
        assert.deepEqual(Object.keys(b), ["sent", "completed", "rejected", "ttft_p50_ms", "ttft_p90_ms"]);
        assert.equal(b.sent, b.completed + b.rejected, `${w} ${c}`);
      }
    }
    assert.deepEqual(Object.keys(out.verdicts[w]), ["nothing_lost", "critical_never_rejected", "critical_latency_holds", "gie_critical_grows"]);
    assert.equal(out.verdicts[w].nothing_lost.pass, true);
    assert.equal(out.verdicts[w].critical_never_rejected.pass, null, "wasm-epp was not run");
  }
  const over = out.workloads["priority-overload"].strategies, base = out.workloads["priority-baseline"].strategies;
  assert.equal(base.gie.by_criticality.Standard.sent, 0);
  assert.ok(over.gie.by_criticality.Standard.sent > 8 * over.gie.by_criticality.Critical.sent);
  assert.equal(over.gie.by_criticality.Critical.sent, base.gie.by_criticality.Critical.sent, "the same Critical requests");
  assert.equal(over.gie.by_criticality.Standard.rejected, 0, "gie forwards Standard, however loaded");
  assert.ok(over.gie.by_criticality.Sheddable.rejected > 0, "and sheds Sheddable");
  assert.ok(over["gie-flow-control"].by_criticality.Standard.rejected > 0, "flow control answers 429 at the TTL");
  const grows = out.verdicts["priority-overload"].gie_critical_grows;
  assert.equal(grows.pass, true);
  assert.ok(grows.ratio > 10, `gie's Critical p90 x${grows.ratio} under the overload`);
});

test("the report: per-criticality tables and the priority checks", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-priority-"));
  const r = bench("--quick", "--only", "priority-overload,priority-baseline", "--strategies", "gie", "--out", dir, "--jobs", "2");
  assert.equal(r.status, 0, r.stderr);
  const md = readFileSync(join(dir, "report.md"), "utf8");
  assert.match(md, /\| strategy \| band \| sent \| completed \| rejected \| TTFT p50 \(s\) \| TTFT p90 \(s\) \| TTFT p90 ÷ priority-baseline \|/);
  assert.match(md, /\| gie \| Critical \| \d+ \| \d+ \| 0 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
  assert.match(md, /## Priority under overload/);
  assert.match(md, /\| priority-overload \| pass \| - \(n\/a\) \|/);
  assert.doesNotMatch(md, /## wasm-epp against the bar/, "no workload without criticalities ran");
  const json = JSON.parse(readFileSync(join(dir, "results.json"), "utf8"));
  assert.deepEqual(Object.keys(json.workloads["priority-overload"].strategies.gie.by_criticality), BANDS);
});
