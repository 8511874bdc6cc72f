// Scorers: each turns one signal into a value in [0, 1], higher is better. Weights live in the
// plugin configuration (`weights`), not here. See docs/scoring.md for the reasoning.

import { Endpoint } from "../state/document";

// queue: requests queued, min-max normalised over the candidates: the shortest queue gets 1, the
// longest 0, all equal 1. Queues are usually empty until pods saturate, so the normalisation only
// bites when some pod actually has requests waiting, and then it strongly prefers the others.
@inline export function queueScore(queued: f64, min: f64, span: f64): f64 {
  return span > 0 ? (min + span - queued) / span : 1;
}

// kv_cache: free KV cache.
export function kvCacheScore(e: Endpoint): f64 {
  const v = 1 - e.kvUsage;
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

// prefix: share of the prompt's blocks recorded as sent to this endpoint, beyond the `common`
// blocks every endpoint is taken to hold (a shared system prompt is no evidence).
export function prefixScore(matched: i32, total: i32, common: i32 = 0): f64 {
  if (total <= common || matched <= common) return 0;
  const v = <f64>(matched - common) / <f64>(total - common);
  return v > 1 ? 1 : v;
}

// ttft: the endpoint's estimated time to first token against the best candidate's: 1 within
// `slack` of the best, then falling towards 0 for estimates many times larger (`floor` keeps
// differences far below a step's duration from counting).
@inline export function ttftScore(estMs: f64, minMs: f64, floor: f64, slack: f64 = 0): f64 {
  const best = minMs + slack;
  return estMs <= best ? 1 : (best + floor) / (estMs + floor);
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
