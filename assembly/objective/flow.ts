// Fairness flows (docs/queuing.md#fairness): a held request belongs to the flow of its fairness
// id, a u64 hash of the header's whole value; a request without one (or with an empty one) to
// "default-flow".

import { xxh64 } from "../prefix/xxhash64";

export const DEFAULT_FLOW = "default-flow";

function hashOf(s: string): u64 {
  const bytes = String.UTF8.encode(s);
  return xxh64(changetype<usize>(bytes), bytes.byteLength);
}

const DEFAULT_FLOW_ID: u64 = hashOf(DEFAULT_FLOW);

export function flowId(fairnessId: string): u64 {
  return fairnessId.length > 0 ? hashOf(fairnessId) : DEFAULT_FLOW_ID;
}
