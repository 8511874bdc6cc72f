// Metrics of a strategy's runs beyond the simulator's own summary: queueing delay and how evenly
// requests were spread over the pods.

import type { ClusterResult, RequestRecord } from '../../test/sim/cluster.ts';
import { a10Qwen7B, StepTimer, type CostModel } from '../../test/sim/cost-model.ts';
import type { EngineOptions } from '../../test/sim/engine.ts';
import { summarize } from '../../test/sim/stats.ts';
import { CRITICALITIES, type Criticality } from '../../test/sim/workload.ts';

/**
 * Time from sending a request to its first token on an otherwise idle pod: its uncached prompt
 * tokens prefilled in chunks of the step's token budget (maxBatchedTokens), the first starting
 * after the cached prefix, the last sampling the first token (as engine.ts schedules it).
 */
export function idlePrefillMs(timer: StepTimer, promptTokens: number, cachedTokens: number, chunk: number): number {
  let ms = 0;
  for (let start = cachedTokens; start < promptTokens; start += chunk) {
    const n = Math.min(chunk, promptTokens - start);
    ms += timer.prefillStepMs(n, start, start + n >= promptTokens);
  }
  return ms;
}

/** A prefill timer for a workload's engine options (the pods' cost model and token budget). */
export function prefillModel(engine?: EngineOptions | ((pod: number) => EngineOptions)): { timer: StepTimer; chunk: number } {
  const e = typeof engine === 'function' ? engine(0) : engine;
  const cost: CostModel = e?.cost ?? a10Qwen7B();
  return { timer: new StepTimer(cost), chunk: e?.maxBatchedTokens ?? 2048 };
}

/**
 * Queueing delay of each request: its TTFT minus idlePrefillMs. What is left is time spent
 * waiting for admission and sharing steps with other requests (base-model step costs: an
 * adapter's kernels, about 1 ms a step, count as delay).
 */
export function queueDelays(requests: readonly RequestRecord[], m: { timer: StepTimer; chunk: number }): number[] {
  return requests.map((q) => q.ttftMs - idlePrefillMs(m.timer, q.promptTokens, q.cachedTokens, m.chunk));
}

/** Each pod's fraction of the requests of all runs (pods by index). */
export function podShares(runs: readonly ClusterResult[]): number[] {
  const counts: number[] = [];
  for (const r of runs) r.pods.forEach((p, i) => (counts[i] = (counts[i] ?? 0) + p.requests));
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => (total > 0 ? c / total : 0));
}

/** Coefficient of variation: population standard deviation over mean (0 for perfect balance). */
export function coefficientOfVariation(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (mean === 0) return 0;
  const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / xs.length;
  return Math.sqrt(variance) / mean;
}

/** One criticality's requests over a strategy's runs. TTFT over the completed ones (from when the client sent them). */
export interface BandStats {
  sent: number;
  completed: number;
  rejected: number;
  ttft_p50_ms: number;
  ttft_p90_ms: number;
}

/**
 * Per criticality (all three, highest first, whether sent or not): requests sent, completed and
 * rejected over all the runs, and the completed ones' TTFT p50 and p90 (NaN when none completed).
 */
export function byCriticality(runs: readonly ClusterResult[]): Record<Criticality, BandStats> {
  const out = {} as Record<Criticality, BandStats>;
  for (const c of CRITICALITIES) {
    const done = runs.flatMap((r) => r.requests.filter((q) => q.criticality === c));
    const ttft = summarize(done.map((q) => q.ttftMs));
    out[c] = {
      sent: runs.reduce((a, r) => a + (r.sentByCriticality?.[c] ?? 0), 0),
      completed: done.length,
      rejected: runs.reduce((a, r) => a + (r.rejected ?? []).filter((x) => x.criticality === c).length, 0),
      ttft_p50_ms: ttft.p50,
      ttft_p90_ms: ttft.p90,
    };
  }
  return out;
}

/** Rejections whose status is not 429, over all the runs. */
export function rejectionsOtherThan429(runs: readonly ClusterResult[]): number {
  return runs.reduce((a, r) => a + (r.rejected ?? []).filter((x) => x.status !== 429).length, 0);
}
