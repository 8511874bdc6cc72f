// Applying an InferenceObjective named by the request (docs/queuing.md#objectives): an objective
// of the request's pool sets its criticality (its band in the hold queue), overriding the model's.
// A name the pool does not know leaves the request as it is, as GIE defaults a priority to 0.

import { Pool } from "../state/document";
import { Resolution } from "../route";

export const OBJECTIVE_NONE: i32 = 0; // no objective named
export const OBJECTIVE_APPLIED: i32 = 1;
export const OBJECTIVE_UNKNOWN: i32 = 2; // named, but not an objective of the pool

export function applyObjective(res: Resolution, pool: Pool, name: string): i32 {
  if (name.length == 0) return OBJECTIVE_NONE;
  if (!pool.objectives.has(name)) return OBJECTIVE_UNKNOWN;
  const o = pool.objectives.get(name);
  res.criticality = o.criticality;
  res.objective = o.name;
  return OBJECTIVE_APPLIED;
}
