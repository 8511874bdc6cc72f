// Placement every gateway replica agrees on without talking: rendezvous (highest random weight)
// hashing of the request's affinity key, with bounded loads (Mirrokni, Thorup and Zadimoghaddam,
// "Consistent hashing with bounded loads").
//
// The key is the chained prefix hash through the conversation's first user turn (or the prompt's
// first blocks when it has no turns), so every turn of a conversation has the same key, on every
// replica. Each endpoint's weight for a key is a hash of both; the endpoints ranked by weight are
// walked until one carries at most max(mean load x factor, mean load + slack): the least loaded
// endpoint always qualifies, so a hot key spills over in the same order everywhere instead of
// piling onto one pod. An endpoint leaving moves only its own keys.

import { mixSeed } from "../util/rng";

// The weight of endpoint `id` for `key`.
export function hrwWeight(key: u64, id: u32): u64 {
  return mixSeed(key ^ (<u64>id * 0x9e3779b97f4a7c15));
}

// Among the first `n` candidates (`ids` their endpoint ids, `load` their outstanding requests), the
// position k of the endpoint with the highest weight whose load is within the bound.
export function placeByAffinity(key: u64, ids: Uint32Array, load: Float64Array, n: i32, factor: f64, slack: f64): i32 {
  let sum: f64 = 0;
  for (let k = 0; k < n; k++) sum += unchecked(load[k]);
  const mean = sum / <f64>n;
  const a = mean * factor;
  const b = mean + slack;
  const cap = a > b ? a : b;
  let best = -1;
  let bestW: u64 = 0;
  for (let k = 0; k < n; k++) {
    if (unchecked(load[k]) > cap) continue;
    const w = hrwWeight(key, unchecked(ids[k]));
    if (best < 0 || w > bestW) {
      best = k;
      bestW = w;
    }
  }
  return best;
}
