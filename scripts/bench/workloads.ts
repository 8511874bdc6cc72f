// The benchmark's workloads, and the schema of `--workload FILE.json` (docs/benchmark.md);
// `--workload FILE.jsonl` is a trace (trace-workload.ts).

import { readFileSync } from 'node:fs';
import type { Arrival, ClusterOptions, PdClusterOptions } from '../../test/sim/cluster.ts';
import { fromList, multiTurn, randomDataset, sharedPrefix, type RequestSource, type SimRequest } from '../../test/sim/workload.ts';
import { tokenize } from '../../test/sim/tokens.ts';
import { traffic as trafficSource, type TrafficOptions } from '../../test/sim/traffic.ts';
import { pdWorkloads, realWorkloads } from './real-workloads.ts';
import { priorityWorkloads } from './priority-workloads.ts';
import { SEEDS_ENGINE, traceWorkload, type TraceWorkloadOptions } from './trace-workload.ts';

export interface Workload {
  name: string;
  description: string;
  pods: number;
  arrival: Arrival;
  /**
   * A fresh source per run (sources are stateful). Generated open-loop traffic takes the run's
   * seed, so the runs pooled in a row see different realizations of it.
   */
  source: (seed?: number) => RequestSource;
  engine?: ClusterOptions['engine'];
  /** Trace requests cut to fit the max model length. */
  truncated?: number;
  /** A prefill/decode cluster: the first `pd.prefill` pods prefill, the others decode. Only P/D strategies run on it. */
  pd?: PdClusterOptions;
  /**
   * Requests carry criticalities (priority-workloads.ts): results are reported per criticality
   * (by_criticality), and only the strategies compared on priority run on it (setup.ts).
   */
  criticalities?: boolean;
  /** The workload that is this one without its overload: the reference of the priority checks (verdict.ts). */
  baseline?: string;
}

export function builtinWorkloads(quick: boolean): Workload[] {
  return [...classicWorkloads(quick), ...realWorkloads(quick), ...pdWorkloads(quick), ...priorityWorkloads(quick)];
}

function classicWorkloads(quick: boolean): Workload[] {
  return [
    {
      name: 'seeds-random',
      description: `the seeds' load test: benchmark_serving random dataset, prefix 10, input 1550, output 1800, range ratio 0.2, ${quick ? 600 : 3000} prompts, max concurrency 200, 5 pods`,
      pods: 5,
      arrival: { kind: 'closed', concurrency: 200 },
      source: () => randomDataset({ numPrompts: quick ? 600 : 3000, inputLen: 1550, outputLen: 1800, rangeRatio: 0.2, prefixLen: 10, seed: 1 }),
      engine: SEEDS_ENGINE,
    },
    {
      name: 'multi-turn',
      description: `chat sessions: ${quick ? 60 : 150} sessions x 8 turns, a 400-token system prompt per session, 250-token questions, 250-token answers, 2 s think time; 5 pods`,
      pods: 5,
      arrival: { kind: 'closed', concurrency: 10_000 },
      source: () => multiTurn({ sessions: quick ? 60 : 150, turns: 8, systemLen: 400, userLen: 250, outputLen: 250, thinkTimeMs: 2000, startGapMs: 200, maxModelLen: 8192, seed: 2 }),
      engine: SEEDS_ENGINE,
    },
    {
      name: 'shared-prefix',
      description: `${quick ? 50 : 100} groups sharing ~6k-token contexts, ${quick ? 6 : 12} ~1.2k-token questions each in random order, 200-token answers, Poisson ${quick ? 4 : 5} req/s; 8 pods (after llm-d's shared-prefix benchmark, sized so the contexts fit the pods' KV caches when each is kept on one pod)`,
      pods: 8,
      arrival: { kind: 'poisson', ratePerSec: quick ? 4 : 5 },
      source: () => sharedPrefix({ groups: quick ? 50 : 100, perGroup: quick ? 6 : 12, prefixLen: 6000, questionLen: 1200, outputLen: 200, seed: 3 }),
      engine: SEEDS_ENGINE,
    },
  ];
}

// --workload FILE.json
export interface WorkloadFile {
  name: string;
  description?: string;
  pods: number;
  arrival: Arrival;
  engine?: { maxLoras?: number; maxModelLen?: number; kvBlocks?: number; maxNumSeqs?: number; maxBatchedTokens?: number };
  /** A prefill/decode cluster: `prefill` of the pods are prefill servers, the rest decode servers. */
  pd?: { prefill: number };
  source:
    | { type: 'random'; numPrompts: number; inputLen: number; outputLen: number; rangeRatio?: number; prefixLen?: number; seed?: number }
    | { type: 'shared-prefix'; groups: number; perGroup: number; prefixLen: number; questionLen: number; outputLen: number; seed?: number }
    | { type: 'multi-turn'; sessions: number; turns: number; systemLen: number; sharedSystem?: boolean; userLen: number; outputLen: number; thinkTimeMs?: number; startGapMs?: number; seed?: number }
    | { type: 'list'; requests: Array<{ prompt: string; maxTokens: number; lora?: string | null }> }
    | ({ type: 'traffic' } & TrafficOptions);
}

export function loadWorkloadFile(path: string, trace: TraceWorkloadOptions = {}): Workload {
  if (path.endsWith('.jsonl')) return traceWorkload(path, trace);
  const w = JSON.parse(readFileSync(path, 'utf8')) as WorkloadFile;
  const problems: string[] = [];
  if (typeof w.name !== 'string' || w.name.length === 0) problems.push('name: a non-empty string');
  if (!Number.isInteger(w.pods) || w.pods < 1) problems.push('pods: a positive integer');
  const traffic = w.source?.type === 'traffic';
  // A traffic source times its own requests: it runs open loop.
  if (traffic && w.arrival === undefined) w.arrival = { kind: 'open' };
  if (!w.arrival || !['closed', 'poisson', 'open'].includes(w.arrival.kind)) problems.push('arrival: {"kind":"closed","concurrency":N}, {"kind":"poisson","ratePerSec":R} or {"kind":"open"}');
  if (!w.source || !['random', 'shared-prefix', 'multi-turn', 'list', 'traffic'].includes(w.source.type)) problems.push('source.type: random | shared-prefix | multi-turn | list | traffic');
  if (w.pd !== undefined && !(Number.isInteger(w.pd?.prefill) && w.pd.prefill >= 1 && w.pd.prefill < w.pods)) problems.push('pd.prefill: an integer from 1 to pods - 1');
  if (problems.length) throw new Error(`${path}: invalid workload: ${problems.join('; ')}`);
  const src = w.source;
  const source = (seed?: number): RequestSource => {
    switch (src.type) {
      case 'random': return randomDataset(src);
      case 'shared-prefix': return sharedPrefix(src);
      case 'multi-turn': return multiTurn({ ...src, maxModelLen: w.engine?.maxModelLen ?? 8192 });
      case 'list': return fromList(src.requests.map((r, i): SimRequest => ({ id: `r${i}`, tokens: tokenize(r.prompt), maxTokens: r.maxTokens, lora: r.lora ?? null })));
      case 'traffic': return trafficSource({ maxModelLen: w.engine?.maxModelLen ?? 8192, ...src, seed: seed === undefined ? src.seed : (src.seed ?? 5) * 1000 + seed });
    }
  };
  return { name: w.name, description: w.description ?? path, pods: trace.pods ?? w.pods, arrival: w.arrival, source, engine: { ...SEEDS_ENGINE, ...w.engine }, ...(w.pd ? { pd: { prefill: w.pd.prefill } } : {}) };
}
