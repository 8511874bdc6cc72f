// Every answer the filter gives itself, in OpenAI's error format:
//   {"error":{"message":"...","type":"...","param":null,"code":"..."}}
// `code` is stable and documented in docs/errors.md; `details` is what Envoy logs as the
// response code details (%RESPONSE_CODE_DETAILS%).

import { quote } from "./json/writer";

export class ErrorReply {
  status: u32;
  type: string;
  code: string;
  message: string;

  constructor(status: u32, type: string, code: string, message: string) {
    this.status = status;
    this.type = type;
    this.code = code;
    this.message = message;
  }

  body(): string {
    return "{\"error\":{\"message\":" + quote(this.message) + ",\"type\":" + quote(this.type) + ",\"param\":null,\"code\":" + quote(this.code) + "}}";
  }

  details(): string {
    return "wasm_epp_" + this.code;
  }
}

export function invalidBody(message: string): ErrorReply {
  return new ErrorReply(400, "invalid_request_error", "invalid_request_body", message);
}

export function missingModel(): ErrorReply {
  return new ErrorReply(400, "invalid_request_error", "missing_model", "the request body has no \"model\"; name the model to use");
}

export function bodyTooLarge(limit: i32): ErrorReply {
  return new ErrorReply(413, "invalid_request_error", "request_too_large", "the request body is larger than " + limit.toString() + " bytes");
}

export function modelNotFound(model: string): ErrorReply {
  return new ErrorReply(404, "invalid_request_error", "model_not_found", "the model " + quote(model) + " does not exist in this inference pool");
}

export function shed(pool: string): ErrorReply {
  return new ErrorReply(429, "rate_limit_error", "pool_saturated", "every endpoint of " + pool + " is saturated and this request is Sheddable; retry later");
}

export function noEndpoint(pool: string): ErrorReply {
  return new ErrorReply(503, "server_error", "no_ready_endpoint", "no ready endpoint in inference pool " + pool);
}

export function noState(reason: string): ErrorReply {
  return new ErrorReply(503, "server_error", "no_routing_state", reason);
}

export function unauthorized(): ErrorReply {
  return new ErrorReply(401, "authentication_error", "invalid_push_token", "a valid bearer token is required to push state");
}

export function invalidState(message: string): ErrorReply {
  return new ErrorReply(400, "invalid_request_error", "invalid_state", message);
}

export function stateTooLarge(limit: i32): ErrorReply {
  return new ErrorReply(413, "invalid_request_error", "state_too_large", "the state document is larger than " + limit.toString() + " bytes");
}

export function staleState(stored: f64): ErrorReply {
  return new ErrorReply(409, "conflict_error", "stale_state", "generated_at_ms is older than the stored state's (" + (<i64>stored).toString() + ")");
}

export function notFound(path: string): ErrorReply {
  return new ErrorReply(404, "not_found_error", "not_found", "no such endpoint on the push listener: " + path);
}

export function methodNotAllowed(allowed: string): ErrorReply {
  return new ErrorReply(405, "invalid_request_error", "method_not_allowed", "use " + allowed);
}

export function noRoleEndpoint(pool: string, role: string): ErrorReply {
  return new ErrorReply(503, "server_error", "no_ready_endpoint", "no ready " + role + " endpoint in inference pool " + pool);
}

export function prefillDispatchFailed(cluster: string): ErrorReply {
  return new ErrorReply(503, "server_error", "prefill_dispatch_failed", "the gateway could not send the prefill request (is cluster " + quote(cluster) + " configured for the wasm-epp filter's calls?)");
}

export function prefillFailed(pod: string, why: string): ErrorReply {
  return new ErrorReply(502, "server_error", "prefill_failed", "the prefill server " + pod + " failed: " + why);
}

export function prefillTimeout(pod: string, ms: i32): ErrorReply {
  return new ErrorReply(504, "server_error", "prefill_timeout", "the prefill server " + pod + " did not answer within " + ms.toString() + " ms");
}

export function tooManyPrefills(limit: i32): ErrorReply {
  return new ErrorReply(503, "server_error", "prefill_capacity", "more than " + limit.toString() + " prefill requests are in flight on this gateway worker; retry later");
}

export function queueFull(pool: string, band: string): ErrorReply {
  return new ErrorReply(429, "rate_limit_error", "queue_full", "the " + band + " queue for inference pool " + pool + " is full; retry later");
}

export function queueTimeout(band: string, ms: i64): ErrorReply {
  return new ErrorReply(429, "rate_limit_error", "queue_timeout", "request timed out in queue (" + band + ", " + ms.toString() + " ms)");
}
