// OpenAI-compatible request parsing and response bodies in vLLM's wire format
// (vllm/entrypoints/openai/protocol.py, serving_completion.py, serving_chat.py as of 0.9/0.10).
// Field order follows vLLM's pydantic models, which serialize fields in declaration order.
// SGLang pods send the same bodies except for `usage`, which follows SGLang's serializers
// (serving_chat.py, serving_completions.py, usage_processor.py): see `Wire`.

import { chatPromptTokens, tokenize, type ChatMessage } from "./tokens.ts";

export type Endpoint = "completions" | "chat";

export interface ParsedRequest {
  endpoint: Endpoint;
  model: string | undefined;
  tokens: number[];
  maxTokens: number | undefined;
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
}

/** A client error in vLLM's ErrorResponse shape. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** vLLM's ErrorResponse body. */
export function errorBody(status: number, type: string, message: string): string {
  return JSON.stringify({ object: "error", message, type, param: null, code: status });
}

function bad(message: string): ApiError {
  return new ApiError(400, "BadRequestError", message);
}

/** Parses a request body as FastAPI/pydantic would reject or accept it (the fields the simulator uses). */
export function parseRequest(endpoint: Endpoint, body: string): ParsedRequest {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw bad(`[{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error', 'input': {}, 'ctx': {'error': '${msg.replace(/'/g, "")}'}}]`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw bad(`[{'type': 'model_attributes_type', 'loc': ('body',), 'msg': 'Input should be a valid dictionary or object to extract fields from'}]`);
  }
  const o = json as Record<string, unknown>;
  const model = o.model;
  if (model !== undefined && model !== null && typeof model !== "string") throw bad("model must be a string");
  const n = o.n ?? 1;
  if (n !== 1) throw bad("n must be 1 on this server");
  const maxTokens = intField(o, endpoint === "chat" ? "max_completion_tokens" : "max_tokens") ?? intField(o, "max_tokens");
  const stream = o.stream ?? false;
  if (typeof stream !== "boolean") throw bad("stream must be a boolean");
  const so = o.stream_options;
  if (so !== undefined && so !== null && typeof so !== "object") throw bad("stream_options must be an object");
  if (so && !stream) throw bad("Stream options can only be defined when `stream=True`.");
  const sopts = (so ?? {}) as Record<string, unknown>;
  const tokens = endpoint === "chat" ? chatTokens(o.messages) : promptTokens(o.prompt);
  return {
    endpoint,
    model: (model as string | null | undefined) ?? undefined,
    tokens,
    maxTokens,
    stream,
    includeUsage: sopts.include_usage === true,
    continuousUsage: sopts.continuous_usage_stats === true,
  };
}

function intField(o: Record<string, unknown>, name: string): number | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) throw bad(`${name} must be an integer`);
  return v;
}

function promptTokens(prompt: unknown): number[] {
  if (typeof prompt === "string") return tokenize(prompt);
  if (Array.isArray(prompt)) {
    if (prompt.length === 1 && (typeof prompt[0] === "string" || Array.isArray(prompt[0]))) return promptTokens(prompt[0]);
    if (prompt.length > 0 && prompt.every((t) => Number.isInteger(t) && t >= 0)) return prompt as number[];
    if (prompt.length > 1) throw bad("only one prompt per request is supported on this server");
  }
  throw bad("prompt must be a string, a list of token ids, or a list with one of those");
}

function chatTokens(messages: unknown): number[] {
  if (!Array.isArray(messages) || messages.length === 0) throw bad("messages must be a non-empty list");
  const out: ChatMessage[] = [];
  for (const m of messages) {
    if (typeof m !== "object" || m === null) throw bad("each message must be an object");
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string") throw bad("message role must be a string");
    out.push({ role, content: contentText(content) });
  }
  return chatPromptTokens(out);
}

function contentText(content: unknown): string {
  if (content === undefined || content === null) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    const parts: string[] = [];
    for (const p of content) {
      if (typeof p === "string") parts.push(p);
      else if (p && typeof p === "object" && typeof (p as Record<string, unknown>).text === "string") parts.push((p as Record<string, string>).text);
    }
    return parts.join("\n");
  }
  throw bad("message content must be a string or a list of parts");
}

/** Which server's wire format: the two differ in where they write nulls (see the serializers below). */
export type Wire = "vllm" | "sglang";

/** usage.prompt_tokens_details as both servers write it: the prompt tokens found in the prefix cache. */
export interface PromptTokensDetails {
  cached_tokens: number;
}

export interface Usage {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
  /** null when not reported. */
  prompt_tokens_details: PromptTokensDetails | null;
}

export function usage(prompt: number, completion: number, details: PromptTokensDetails | null = null): Usage {
  return { prompt_tokens: prompt, total_tokens: prompt + completion, completion_tokens: completion, prompt_tokens_details: details };
}

/**
 * The prompt-token details a server reports for a request whose prompt hit `cachedTokens` tokens of
 * its prefix cache: with vLLM's --enable-prompt-tokens-details or SGLang's --enable-cache-report
 * (`report`), and only for a non-zero hit (vLLM tests the count's truthiness, SGLang `N > 0`).
 */
export function promptTokensDetails(report: boolean, cachedTokens: number): PromptTokensDetails | null {
  return report && cachedTokens > 0 ? { cached_tokens: cachedTokens } : null;
}

