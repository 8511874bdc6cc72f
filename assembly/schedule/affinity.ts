// Placement every gateway replica agrees on without talking: rendezvous (highest random weight)
// hashing of the request's affinity key.
//
// The key is the chained prefix hash through the conversation's first user turn (or a few blocks
// past those every pod holds, when the prompt has no turns), so every turn of a conversation has
// the same key, on every replica. Each endpoint's weight for a key is a hash of both: the endpoint
// with the highest weight is the key's home, the same on every replica, and an endpoint leaving
// moves only its own keys. The pick (pick.ts) sends a request to its key's home among the
// endpoints that score about as well as the best (affinity.tolerance), and breaks exact ties the
// same way; load keeps the last word, so a hot key spills over instead of piling onto one pod.

import { mixSeed } from "../util/rng";

// The weight of endpoint `id` for `key`.
export function hrwWeight(key: u64, id: u32): u64 {
  return mixSeed(key ^ (<u64>id * 0x9e3779b97f4a7c15));
}
