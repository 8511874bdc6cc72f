// Metrics of a strategy's runs beyond the simulator's own summary: queueing delay and how evenly
// requests were spread over the pods.

import type { ClusterResult, RequestRecord } from '../../test/sim/cluster.ts';
import { a10Qwen7B, StepTimer, type CostModel } from '../../test/sim/cost-model.ts';
import type { EngineOptions } from '../../test/sim/engine.ts';

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
