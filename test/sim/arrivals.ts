// Random draws for traffic with production-like shape (traffic.ts): lognormal lengths, Zipf
// counts, and a non-homogeneous Poisson arrival process whose rate moves from minute to minute
// and bursts now and then.

import { Rng } from "./rng.ts";

export interface LengthDist {
  /** Median tokens. */
  median: number;
  /** Standard deviation of the log: p99 / median = exp(2.326 sigma), so 1.0 gives about 10x. */
  sigma: number;
  min?: number;
  max?: number;
}

export interface RateProfile {
  /** Mean arrival rate over a long run. */
  ratePerSec: number;
  /** Each minute's rate is the mean x U(1 - swing, 1 + swing) (default 0.25). */
  swing?: number;
  /** Mean time between bursts (default 120 s; 0 for none). */
  burstEveryMs?: number;
  /** Length of a burst (default 5 s). */
  burstMs?: number;
  /** Rate multiplier during a burst (default 2). */
  burstFactor?: number;
}

/** A lognormal draw, rounded and clipped. */
export function lognormal(rng: Rng, d: LengthDist): number {
  // Box-Muller; 1 - next() keeps the log away from 0.
  const z = Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  const v = Math.round(d.median * Math.exp(d.sigma * z));
  return Math.min(d.max ?? Infinity, Math.max(d.min ?? 1, v));
}

/** The rate multiplier at time t (mean about 1): per-minute levels times bursts. */
export function rateMultiplier(p: RateProfile, rng: Rng): { at(tMs: number): number; max: number } {
  const swing = p.swing ?? 0.25;
  const every = p.burstEveryMs ?? 120_000;
  const len = p.burstMs ?? 5000;
  const factor = p.burstFactor ?? 2;
  const levelRng = rng.fork();
  const burstRng = rng.fork();
  const levels: number[] = [];
  const bursts: number[] = []; // start times, increasing
  // Bursts add (factor - 1) x len / every to the mean; dividing it out keeps the mean rate.
  const norm = every > 0 ? 1 + ((factor - 1) * len) / every : 1;
  return {
    max: ((1 + swing) * (every > 0 ? factor : 1)) / norm,
    at(t) {
      const m = Math.floor(t / 60_000);
      while (levels.length <= m) levels.push(1 + swing * (2 * levelRng.next() - 1));
      let inBurst = false;
      if (every > 0) {
        while (bursts.length === 0 || bursts[bursts.length - 1] <= t) bursts.push((bursts.length ? bursts[bursts.length - 1] : 0) + burstRng.exponential(every));
        for (let k = bursts.length - 1; k >= 0 && bursts[k] > t - len; k--) if (bursts[k] <= t) inBurst = true;
      }
      return (levels[m] * (inBurst ? factor : 1)) / norm;
    },
  };
}

/** Arrival times of the non-homogeneous Poisson process (thinning), from 0 until n at or after fromMs. */
export function arrivalTimes(n: number, p: RateProfile, rng: Rng, fromMs = 0): number[] {
  const mult = rateMultiplier(p, rng.fork());
  const peak = p.ratePerSec * mult.max;
  const out: number[] = [];
  let t = 0;
  let counted = 0;
  while (counted < n) {
    if (out.length === 0 || rng.next() * mult.max < mult.at(t)) {
      out.push(t);
      if (t >= fromMs) counted++;
    }
    t += rng.exponential(1000 / peak);
  }
  return out;
}

/** Draws from P(n) ~ n^-a on 1..max. */
export function zipfSampler(a: number, max: number): (rng: Rng) => number {
  const cdf: number[] = [];
  let sum = 0;
  for (let n = 1; n <= max; n++) cdf.push((sum += n ** -a));
  return (rng) => {
    const u = rng.next() * sum;
    let k = 0;
    while (cdf[k] < u) k++;
    return k + 1;
  };
}

