// The benchmark's Markdown report and SVG charts.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterResult } from '../../test/sim/cluster.ts';
import type { Workload } from './workloads.ts';
import { cdf, lineChart } from './svg.ts';
import { CRITICAL_LATENCY_BAR, passText, PEERS, priorityVerdicts, verdicts } from './verdict.ts';
import type { BandStats } from './metrics.ts';
import { CRITICALITIES, type Criticality } from '../../test/sim/workload.ts';

export interface Row {
  workload: string;
  strategy: string;
  ttft_p50_ms: number;
  ttft_p90_ms: number;
  ttft_p99_ms: number;
  /** TTFT minus the prefill of the uncached prompt on an idle pod (metrics.ts). */
  queue_delay_p50_ms: number;
  queue_delay_p90_ms: number;
  queue_delay_p99_ms: number;
  tpot_p50_ms: number;
  e2e_p50_ms: number;
  throughput_tok_s: number;
  prefix_hit_rate: number;
  /** The share of prompt tokens the router itself predicted cached (wasm-epp: its metrics), when it says. */
  predicted_hit_rate?: number;
  /** The router's own figures summed over the runs (Router.stats). */
  router_stats?: Record<string, number>;
  kv_util_spread: number;
  /** Each pod's fraction of the requests, and their coefficient of variation. */
  pod_share: number[];
  pod_share_cv: number;
  requests: number;
  unfinished: number;
  preemptions: number;
  wall_ms: number;
  /** TTFT p90 of each seed's run. */
  seed_p90_ms: number[];
  /** The first seed's run (time series for the charts). */
  result: ClusterResult;
  /** Workloads with criticalities: each band's requests (metrics.ts byCriticality). */
  by_criticality?: Record<Criticality, BandStats>;
  /** Rejections with a status other than 429. */
  rejected_not_429?: number;
  /** The workload's baseline (the same without its overload). */
  baseline?: string;
}

// How many gateways routed: one router, or replicas behind a random spreader (spread.ts).
const gatewaysText = (n: number) =>
  n === 1 ? 'One gateway: each strategy is one router. ' : `**${n} gateway replicas**: each strategy runs as ${n} routers with their own state (prefix indexes, counts, sidecars) behind a load balancer that sends each request to one of them at random (--gateways ${n}); the precise oracle runs as one. `;
const s = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(ms < 10_000 ? 2 : 1) : '-');
const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

