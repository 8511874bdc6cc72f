// npm run bench — routing strategies side by side on the same simulated cluster and the same
// request stream (docs/benchmark.md).
//
//   npm run bench                          all workloads, all strategies, report in build/bench/
//   npm run bench -- --quick               scaled down, one seed
//   npm run bench -- --json                one JSON object on stdout, nothing else
//   npm run bench -- --workload FILE       a workload file (.json) or a Mooncake trace (.jsonl);
//                                          repeatable; replaces the built-in ones
//   npm run bench -- --strategies a,b      a subset of strategies
//   npm run bench -- --out DIR             where the report and charts go (default build/bench)
//   npm run bench -- --seeds 7,8,9         simulation seeds; results pool the requests of all runs
//   npm run bench -- --wasm PATH           the filter module the wasm-epp strategies load
//   npm run bench -- --pods N              pods of every workload (default: its own; 8 for a trace)
//   npm run bench -- --jobs N              simulations at once, each in a worker process (default: the cores)
//   npm run bench -- --gateways N          N gateway replicas, each with its own router, behind a random spreader (spread.ts)
//   npm run bench -- --scrape-ms MIN,MAX   every pod scraped every MIN + U(0, MAX - MIN) ms (default 50,100)
//   --trace-block-tokens B, --trace-speed X, --trace-limit N   how a trace is replayed

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterResult } from '../../test/sim/cluster.ts';
import { summarize } from '../../test/sim/stats.ts';
import type { Workload } from './workloads.ts';
import { writeReport, type Row } from './report.ts';
import { byCriticality, coefficientOfVariation, podShares, prefillModel, queueDelays, rejectionsOtherThan429 } from './metrics.ts';
import { priorityVerdicts, verdicts, type PriorityVerdict, type WorkloadVerdict } from './verdict.ts';
import { runsOn, setup } from './setup.ts';
import { runJobs, type Job } from './runner.ts';

const args = process.argv.slice(2);
const config = setup(args);
const { quick, json, outDir, seeds, workloads, strategies } = config;

function progress(text: string): void {
  if (!json) process.stderr.write(text);
}

// One row from the runs of a strategy on a workload: percentiles over all their requests.
function row(w: Workload, name: string, runs: ClusterResult[]): Row {
  const requests = runs.flatMap((r) => r.requests);
  const ttft = summarize(requests.map((q) => q.ttftMs));
  const queue = summarize(queueDelays(requests, prefillModel(w.engine)));
  const prompt = requests.reduce((a, q) => a + q.promptTokens, 0);
  // On a prefill/decode cluster the prompt's cache hit is the prefill pod's.
  const cached = requests.reduce((a, q) => a + (q.prefillCachedTokens ?? q.cachedTokens), 0);
  const mean = (f: (r: ClusterResult) => number) => runs.reduce((a, r) => a + f(r), 0) / runs.length;
  const share = podShares(runs);
  // What the router predicted, in the servers' own token counts (wasm-epp reports it).
  const own = runs.map((r) => r.routerStats).filter((x): x is Record<string, number> => x !== undefined && x.prompt_tokens > 0);
  const predicted = own.length === runs.length ? own.reduce((a, x) => a + x.predicted_cached_tokens, 0) / own.reduce((a, x) => a + x.prompt_tokens, 0) : undefined;
  return {
    workload: w.name,
    strategy: name,
    ttft_p50_ms: ttft.p50,
    ttft_p90_ms: ttft.p90,
    ttft_p99_ms: ttft.p99,
    queue_delay_p50_ms: queue.p50,
    queue_delay_p90_ms: queue.p90,
    queue_delay_p99_ms: queue.p99,
    tpot_p50_ms: summarize(requests.map((q) => q.tpotMs)).p50,
    e2e_p50_ms: summarize(requests.map((q) => q.e2eMs)).p50,
    throughput_tok_s: mean((r) => r.outputTokensPerSec),
    prefix_hit_rate: prompt > 0 ? cached / prompt : 0,
    ...(predicted !== undefined ? { predicted_hit_rate: predicted } : {}),
    ...(own.length > 0 ? { router_stats: Object.fromEntries(Object.keys(own[0]).map((k) => [k, own.reduce((x, o) => x + (o[k] ?? 0), 0)])) } : {}),
    kv_util_spread: mean((r) => r.kvSpread.meanRange),
    pod_share: share,
    pod_share_cv: coefficientOfVariation(share),
    requests: requests.length,
    unfinished: runs.reduce((a, r) => a + r.unfinished, 0),
    preemptions: mean((r) => r.preemptions),
    wall_ms: runs.reduce((a, r) => a + r.wallMs, 0),
    seed_p90_ms: runs.map((r) => r.ttft.p90),
    result: runs[0],
    // Workloads with criticalities: each band's requests, and the priority checks' inputs.
    ...(w.criticalities ? { by_criticality: byCriticality(runs), rejected_not_429: rejectionsOtherThan429(runs), ...(w.baseline ? { baseline: w.baseline } : {}) } : {}),
  };
}

