// The request headers of InferenceObjectives and fairness (docs/queuing.md): llm-d-router's
// current names first, the Gateway API Inference Extension's as their aliases. Plain logic; the
// host calls are in client.ts.

export const OBJECTIVE_HEADER = "x-llm-d-inference-objective";
export const OBJECTIVE_HEADER_ALIAS = "x-gateway-inference-objective";
export const FAIRNESS_HEADER = "x-llm-d-inference-fairness-id";
export const FAIRNESS_HEADER_ALIAS = "x-gateway-inference-fairness-id";

// Model rewrite headers: not honoured (a client never picks its own target), only removed. The
// four above are removed too: they are for the gateway, as with GIE's picker.
export const REWRITE_HEADERS: StaticArray<string> = ["x-llm-d-model-name-rewrite", "x-gateway-model-name-rewrite"];

// The value of a header that has an alias: the primary's when it is set and not empty, else the
// alias's; "" when neither has a value.
export function preferred(primary: string | null, alias: string | null): string {
  if (primary !== null && primary.length > 0) return primary;
  if (alias !== null) return alias;
  return "";
}
