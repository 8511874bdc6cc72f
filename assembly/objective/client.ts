// What a request says about its objective and fairness flow, read from its headers, which are
// then removed before the request goes upstream (on every path: routed at once, held, prefill/
// decode, without a body); and the objective applied to the request, counted.

import * as host from "../host";
import { OBJECTIVE_HEADER, OBJECTIVE_HEADER_ALIAS, FAIRNESS_HEADER, FAIRNESS_HEADER_ALIAS, REWRITE_HEADERS, preferred } from "./headers";
import { flowId } from "./flow";
import { applyObjective, OBJECTIVE_APPLIED, OBJECTIVE_UNKNOWN } from "./lookup";
import * as stats from "../stats";
import { Pool } from "../state/document";
import { Resolution, logValue } from "../route";
import { EppRoot } from "../filter";

export class ClientHeaders {
  // The objective named ("" when none, or when objective headers are not read).
  objective: string = "";
  // The fairness flow (the hash of "default-flow" without a fairness id).
  flow: u64 = 0;
}

export function takeClientHeaders(readObjective: bool): ClientHeaders {
  const out = new ClientHeaders();
  const objective = take(OBJECTIVE_HEADER);
  const objectiveAlias = take(OBJECTIVE_HEADER_ALIAS);
  if (readObjective) out.objective = preferred(objective, objectiveAlias);
  out.flow = flowId(preferred(take(FAIRNESS_HEADER), take(FAIRNESS_HEADER_ALIAS)));
  for (let i = 0; i < REWRITE_HEADERS.length; i++) host.removeHeader(host.REQUEST_HEADERS, REWRITE_HEADERS[i]);
  return out;
}

// A request header's value, removed from the request; null when it has none.
function take(name: string): string | null {
  const v = host.getHeader(host.REQUEST_HEADERS, name);
  if (v !== null) host.removeHeader(host.REQUEST_HEADERS, name);
  return v;
}

// Applies the objective a request named to its resolution (lookup.ts), counting the outcome; an
// objective the pool does not know is warned about (at most every 10 s) and changes nothing.
export function noteObjective(root: EppRoot, res: Resolution, pool: Pool, name: string): void {
  const r = applyObjective(res, pool, name);
  if (r == OBJECTIVE_APPLIED) root.count(stats.OBJECTIVE_APPLIED);
  else if (r == OBJECTIVE_UNKNOWN) {
    root.count(stats.OBJECTIVE_UNKNOWN);
    root.warn("objective_unknown", "a request named the objective " + logValue(name) + ", which is not an InferenceObjective of pool " + pool.name + "; its criticality is the model's");
  }
}
