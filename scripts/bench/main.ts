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
//   --trace-block-tokens B, --trace-speed X, --trace-limit N   how a trace is replayed

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { simulate, type ClusterResult, type Router } from '../../test/sim/cluster.ts';
import { summarize } from '../../test/sim/stats.ts';
import { leastRequest, random, roundRobin } from '../../test/sim/routers.ts';
import { builtinWorkloads, loadWorkloadFile, type Workload } from './workloads.ts';
import { gie } from './strategies/gie.ts';
import { sglangCacheAware } from './strategies/sglang.ts';
import { precise } from './strategies/precise.ts';
import { wasmEpp } from './strategies/wasm-epp.ts';
import { writeReport, type Row } from './report.ts';
import { coefficientOfVariation, podShares, prefillModel, queueDelays } from './metrics.ts';
import { verdicts } from './verdict.ts';

const FLAGS = new Set(['--quick', '--json']);
const OPTIONS = new Set(['--out', '--strategies', '--seeds', '--workload', '--wasm', '--pods', '--trace-block-tokens', '--trace-speed', '--trace-limit']);
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (OPTIONS.has(args[i])) {
    if (i + 1 >= args.length) fail(`${args[i]} needs a value`);
    i++;
  } else if (!FLAGS.has(args[i])) {
    fail(`unknown argument ${args[i]}; options: ${[...FLAGS, ...OPTIONS].join(' ')}`);
  }
}
const flag = (name: string) => args.includes(name);
const values = (name: string) => args.flatMap((a, i) => (a === name && i + 1 < args.length ? [args[i + 1]] : []));
const number = (name: string, ok: (v: number) => boolean): number | undefined => {
  const v = values(name)[0];
  if (v === undefined) return undefined;
  if (!ok(Number(v))) fail(`${name} ${v}: not a valid value`);
  return Number(v);
};
const positiveInt = (v: number) => Number.isInteger(v) && v >= 1;
const quick = flag('--quick');
const json = flag('--json');
const outDir = values('--out')[0] ?? 'build/bench';
const wasmPath = values('--wasm')[0] ?? new URL('../../build/wasm-epp.wasm', import.meta.url);
const pods = number('--pods', positiveInt);
const trace = {
  blockTokens: number('--trace-block-tokens', positiveInt),
  speed: number('--trace-speed', (v) => v > 0),
  limit: number('--trace-limit', positiveInt),
};

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

// Read once, and only when a wasm-epp strategy runs.
let wasmBytes: Uint8Array | undefined;
const wasm = () => {
  try {
    return (wasmBytes ??= new Uint8Array(readFileSync(wasmPath)));
  } catch (e) {
    fail(`cannot read the filter module ${wasmPath}: ${(e as Error).message}`);
  }
};

const STRATEGIES: Record<string, (seed: number) => Router> = {
  'round-robin': () => roundRobin(),
  random: (seed) => random(seed),
  'least-request': (seed) => leastRequest({ seed }),
  gie: (seed) => gie(seed),
  'sglang-cache-aware': () => sglangCacheAware(),
  'wasm-epp': (seed) => wasmEpp({ wasm: wasm(), seed }),
  'wasm-epp-default': (seed) => Object.assign(wasmEpp({ wasm: wasm(), seed, strategy: 'DEFAULT' }), { name: 'wasm-epp-default' }),
  precise: (seed) => precise(seed),
};

const chosen = values('--strategies').flatMap((s) => s.split(',')).filter(Boolean);
for (const s of chosen) if (!STRATEGIES[s]) fail(`unknown strategy ${s}; known: ${Object.keys(STRATEGIES).join(', ')}`);
const strategies = chosen.length ? chosen : Object.keys(STRATEGIES);
const files = values('--workload');
let workloads: Workload[];
try {
  workloads = files.length ? files.map((f) => loadWorkloadFile(f, { ...trace, pods })) : builtinWorkloads(quick);
} catch (e) {
  fail((e as Error).message);
}
if (pods !== undefined) workloads = workloads.map((w) => (w.pods === pods ? w : { ...w, pods, description: `${w.description} (run on ${pods} pods)` }));
// A closed-loop load test is chaotic (one policy, one workload: TTFT p90 from 0.7 s to 3.2 s
// across seeds), so results pool several runs.
const seeds = (values('--seeds')[0] ?? (quick ? '7' : '7,8,9')).split(',').map(Number);
if (!seeds.every(Number.isInteger)) fail(`--seeds: integers separated by commas`);

function progress(text: string): void {
  if (!json) process.stderr.write(text);
}

// One row from the runs of a strategy on a workload: percentiles over all their requests.
function row(w: Workload, name: string, runs: ClusterResult[]): Row {
  const requests = runs.flatMap((r) => r.requests);
  const ttft = summarize(requests.map((q) => q.ttftMs));
  const queue = summarize(queueDelays(requests, prefillModel(w.engine)));
  const prompt = requests.reduce((a, q) => a + q.promptTokens, 0);
  const cached = requests.reduce((a, q) => a + q.cachedTokens, 0);
  const mean = (f: (r: ClusterResult) => number) => runs.reduce((a, r) => a + f(r), 0) / runs.length;
  const share = podShares(runs);
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
    kv_util_spread: mean((r) => r.kvSpread.meanRange),
    pod_share: share,
    pod_share_cv: coefficientOfVariation(share),
    requests: requests.length,
    unfinished: runs.reduce((a, r) => a + r.unfinished, 0),
    preemptions: mean((r) => r.preemptions),
    wall_ms: runs.reduce((a, r) => a + r.wallMs, 0),
    seed_p90_ms: runs.map((r) => r.ttft.p90),
    result: runs[0],
  };
}

const rows: Row[] = [];
const started = Date.now();
progress(`seeds ${seeds.join(', ')}\n`);
for (const w of workloads) {
  progress(`${w.name} (${w.pods} pods): `);
  for (const name of strategies) {
    const t0 = Date.now();
    const runs: ClusterResult[] = [];
    for (const seed of seeds) {
      runs.push(await simulate({
        cluster: { pods: w.pods, engine: w.engine, seed },
        source: w.source(),
        router: STRATEGIES[name](seed),
        arrival: w.arrival,
      }));
    }
    rows.push(row(w, name, runs));
    progress(`${name} ${((Date.now() - t0) / 1000).toFixed(1)}s, `);
  }
  progress('\n');
}

const round = (v: number, d = 1) => (Number.isFinite(v) ? Math.round(v * 10 ** d) / 10 ** d : null);
type Metrics = Record<string, number | null | Array<number | null>>;
const out: { workloads: Record<string, { strategies: Record<string, Metrics> }>; verdicts: ReturnType<typeof verdicts> } = { workloads: {}, verdicts: verdicts(rows) };
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
    kv_util_spread: round(r.kv_util_spread, 4),
    pod_share: r.pod_share.map((x) => round(x, 4)),
    pod_share_cv: round(r.pod_share_cv, 4),
  };
}

if (json) {
  process.stdout.write(JSON.stringify(out) + '\n');
} else {
  mkdirSync(outDir, { recursive: true });
  const report = writeReport(outDir, workloads, rows, { quick, seeds, wallS: (Date.now() - started) / 1000 });
  process.stdout.write(report.summary);
  process.stdout.write(`\nreport: ${join(outDir, 'report.md')}, charts: ${report.charts.join(', ')}\n`);
  writeFileSync(join(outDir, 'results.json'), JSON.stringify(out, null, 2));
}