// Every (workload, strategy, seed) is a job; a row pools the runs of its seeds.
// P/D workloads run the strategies that route prefill/decode clusters, the others the rest.
const jobs: Job[] = workloads.flatMap((w, workload) => strategies.filter((s) => runsOn(s, w)).flatMap((strategy) => seeds.map((seed) => ({ workload, strategy, seed }))));
const results: ClusterResult[] = new Array(jobs.length);
const runsOf = (workload: number, strategy: string) => jobs.flatMap((j, k) => (j.workload === workload && j.strategy === strategy ? [results[k]] : []));
const started = Date.now();
progress(`seeds ${seeds.join(', ')}; ${config.gateways > 1 ? `${config.gateways} gateway replicas; ` : ''}${jobs.length} runs, ${Math.min(config.jobs, jobs.length)} at a time\n`);
try {
  await runJobs(config, args, jobs, (i, r) => {
    results[i] = r;
    const { workload, strategy } = jobs[i];
    const runs = runsOf(workload, strategy);
    if (runs.every(Boolean)) progress(`${workloads[workload].name}: ${strategy} ${(runs.reduce((a, x) => a + x.wallMs, 0) / 1000).toFixed(1)}s\n`);
  });
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
}
const rows: Row[] = workloads.flatMap((w, wi) => strategies.filter((s) => runsOn(s, w)).map((name) => row(w, name, runsOf(wi, name))));

const round = (v: number, d = 1) => (Number.isFinite(v) ? Math.round(v * 10 ** d) / 10 ** d : null);
type Metrics = Record<string, number | null | Array<number | null> | Record<string, number>>;
// Workloads without criticalities get the bar's checks, those with criticalities the priority checks.
// `gateways` only when the runs had several replicas (with one the output is as it always was).
const out: { gateways?: number; workloads: Record<string, { strategies: Record<string, Metrics> }>; verdicts: Record<string, WorkloadVerdict | PriorityVerdict> } = {
  ...(config.gateways > 1 ? { gateways: config.gateways } : {}),
  workloads: {},
  verdicts: { ...verdicts(rows), ...priorityVerdicts(rows) },
};
for (const r of rows) {
  (out.workloads[r.workload] ??= { strategies: {} }).strategies[r.strategy] = {
    ttft_p50_ms: round(r.ttft_p50_ms),
    ttft_p90_ms: round(r.ttft_p90_ms),
    ttft_p99_ms: round(r.ttft_p99_ms),
    queue_delay_p50_ms: round(r.queue_delay_p50_ms),
    queue_delay_p90_ms: round(r.queue_delay_p90_ms),
    queue_delay_p99_ms: round(r.queue_delay_p99_ms),
    tpot_p50_ms: round(r.tpot_p50_ms, 2),
    e2e_p50_ms: round(r.e2e_p50_ms),
    throughput_tok_s: round(r.throughput_tok_s),
    prefix_hit_rate: round(r.prefix_hit_rate, 4),
    ...(r.predicted_hit_rate !== undefined ? { predicted_hit_rate: round(r.predicted_hit_rate, 4) } : {}),
    ...(r.router_stats ? { router_stats: r.router_stats } : {}),
    kv_util_spread: round(r.kv_util_spread, 4),
    pod_share: r.pod_share.map((x) => round(x, 4)),
    pod_share_cv: round(r.pod_share_cv, 4),
  };
  if (r.by_criticality) {
    const bands: Record<string, Metrics> = {};
    for (const [c, b] of Object.entries(r.by_criticality)) bands[c] = { sent: b.sent, completed: b.completed, rejected: b.rejected, ttft_p50_ms: round(b.ttft_p50_ms), ttft_p90_ms: round(b.ttft_p90_ms) };
    (out.workloads[r.workload].strategies[r.strategy] as Record<string, unknown>).by_criticality = bands;
  }
}

if (json) {
  process.stdout.write(JSON.stringify(out) + '\n');
} else {
  mkdirSync(outDir, { recursive: true });
  const report = writeReport(outDir, workloads, rows, { quick, seeds, gateways: config.gateways, scrape: config.scrape, wallS: (Date.now() - started) / 1000 });
  process.stdout.write(report.summary);
  process.stdout.write(`\nreport: ${join(outDir, 'report.md')}, charts: ${report.charts.join(', ')}\n`);
  writeFileSync(join(outDir, 'results.json'), JSON.stringify(out, null, 2));
}
