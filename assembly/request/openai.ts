// Reads an OpenAI-compatible request body in one pass, in place, without building a document:
// validates the whole JSON, reads `model`, `stream` and `cache_salt`, and records which bytes form
// the prompt for prefix hashing. Understands /v1/chat/completions (`messages`, with string or
// content-part contents), /v1/completions (`prompt` as a string, a list of strings or token ids),
// /v1/embeddings (`input`) and /v1/responses (`instructions`, `input` as text or items); any other
// member is validated and skipped. Only JSON syntax and the `model` member are enforced here: the
// model server stays the judge of everything else, so nothing it accepts is refused by the proxy.

import { Kind, Scanner } from "../json/scanner";
import { PromptText, SEP_FIELD, SEP_RECORD } from "../prefix/prompt";

export class ParsedRequest {
  error: string | null = null;
  errorAt: i32 = 0;
  hasModel: bool = false;
  model: string = "";
  // Offsets of the model's string token, quotes included, for rewriting it.
  modelStart: i32 = 0;
  modelEnd: i32 = 0;
  stream: bool = false;
  cacheSalt: string = "";
  prompt: PromptText;

  constructor(promptLimit: i32) {
    this.prompt = new PromptText(promptLimit);
  }
}

export function parseOpenAIBody(ptr: usize, len: i32, promptLimit: i32): ParsedRequest {
  const r = new ParsedRequest(promptLimit);
  const s = new Scanner(ptr, len);
  if (!parseTop(s, r)) {
    r.error = s.error !== null ? (s.error as string) : "invalid JSON";
    r.errorAt = s.errorAt;
  }
  return r;
}

function parseTop(s: Scanner, r: ParsedRequest): bool {
  if (s.peekKind() != Kind.Object) return s.fail("request body must be a JSON object");
  s.pos++;
  if (!s.objectEnds()) {
    while (true) {
      if (!s.scanKey()) return false;
      if (!parseMember(s, r)) return false;
      const next = s.nextMember(0x7d);
      if (next < 0) return false;
      if (next == 0) break;
    }
  }
  if (!s.atEnd()) return s.fail("unexpected data after the JSON object");
  if (!r.hasModel) return s.fail("the request has no \"model\"", 0);
  return true;
}

// One top-level member; the key is the scanner's current string.
function parseMember(s: Scanner, r: ParsedRequest): bool {
  const klen = s.strEnd - s.strStart;
  const first = klen > 0 ? s.byteAt(s.strStart) : 0;
  // Dispatch on the first byte before comparing, to keep unknown keys cheap.
  if (first == 0x6d) {
    if (s.strEquals("model")) return parseModel(s, r);
    if (s.strEquals("messages")) return parseMessages(s, r.prompt);
  } else if (first == 0x70) {
    if (s.strEquals("prompt")) return parsePrompt(s, r.prompt);
  } else if (first == 0x69) {
    if (s.strEquals("input")) return parsePrompt(s, r.prompt);
    if (s.strEquals("instructions")) return parseTextOrRaw(s, r.prompt);
  } else if (first == 0x73) {
    if (s.strEquals("stream")) {
      const k = s.peekKind();
      if (k == Kind.True || k == Kind.False) {
        r.stream = k == Kind.True;
        return s.scanLiteral(k);
      }
    } else if (s.strEquals("system")) {
      return parseTextOrRaw(s, r.prompt);
    }
  } else if (first == 0x74) {
    if (s.strEquals("tools")) return parseRaw(s, r.prompt);
  } else if (first == 0x63) {
    if (s.strEquals("cache_salt") && s.peekKind() == Kind.String) {
      if (!s.scanString()) return false;
      r.cacheSalt = s.decodeString();
      return s.error === null;
    }
  }
  return s.skipValue();
}

function parseModel(s: Scanner, r: ParsedRequest): bool {
  if (s.peekKind() != Kind.String) return s.fail("\"model\" must be a string");
  const start = s.pos;
  if (!s.scanString()) return false;
  r.model = s.decodeString();
  if (s.error !== null) return false;
  r.modelStart = start;
  r.modelEnd = s.pos;
  r.hasModel = true;
  return true;
}

// Any value, recorded as its raw bytes (tools, tool calls, token id lists, unknown parts), then
// the separator.
function parseRaw(s: Scanner, prompt: PromptText, sep: u8 = SEP_RECORD): bool {
  s.skipWs();
  const start = s.pos;
  if (!s.skipValue()) return false;
  prompt.addSpan(start, s.pos);
  prompt.addSeparator(sep);
  return true;
}

// A string's text, or the raw bytes of any other value, then the separator.
function parseText(s: Scanner, prompt: PromptText, sep: u8): bool {
  if (s.peekKind() != Kind.String) return parseRaw(s, prompt, sep);
  if (!s.scanString()) return false;
  prompt.addSpan(s.strStart, s.strEnd);
  prompt.addSeparator(sep);
  return true;
}

