// Workloads with criticalities (issue: priority request queuing): requests of three bands —
// Critical, Standard, Sheddable — each its own InferenceModel, on a pool that Standard alone
// overloads.
//
//   priority-overload   Standard at 1.5x the pool's capacity, plus Critical at 10% and Sheddable
//                       at 20% of that rate, steady Poisson arrivals for 10 minutes;
//   priority-baseline   the same Critical and Sheddable streams (the very same requests) without
//                       the Standard overload: what Critical gets from the same pool when it is
//                       not overloaded.
//
// Requests are single documents like long-tail's (a 300-token system prompt per band, a lognormal
// question with context of median 400 tokens, lognormal answers of median 150), each band its own
// stream (test/sim/traffic.ts, priorityTraffic). Capacity is measured like the other open-loop
// workloads' (calibrate.ts): the three bands' traffic in these proportions at a constant rate
// through least-request, the highest total rate it sustains.

import { priorityTraffic, type PriorityTrafficOptions } from '../../test/sim/traffic.ts';
import type { Criticality } from '../../test/sim/workload.ts';
import { SEEDS_ENGINE } from './trace-workload.ts';
import type { Workload } from './workloads.ts';

export const PRIORITY_PODS = 4;

/** Requests per second the pool sustains on this traffic (calibrate.ts priority-overload). */
export const PRIORITY_CAPACITY = 16.6;

/** Standard's rate over the capacity, and the other bands' rates over Standard's. */
export const OVERLOAD = 1.5;
export const CRITICAL_SHARE = 0.1;
export const SHEDDABLE_SHARE = 0.2;

export const PRIORITY_TRAFFIC: PriorityTrafficOptions['traffic'] = {
  systemLen: 300,
  userLen: { median: 400, sigma: 1.2, max: 7000 },
  outputLen: { median: 150, sigma: 0.6, min: 8, max: 1024 },
  maxTurns: 1,
  turnGapMs: { median: 60_000, sigma: 0 },
  swing: 0,
  burstEveryMs: 0,
};

const SEEDS: Record<Criticality, number> = { Critical: 31, Standard: 32, Sheddable: 33 };

/** The three bands at a Standard rate; the others in proportion. */
export function priorityBands(standardPerSec: number, opts: { standard?: boolean; runSeed?: number } = {}): PriorityTrafficOptions['bands'] {
  const seed = (c: Criticality) => (opts.runSeed === undefined ? SEEDS[c] : SEEDS[c] * 1000 + opts.runSeed);
  return [
    { criticality: 'Critical', ratePerSec: CRITICAL_SHARE * standardPerSec, seed: seed('Critical') },
    { criticality: 'Standard', ratePerSec: opts.standard === false ? 0 : standardPerSec, seed: seed('Standard') },
    { criticality: 'Sheddable', ratePerSec: SHEDDABLE_SHARE * standardPerSec, seed: seed('Sheddable') },
  ];
}

export const PRIORITY_MINUTES = 10;
export const PRIORITY_QUICK_MINUTES = 3;

export function priorityWorkloads(quick: boolean): Workload[] {
  const minutes = quick ? PRIORITY_QUICK_MINUTES : PRIORITY_MINUTES;
  const standard = OVERLOAD * PRIORITY_CAPACITY;
  const rates = `Critical ${(CRITICAL_SHARE * standard).toFixed(2)} req/s, Sheddable ${(SHEDDABLE_SHARE * standard).toFixed(2)} req/s`;
  const what = `single requests (a 300-token system prompt per band, lognormal prompts of median ~700 tokens, answers of median 150), steady Poisson arrivals for ${minutes} minutes; ${PRIORITY_PODS} pods (capacity ${PRIORITY_CAPACITY} req/s)`;
  const make = (name: string, withStandard: boolean, description: string, baseline?: string): Workload => ({
    name,
    description: `${description}; ${priorityBands(standard, { standard: withStandard }).reduce((a, b) => a + (b.ratePerSec > 0 ? Math.max(1, Math.round(b.ratePerSec * minutes * 60)) : 0), 0)} requests`,
    pods: PRIORITY_PODS,
    arrival: { kind: 'open' },
    source: (seed) => priorityTraffic({ traffic: PRIORITY_TRAFFIC, bands: priorityBands(standard, { standard: withStandard, runSeed: seed }), durationMs: minutes * 60_000 }),
    engine: SEEDS_ENGINE,
    criticalities: true,
    ...(baseline ? { baseline } : {}),
  });
  return [
    make('priority-overload', true, `Standard at ${standard.toFixed(1)} req/s (${OVERLOAD}x the capacity), ${rates}: ${what}`, 'priority-baseline'),
    make('priority-baseline', false, `the same Critical and Sheddable requests without Standard: ${rates}: ${what}`),
  ];
}
