// An endpoint's load score in [0, 1], higher is better:
//
//   score = freshness(age) * (queue(waiting) + kv(kv_usage)) / 2
//   queue(w)     = Q / (Q + w)                with Q = 5 (GIE's queue saturation threshold)
//   kv(u)        = 1 - u
//   freshness(a) = 1                          for a <= S/4
//                  (S - a) / (S - S/4)        for S/4 < a < S
//                  0                          for a >= S          (S = --metrics-stale)
//
// Rounded to 0.001. An endpoint that is not ready scores 0. docs/sidecar.md explains the choice.

export const QUEUE_HALF = 5;

export interface ScoreInput {
  waiting: number;
  kvUsage: number;
  ageMs: number;
}

export function queueTerm(waiting: number): number {
  const w = Number.isFinite(waiting) && waiting > 0 ? waiting : 0;
  return QUEUE_HALF / (QUEUE_HALF + w);
}

export function kvTerm(kvUsage: number): number {
  if (!Number.isFinite(kvUsage)) return 0;
  return 1 - Math.min(1, Math.max(0, kvUsage));
}

export function freshness(ageMs: number, staleMs: number): number {
  if (!Number.isFinite(ageMs) || ageMs >= staleMs) return 0;
  const full = staleMs / 4;
  if (ageMs <= full) return 1;
  return (staleMs - ageMs) / (staleMs - full);
}

export function loadScore(input: ScoreInput, staleMs: number): number {
  const s = (freshness(input.ageMs, staleMs) * (queueTerm(input.waiting) + kvTerm(input.kvUsage))) / 2;
  return Math.round(Math.min(1, Math.max(0, s)) * 1000) / 1000;
}