// Usage objects as each serializer leaves them (field order is UsageInfo's in both servers).
const counts = (u: Usage) => ({ prompt_tokens: u.prompt_tokens, total_tokens: u.total_tokens, completion_tokens: u.completion_tokens });
/** Every field, nulls kept (pydantic's model_dump without exclusions). */
const full = (u: Usage) => ({ ...counts(u), prompt_tokens_details: u.prompt_tokens_details });
/** Nulls dropped (exclude_none=True). */
const slim = (u: Usage) => (u.prompt_tokens_details ? full(u) : counts(u));
/** Per-chunk usage (continuous_usage_stats): both servers build it from the counts alone, so its details are unset. */
const running = (u: Usage) => ({ ...counts(u), prompt_tokens_details: null });

/**
 * One streamed /v1/completions chunk (without the `data: ` framing). Both servers serialize these
 * with every field: `"usage": null`, or with continuous_usage_stats the counts so far and
 * `"prompt_tokens_details": null`.
 */
export function completionChunk(id: string, created: number, model: string, text: string, finish: string | null, u: Usage | null): string {
  return JSON.stringify({
    id,
    object: "text_completion",
    created,
    model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null }],
    usage: u ? running(u) : null,
  });
}

/**
 * One streamed chat chunk. vLLM serializes these with exclude_unset: no `usage` key, or with
 * continuous_usage_stats just the counts so far. SGLang writes every field: `"usage": null`, or
 * the counts so far with `"prompt_tokens_details": null`.
 */
export function chatChunk(wire: Wire, id: string, created: number, model: string, delta: { role?: string; content: string }, finish: string | null, u: Usage | null): string {
  const choice: Record<string, unknown> = { index: 0, delta, logprobs: null, finish_reason: finish };
  if (finish !== null) choice.stop_reason = null;
  const chunk: Record<string, unknown> = { id, object: "chat.completion.chunk", created, model, choices: [choice] };
  if (wire === "sglang") chunk.usage = u ? running(u) : null;
  else if (u) chunk.usage = counts(u);
  return JSON.stringify(chunk);
}

/**
 * The last chunk of a stream with stream_options.include_usage. vLLM writes it without nulls, so
 * `prompt_tokens_details` is there only when reported; so does SGLang for /v1/completions, while
 * its chat usage chunk keeps `"prompt_tokens_details": null`.
 */
export function usageChunk(wire: Wire, endpoint: Endpoint, id: string, created: number, model: string, u: Usage): string {
  const object = endpoint === "chat" ? "chat.completion.chunk" : "text_completion";
  return JSON.stringify({ id, object, created, model, choices: [], usage: wire === "sglang" && endpoint === "chat" ? full(u) : slim(u) });
}

export function completionResponse(id: string, created: number, model: string, text: string, u: Usage, finish = "length"): string {
  return JSON.stringify({
    id,
    object: "text_completion",
    created,
    model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null, prompt_logprobs: null }],
    usage: full(u),
    kv_transfer_params: null,
  });
}

export function chatResponse(id: string, created: number, model: string, text: string, u: Usage, finish = "length"): string {
  return JSON.stringify({
    id,
    object: "chat.completion",
    created,
    model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", reasoning_content: null, content: text, tool_calls: [] },
        logprobs: null,
        finish_reason: finish,
        stop_reason: null,
      },
    ],
    usage: full(u),
    prompt_logprobs: null,
    kv_transfer_params: null,
  });
}

/** SGLang's streamed error event (serving_base.create_streaming_error_response): the ErrorResponse inside "error". */
export function streamingErrorEvent(status: number, message: string): string {
  const name = status === 400 ? "BAD_REQUEST" : status === 503 ? "SERVICE_UNAVAILABLE" : "INTERNAL_SERVER_ERROR";
  return JSON.stringify({ error: { object: "error", message, type: name, param: null, code: status } });
}

/**
 * Top-level members of a JSON object, as their raw source text (so that an integer such as a
 * 63-bit bootstrap_room is kept exactly). Assumes `body` is valid JSON (parse it first).
 */
export function topLevelRaw(body: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = body.indexOf("{");
  if (i < 0) return out;
  i++;
  const ws = () => {
    while (i < body.length && " \t\r\n".includes(body[i])) i++;
  };
  const str = () => {
    const start = i;
    i++;
    while (i < body.length && body[i] !== '"') i += body[i] === "\\" ? 2 : 1;
    i++;
    return body.slice(start, i);
  };
  const value = () => {
    const start = i;
    if (body[i] === '"') {
      str();
    } else if (body[i] === "{" || body[i] === "[") {
      let depth = 0;
      do {
        const ch = body[i];
        if (ch === '"') {
          str();
          continue;
        }
        if (ch === "{" || ch === "[") depth++;
        else if (ch === "}" || ch === "]") depth--;
        i++;
      } while (depth > 0 && i < body.length);
    } else {
      while (i < body.length && !",}] \t\r\n".includes(body[i])) i++;
    }
    return body.slice(start, i);
  };
  for (;;) {
    ws();
    if (body[i] !== '"') break;
    const key = JSON.parse(str()) as string;
    ws();
    i++; // ':'
    ws();
    out.set(key, value());
    ws();
    if (body[i] !== ",") break;
    i++;
  }
  return out;
}
