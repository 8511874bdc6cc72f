// OpenAI-compatible request parsing and response bodies in vLLM's wire format
// (vllm/entrypoints/openai/protocol.py, serving_completion.py, serving_chat.py as of 0.9/0.10).
// Field order follows vLLM's pydantic models, which serialize fields in declaration order.

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

export interface Usage {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
}

export function usage(prompt: number, completion: number): Usage {
  return { prompt_tokens: prompt, total_tokens: prompt + completion, completion_tokens: completion };
}

/** One streamed chunk (without the `data: ` framing). */
export function completionChunk(id: string, created: number, model: string, text: string, finish: string | null, u: Usage | null): string {
  return JSON.stringify({
    id,
    object: "text_completion",
    created,
    model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null }],
    usage: u,
  });
}

export function chatChunk(id: string, created: number, model: string, delta: { role?: string; content: string }, finish: string | null, u: Usage | null): string {
  const choice: Record<string, unknown> = { index: 0, delta, logprobs: null, finish_reason: finish };
  if (finish !== null) choice.stop_reason = null;
  const chunk: Record<string, unknown> = { id, object: "chat.completion.chunk", created, model, choices: [choice] };
  if (u) chunk.usage = u;
  return JSON.stringify(chunk);
}

/** The last chunk of a stream with stream_options.include_usage. */
export function usageChunk(endpoint: Endpoint, id: string, created: number, model: string, u: Usage): string {
  return JSON.stringify({ id, object: endpoint === "chat" ? "chat.completion.chunk" : "text_completion", created, model, choices: [], usage: u });
}

export function completionResponse(id: string, created: number, model: string, text: string, u: Usage, finish = "length"): string {
  return JSON.stringify({
    id,
    object: "text_completion",
    created,
    model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null, prompt_logprobs: null }],
    usage: { ...u, prompt_tokens_details: null },
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
    usage: { ...u, prompt_tokens_details: null },
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
