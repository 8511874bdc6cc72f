// npm run bench:chaos — wasm-epp's gateway replicas sharing their prefix indexes (exchange.ts)
// while things go wrong (docs/benchmark.md "Chaos"):
//   restart      replica 1 is replaced at 40% of the run: the new instance starts empty, warms
//                its filter from a peer's snapshot, and the old one finishes its streams;
//   unreachable  replica 2 can reach no peer, nor they it, from 30% to 60% of the run;
//   pod-removed  the last pod is deleted at 50% of the run (it serves 5 s more, then refuses);
//   all          the three at once.
// Each leg runs on the same cluster, request stream and replicas as the calm run ("none") of its
// workload and seed; the times are fractions of the calm run's makespan. A leg passes when every
// request completed: none failed (a request sent to the deleted pod after its grace) and none
// was left unfinished. The report also shows what each leg cost in prefix hits and TTFT.
//
//   npm run bench:chaos                       multi-turn and trace-conversations, 4 replicas, seeds 7,8
//   npm run bench:chaos -- --quick            scaled down, one seed
//   npm run bench:chaos -- --gateways N --seeds 7,8,9 --only multi-turn --wasm PATH --json

import { readFileSync } from 'node:fs';
import { simulate, type ClusterResult } from '../../test/sim/cluster.ts';
import { summarize } from '../../test/sim/stats.ts';
import { builtinWorkloads, type Workload } from './workloads.ts';
import { wasmEpp, SIM_EPOCH_MS } from './strategies/wasm-epp.ts';
import { spread } from './spread.ts';
import { PeerNet } from './exchange.ts';

export const LEGS = ['none', 'restart', 'unreachable', 'pod-removed', 'all'] as const;
export type Leg = (typeof LEGS)[number];

export interface LegResult {
  workload: string;
  seed: number;
  leg: Leg;
  gateways: number;
  requests: number;
  completed: number;
  failed: number;
  unfinished: number;
  failures: string[];
  prefix_hit_rate: number;
  ttft_p90_ms: number;
  /** Requests sent to the deleted pod (before and after its grace). */
  to_removed_pod: number;
  exchange: PeerNet['totals'];
  router: Record<string, number>;
  passed: boolean;
}

export interface ChaosOptions {
  wasm: Uint8Array;
  workload: Workload;
  seed: number;
  gateways: number;
  leg: Leg;
  /** The calm run's makespan: the legs' events are placed at fractions of it. */
  makespanMs: number;
}

export async function runLeg(o: ChaosOptions): Promise<{ result: ClusterResult; leg: LegResult }> {
  const w = o.workload;
  if (w.pd || w.criticalities) throw new Error(`chaos: ${w.name} is not a plain pool workload`);
  const at = (f: number) => Math.round(o.makespanMs * f);
  const restart = o.leg === 'restart' || o.leg === 'all';
  const cut = o.leg === 'unreachable' || o.leg === 'all';
  const remove = o.leg === 'pod-removed' || o.leg === 'all';
  const net = new PeerNet({ epochMs: SIM_EPOCH_MS });
  if (cut && o.gateways > 2) net.cut(2, at(0.3), at(0.6));
  const routers = [];
  for (let i = 0; i < o.gateways; i++) {
    routers.push(wasmEpp({ wasm: o.wasm, seed: o.seed * 1000 + i, peers: net, ...(restart && i === 1 ? { restartAtMs: at(0.4) } : {}) }));
  }
  const removedPod = w.pods - 1;
  const removeAt = at(0.5);
  const result = await simulate({
    cluster: { pods: w.pods, engine: w.engine, seed: o.seed, ...(remove ? { removals: [{ pod: removedPod, atMs: removeAt, graceMs: 5000 }] } : {}) },
    source: w.source(o.seed),
    router: spread(routers, o.seed * 1000 + 999),
    arrival: w.arrival,
  });
  const requests = result.requests;
  const failed = result.failed ?? [];
  const prompt = requests.reduce((a, q) => a + q.promptTokens, 0);
  const cached = requests.reduce((a, q) => a + q.cachedTokens, 0);
  const toRemoved = remove ? requests.filter((q) => q.pod === removedPod && q.sentMs >= removeAt).length + failed.length : 0;
  const leg: LegResult = {
    workload: w.name,
    seed: o.seed,
    leg: o.leg,
    gateways: o.gateways,
    requests: requests.length + failed.length + result.unfinished + (result.rejected?.length ?? 0),
    completed: requests.length,
    failed: failed.length,
    unfinished: result.unfinished,
    failures: failed.slice(0, 5).map((f) => `${f.id}: ${f.error}`),
    prefix_hit_rate: prompt > 0 ? cached / prompt : 0,
    ttft_p90_ms: summarize(requests.map((q) => q.ttftMs)).p90,
    to_removed_pod: toRemoved,
    exchange: { ...net.totals },
    router: result.routerStats ?? {},
    passed: failed.length === 0 && result.unfinished === 0 && (result.rejected?.length ?? 0) === 0,
  };
  return { result, leg };
}