export function writeReport(dir: string, workloads: Workload[], rows: Row[], meta: { quick: boolean; seeds: number[]; gateways?: number; scrape?: { minMs: number; maxMs: number }; wallS: number }): { summary: string; charts: string[] } {
  const charts: string[] = [];
  const lines: string[] = [];
  const summary: string[] = [];
  if ((meta.gateways ?? 1) > 1) summary.push(`${meta.gateways} gateway replicas per strategy (the precise oracle: one)`);
  lines.push('# wasm-epp routing benchmark', '');
  lines.push(`Simulated vLLM pods (Qwen2.5-7B on A10, docs/simulator.md), every strategy on the same cluster and the same request stream, metrics scraped every ${meta.scrape?.minMs ?? 50}–${meta.scrape?.maxMs ?? 100} ms for all. Queue: TTFT minus the prefill of the request's uncached tokens on an idle pod. Share CV: the coefficient of variation of the pods' shares of requests (0 is an even spread). Each cell pools the requests of ${meta.seeds.length} run${meta.seeds.length > 1 ? 's' : ''} (seeds ${meta.seeds.join(', ')}): a closed-loop load test is chaotic, and single runs of one policy differ by several times at the tail; the last column shows each run's TTFT p90. ${gatewaysText(meta.gateways ?? 1)}${meta.quick ? '**Quick run** (scaled down). ' : ''}Wall time ${meta.wallS.toFixed(0)} s.`, '');
  for (const w of workloads) {
    const wr = rows.filter((r) => r.workload === w.name);
    if (wr.length === 0) continue;
    lines.push(`## ${w.name}`, '', w.description, '');
    const header = '| strategy | TTFT p50 (s) | TTFT p90 (s) | TTFT p99 (s) | queue p50 (s) | queue p90 (s) | TPOT p50 (ms) | e2e p50 (s) | output tok/s | prefix hit (predicted) | KV spread | share CV | max share | preemptions | TTFT p90 per run (s) |';
    const rule = '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|';
    lines.push(header, rule);
    summary.push(`\n${w.name}\n${header}\n${rule}`);
    for (const r of wr) {
      const line = `| ${r.strategy} | ${s(r.ttft_p50_ms)} | ${s(r.ttft_p90_ms)} | ${s(r.ttft_p99_ms)} | ${s(r.queue_delay_p50_ms)} | ${s(r.queue_delay_p90_ms)} | ${r.tpot_p50_ms.toFixed(1)} | ${s(r.e2e_p50_ms)} | ${r.throughput_tok_s.toFixed(0)} | ${pct(r.prefix_hit_rate)}${r.predicted_hit_rate !== undefined ? ` (${pct(r.predicted_hit_rate)})` : ''} | ${r.kv_util_spread.toFixed(3)} | ${r.pod_share_cv.toFixed(3)} | ${pct(Math.max(...r.pod_share))} | ${r.preemptions.toFixed(0)} | ${r.seed_p90_ms.map(s).join(' ')} |`;
      lines.push(line);
      summary.push(line);
    }
    lines.push('', `Requests per pod (share): ${wr.map((r) => `${r.strategy} ${r.pod_share.map((x) => (x * 100).toFixed(0)).join('/')}`).join('; ')} (%).`, '');
    if (w.criticalities) {
      // Per band: what each strategy did with each criticality's requests.
      const base = w.baseline ? rows.filter((r) => r.workload === w.baseline) : [];
      const header = `| strategy | band | sent | completed | rejected | TTFT p50 (s) | TTFT p90 (s) |${w.baseline ? ` TTFT p90 ÷ ${w.baseline} |` : ''}`;
      const rule = `|---|---|---|---|---|---|---|${w.baseline ? '---|' : ''}`;
      lines.push(`Per criticality (the table above is over completed requests of all bands; TTFT counts from when the client sent the request, time held in a queue included):`, '', header, rule);
      summary.push(`\n${w.name} per criticality\n${header}\n${rule}`);
      for (const r of wr) {
        for (const c of CRITICALITIES) {
          const b = r.by_criticality?.[c];
          if (!b || b.sent === 0) continue;
          const ref = base.find((x) => x.strategy === r.strategy)?.by_criticality?.[c]?.ttft_p90_ms;
          const ratio = ref !== undefined && Number.isFinite(ref) && ref > 0 && Number.isFinite(b.ttft_p90_ms) ? (b.ttft_p90_ms / ref).toFixed(2) : '-';
          const line = `| ${r.strategy} | ${c} | ${b.sent} | ${b.completed} | ${b.rejected} | ${s(b.ttft_p50_ms)} | ${s(b.ttft_p90_ms)} |${w.baseline ? ` ${ratio} |` : ''}`;
          lines.push(line);
          summary.push(line);
        }
      }
      lines.push('');
    }
    const file = `ttft-cdf-${w.name}.svg`;
    writeFileSync(join(dir, file), lineChart(
      wr.map((r) => ({ label: r.strategy, ...cdf(r.result.requests.map((q) => q.ttftMs / 1000)) })),
      { title: `TTFT, ${w.name}`, xLabel: 'time to first token (s, log scale)', yLabel: 'fraction of requests', yMax: 1, logX: true },
    ));
    charts.push(file);
    lines.push(`![TTFT CDF, ${w.name}](${file})`, '');
    for (const name of ['round-robin', 'wasm-epp']) {
      const r = wr.find((x) => x.strategy === name);
      if (!r) continue;
      const kvFile = `kv-${w.name}-${name}.svg`;
      const t = r.result.samples.tMs.map((x) => x / 1000);
      writeFileSync(join(dir, kvFile), lineChart(
        r.result.samples.kvUsage.map((kv, i) => ({ label: `pod-${i}`, xs: t, ys: kv })),
        { title: `KV-cache utilization per pod, ${name}, ${w.name}`, xLabel: 'time (s)', yLabel: 'KV-cache usage', yMax: 1 },
      ));
      charts.push(kvFile);
      lines.push(`![KV per pod, ${name}](${kvFile})`);
    }
    lines.push('');
  }
  const v = Object.entries(verdicts(rows));
  const pv = Object.entries(priorityVerdicts(rows));
  if (v.length) {
    lines.push('## wasm-epp against the bar', '');
    lines.push(`The bar, on TTFT p90 for every workload: wasm-epp at or below every peer (${PEERS.join(', ')}; ties within 3%); wasm-epp within 1.1x of precise; wasm-epp-default at or below least-request (ties within 3%). n/a: a strategy the check needs was not run.`, '');
    const header = '| workload | wasm-epp TTFT p90 (s) | best peer TTFT p90 (s) | at or below every peer | × of precise | within 1.1× of precise | wasm-epp-default ÷ least-request | default at or below least-request |';
    const rule = '|---|---|---|---|---|---|---|---|';
    lines.push(header, rule);
    summary.push('\nwasm-epp against the bar', header, rule);
    const x = (r: number | null) => (r === null ? '-' : r.toFixed(2));
    for (const [w, c] of v) {
      const p = c.beats_peers;
      const line = `| ${w} | ${p.wasm_epp_p90_ms === null ? '-' : s(p.wasm_epp_p90_ms)} | ${p.best_peer ?? '-'} ${p.best_peer_p90_ms === null ? '' : s(p.best_peer_p90_ms)} | ${passText(p)} | ${x(c.near_precise.ratio)} | ${passText(c.near_precise)} | ${x(c.default_vs_least_request.ratio)} | ${passText(c.default_vs_least_request)} |`;
      lines.push(line);
      summary.push(line);
    }
    const all = v.flatMap(([, c]) => [c.beats_peers, c.near_precise, c.default_vs_least_request]).filter((c) => c.pass !== null);
    const passed = all.filter((c) => c.pass).length;
    lines.push('', `${passed} of ${all.length} checks pass. "× of precise": wasm-epp's TTFT p90 divided by the precise oracle's (1.00 would match a router that reads every pod's exact cache and queue at the moment of the decision).`, '');
    summary.push(`${passed} of ${all.length} checks pass`);
  }
  if (pv.length) {
    lines.push('## Priority under overload', '');
    lines.push(`On the workloads with criticalities: nothing lost (for every strategy and band, sent = completed + rejected, every rejection a 429); wasm-epp never rejects a Critical request; under the overload wasm-epp's Critical TTFT p90 stays within ${CRITICAL_LATENCY_BAR}× of its value on the baseline (the same Critical requests without the Standard overload), while gie's grows. n/a: a strategy or workload the check needs was not run.`, '');
    const header = '| workload | nothing lost | wasm-epp Critical rejected | wasm-epp Critical TTFT p90 (s) | baseline (s) | × baseline | within 2× | gie Critical × baseline | gie\'s grows |';
    const rule = '|---|---|---|---|---|---|---|---|---|';
    lines.push(header, rule);
    summary.push('\npriority checks', header, rule);
    const x = (r: number | null) => (r === null ? '-' : r.toFixed(2));
    const t = (ms: number | null) => (ms === null ? '-' : s(ms));
    for (const [w, c] of pv) {
      const line = `| ${w} | ${c.nothing_lost.pass ? 'pass' : 'FAIL'} | ${c.critical_never_rejected.rejected ?? '-'} (${passText(c.critical_never_rejected)}) | ${t(c.critical_latency_holds.wasm_epp_p90_ms)} | ${t(c.critical_latency_holds.baseline_p90_ms)} | ${x(c.critical_latency_holds.ratio)} | ${passText(c.critical_latency_holds)} | ${x(c.gie_critical_grows.ratio)} | ${passText(c.gie_critical_grows)} |`;
      lines.push(line);
      summary.push(line);
    }
    const problems = pv.flatMap(([w, c]) => c.nothing_lost.problems.map((p) => `${w}: ${p}`));
    if (problems.length) lines.push('', `Lost or not answered 429: ${problems.join('; ')}.`);
    const checks = pv.flatMap(([, c]) => [c.nothing_lost, c.critical_never_rejected, c.critical_latency_holds, c.gie_critical_grows]).filter((c) => c.pass !== null);
    const passed = checks.filter((c) => c.pass).length;
    lines.push('', `${passed} of ${checks.length} priority checks pass.`, '');
    summary.push(`${passed} of ${checks.length} priority checks pass`);
  }
  writeFileSync(join(dir, 'report.md'), lines.join('\n') + '\n');
  return { summary: summary.join('\n') + '\n', charts };
}
