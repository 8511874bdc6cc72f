// Every error the sidecar raises or records carries a stable `code` (snake_case). Codes appear in
// logs (`"code"`), in the `code` label of the error counters and in docs/sidecar.md, which lists
// them all (a test keeps the list complete).

export const ERROR_CODES = {
  // Start-up: the process exits with status 2 (usage) or 1 (everything else).
  usage: "a command-line flag is unknown, missing its value or out of range",
  token_missing: "no push token: neither --push-token-file nor WASM_EPP_PUSH_TOKEN is set",
  token_file_unreadable: "the --push-token-file cannot be read or is empty",
  kubeconfig_invalid: "the Kubernetes client configuration cannot be loaded",
  manifests_unreadable: "the --manifests directory cannot be read",
  listen_failed: "the --metrics-port listener cannot be opened",
  // Resources.
  manifest_invalid: "a manifest file is not valid YAML, or an object in it lacks kind or metadata.name",
  pool_conflict: "an InferencePool exists in both the v1 and the v1alpha2 API with one namespace/name; the v1 pool is served",
  pool_invalid: "an InferencePool cannot be used (no targetPortNumber, empty selector)",
  annotation_invalid: "an InferencePool annotation has an unknown value; the default is used",
  model_invalid: "an InferenceModel lacks modelName or poolRef, or names another kind of pool",
  model_conflict: "an InferenceModel and an InferenceModelRewrite rule (or two rewrite rules) claim one model of a pool; the older object wins",
  objective_invalid: "an InferenceObjective lacks poolRef.name, names another kind of pool or has a priority that is not a 32-bit integer",
  rewrite_invalid: "an InferenceModelRewrite rule, match or target cannot be used as written; it is skipped (or an unset weight counts as 0)",
  api_discovery_failed: "discovering which inference APIs the cluster serves failed; retried",
  pod_address_invalid: "a Pod's podIP cannot be published as ip:port",
  address_duplicate: "two Pods of one pool share ip:port; the first (by name) is kept",
  pd_invalid: "an InferenceTrafficPolicy's profile.pd cannot be used as written (a default is used, or the pool gets no endpoints)",
  pd_role_unknown: "a Pod of a prefill/decode pool has no prefill or decode value in the role label; it is left out",
  pd_role_mismatch: "an SGLang server's own engine_type disagrees with its Pod's role (or its pool has no profile.pd)",
  list_failed: "listing a resource from the Kubernetes API failed; retried with backoff",
  watch_failed: "a watch on the Kubernetes API failed; restarted with backoff",
  // Scraping a model server's /metrics.
  scrape_refused: "the metrics endpoint refused the connection",
  scrape_timeout: "the metrics endpoint did not answer within --scrape-timeout",
  scrape_unreachable: "the connection to the metrics endpoint failed or was reset",
  scrape_http_status: "the metrics endpoint answered with a status other than 200",
  scrape_too_large: "the exposition exceeded --scrape-max-bytes",
  scrape_truncated: "the exposition ended before its announced length",
  metrics_missing: "the exposition lacks a metric the runtime needs (or it is not an exposition at all)",
  // Pushing the state document.
  push_unauthorized: "the push listener answered 401: the token is wrong",
  push_rejected: "the push listener answered 400: the document is invalid",
  push_too_large: "the push listener answered 413: the document exceeds its limit",
  push_conflict: "the push listener answered 409: it holds a newer generated_at_ms",
  push_http_status: "the push listener answered with an unexpected status",
  push_unreachable: "the push listener could not be reached",
  push_timeout: "the push listener did not answer within --push-timeout",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SidecarError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SidecarError";
    this.code = code;
    this.details = details;
  }
}

export function isSidecarError(err: unknown): err is SidecarError {
  return err instanceof SidecarError;
}

// A short, single-line description of any thrown value, for logs.
export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === "string" && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
