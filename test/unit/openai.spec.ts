import { parseOpenAIBody, ParsedRequest } from "../../assembly/request/openai";

const LIMIT = 64 * 256;

function parse(text: string): ParsedRequest {
  const buf = String.UTF8.encode(text);
  // Keep the buffer alive for the duration of the test via a global.
  lastBody = buf;
  return parseOpenAIBody(changetype<usize>(buf), buf.byteLength, LIMIT);
}
let lastBody: ArrayBuffer = new ArrayBuffer(0);

// The prompt text as the hasher sees it, separators shown as | (field) and ; (record).
function promptText(r: ParsedRequest): string {
  return r.prompt.render(changetype<usize>(lastBody));
}

describe("chat completions", () => {
  it("reads model, stream and the messages' roles and contents", () => {
    const r = parse("{\"model\":\"/model/qwen\",\"stream\":true,\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"content\":\"hi\",\"role\":\"user\"}],\"temperature\":0}");
    expect(r.error).toBeNull();
    expect(r.model).toBe("/model/qwen");
    expect(r.stream).toBe(true);
    expect(promptText(r)).toBe("system|be brief|;hi|user|;");
  });

  it("reads content-part arrays: text, image urls, other parts raw", () => {
    const r = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x/y.png\",\"detail\":\"low\"}},{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"QQ==\"}}]}]}");
    expect(r.error).toBeNull();
    expect(promptText(r)).toBe("user|look|http://x/y.png|{\"data\":\"QQ==\"}|;");
  });

  it("includes tools and tool calls by their raw bytes", () => {
    const r = parse("{\"model\":\"m\",\"tools\":[{\"type\":\"function\"}],\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\"}]}]}");
    expect(r.error).toBeNull();
    expect(promptText(r)).toBe("[{\"type\":\"function\"}];assistant|null|[{\"id\":\"1\"}]|;");
  });

  it("records the model token's offsets, quotes included", () => {
    const r = parse("{ \"messages\": [], \"model\" : \"a\\/b\" }");
    expect(r.model).toBe("a/b");
    expect(r.modelStart).toBe(28);
    expect(r.modelEnd).toBe(34);
  });

  it("takes the last model when the key repeats, like the model server", () => {
    const r = parse("{\"model\":\"first\",\"model\":\"second\"}");
    expect(r.model).toBe("second");
  });

  it("reads cache_salt", () => {
    const r = parse("{\"model\":\"m\",\"cache_salt\":\"tenant-1\",\"messages\":[]}");
    expect(r.cacheSalt).toBe("tenant-1");
  });
});

describe("completions, embeddings, responses", () => {
  it("reads a prompt string", () => {
    const r = parse("{\"model\":\"m\",\"prompt\":\"Once upon a time\",\"max_tokens\":5}");
    expect(r.error).toBeNull();
    expect(promptText(r)).toBe("Once upon a time;");
  });

  it("reads a list of prompts", () => {
    const r = parse("{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}");
    expect(promptText(r)).toBe("a;b;");
  });

  it("hashes token ids as the raw list", () => {
    const r = parse("{\"model\":\"m\",\"prompt\":[1, 2, 3]}");
    expect(promptText(r)).toBe("[1, 2, 3];");
    const batch = parse("{\"model\":\"m\",\"prompt\":[[1,2],[3]]}");
    expect(promptText(batch)).toBe("[1,2];[3];");
  });

  it("reads embeddings input", () => {
    const r = parse("{\"model\":\"e\",\"input\":[\"one\",\"two\"]}");
    expect(promptText(r)).toBe("one;two;");
  });

  it("reads responses instructions and input items", () => {
    const r = parse("{\"model\":\"m\",\"instructions\":\"be kind\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"hello\"}]},{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":\"42\"}]}");
    expect(r.error).toBeNull();
    expect(promptText(r)).toBe("be kind;user|hello|;42|;");
  });
});

describe("errors", () => {
  it("requires a model", () => {
    const r = parse("{\"messages\":[]}");
    expect(r.error).toBe("the request has no \"model\"");
    expect(r.hasModel).toBe(false);
  });

  it("requires the model to be a string", () => {
    expect(parse("{\"model\":5}").error).toBe("\"model\" must be a string");
    expect(parse("{\"model\":null}").error).toBe("\"model\" must be a string");
  });

  it("requires a JSON object", () => {
    expect(parse("[1,2]").error).toBe("request body must be a JSON object");
    expect(parse("").error).toBe("request body must be a JSON object");
  });

  it("rejects malformed and trailing data", () => {
    expect(parse("{\"model\":\"m\",}").error).toBe("expected a string key");
    expect(parse("{\"model\":\"m\"} {}").error).toBe("unexpected data after the JSON object");
    expect(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"unterminated}]}").error).toBe("unterminated string");
  });

  it("survives hostile nesting anywhere", () => {
    const deep = "[".repeat(5000);
    expect(parse("{\"model\":\"m\",\"x\":" + deep + "}").error).toBe("JSON nested too deeply");
    expect(parse("{\"model\":\"m\",\"messages\":[{\"content\":" + deep + "}]}").error).toBe("JSON nested too deeply");
    expect(parse("{\"model\":\"m\",\"prompt\":[[" + deep + "]]}").error).toBe("JSON nested too deeply");
  });

  it("is lenient about members the model server judges", () => {
    const r = parse("{\"model\":\"m\",\"messages\":\"not a list\",\"stream\":\"yes\"}");
    expect(r.error).toBeNull();
    expect(r.stream).toBe(false);
  });
});

describe("prompt limit", () => {
  it("stops recording at the limit but still validates the rest", () => {
    const long = "x".repeat(LIMIT * 2);
    const r = parse("{\"model\":\"m\",\"prompt\":\"" + long + "\",\"tail\":[1,2]}");
    expect(r.error).toBeNull();
    expect(r.prompt.bytes).toBe(LIMIT);
    const bad = parse("{\"model\":\"m\",\"prompt\":\"" + long + "\",\"tail\":[1,}");
    expect(bad.error).not.toBeNull();
  });
});
