// `--workload FILE.jsonl`: a Mooncake-format trace replayed as a workload (test/sim/trace.ts).

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseTrace, planTrace, traceSource, type TraceOptions } from '../../test/sim/trace.ts';
import type { Workload } from './workloads.ts';

// The seeds' vLLM flags on every pod.
export const SEEDS_ENGINE = { maxLoras: 2, maxCpuLoras: 4, maxModelLen: 8192 };

export interface TraceWorkloadOptions extends TraceOptions {
  name?: string;
  pods?: number;
  /** Text before the generated description. */
  what?: string;
}

export function traceWorkload(path: string, o: TraceWorkloadOptions = {}): Workload {
  const records = parseTrace(readFileSync(path, 'utf8'), path);
  const plan = planTrace(records, { maxModelLen: SEEDS_ENGINE.maxModelLen, ...o });
  const pods = o.pods ?? 8;
  const speed = o.speed ?? 1;
  const cut = plan.truncated ? `; ${plan.truncated} request${plan.truncated > 1 ? 's' : ''} cut to fit the max model length ${SEEDS_ENGINE.maxModelLen}` : '';
  const description = `${o.what ?? `trace ${path}`}: ${plan.requests.length} requests over ${(plan.durationMs / 1000).toFixed(0)} s, ${plan.blockTokens} tokens per hash id${speed !== 1 ? `, ${speed}x speed` : ''}, sent at their timestamps${cut}; ${pods} pods`;
  return {
    name: o.name ?? basename(path).replace(/\.jsonl$/, ''),
    description,
    pods,
    arrival: { kind: 'open' },
    source: () => traceSource(plan),
    engine: SEEDS_ENGINE,
    truncated: plan.truncated,
  };
}