function table(rows: LegResult[]): string {
  const out = ['| workload | seed | leg | requests | completed | failed | unfinished | sent to the deleted pod after deletion | prefix hit | TTFT p90 (s) | exchange: bytes sent / lost | warm-up hashes | passed |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    const kb = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
    out.push(`| ${r.workload} | ${r.seed} | ${r.leg} | ${r.requests} | ${r.completed} | ${r.failed} | ${r.unfinished} | ${r.leg === 'pod-removed' || r.leg === 'all' ? r.to_removed_pod : '-'} | ${(r.prefix_hit_rate * 100).toFixed(1)}% | ${(r.ttft_p90_ms / 1000).toFixed(2)} | ${kb(r.exchange.bytesSent)} / ${kb(r.exchange.bytesLost)} | ${r.router.warmup_hashes_merged ?? '-'} | ${r.passed ? 'yes' : '**no**'} |`);
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const value = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const known = new Set(['--quick', '--json', '--gateways', '--seeds', '--only', '--wasm']);
  for (const a of args) if (a.startsWith('--') && !known.has(a)) throw new Error(`bench:chaos: unknown option ${a}`);
  const quick = args.includes('--quick');
  const json = args.includes('--json');
  const gateways = Number(value('--gateways') ?? 4);
  if (!Number.isInteger(gateways) || gateways < 3 || gateways > 64) throw new Error('bench:chaos: --gateways from 3 to 64 (replica 2 is cut off)');
  const seeds = (value('--seeds') ?? (quick ? '7' : '7,8')).split(',').map(Number);
  const only = (value('--only') ?? 'multi-turn,trace-conversations').split(',');
  const wasm = new Uint8Array(readFileSync(value('--wasm') ?? 'build/wasm-epp.wasm'));
  const workloads = builtinWorkloads(quick).filter((w) => only.includes(w.name));
  if (workloads.length !== only.length) throw new Error(`bench:chaos: --only ${only.join(',')}: not all are workloads`);
  const rows: LegResult[] = [];
  for (const w of workloads) {
    for (const seed of seeds) {
      let makespanMs = 0;
      for (const leg of LEGS) {
        const t0 = Date.now();
        const r = await runLeg({ wasm, workload: w, seed, gateways, leg, makespanMs });
        if (leg === 'none') makespanMs = r.result.makespanMs;
        rows.push(r.leg);
        if (!json) process.stderr.write(`${w.name} seed ${seed} ${leg}: ${r.leg.completed}/${r.leg.requests} completed, ${r.leg.failed} failed, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
      }
    }
  }
  const passed = rows.every((r) => r.passed);
  if (json) process.stdout.write(JSON.stringify({ gateways, rows, passed }) + '\n');
  else process.stdout.write(`${table(rows)}\n\n${passed ? 'every leg passed' : 'SOME LEGS FAILED'}\n`);
  process.exitCode = passed ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    process.stderr.write(`bench:chaos: ${(e as Error).message}\n`);
    process.exit(2);
  });
}
