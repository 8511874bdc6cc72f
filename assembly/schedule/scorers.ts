// Scorers: each turns one signal into a value in [0, 1], higher is better. Weights live in the
// plugin configuration (`weights`), not here. See docs/scoring.md for the reasoning.

import { Endpoint } from "../state/document";

// queue: outstanding requests, min-max normalised over the candidates (least loaded = 1).
// All equal: every candidate gets 1.
export function queueScores(load: Float64Array): Float64Array {
  const n = load.length;
  const out = new Float64Array(n);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = load[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const span = max - min;
  for (let i = 0; i < n; i++) out[i] = span > 0 ? (max - load[i]) / span : 1;
  return out;
}

// kv_cache: free KV cache.
export function kvCacheScore(e: Endpoint): f64 {
  const v = 1 - e.kvUsage;
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

// lora: the adapter is loaded (1), a slot is free to load it (0.8), it is queued to load (0.6),
// or every slot is taken by other adapters (0). An endpoint that reports no max_lora counts as
// having a free slot.
export function loraScore(e: Endpoint, adapter: string): f64 {
  if (e.loraRunning.includes(adapter)) return 1;
  if (e.maxLora <= 0 || e.loraRunning.length + e.loraWaiting.length < e.maxLora) return 0.8;
  if (e.loraWaiting.includes(adapter)) return 0.6;
  return 0;
}

// prefix: share of the prompt's blocks recorded as sent to this endpoint.
export function prefixScore(matched: i32, total: i32): f64 {
  if (total <= 0) return 0;
  const v = <f64>matched / <f64>total;
  return v > 1 ? 1 : v;
}