function parseTextOrRaw(s: Scanner, prompt: PromptText): bool {
  return parseText(s, prompt, SEP_RECORD);
}

// A message field's text (role, content, ...), or the raw bytes of any other value.
function parseFieldText(s: Scanner, prompt: PromptText): bool {
  return parseText(s, prompt, SEP_FIELD);
}

function parseMessages(s: Scanner, prompt: PromptText): bool {
  if (s.peekKind() != Kind.Array) return s.skipValue();
  s.pos++;
  if (s.arrayEnds()) return true;
  while (true) {
    if (!parseMessage(s, prompt)) return false;
    const next = s.nextMember(0x5d);
    if (next < 0) return false;
    if (next == 0) return true;
  }
}

// A chat message or a Responses input item: role and content in document order.
function parseMessage(s: Scanner, prompt: PromptText): bool {
  if (s.peekKind() != Kind.Object) return parseTextOrRaw(s, prompt);
  s.pos++;
  let user = false;
  if (!s.objectEnds()) {
    while (true) {
      if (!s.scanKey()) return false;
      if (s.strEquals("role")) {
        if (!parseFieldText(s, prompt)) return false;
        user = s.strEquals("user");
      } else if (s.strEquals("content")) {
        if (s.peekKind() == Kind.Array) {
          if (!parseContentParts(s, prompt)) return false;
        } else if (!parseFieldText(s, prompt)) return false;
      } else if (s.strEquals("tool_calls") || s.strEquals("tool_call_id") || s.strEquals("output") || s.strEquals("arguments")) {
        if (!parseFieldText(s, prompt)) return false;
      } else if (!s.skipValue()) {
        return false;
      }
      const next = s.nextMember(0x7d);
      if (next < 0) return false;
      if (next == 0) break;
    }
  }
  prompt.addSeparator(SEP_RECORD);
  if (user && prompt.firstUserEnd < 0) prompt.firstUserEnd = prompt.bytes;
  return true;
}

// Content parts: {"type":"text","text":...}, {"type":"image_url","image_url":{"url":...}},
// Responses' {"type":"input_text","text":...}; other parts count by their raw bytes.
function parseContentParts(s: Scanner, prompt: PromptText): bool {
  s.pos++; // '['
  if (s.arrayEnds()) return true;
  while (true) {
    if (s.peekKind() == Kind.Object) {
      if (!parseContentPart(s, prompt)) return false;
    } else if (!parseFieldText(s, prompt)) {
      return false;
    }
    const next = s.nextMember(0x5d);
    if (next < 0) return false;
    if (next == 0) return true;
  }
}

function parseContentPart(s: Scanner, prompt: PromptText): bool {
  s.pos++; // '{'
  if (s.objectEnds()) return true;
  while (true) {
    if (!s.scanKey()) return false;
    if (s.strEquals("type")) {
      if (!s.skipValue()) return false;
    } else if (s.strEquals("text")) {
      if (!parseFieldText(s, prompt)) return false;
    } else if (s.strEquals("image_url") && s.peekKind() == Kind.Object) {
      if (!parseImageUrl(s, prompt)) return false;
    } else {
      // image_url as a string, input_audio, file, ...: the raw value identifies the content.
      if (!parseRaw(s, prompt, SEP_FIELD)) return false;
    }
    const next = s.nextMember(0x7d);
    if (next < 0) return false;
    if (next == 0) return true;
  }
}

function parseImageUrl(s: Scanner, prompt: PromptText): bool {
  s.pos++; // '{'
  if (s.objectEnds()) return true;
  while (true) {
    if (!s.scanKey()) return false;
    if (s.strEquals("url")) {
      if (!parseFieldText(s, prompt)) return false;
    } else if (!s.skipValue()) {
      return false;
    }
    const next = s.nextMember(0x7d);
    if (next < 0) return false;
    if (next == 0) return true;
  }
}

// `prompt` / `input`: a string, a list of strings, token ids, or (Responses) input items.
function parsePrompt(s: Scanner, prompt: PromptText): bool {
  const kind = s.peekKind();
  if (kind == Kind.String) return parseTextOrRaw(s, prompt);
  if (kind != Kind.Array) return parseRaw(s, prompt);
  s.skipWs();
  const arrayStart = s.pos;
  s.pos++;
  if (s.arrayEnds()) return true;
  // A list of token ids is hashed as the raw list.
  if (s.peekKind() == Kind.Number) {
    s.pos = arrayStart;
    return parseRaw(s, prompt);
  }
  while (true) {
    if (!parseMessage(s, prompt)) return false;
    const next = s.nextMember(0x5d);
    if (next < 0) return false;
    if (next == 0) return true;
  }
}
